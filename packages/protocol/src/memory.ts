import type { MessagePort } from 'node:worker_threads';
import { CHUNK_HEADER_BYTES } from './chunk.js';

// node:v8, node:vm and node:worker_threads are loaded when first needed (getBuiltinModule): a
// client that moves no file should not pay for loading them at its start.

// Files move through drover as binary frames, and every process they pass through (agent,
// master, client) allocates for each: a 64 KiB buffer per socket read, and a fresh buffer per
// frame that ws assembles from those reads. V8 frees that memory only when it collects the small
// objects that hold it, and it counts the dead bytes against a heap of ~15 MiB: a 256 MiB log
// through the master was ~20 mark-compacts (a third of its CPU), and glibc kept the heap pages
// the buffers had been in (the agent stayed at ~130 MiB after a copy). So: a frame's memory is
// freed as soon as it is used (releaseChunk), and the reads, which ws drops, by a scavenge every
// few MiB received (noteReceived), while they are still young.

// Node 20's V8 runs a scavenge for any options object, { type: 'major' } included (seen with
// --trace-gc): a full collection is `gc()` with no argument.
type Collect = (options?: { type: 'minor' }) => void;

let collect: Collect | null | undefined;

/** V8's `gc`, exposed at run time (drover starts as a plain `node`); null where it cannot be. */
function collector(): Collect | null {
  if (collect === undefined) {
    try {
      process.getBuiltinModule('node:v8').setFlagsFromString('--expose_gc');
      collect = process.getBuiltinModule('node:vm').runInNewContext('gc') as Collect;
    } catch {
      collect = null;
    }
  }
  return collect;
}

let drop: MessagePort | null = null;

/**
 * Frees the memory under a received chunk now. Only a payload that is the whole of its memory
 * after our 8-byte header (what ws assembles for a frame bigger than a socket read) is freed;
 * anything else might share its memory and is left to the GC. Returns whether it was freed.
 * Afterwards every view of that memory is empty: call it only as the last holder, once the file
 * or socket it went to is done with it.
 *
 * How: a closed MessagePort still detaches what it is given to transfer, then drops the message
 * and with it the memory (Node 20 has no ArrayBuffer.prototype.transfer). ~2 µs.
 */
export function releaseChunk(payload: Buffer): boolean {
  const memory = payload.buffer;
  if (!(memory instanceof ArrayBuffer)) return false;
  if (payload.byteOffset !== CHUNK_HEADER_BYTES || payload.byteOffset + payload.length !== memory.byteLength) return false;
  if (!drop) {
    drop = new (process.getBuiltinModule('node:worker_threads').MessageChannel)().port1;
    drop.close();
  }
  drop.postMessage(null, [memory]);
  return true;
}

/** Bytes received in binary frames between scavenges: the reads they came in are ~32 buffers. */
const SCAVENGE_EVERY_BYTES = 2 * 1024 * 1024;
let sinceScavenge = 0;

/**
 * A binary frame of `bytes` arrived: every 2 MiB a scavenge (~0.1 ms: nearly all garbage) frees
 * the socket reads it was copied from while they are young, before they count toward a full GC.
 */
export function noteReceived(bytes: number): void {
  sinceScavenge += bytes;
  if (sinceScavenge < SCAVENGE_EVERY_BYTES) return;
  sinceScavenge = 0;
  collector()?.({ type: 'minor' });
  trimWhenSettled();
}

/** glibc's malloc, through the addon of packages/worker/native/drover-trim.c. */
export interface MallocAddon {
  /** malloc_trim(0): true when memory went back to the system. */
  trim(): boolean;
  /** Sets glibc's mmap and trim thresholds for 1 MiB transfer chunks: true when glibc took them. */
  tune(): boolean;
}

/** Loads the addon built at `file` (an absolute path); throws where it cannot run here. */
export function loadMallocAddon(file: string): MallocAddon {
  const loaded = process.getBuiltinModule('node:module').createRequire(file)(file) as Partial<MallocAddon>;
  if (typeof loaded.trim !== 'function' || typeof loaded.tune !== 'function') throw new Error(`${file} has no trim() or tune()`);
  return loaded as MallocAddon;
}

let malloc: MallocAddon | null = null;
let trimTimer: NodeJS.Timeout | null = null;

/**
 * Tunes this process's malloc for the 1 MiB frames files move in (drover-trim.c: without it, a
 * process receiving 256 MiB faulted ~20,000 pages in anew), and from now on gives back what that
 * keeps (up to 16 MiB of free heap) a second after binary frames stop arriving. What tune()
 * answered: false when glibc refused the settings. null: no addon (trims stop).
 */
export function useMalloc(addon: MallocAddon | null): boolean {
  malloc = addon;
  return addon?.tune() ?? false;
}

