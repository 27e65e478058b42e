import { createHash, type Hash } from 'node:crypto';
import { open, rm, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import {
  CHUNK_HEADER_BYTES,
  DroverError,
  ErrorCode,
  FILE_CHUNK_BYTES,
  SendWindow,
  TRANSFER_WINDOW_BYTES,
  frameInPlace,
  toDroverError,
  type UploadFile,
  type WorkerToMaster,
  releaseChunk,
  releaseMemorySoon,
  SyncBehind,
} from '@drover/protocol';
import { HashThread } from './hash-thread.js';
import type { Logger } from './logger.js';
import { fileKey } from './store.js';

const ACK_EVERY_BYTES = 1024 * 1024;

interface Upload {
  ref: number;
  app: string;
  file: UploadFile;
  mode: number;
  tmp: string;
  fh: FileHandle;
  /** Hashed here, on the event loop (small files); null when the hashing thread writes it. */
  hash: Hash | null;
  received: number;
  written: number;
  acked: number;
  /**
   * fdatasyncs on the way (sync-behind.ts). Started from the event loop, not the hashing thread:
   * a thread busy with a queue of chunks ran their callbacks only once the queue was empty.
   */
  behind: SyncBehind;
  /** Chunks received but not yet written; drained by one writer, many chunks per writev. */
  queue: Buffer[];
  /** The writer's run, while it has chunks to write. */
  draining: Promise<void> | null;
  error: DroverError | null;
}

/** Chunks written with one writev at most: fewer thread-pool round trips per MiB. */
const MAX_BATCH = 32;

/** Uploads this big are hashed and written by the hashing thread; smaller ones here. */
const THREAD_MIN_BYTES = 4 * 1024 * 1024;

export interface ChunkSender {
  readonly connected: boolean;
  /** Sends a whole chunk frame; `done` runs once the socket is through with its memory. */
  sendFrame(frame: Buffer, done?: (err?: Error) => void): boolean;
}

/** Read buffers for outgoing chunks: a chunk and the room for its header in front. */
export const OUT_BUFFER_BYTES = CHUNK_HEADER_BYTES + FILE_CHUNK_BYTES;

/**
 * An outgoing stream of chunks, paced by the receiver's acks so memory stays flat. Chunks are
 * read into buffers of its pool with room for the header in front: framed in place, and the
 * buffer reused once the socket has written it (no allocation, copy or GC per chunk).
 */
export class OutgoingTransfer {
  private readonly window = new SendWindow(() => TRANSFER_WINDOW_BYTES);
  private readonly spare: Buffer[] = [];

  constructor(
    readonly ref: number,
    private readonly link: ChunkSender,
  ) {}

  /** A buffer to read the next chunk into, at offset CHUNK_HEADER_BYTES (OUT_BUFFER_BYTES long). */
  buffer(): Buffer {
    return this.spare.pop() ?? Buffer.allocUnsafe(OUT_BUFFER_BYTES);
  }

  get bytesSent(): number {
    return this.window.sent;
  }

  get closed(): boolean {
    return this.window.closed;
  }

  /**
   * Sends `bytes` bytes of `buffer` (from `buffer()`, read at CHUNK_HEADER_BYTES), first waiting
   * while the window of unacknowledged bytes is full. The buffer is the transfer's again after.
   */
  async write(buffer: Buffer, bytes: number, signal: AbortSignal): Promise<void> {
    await this.window.waitForRoom({ signal });
    const frame = frameInPlace(this.ref, buffer.subarray(CHUNK_HEADER_BYTES, CHUNK_HEADER_BYTES + bytes));
    const back = (): void => void (this.spare.length < 16 && this.spare.push(buffer));
    if (!this.link.sendFrame(frame, back)) throw new DroverError(ErrorCode.CANCELLED, 'the master went away');
    this.window.sentBytes(bytes);
  }

  ack(bytes: number): void {
    this.window.ack(bytes);
  }

  close(): void {
    this.window.close();
  }
}

/** File data in both directions: uploads from the master (staged, verified) and outgoing streams. */
export class Transfers {
  private readonly uploads = new Map<number, Upload>();
  private readonly outgoing = new Map<number, OutgoingTransfer>();
  /** Completed uploads waiting for their app's commit: app → file key → staged path. */
  private readonly staged = new Map<string, Map<string, string>>();
  private readonly writer = new HashThread();

  constructor(
    private readonly stagingDir: string,
    private readonly workerName: string,
    private readonly logger: Logger,
    private readonly send: (message: WorkerToMaster) => boolean,
    private readonly sender: () => ChunkSender,
  ) {}

  async begin(ref: number, app: string, file: UploadFile, mode: number): Promise<void> {
    if (this.uploads.has(ref)) throw new DroverError(ErrorCode.BAD_REQUEST, `transfer ${ref} is already open`);
    const tmp = path.join(this.stagingDir, `${ref}-${file.kind}-${file.name}`);
    const fh = await open(tmp, 'w', 0o600);
    const threaded = file.size >= THREAD_MIN_BYTES;
    const up: Upload = {
      ref,
      app,
      file,
      mode,
      tmp,
      fh,
      hash: threaded ? null : createHash('sha256'),
      received: 0,
      written: 0,
      acked: 0,
      behind: new SyncBehind(fh, (err) => this.fail(up, this.writeError(up, toDroverError(err)))),
      queue: [],
      draining: null,
      error: null,
    };
    this.uploads.set(ref, up);
    if (threaded) {
      this.writer.open(ref, fh.fd, {
        progress: (bytes) => this.written(up, bytes),
        failed: (code, message) => this.fail(up, this.writeError(up, toDroverError(Object.assign(new Error(message), { code })))),
      });
    }
  }

  /** One chunk of an upload: hashed and written in order, acknowledged once on disk. */
  receive(ref: number, payload: Buffer): void {
    const up = this.uploads.get(ref);
    if (!up) {
      this.logger.debug({ ref }, 'chunk for an unknown or finished transfer dropped');
      return;
    }
    if (up.error) return;
    up.received += payload.length;
    if (up.received > up.file.size) {
      this.fail(up, new DroverError(ErrorCode.BAD_REQUEST, `${up.file.name}: received more than the announced ${up.file.size} bytes`));
      return;
    }
    if (!up.hash) return this.writer.write(ref, payload);
    up.hash.update(payload);
    up.queue.push(payload);
    up.draining ??= this.drain(up);
  }

  /** `bytes` of the upload are written: acknowledged in steps of ACK_EVERY_BYTES and at the end. */
  private written(up: Upload, bytes: number): void {
    up.written = bytes;
    if (up.error) return;
    if (up.written - up.acked >= ACK_EVERY_BYTES || up.written === up.file.size) {
      up.acked = up.written;
      this.send({ v: 1, type: 'ack', ref: up.ref, bytes: up.written });
    }
    // The last bytes are left to the fsync that ends the upload.
    if (up.written < up.file.size) up.behind.wrote(up.written);
  }

  private writeError(up: Upload, e: DroverError): DroverError {
    return e.code === ErrorCode.NO_SPACE
      ? new DroverError(ErrorCode.NO_SPACE, `${this.workerName} ran out of disk space receiving ${up.file.name}; the previous version is kept`, { cause: e })
      : e;
  }

  /** Marks an upload failed and tells the master at once: it stops sending instead of waiting for acks. */
  private fail(up: Upload, error: DroverError): void {
    if (up.error) return;
    up.error = error;
    up.queue.length = 0;
    this.send({ v: 1, type: 'transfer-error', ref: up.ref, error: error.toJSON() });
  }

  /** Writes queued chunks in order, batching whatever arrived meanwhile; acks once on disk. */
  private async drain(up: Upload): Promise<void> {
    while (up.queue.length > 0 && !up.error) {
      const batch = up.queue.splice(0, MAX_BATCH);
      const bytes = batch.reduce((n, b) => n + b.length, 0);
      try {
        await up.fh.writev(batch);
      } catch (err) {
        this.fail(up, this.writeError(up, toDroverError(err)));
        break;
      } finally {
        for (const chunk of batch) releaseChunk(chunk);
      }
      this.written(up, up.written + bytes);
    }
    up.queue.length = 0;
    up.draining = null;
  }

  /** Finishes an upload: all bytes on disk and fsynced, sha256 checked, exec bit set; then staged. */
  /** `expected`: the file's sha256, when upload-begin did not say it; with neither, the received bytes' is reported. */
  async end(ref: number, expected?: string): Promise<{ size: number; sha256: string }> {
    const up = this.uploads.get(ref);
    if (!up) throw new DroverError(ErrorCode.BAD_REQUEST, `no open transfer ${ref}`);
    this.uploads.delete(ref);
    releaseMemorySoon();
    try {
      await up.draining;
      const sha256 = up.hash ? up.hash.digest('hex') : await this.writer.end(ref);
      // A failed one has failed the upload (up.error).
      await up.behind.settle().catch(() => undefined);
      if (up.error) throw up.error;
      if (up.written !== up.file.size) {
        throw new DroverError(ErrorCode.BAD_REQUEST, `${up.file.name}: received ${up.written} of ${up.file.size} bytes`);
      }
      if (up.file.sha256 && expected && expected !== up.file.sha256) {
        throw new DroverError(ErrorCode.BAD_REQUEST, `${up.file.name}: upload-end names another sha256 than upload-begin`);
      }
      if (sha256 === null) throw new DroverError(ErrorCode.IO_ERROR, `${up.file.name} could not be written whole`);
      // Without a sha256 from the master (it did not hash the file before sending it), the one
      // of what arrived is the file's: the master checks that every worker got the same.
      const wanted = expected ?? up.file.sha256 ?? sha256;
      if (sha256 !== wanted) {
        throw new DroverError(ErrorCode.CHECKSUM_MISMATCH, `${up.file.name}: sha256 ${sha256.slice(0, 12)}… does not match the sent ${wanted.slice(0, 12)}…`);
      }
      await up.fh.chmod(up.mode);
      await up.fh.sync();
      await up.fh.close();
      const forApp = this.staged.get(up.app) ?? new Map<string, string>();
      this.staged.set(up.app, forApp);
      const key = fileKey(up.file);
      const previous = forApp.get(key);
      if (previous) await rm(previous, { force: true });
      forApp.set(key, up.tmp);
      return { size: up.written, sha256 };
    } catch (err) {
      await up.behind.settle().catch(() => undefined);
      await up.fh.close().catch(() => undefined);
      await rm(up.tmp, { force: true });
      throw err;
    }
  }

  /** The staged files of `app`, handed over to the commit (which renames them into place). */
  takeStaged(app: string): Map<string, string> {
    const forApp = this.staged.get(app) ?? new Map<string, string>();
    this.staged.delete(app);
    return forApp;
  }

  async discardStaged(files: Map<string, string>): Promise<void> {
    await Promise.all([...files.values()].map((p) => rm(p, { force: true })));
  }

  openOutgoing(ref: number): OutgoingTransfer {
    const t = new OutgoingTransfer(ref, this.sender());
    this.outgoing.set(ref, t);
    return t;
  }

  closeOutgoing(t: OutgoingTransfer): void {
    t.close();
    this.outgoing.delete(t.ref);
    if (t.bytesSent > 16 * 1024 * 1024) releaseMemorySoon();
  }

  ack(ref: number, bytes: number): void {
    this.outgoing.get(ref)?.ack(bytes);
  }

  /** The link dropped: nothing half-received is kept, nothing more is sent. */
  abortAll(): void {
    for (const up of this.uploads.values()) {
      up.error = new DroverError(ErrorCode.CANCELLED, 'the master went away');
      // The thread may still be writing what it was given: the file is closed once it is done.
      const writing = up.hash ? up.draining : this.writer.end(up.ref);
      void Promise.resolve(writing).then(async () => {
        await up.behind.settle().catch(() => undefined);
        await up.fh.close().catch(() => undefined);
        await rm(up.tmp, { force: true });
      });
    }
    this.uploads.clear();
    for (const files of this.staged.values()) void this.discardStaged(files);
    this.staged.clear();
    for (const t of this.outgoing.values()) t.close();
    this.outgoing.clear();
  }
}
