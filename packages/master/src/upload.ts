import { DroverError, ErrorCode, toDroverError, type AppFile } from '@drover/protocol';
import type { Files } from './files.js';
import type { WorkerSession } from './worker-session.js';

/** A file to copy: where it is (on the user's machine), and what it becomes in the app folder. */
export interface SourceFile extends AppFile {
  source: string;
  mode: number;
  /** As Files.describe reported it. */
  identity?: string;
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
  opts: { from: Files; signal: AbortSignal; onProgress(sentBytes: number): void },
): Promise<CopyOutcome> {
  const inventory = await session.request('inventory', { app }, { signal: opts.signal });
  const present = new Set(inventory.files.map((f) => `${f.kind}:${f.name}:${f.sha256}`));
  const outcome: CopyOutcome = { files: [] };
  let sentBytes = 0;
  for (const file of files) {
    const already = present.has(`${file.kind}:${file.name}:${file.sha256}`);
    if (!already) {
      await uploadFile(session, app, file, opts.from, opts.signal, (n) => opts.onProgress((sentBytes += n)));
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

async function uploadFile(
  session: WorkerSession,
  app: string,
  file: SourceFile,
  from: Files,
  signal: AbortSignal,
  progress: (n: number) => void,
): Promise<void> {
  const ref = session.allocateId();
  const { source: _source, identity: _identity, mode, ...appFile } = file;
  await session.request('upload-begin', { app, file: appFile, mode }, { id: ref, signal });
  let sent = 0;
  try {
    // The reader checks the size; the worker checks the sha256 of what arrives.
    for await (const chunk of from.read({ path: file.source, size: file.size, sha256: file.sha256, identity: file.identity }, signal)) {
      await session.sendChunk(ref, chunk, signal);
      sent += chunk.length;
      progress(chunk.length);
    }
    if (sent !== file.size) throw new DroverError(ErrorCode.IO_ERROR, `${file.source} changed size while it was being copied`);
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
