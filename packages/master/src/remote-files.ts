import {
  CHUNK_HEADER_BYTES,
  CONTROL_VERSION,
  DroverError,
  ErrorCode,
  FILE_WINDOW_BYTES,
  MAX_FRAME_BYTES,
  ReceiveWindow,
  SendWindow,
  encodeChunkHeader,
  frameInPlace,
  type ControlFileAck,
  type ControlFileReply,
  type ControlReply,
  type FileAnswer,
  type FileOp,
} from '@drover/protocol';
import type { FileFacts, FileWriter, Files, PeekedFile, ReadOptions, ReadSpec } from './files.js';
import type { LibraryScan } from './ldd.js';
import { openIfSame, readChunks } from './local-files.js';

/** Files up to this size may name other files (a service file): the client reads them itself, to know what they name. */
export const NAMING_FILE_BYTES = 1024 * 1024;

/** A client that sends nothing of a file it was asked for in this long has stalled. */
const STALL_MS = 120_000;

type AnswerOf<O extends FileOp['op']> = Extract<FileAnswer, { op: O }>;

interface Pending {
  op: FileOp['op'];
  resolve(answer: FileAnswer): void;
  reject(err: DroverError): void;
}

/** The chunks of one read, as they arrive: taken in order by the reader, bounded by the window. */
class Incoming {
  readonly window = new ReceiveWindow(FILE_WINDOW_BYTES + MAX_FRAME_BYTES);
  private readonly chunks: Buffer[] = [];
  private ended = false;
  private error: DroverError | null = null;
  private wake: (() => void) | null = null;

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.wake?.();
  }

  end(): void {
    this.ended = true;
    this.wake?.();
  }

  fail(err: DroverError): void {
    this.error ??= err;
    this.wake?.();
  }

  /** The next chunk; null at the end. */
  async next(signal: AbortSignal, what: string): Promise<Buffer | null> {
    for (;;) {
      if (this.chunks.length) return this.chunks.shift()!;
      if (this.error) throw this.error;
      if (this.ended) return null;
      if (signal.aborted) throw new DroverError(ErrorCode.CANCELLED, 'cancelled');
      const stalled = await new Promise<boolean>((resolve) => {
        const done = (value: boolean): void => {
          clearTimeout(timer);
          signal.removeEventListener('abort', onAbort);
          this.wake = null;
          resolve(value);
        };
        const onAbort = (): void => done(false);
        const timer = setTimeout(() => done(true), STALL_MS);
        this.wake = () => done(false);
        signal.addEventListener('abort', onAbort, { once: true });
      });
      if (stalled && !this.chunks.length && !this.ended && !this.error)
        throw new DroverError(ErrorCode.TIMEOUT, `the client sent nothing of ${what} for ${STALL_MS / 1000} s`);
    }
  }
}

/**
 * The files of the client at the other end of an operator connection, as the master sees them:
 * each call is a `file` ask the client answers; reads arrive as binary chunk frames the master
 * acknowledges as it consumes them (so it holds at most a window of each), writes leave the
 * same way, paced by the client's acknowledgements.
 */
export class RemoteFiles implements Files {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly reads = new Map<number, Incoming>();
  private readonly writes = new Map<number, SendWindow>();
  private closedWith: DroverError | null = null;

  constructor(
    private readonly send: (reply: ControlReply) => Promise<void>,
    private readonly sendBinary: (frame: Buffer) => Promise<void>,
    /**
     * The client is on this machine (the control socket, so also this user): a file it
     * described that the master sees too, the very same (device, inode, size, mtime), is read
     * here instead of being sent through the client.
     */
    private readonly sameMachine = false,
  ) {}

  async describe(file: string): Promise<FileFacts> {
    const a = await this.ask({ op: 'describe', path: file });
    if (!a.sha256) throw new DroverError(ErrorCode.PROTOCOL_ERROR, `the client described ${file} without its sha256`);
    return { path: a.path, size: a.size, sha256: a.sha256, ...(a.identity ? { identity: a.identity } : {}) };
  }

  async peek(file: string): Promise<PeekedFile> {
    const a = await this.ask({ op: 'describe', path: file, hash: false });
    return { path: a.path, size: a.size, ...(a.sha256 ? { sha256: a.sha256 } : {}), ...(a.identity ? { identity: a.identity } : {}) };
  }

  async remember(file: { path: string; sha256: string; identity: string }): Promise<void> {
    await this.ask({ op: 'remember', path: file.path, sha256: file.sha256, identity: file.identity });
  }

  async libraries(file: string): Promise<LibraryScan> {
    const a = await this.ask({ op: 'libraries', path: file });
    return { libraries: a.libraries, missing: a.missing };
  }

