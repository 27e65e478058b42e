import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { CHUNK_BYTES, DroverError, ErrorCode, toDroverError, type AppFile } from '@drover/protocol';
import type { WorkerSession } from './worker-session.js';

/** A file to copy: where it is here, and what it becomes in the app folder. */
export interface SourceFile extends AppFile {
  source: string;
  mode: number;
}

/**
 * sha256 of files already hashed, by identity (device, inode, size, mtime, ctime): redeploying
 * an unchanged binary does not read it again. Any change to the file changes its key.
 */
const hashes = new Map<string, string>();
const MAX_HASHES = 1024;

/** Hashes a file in a stream (flat memory whatever its size), or recalls the hash of an unchanged one. */
export async function describeFile(source: string, kind: AppFile['kind'], name: string): Promise<SourceFile> {
  const info = await stat(source, { bigint: true }).catch((err: NodeJS.ErrnoException) => {
    throw new DroverError(ErrorCode.NOT_FOUND, `no file at ${source} (${err.code})`);
  });
  if (!info.isFile()) throw new DroverError(ErrorCode.BAD_ARGUMENTS, `${source} is not a regular file`);
  const key = `${info.dev}:${info.ino}:${info.size}:${info.mtimeNs}:${info.ctimeNs}`;
  let sha256 = hashes.get(key);
  if (sha256 === undefined) {
    const hash = createHash('sha256');
    for await (const chunk of createReadStream(source, { highWaterMark: 1024 * 1024 })) hash.update(chunk as Buffer);
    sha256 = hash.digest('hex');
    if (hashes.size >= MAX_HASHES) hashes.delete(hashes.keys().next().value!);
    hashes.set(key, sha256);
  }
  // Whatever happens to the file after this, the worker checks the sha256 of what it receives.
  return { kind, name, size: Number(info.size), sha256, source, mode: kind === 'exe' ? 0o755 : 0o644 };
}

export interface CopyOutcome {
  files: { file: SourceFile; sent: boolean }[];
}

/**
 * Copies an app's files to one worker: asks what it has, sends only what differs (chunks paced
 * by the worker's acks), then commits. Until the commit the worker keeps the previous version.
 */
export async function copyToWorker(
  session: WorkerSession,
  app: string,
  files: SourceFile[],
  opts: { signal: AbortSignal; onProgress(sentBytes: number): void },
): Promise<CopyOutcome> {
  const inventory = await session.request('inventory', { app }, { signal: opts.signal });
  const present = new Set(inventory.files.map((f) => `${f.kind}:${f.name}:${f.sha256}`));
  const outcome: CopyOutcome = { files: [] };
  let sentBytes = 0;
  for (const file of files) {
    const already = present.has(`${file.kind}:${file.name}:${file.sha256}`);
    if (!already) {
      await uploadFile(session, app, file, opts.signal, (n) => opts.onProgress((sentBytes += n)));
    } else {
      opts.onProgress((sentBytes += file.size));
    }
    outcome.files.push({ file, sent: !already });
  }
  const exe = files.find((f) => f.kind === 'exe')!;
  const strip = ({ kind, name, size, sha256 }: SourceFile): AppFile => ({ kind, name, size, sha256 });
  await session.request(
    'app-commit',
    {
      app,
      executable: exe.name,
      files: outcome.files.filter((f) => f.sent).map((f) => strip(f.file)),
      keep: outcome.files.filter((f) => !f.sent).map((f) => strip(f.file)),
    },
    { signal: opts.signal, timeoutMs: 120_000 },
  );
  return outcome;
}

async function uploadFile(session: WorkerSession, app: string, file: SourceFile, signal: AbortSignal, progress: (n: number) => void): Promise<void> {
  const ref = session.allocateId();
  const { source: _source, mode, ...appFile } = file;
  await session.request('upload-begin', { app, file: appFile, mode }, { id: ref, signal });
  let sent = 0;
  try {
    const stream = createReadStream(file.source, { highWaterMark: CHUNK_BYTES });
    try {
      for await (const chunk of stream) {
        const buf = chunk as Buffer;
        if (sent + buf.length > file.size) throw new DroverError(ErrorCode.IO_ERROR, `${file.source} grew while it was being copied`);
        await session.sendChunk(ref, buf, signal);
        sent += buf.length;
        progress(buf.length);
      }
    } finally {
      stream.destroy();
    }
    if (sent !== file.size) throw new DroverError(ErrorCode.IO_ERROR, `${file.source} shrank while it was being copied`);
    // The worker answers once every byte is on its disk, fsynced, and matches the sha256.
    await session.request('upload-end', { ref }, { signal, timeoutMs: 300_000 });
  } catch (err) {
    // Let the worker drop its partial file; it keeps the previous version either way.
    if (session.connected) void session.request('upload-end', { ref }, { timeoutMs: 30_000 }).catch(() => undefined);
    throw toDroverError(err);
  } finally {
    session.endUpload(ref);
  }
}
