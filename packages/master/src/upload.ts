import { DroverError, ErrorCode, toDroverError, type AppFile } from '@drover/protocol';
import type { Files } from './files.js';
import { SharedReads } from './shared-read.js';
import type { WorkerSession } from './worker-session.js';

/** A file to copy: where it is (on the user's machine), and what it becomes in the app folder. */
export interface SourceFile extends Omit<AppFile, 'sha256'> {
  source: string;
  mode: number;
  /** As Files.describe reported it. */
  identity?: string;
  /**
   * Known up front (hashed before, or cached), or learnt from the first worker it is sent to: a
   * file no worker has a same-sized copy of is sent without reading it first to hash it; each
   * worker hashes what it receives, and all must agree.
   */
  sha256?: string;
}

/** A file as copied: its sha256 is known by then. */
export type CopiedSource = SourceFile & { sha256: string };

export interface CopyOutcome {
  files: { file: CopiedSource; sent: boolean }[];
}

/**
 * The files of one copy, shared by every worker it goes to: each file is read once for all of
 * them (shared-read.ts), however many workers, and hashed first only where a worker has a
 * same-sized file it might be.
 */
export class CopySources {
  private readonly reads: SharedReads;
  private readonly hashing = new Map<SourceFile, Promise<string>>();

  constructor(readonly from: Files) {
    this.reads = new SharedReads(from);
  }

  /** The file's sha256, reading the whole file first if it is not known yet. */
  hash(file: SourceFile): Promise<string> {
    if (file.sha256) return Promise.resolve(file.sha256);
    let hashing = this.hashing.get(file);
    if (!hashing) {
      hashing = this.from.describe(file.source).then((facts) => {
        if (facts.size !== file.size || (file.identity && facts.identity && facts.identity !== file.identity)) {
          throw new DroverError(ErrorCode.IO_ERROR, `${file.source} changed while it was being copied`);
        }
        return (file.sha256 ??= facts.sha256);
      });
      this.hashing.set(file, hashing);
    }
    return hashing;
  }

  /** A cursor on the file's shared read for worker `who`. */
  open(file: SourceFile, who: string): ReturnType<SharedReads['open']> {
    return this.reads.open(
      { path: file.source, size: file.size, ...(file.sha256 ? { sha256: file.sha256 } : {}), ...(file.identity ? { identity: file.identity } : {}) },
      who,
    );
  }
}

/**
 * Copies an app's files to one worker: asks what it has, sends only what differs (chunks paced
 * by the worker's acks), then commits. Until the commit the worker keeps the previous version.
 * `sources`: shared by every worker of one copy, so each file is read once for all of them.
 */
export async function copyToWorker(
  session: WorkerSession,
  app: string,
  files: SourceFile[],
  opts: { from: Files; sources?: CopySources; signal: AbortSignal; onProgress(sentBytes: number): void },
): Promise<CopyOutcome> {
  const sources = opts.sources ?? new CopySources(opts.from);
  const inventory = await session.request('inventory', { app }, { signal: opts.signal });
  const present = new Set(inventory.files.map((f) => `${f.kind}:${f.name}:${f.sha256}`));
  const sameSize = new Set(inventory.files.map((f) => `${f.kind}:${f.name}:${f.size}`));
  const outcome: CopyOutcome = { files: [] };
  let sentBytes = 0;
  for (const file of files) {
    // Unknown sha256: only a same-sized file there can be the same; only then is it hashed first.
    const sha = file.sha256 ?? (sameSize.has(`${file.kind}:${file.name}:${file.size}`) ? await sources.hash(file) : undefined);
    const already = sha !== undefined && present.has(`${file.kind}:${file.name}:${sha}`);
    let sha256: string;
    if (!already) {
      sha256 = await uploadFile(session, app, file, sources, opts.signal, (n) => opts.onProgress((sentBytes += n)));
    } else {
      sha256 = sha;
      opts.onProgress((sentBytes += file.size));
    }
    outcome.files.push({ file: { ...file, sha256 }, sent: !already });
  }
  const exe = files.find((f) => f.kind === 'exe')!;
  const strip = ({ kind, name, size, sha256 }: CopiedSource): AppFile => ({ kind, name, size, sha256 });
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

/** Sends one file to one worker from the copy's shared read; resolves with its sha256. */
async function uploadFile(
  session: WorkerSession,
  app: string,
  file: SourceFile,
  sources: CopySources,
  signal: AbortSignal,
  progress: (n: number) => void,
): Promise<string> {
  const cursor = sources.open(file, session.workerId);
  const ref = cursor.ref;
  const { kind, name, size } = file;
  try {
    await session.request(
      'upload-begin',
      { app, file: { kind, name, size, ...(file.sha256 ? { sha256: file.sha256 } : {}) }, mode: file.mode },
      { id: ref, signal },
    );
    let sent = 0;
    try {
      // The reader checks the size; the worker checks the sha256 of what arrives.
      for (;;) {
        const chunk = await cursor.next(signal);
        if (!chunk) break;
        await session.sendFrame(ref, chunk, signal);
        sent += chunk.bytes;
        progress(chunk.bytes);
      }
      if (sent !== file.size) throw new DroverError(ErrorCode.IO_ERROR, `${file.source} changed size while it was being copied`);
      // The worker answers once every byte is on its disk, fsynced, and matches the sha256 if
      // one is known; if none is, with the sha256 of what it received.
      const known = file.sha256;
      const end = await session.request('upload-end', { ref, ...(known ? { sha256: known } : {}) }, { signal, timeoutMs: 300_000 });
      file.sha256 ??= end.sha256;
      if (end.sha256 !== file.sha256) {
        throw new DroverError(ErrorCode.CHECKSUM_MISMATCH, `${file.source} changed while it was being copied (workers received different contents)`);
      }
      return end.sha256;
    } catch (err) {
      // Let the worker drop its partial file; it keeps the previous version either way.
      if (session.connected) void session.request('upload-end', { ref }, { timeoutMs: 30_000 }).catch(() => undefined);
      throw toDroverError(err);
    } finally {
      session.endUpload(ref);
    }
  } finally {
    cursor.close();
  }
}
