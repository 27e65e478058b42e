import { Worker } from 'node:worker_threads';
import { CHUNK_HEADER_BYTES, releaseMemorySoon, unreachable } from '@drover/protocol';

/** Messages to the thread: one file (by upload ref) opened, fed, ended or dropped. */
type ToThread =
  { op: 'open'; ref: number; fd: number } | { op: 'data'; ref: number; buffer: ArrayBuffer; offset: number; length: number } | { op: 'end'; ref: number };

/** From the thread: bytes of a file hashed and written so far, the end with its sha256, or a write error. */
type FromThread =
  | { op: 'progress'; ref: number; bytes: number }
  | { op: 'done'; ref: number; sha256: string | null }
  | { op: 'error'; ref: number; code: string; message: string };

/**
 * The thread's whole program. It runs from this function's source (`eval`), so it names nothing
 * outside itself: the agent travels to VMs as one file, and a thread needs no second one.
 * For each file: hash each chunk and write it (synchronously: the thread has nothing else to
 * do; writing through the thread pool while hashing the next chunk measured no faster on two
 * cores), then report the bytes done.
 */
function threadMain(): void {
  const { MessageChannel, parentPort } = process.getBuiltinModule('node:worker_threads');
  const { createHash } = process.getBuiltinModule('node:crypto');
  const { writeSync } = process.getBuiltinModule('node:fs');
  // Each chunk's memory is freed as soon as it is written (as releaseChunk does: a closed port
  // detaches what it is given and drops it), not when V8 gets to it: left to V8, tens of MiB of
  // them piled up in the agent's heap, and glibc keeps its heap's freed pages.
  const drop = new MessageChannel().port1;
  drop.close();
  type Open = { fd: number; hash: ReturnType<typeof createHash>; done: number; failed: boolean };
  const port = parentPort!;
  const files = new Map<number, Open>();
  port.on('message', (m: ToThread) => {
    if (m.op === 'open') {
      files.set(m.ref, { fd: m.fd, hash: createHash('sha256'), done: 0, failed: false });
    } else if (m.op === 'data') {
      const f = files.get(m.ref);
      if (!f || f.failed) return drop.postMessage(null, [m.buffer]);
      const bytes = new Uint8Array(m.buffer, m.offset, m.length);
      f.hash.update(bytes);
      try {
        for (let at = 0; at < bytes.length;) at += writeSync(f.fd, bytes, at, bytes.length - at);
        f.done += bytes.length;
        port.postMessage({ op: 'progress', ref: m.ref, bytes: f.done });
      } catch (err) {
        f.failed = true;
        const e = err as NodeJS.ErrnoException;
        port.postMessage({ op: 'error', ref: m.ref, code: e.code ?? 'EIO', message: e.message });
      } finally {
        drop.postMessage(null, [m.buffer]);
      }
    } else {
      const f = files.get(m.ref);
      files.delete(m.ref);
      port.postMessage({ op: 'done', ref: m.ref, sha256: f && !f.failed ? f.hash.digest('hex') : null });
    }
  });
}

export interface HashThreadFile {
  /** `bytes` of the file are hashed and written (to the page cache; the caller fsyncs). */
  progress(bytes: number): void;
  /** A write failed (errno code): nothing more of the file is written. */
  failed(code: string, message: string): void;
}

/** A thread left without files for this long ends, and its memory goes back to the system. */
const IDLE_MS = 5_000;

/**
 * sha256 and writes of big uploads on a thread of their own, so the agent's event loop only
 * receives frames: a 256 MiB upload is ~150 ms of sha256 and ~60 ms of writes that would
 * otherwise sit between the frames it reads (and its heartbeats). Chunks are handed over,
 * not copied, when they own their memory (a frame ws assembled, as every big chunk is).
 */
export class HashThread {
  private thread: Worker | null = null;
  private readonly files = new Map<number, { file: HashThreadFile; done?: (sha256: string | null) => void }>();
  private idle: NodeJS.Timeout | null = null;

  /** Starts upload `ref`, written to `fd` (kept open by the caller until `end` resolves). */
  open(ref: number, fd: number, file: HashThreadFile): void {
    if (this.idle) clearTimeout(this.idle);
    this.idle = null;
    this.files.set(ref, { file });
    this.post({ op: 'open', ref, fd });
  }

  /** The next chunk of upload `ref`, handed over: the caller must not use its memory again. */
  write(ref: number, payload: Buffer): void {
    // A chunk whose memory is exactly its frame (our 8-byte header, then the payload: what ws
    // assembles for every big message) moves as it is; anything else might share its memory.
    const buffer = payload.buffer;
    if (buffer instanceof ArrayBuffer && payload.byteOffset === CHUNK_HEADER_BYTES && payload.byteOffset + payload.length === buffer.byteLength) {
      this.post({ op: 'data', ref, buffer, offset: payload.byteOffset, length: payload.length }, [buffer]);
      return;
    }
    const copy = new Uint8Array(payload.length);
    copy.set(payload);
    this.post({ op: 'data', ref, buffer: copy.buffer, offset: 0, length: copy.length }, [copy.buffer]);
  }

  /** Every chunk is given: resolves once all are written, with their sha256 (null if a write failed). */
  end(ref: number): Promise<string | null> {
    const entry = this.files.get(ref);
    if (!entry) return Promise.resolve(null);
    return new Promise((resolve) => {
      entry.done = resolve;
      this.post({ op: 'end', ref });
    });
  }

  private post(message: ToThread, transfer: ArrayBuffer[] = []): void {
    this.start().postMessage(message, transfer);
  }

  private start(): Worker {
    if (this.thread) return this.thread;
    const thread = new Worker(`(${threadMain.toString()})()`, { eval: true, stdout: false, stderr: false });
    // The agent's socket keeps it alive while files arrive; the thread alone never does.
    thread.unref();
    thread.on('message', (m: FromThread) => this.receive(m));
    // The thread failed as a whole (it should not): every file it had fails, the next upload starts another.
    thread.on('error', (err) => this.lost(thread, err.message));
    thread.on('exit', () => this.lost(thread, 'the hashing thread ended'));
    this.thread = thread;
    return thread;
  }

  private receive(m: FromThread): void {
    const entry = this.files.get(m.ref);
    if (!entry) return;
    switch (m.op) {
      case 'progress':
        return entry.file.progress(m.bytes);
      case 'error':
        return entry.file.failed(m.code, m.message);
      case 'done':
        this.files.delete(m.ref);
        entry.done?.(m.sha256);
        this.idleSoon();
        return;
      default:
        return unreachable(m);
    }
  }

  private lost(thread: Worker, reason: string): void {
    if (this.thread !== thread) return;
    this.thread = null;
    const files = [...this.files.values()];
    this.files.clear();
    for (const entry of files) {
      entry.file.failed('EIO', reason);
      entry.done?.(null);
    }
  }

  private idleSoon(): void {
    if (this.files.size > 0 || !this.thread || this.idle) return;
    this.idle = setTimeout(() => {
      this.idle = null;
      if (this.files.size > 0 || !this.thread) return;
      const thread = this.thread;
      this.thread = null;
      // What the thread held (its heap, the chunks it was last given) is freed once it is gone:
      // then collected and given back (releaseMemorySoon, and the agent's malloc_trim).
      void thread.terminate().then(releaseMemorySoon, releaseMemorySoon);
    }, IDLE_MS);
    this.idle.unref();
  }
}
