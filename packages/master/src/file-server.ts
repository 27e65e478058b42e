import path from 'node:path';
import {
  CONTROL_VERSION,
  DroverError,
  ErrorCode,
  FILE_WINDOW_BYTES,
  MAX_FRAME_BYTES,
  ReceiveWindow,
  SendWindow,
  decodeChunk,
  frameInPlace,
  toDroverError,
  unreachable,
  type ControlFileAck,
  type ControlFileAsk,
  type ControlFileReply,
  type FileAnswer,
  releaseChunk,
} from '@drover/protocol';
import type { FileWriter, ReadSpec } from './files.js';

/** Read buffers kept for reuse: a window's worth and a little more. */
const SPARE_BUFFERS = Math.ceil(FILE_WINDOW_BYTES / READ_BUFFER_BYTES) + 4;
import { READ_BUFFER_BYTES, READ_HEADROOM, localFiles, readChunks } from './local-files.js';
import { NAMING_FILE_BYTES } from './remote-files.js';
import { splitCommands } from './tokenize.js';

/** Linux's longest path, terminating NUL included. */
const PATH_MAX = 4096;

/** A write being received: its file, the window it was granted, and the order of its chunks. */
interface Incoming {
  writer: FileWriter;
  window: ReceiveWindow;
  chain: Promise<void>;
  failed: boolean;
}

/**
 * The client's side of the file asks: serves the master the files of the command the user
 * typed, from this machine, as this user, with this environment (ldd sees LD_LIBRARY_PATH).
 *
 * The master may only have what the user named: a path written on the command line, and the
 * libraries this client's ldd found for one. Anything else is refused, so a master (or whoever
 * took its place) cannot read the client's other files.
 */
export class FileServer {
  private readonly files;
  private readonly allowed = new Set<string>();
  private readonly reads = new Map<number, AbortController>();
  private readonly writes = new Map<number, Incoming>();
  private readonly windows = new Map<number, SendWindow>();
  /**
   * Read buffers back from the socket, for the next chunks: a 256 MiB copy allocating a fresh
   * 1 MiB buffer per chunk spent more time collecting them than hashing the file.
   */
  private readonly spare: Buffer[] = [];

  constructor(
    private readonly send: (message: ControlFileReply | ControlFileAck) => void,
    /** Sends a frame; resolves once the socket is done with its memory (it may be reused then). */
    private readonly sendBinary: (frame: Buffer) => Promise<void>,
    opts: { hashCache?: string } = {},
  ) {
    this.files = localFiles(opts);
  }

  /** The command line about to be sent: its words, as paths from `cwd`, are what the master may ask for. */
  allowLine(line: string, cwd: string): void {
    let commands: string[][];
    try {
      commands = splitCommands(line);
    } catch {
      return; // the master refuses the line too
    }
    for (const word of commands.flat()) {
      // A word past PATH_MAX names no file the system would open: not worth resolving or keeping
      // (a launch's 250 KB of arguments took ~5 ms here).
      if (word.length > PATH_MAX) continue;
      for (const w of [word, word.slice(word.indexOf('=') + 1)]) if (w) this.allowed.add(path.resolve(cwd, w));
    }
  }

  ask(msg: ControlFileAsk): void {
    const { id, ask } = msg;
    const answer = (run: () => Promise<FileAnswer>): void => {
      void run().then(
        (a) => this.send({ v: CONTROL_VERSION, type: 'file-reply', id, ok: true, answer: a }),
        (err: unknown) => this.send({ v: CONTROL_VERSION, type: 'file-reply', id, ok: false, error: toDroverError(err).toJSON() }),
      );
    };
    switch (ask.op) {
      case 'describe':
        return answer(async () => ({
          op: 'describe',
          ...(await (ask.hash === false ? this.files.peek(this.check(ask.path)) : this.files.describe(this.check(ask.path)))),
        }));
      case 'libraries':
        return answer(async () => {
          const scan = await this.files.libraries(this.check(ask.path));
          for (const lib of scan.libraries) this.allowed.add(path.resolve(lib.path));
          return { op: 'libraries', ...scan };
        });
      case 'read':
        return answer(async () => ({
          op: 'read',
          bytes: await this.stream(id, { path: this.check(ask.path), size: ask.size, identity: ask.identity }, ask.offset ?? 0),
        }));
      case 'create':
        return answer(async () => {
          const writer = await this.files.create(this.check(ask.path), ask.force);
          this.writes.set(id, { writer, window: new ReceiveWindow(FILE_WINDOW_BYTES + MAX_FRAME_BYTES), chain: Promise.resolve(), failed: false });
          return { op: 'create', path: writer.path };
        });
      case 'finish':
        return answer(async () => {
          const w = this.writes.get(ask.ref);
          if (!w) throw new DroverError(ErrorCode.BAD_REQUEST, `no file is being written as ${ask.ref}`);
          this.writes.delete(ask.ref);
          await w.chain;
          const done = await w.writer.finish(ask.keep && !w.failed);
          if (ask.keep && w.failed) throw new DroverError(ErrorCode.IO_ERROR, `${w.writer.path} was not written whole`);
          return { op: 'finish', ...done };
        });
      case 'remember':
        return answer(async () => {
          await this.files.remember({ path: this.check(ask.path), sha256: ask.sha256, identity: ask.identity });
          return { op: 'remember' };
        });
      case 'cancel':
        this.reads.get(ask.ref)?.abort();
        return;
      default:
        return unreachable(ask);
    }
  }

