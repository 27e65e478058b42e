import { DroverError, ErrorCode, frameInPlace, releaseChunk, toDroverError } from '@drover/protocol';
import type { Files, ReadSpec } from './files.js';
import { READ_BUFFER_BYTES } from './local-files.js';

/**
 * How far ahead of the slowest worker a shared read may run (bytes it keeps for it). A worker
 * that falls further behind goes on alone (its own read from where it is), so the slowest
 * worker paces only itself and memory stays flat whatever the file size.
 */
export const SHARED_READ_RING_BYTES = 32 * 1024 * 1024;

/** Upload refs of shared reads: one per read, the same for every worker it goes to (see RequestTracker). */
export const SHARED_REF_FIRST = 0x8000_0000;
const SHARED_REF_LAST = 0xffff_fff0;
let nextShared = SHARED_REF_FIRST;

/** A fresh ref for a shared read: above every id a session allocates for itself. */
export function allocateSharedRef(): number {
  const ref = nextShared;
  nextShared = nextShared >= SHARED_REF_LAST ? SHARED_REF_FIRST : nextShared + 1;
  return ref;
}

/** One chunk for one worker: its frame (header and payload), and `release` once its socket wrote it. */
export interface SharedChunk {
  frame: Buffer;
  bytes: number;
  release(): void;
  /** The frame's memory has WS_HEADER_ROOM free in front of it (read here), for a WebSocket header. */
  wsRoom: boolean;
}

/**
 * Of a read whose chunks it did not allocate itself (a client sends them, for a file read
 * through it), how much stays once every worker has taken it, for a worker a moment late.
 * Each such chunk is fresh memory, and V8 counts what is held past a full collection toward the
 * next one: holding the whole ring of them made a streamed 256 MiB copy cost ~14 mark-compacts
 * of the master's heap instead of ~2.
 */
export const FRESH_JOIN_BYTES = 4 * 1024 * 1024;

/** Read buffers of one shared read, reused once every socket has written them (no GC per chunk). */
class BufferPool {
  private readonly spare: Buffer[] = [];
  /** What take() allocated: only those go back to `spare`. */
  private readonly mine = new WeakSet<ArrayBufferLike>();

  constructor(private readonly max: number) {}

  take = (): Buffer => {
    const spare = this.spare.pop();
    if (spare) return spare;
    const fresh = Buffer.allocUnsafe(READ_BUFFER_BYTES);
    this.mine.add(fresh.buffer);
    return fresh;
  };

  /** Whether `chunk` was read into one of this pool's buffers. */
  owns(chunk: Buffer): boolean {
    return this.mine.has(chunk.buffer);
  }

  /**
   * Gives back the buffer a chunk was read into, once every socket wrote it: the pool's own is
   * kept to reuse; any other (a frame the client sent, even one of the same size) is freed now
   * (releaseChunk) instead of at the next GC.
   */
  give(chunk: Buffer): void {
    if (!this.owns(chunk)) {
      releaseChunk(chunk);
      return;
    }
    if (this.spare.length < this.max) this.spare.push(Buffer.from(chunk.buffer, 0, READ_BUFFER_BYTES));
  }
}

interface Slot {
  frame: Buffer;
  payload: Buffer;
  /** Sends of this frame that their socket has not written yet. */
  sending: number;
  /** Out of the ring: every attached cursor has moved past it. */
  evicted: boolean;
}

/**
 * One read of a file for every worker it is copied to: each chunk is read once and sent as the
 * same frame, under one upload ref, to every worker's socket. Workers take chunks at their own
 * pace through a Cursor; the read runs ahead of the slowest by at most SHARED_READ_RING_BYTES,
 * and a cursor that would hold it back further is detached: it reads on alone from its offset.
 */
export class SharedRead {
  readonly ref = allocateSharedRef();
  private readonly pool = new BufferPool(SHARED_READ_RING_BYTES / READ_BUFFER_BYTES + 16);
  private readonly abort = new AbortController();
  private readonly source: AsyncIterator<Buffer>;
  private readonly slots: Slot[] = [];
  /** Index (in chunks from the start) of slots[0]. */
  private base = 0;
  private retained = 0;
  /** Some chunk came in memory the read did not allocate (see FRESH_JOIN_BYTES). */
  private fresh = false;
  private reading: Promise<void> | null = null;
  private ended = false;
  private error: DroverError | null = null;
  /** The attached cursors (those reading alone have left this set). */
  private readonly cursors = new Set<Cursor>();
  /** The workers with a cursor still reading, attached or alone: one cursor each. The read stops when none is left. */
  private readonly members = new Set<string>();

  constructor(
    private readonly files: Files,
    readonly spec: ReadSpec,
    /** Every cursor has left. */
    private readonly onIdle?: () => void,
  ) {
    this.source = files.read(spec, this.abort.signal, { alloc: this.pool.take })[Symbol.asyncIterator]();
  }

  /**
   * A cursor from the start of the file for worker `who`; null once the read has let go of its
   * first chunk, or if `who` already reads it (one ref names one upload on a worker: the same
   * file for two apps on one worker goes as two reads).
   */
  join(who: string): Cursor | null {
    if (this.base > 0 || this.error || this.abort.signal.aborted || this.members.has(who)) return null;
    const cursor = new Cursor(this, who);
    this.members.add(who);
    this.cursors.add(cursor);
    return cursor;
  }