/** malloc_trim SETTLE_MS after the last call (noteReceived calls it every 2 MiB): ~0.1 ms. */
function trimWhenSettled(): void {
  if (!malloc) return;
  if (trimTimer) {
    trimTimer.refresh();
    return;
  }
  trimTimer = setTimeout(() => {
    trimTimer = null;
    malloc?.trim();
  }, SETTLE_MS);
  trimTimer.unref();
}

/** Run after each settled collection (the agent gives glibc's freed heap pages back: memory-trim.ts). */
let afterRelease: (() => void) | null = null;

/** Sets what runs after each collection releaseMemorySoon makes. */
export function afterMemoryReleased(fn: (() => void) | null): void {
  afterRelease = fn;
}

/** How long after the last call a burst counts as over: its allocations booked, glibc trimmed. */
const SETTLE_MS = 1_000;
/**
 * How long after that the process must have been quiet for V8 to shrink its young generation:
 * it does so only at a collection when allocation over its last ~5 s of collections was low.
 */
const QUIET_MS = 6_000;
/** Scavenges tried, QUIET_MS apart, while the young generation has not shrunk. */
const QUIET_TRIES = 3;
/** V8's young generation at its smallest (two semi-spaces of 512 KiB on 64-bit): nothing to shrink. */
const MIN_YOUNG_BYTES = 1024 * 1024;

let quiet: NodeJS.Timeout | null = null;
/** A transfer ended since the last full collection: the quiet step makes one. */
let fullPending = false;
let tries = 0;

function arm(ms: number, step: () => void): void {
  if (quiet) clearTimeout(quiet);
  quiet = setTimeout(step, ms);
  quiet.unref();
}

/** The young generation's reserved size (both semi-spaces), in bytes. */
function youngBytes(): number {
  return (
    process
      .getBuiltinModule('node:v8')
      .getHeapSpaceStatistics()
      .find((s) => s.space_name === 'new_space')?.space_size ?? 0
  );
}

/**
 * A full collection once bulk transfers have settled: whatever is left of their buffers would
 * otherwise wait for a GC that an idle process may not run for a long time, and glibc keeps
 * their pages (afterMemoryReleased: the agent trims them). Each call starts the wait over, so it
 * runs once after a burst, when the last transfer's buffers are dropped too (its writes, on the
 * agent its hashing thread). It runs when the process has been quiet for a while
 * (shrinkYoungWhenQuiet), so that it also gives back the young generation the transfer grew:
 * ~7 s after the last call. A few ms (30-48 on the agent after 200 launches).
 */
export function releaseMemorySoon(): void {
  fullPending = true;
  shrinkYoungWhenQuiet();
}

/**
 * Gives back the young generation a burst of work grew, once the process is quiet. Launches or a
 * transfer grow V8's young generation (1 → 4 MiB on the agent after 200 launches), and V8
 * shrinks it only at a collection when allocation over its last ~5 s of collections has been
 * low, which an idle process may not run for a long time. So: a scavenge SETTLE_MS after the
 * last call, which books the burst's last allocations (else the next collection counts them as
 * its own: an agent that had sent a log had allocated megabytes since its last scavenge, and
 * the first try failed as often as not), then a collection QUIET_MS later, which finds
 * allocation low: a scavenge, or releaseMemorySoon's full one. A scavenge is tried again
 * QUIET_MS on while the young generation has not shrunk, up to QUIET_TRIES times. Each call
 * starts over. ~1 ms a scavenge.
 */
export function shrinkYoungWhenQuiet(): void {
  if (!collector()) return;
  tries = 0;
  arm(SETTLE_MS, bookBurst);
}

function bookBurst(): void {
  collector()?.({ type: 'minor' });
  arm(QUIET_MS, collectWhenQuiet);
}

function collectWhenQuiet(): void {
  quiet = null;
  const gc = collector();
  if (!gc) return;
  const before = youngBytes();
  if (fullPending) {
    fullPending = false;
    // Compacting: a plain full GC frees dead objects but keeps the pages they were spread over
    // (old space stayed ~2 MiB above its live size on the agent), and V8's own memory reducer
    // gets to it only 8 s after a full GC, and only while allocation is low.
    const v8 = process.getBuiltinModule('node:v8');
    v8.setFlagsFromString('--compact-on-every-full-gc');
    try {
      gc();
    } finally {
      v8.setFlagsFromString('--no-compact-on-every-full-gc');
    }
    afterRelease?.();
  } else if (before > MIN_YOUNG_BYTES) {
    gc({ type: 'minor' });
  }
  if (before <= MIN_YOUNG_BYTES || youngBytes() < before || ++tries >= QUIET_TRIES) return;
  arm(QUIET_MS, collectWhenQuiet);
}