  /** A chunk of a file the master writes here: written in order, acknowledged once on disk. */
  chunk(frame: Buffer): void {
    const decoded = decodeChunk(frame);
    if (!decoded.ok) return;
    const w = this.writes.get(decoded.ref);
    if (!w || w.failed) return;
    if (!w.window.arrive(decoded.payload.length)) {
      w.failed = true;
      return this.send({
        v: CONTROL_VERSION,
        type: 'file-ack',
        ref: decoded.ref,
        bytes: w.window.consumed,
        error: { code: ErrorCode.PROTOCOL_ERROR, message: 'the master sent past the window of a file write' },
      });
    }
    const payload = decoded.payload;
    const length = payload.length;
    w.chain = w.chain.then(async () => {
      if (w.failed) return;
      try {
        await w.writer.write(payload, new AbortController().signal);
        const bytes = w.window.consume(length);
        this.send({ v: CONTROL_VERSION, type: 'file-ack', ref: decoded.ref, bytes });
      } catch (err) {
        w.failed = true;
        this.send({ v: CONTROL_VERSION, type: 'file-ack', ref: decoded.ref, bytes: w.window.consumed, error: toDroverError(err).toJSON() });
      } finally {
        // Written: its memory goes back now, not at the next GC.
        releaseChunk(payload);
      }
    });
  }

  /** The master consumed `bytes` of read `ack.ref`. */
  ack(ack: ControlFileAck): void {
    this.windows.get(ack.ref)?.ack(ack.bytes);
  }

  /** Ctrl-C, or the connection is gone: reads stop, half-written files are removed. */
  async close(): Promise<void> {
    for (const r of this.reads.values()) r.abort();
    const writes = [...this.writes.values()];
    this.writes.clear();
    await Promise.all(writes.map((w) => w.chain.then(() => w.writer.finish(false)).catch(() => undefined)));
    await this.files.flush();
  }

  /** Sends the file in chunk frames (the header written in each buffer's headroom, no copy), paced by the master's acks. */
  private async stream(id: number, spec: ReadSpec, offset: number): Promise<number> {
    const { path: file, size } = spec;
    const abort = new AbortController();
    const window = new SendWindow(() => FILE_WINDOW_BYTES);
    this.reads.set(id, abort);
    this.windows.set(id, window);
    let sent = 0;
    try {
      const alloc = (): Buffer => this.spare.pop() ?? Buffer.allocUnsafe(READ_BUFFER_BYTES);
      // A small file the user named may name files of its own (a service file's programs and libs).
      const text: Buffer[] | null = size <= NAMING_FILE_BYTES && offset === 0 ? [] : null;
      for await (const chunk of readChunks(spec, abort.signal, { alloc, offset })) {
        text?.push(Buffer.from(chunk));
        await window.waitForRoom({ signal: abort.signal });
        const buffer = Buffer.from(chunk.buffer, chunk.byteOffset - READ_HEADROOM, READ_BUFFER_BYTES);
        // Not awaited: the window paces the sender; the buffer comes back once written out.
        void this.sendBinary(frameInPlace(id, chunk)).then(
          () => void (this.spare.length < SPARE_BUFFERS && this.spare.push(buffer)),
          () => undefined, // the connection is gone: the read fails at the next wait
        );
        window.sentBytes(chunk.length);
        sent += chunk.length;
      }
      if (text) this.allowNamedIn(Buffer.concat(text).toString('utf8'), path.dirname(file));
      return sent;
    } finally {
      this.reads.delete(id);
      this.windows.delete(id);
    }
  }

  /** The words of a file the master read (a service file): as paths from its folder, the master may ask for them too. */
  private allowNamedIn(text: string, dir: string): void {
    for (const word of text.split(/[\s"'`,[\]{}()]+/)) {
      const w = word.replace(/^-\s*/, '');
      if (w && w.length <= 4096) this.allowed.add(path.resolve(dir, w));
    }
  }

  private check(file: string): string {
    const resolved = path.resolve(file);
    if (!this.allowed.has(resolved)) {
      throw new DroverError(ErrorCode.BAD_REQUEST, `the master asked for ${resolved}, which this command does not name; not sent`);
    }
    return resolved;
  }
}