  /** @internal The next chunk for `cursor`, or null at the end. */
  async next(cursor: Cursor): Promise<SharedChunk | null> {
    for (;;) {
      if (this.error) throw this.error;
      const at = cursor.index - this.base;
      if (at < this.slots.length) {
        const slot = this.slots[at]!;
        cursor.index++;
        cursor.offset += slot.payload.length;
        slot.sending++;
        return { frame: slot.frame, bytes: slot.payload.length, release: () => this.released(slot), wsRoom: this.pool.owns(slot.payload) };
      }
      if (this.ended) return null;
      // Chunks every cursor has passed stay while a worker a moment late could still join from
      // the start: until the ring is full, or FRESH_JOIN_BYTES of chunks the read did not
      // allocate. Then they go as soon as passed, and once the ring is full whoever still holds
      // the oldest goes on alone.
      if (this.base > 0 || this.retained >= (this.fresh ? FRESH_JOIN_BYTES : SHARED_READ_RING_BYTES)) this.evict();
      if (this.retained >= SHARED_READ_RING_BYTES) {
        for (const c of this.cursors) if (c !== cursor && c.index === this.base) this.detach(c);
        this.evict();
        if (this.retained >= SHARED_READ_RING_BYTES) throw new DroverError(ErrorCode.INTERNAL, 'a shared read could not make room');
      }
      await this.fill();
    }
  }

  /** @internal The cursor is done (finished, failed or cancelled). */
  leave(cursor: Cursor): void {
    if (cursor.left) return;
    cursor.left = true;
    this.cursors.delete(cursor);
    this.members.delete(cursor.who);
    if (this.cursors.size === 0) this.evict();
    if (this.members.size === 0) {
      // Nobody reads any more: let the source go.
      if (!this.ended) this.stop();
      this.onIdle?.();
    }
  }

  private detach(cursor: Cursor): void {
    this.cursors.delete(cursor);
    cursor.alone = this.files.read(this.spec, cursor.abort.signal, { offset: cursor.offset, alloc: this.pool.take })[Symbol.asyncIterator]();
  }

  /** @internal A chunk `cursor` read alone. */
  aloneChunk(chunk: Buffer): SharedChunk {
    return { frame: frameInPlace(this.ref, chunk), bytes: chunk.length, release: () => this.pool.give(chunk), wsRoom: this.pool.owns(chunk) };
  }

  private fill(): Promise<void> {
    this.reading ??= this.readOne().finally(() => (this.reading = null));
    return this.reading;
  }

  private async readOne(): Promise<void> {
    if (this.ended || this.error) return;
    try {
      const r = await this.source.next();
      if (r.done) {
        this.ended = true;
        return;
      }
      const payload = r.value;
      this.fresh ||= !this.pool.owns(payload);
      this.slots.push({ frame: frameInPlace(this.ref, payload), payload, sending: 0, evicted: false });
      this.retained += payload.length;
    } catch (err) {
      this.error = toDroverError(err);
    }
  }

  /** Drops the chunks every attached cursor has passed. */
  private evict(): void {
    let lowest = Number.POSITIVE_INFINITY;
    for (const c of this.cursors) lowest = Math.min(lowest, c.index);
    while (this.slots.length && this.base < lowest) {
      const slot = this.slots.shift()!;
      this.base++;
      this.retained -= slot.payload.length;
      slot.evicted = true;
      if (slot.sending === 0) this.pool.give(slot.payload);
    }
  }

  private released(slot: Slot): void {
    slot.sending--;
    if (slot.evicted && slot.sending === 0) this.pool.give(slot.payload);
  }

  private stop(): void {
    this.abort.abort();
    void this.source.return?.().catch(() => undefined);
  }
}

/** One worker's place in a shared read. */
export class Cursor {
  index = 0;
  offset = 0;
  left = false;
  /** Its own read, once it fell too far behind the others. */
  alone: AsyncIterator<Buffer> | null = null;
  readonly abort = new AbortController();

  constructor(
    readonly read: SharedRead,
    readonly who: string,
  ) {}

  get ref(): number {
    return this.read.ref;
  }

  /** The next chunk, or null at the end of the file. */
  async next(signal: AbortSignal): Promise<SharedChunk | null> {
    if (signal.aborted) throw new DroverError(ErrorCode.CANCELLED, 'cancelled');
    if (!this.alone) return this.read.next(this);
    const r = await this.alone.next();
    return r.done ? null : this.read.aloneChunk(r.value);
  }

  close(): void {
    this.abort.abort();
    void this.alone?.return?.(undefined).catch(() => undefined);
    this.read.leave(this);
  }
}

/**
 * The shared reads of one copy (or one service manager): a worker that starts on a file joins
 * the read under way if it still holds the file's first chunk, else starts a new one.
 */
export class SharedReads {
  private readonly reads = new Map<string, SharedRead[]>();

  constructor(private readonly files: Files) {}

  /** A cursor for worker `who` (its session's name) on a read of `spec` it may join, or a new read's. */
  open(spec: ReadSpec, who: string): Cursor {
    const key = `${spec.path}\n${spec.identity ?? ''}\n${spec.size}`;
    const reads = this.reads.get(key) ?? [];
    for (const r of reads) {
      const joined = r.join(who);
      if (joined) return joined;
    }
    const read: SharedRead = new SharedRead(this.files, spec, () => {
      const left = (this.reads.get(key) ?? []).filter((r) => r !== read);
      if (left.length) this.reads.set(key, left);
      else this.reads.delete(key);
    });
    this.reads.set(key, [...reads, read]);
    return read.join(who)!;
  }
}