  async *read(file: ReadSpec, signal: AbortSignal, opts: ReadOptions = {}): AsyncGenerator<Buffer> {
    // Small files always come through the client: it learns from them what they name (a service file's programs).
    const here = this.sameMachine && file.identity && file.size > NAMING_FILE_BYTES ? await openIfSame(file.path, file.identity) : null;
    if (here) {
      yield* readChunks(file, signal, { handle: here, ...opts });
      return;
    }
    const id = this.allocate();
    const incoming = new Incoming();
    this.reads.set(id, incoming);
    let finished = false;
    const ask: Extract<FileOp, { op: 'read' }> = { op: 'read', path: file.path, size: file.size };
    if (file.sha256) ask.sha256 = file.sha256;
    if (file.identity) ask.identity = file.identity;
    if (opts.offset) ask.offset = opts.offset;
    this.ask(ask, id).then(
      () => incoming.end(),
      (err: DroverError) => incoming.fail(err),
    );
    let consumed = 0;
    let acked = 0;
    try {
      for (;;) {
        const chunk = await incoming.next(signal, file.path);
        if (chunk === null) break;
        // Its length first: once taken, the consumer frees it when its sockets are done with it.
        const length = chunk.length;
        yield chunk;
        // The consumer has taken it: room for more. Acknowledged in steps, not per chunk.
        consumed = incoming.window.consume(length);
        if (consumed - acked >= FILE_WINDOW_BYTES / 4) {
          acked = consumed;
          void this.send({ v: CONTROL_VERSION, type: 'file-ack', ref: id, bytes: consumed });
        }
      }
      finished = true;
    } finally {
      this.reads.delete(id);
      // Stopped early (an error, a cancel): the client stops reading too.
      if (!finished && !this.closedWith) void this.send({ v: CONTROL_VERSION, type: 'file', id: this.allocate(), ask: { op: 'cancel', ref: id } });
    }
  }

  async create(file: string, force: boolean): Promise<FileWriter> {
    const id = this.allocate();
    const window = new SendWindow(() => FILE_WINDOW_BYTES);
    this.writes.set(id, window);
    let opened: AnswerOf<'create'>;
    try {
      opened = await this.ask({ op: 'create', path: file, force }, id);
    } catch (err) {
      this.writes.delete(id);
      throw err;
    }
    let done: Promise<{ path: string; bytes: number }> | null = null;
    return {
      path: opened.path,
      write: async (data, signal) => {
        await window.waitForRoom({
          signal,
          idleMs: STALL_MS,
          check: () => {
            if (this.closedWith) throw this.closedWith;
          },
          stalled: () => new DroverError(ErrorCode.TIMEOUT, `the client wrote nothing of ${opened.path} for ${STALL_MS / 1000} s`),
        });
        // A chunk as it came from a worker goes on as it is: its old header is overwritten.
        if (data.length <= MAX_FRAME_BYTES - CHUNK_HEADER_BYTES && data.byteOffset >= CHUNK_HEADER_BYTES) {
          const bytes = data.length;
          await this.sendBinary(frameInPlace(id, data));
          window.sentBytes(bytes);
          return;
        }
        for (let at = 0; at < data.length; at += MAX_FRAME_BYTES / 2) {
          const part = data.subarray(at, at + MAX_FRAME_BYTES / 2);
          await this.sendBinary(Buffer.concat([encodeChunkHeader(id), part]));
          window.sentBytes(part.length);
        }
      },
      finish: (keep) => {
        done ??= (async () => {
          this.writes.delete(id);
          if (window.error && keep) throw window.error;
          const a = await this.ask({ op: 'finish', ref: id, keep });
          return { path: a.path, bytes: a.bytes };
        })();
        return done;
      },
    };
  }

  /** The client answered ask `reply.id`. */
  receiveReply(reply: ControlFileReply): void {
    const p = this.pending.get(reply.id);
    if (!p) return;
    this.pending.delete(reply.id);
    if (!reply.ok || !reply.answer) {
      const e = reply.error ?? { code: ErrorCode.PROTOCOL_ERROR, message: 'the client gave no reason' };
      return p.reject(new DroverError(e.code, e.message));
    }
    if (reply.answer.op !== p.op) return p.reject(new DroverError(ErrorCode.PROTOCOL_ERROR, `the client answered a ${p.op} with a ${reply.answer.op}`));
    p.resolve(reply.answer);
  }

  /** The client wrote `bytes` of write `ack.ref` in all, or failed it. */
  receiveAck(ack: ControlFileAck): void {
    const w = this.writes.get(ack.ref);
    if (!w) return;
    if (ack.error) w.fail(new DroverError(ack.error.code, ack.error.message));
    else w.ack(ack.bytes);
  }

  /**
   * A chunk of read `ref`. Returns an error when the client sent past the window it was given
   * (it ignores flow control: the connection should go). A chunk of a read that ended is dropped.
   */
  receiveChunk(ref: number, payload: Buffer): string | null {
    const r = this.reads.get(ref);
    if (!r) return null;
    if (!r.window.arrive(payload.length)) return `the client sent past the ${FILE_WINDOW_BYTES}-byte window of a file read`;
    r.push(payload);
    return null;
  }

  /** The connection is gone: everything waiting on the client fails. */
  close(): void {
    this.closedWith ??= new DroverError(ErrorCode.CANCELLED, 'the client went away');
    for (const p of this.pending.values()) p.reject(this.closedWith);
    this.pending.clear();
    for (const r of this.reads.values()) r.fail(this.closedWith);
    for (const w of this.writes.values()) w.close();
  }

  private allocate(): number {
    const id = this.nextId;
    this.nextId = this.nextId >= 0xffffffff ? 1 : this.nextId + 1;
    return id;
  }

  private ask<O extends FileOp>(op: O, id = this.allocate()): Promise<AnswerOf<O['op']>> {
    if (this.closedWith) return Promise.reject(this.closedWith);
    return new Promise((resolve, reject) => {
      this.pending.set(id, { op: op.op, resolve: resolve as (a: FileAnswer) => void, reject });
      void this.send({ v: CONTROL_VERSION, type: 'file', id, ask: op });
    });
  }
}
