import type { Load } from '@drover/protocol';

/** One point per this many ms: 90 points cover the last 15 minutes. */
export const HISTORY_STEP_MS = 10_000;
export const HISTORY_POINTS = 90;

/** A worker's recent load, oldest first: wall times (ms, the start of each step), CPU % and memory used (bytes). */
export interface LoadSeries {
  stepMs: number;
  t: number[];
  cpuPercent: number[];
  memoryUsedBytes: number[];
}

/** Workers' slots per chunk of the array: a new chunk when they are full, nothing copied. */
const CHUNK_SLOTS = 256;
/** A cell of a step with no point (the worker was silent, or the ring is new). */
const EMPTY = 0xffff_ffff;
/** CPU in tenths of a percent, in 12 bits: up to 409.4% (4095 tenths is kept for EMPTY). */
const CPU_MAX_TENTHS = 4094;
const MANTISSA_BITS = 15;
const MANTISSA = 2 ** MANTISSA_BITS;
const EXPONENT_MAX = 31;

/**
 * Memory used, in 20 bits: below 32 KiB the bytes themselves; above, a 15-bit mantissa (in
 * [2^14, 2^15)) and a 5-bit exponent, so within 1/32,768 (0.003%) of the figure, up to 64 TiB.
 */
export function encodeMemory(bytes: number): number {
  if (!(bytes > 0)) return 0;
  if (bytes < MANTISSA) return Math.round(bytes);
  let e = Math.max(1, Math.floor(Math.log2(bytes)) - (MANTISSA_BITS - 1));
  let m = Math.round(bytes / 2 ** e);
  // log2 of a float may land a hair under an integer, and rounding may reach the next power.
  while (m >= MANTISSA) m = Math.round(bytes / 2 ** ++e);
  if (e > EXPONENT_MAX) return (EXPONENT_MAX << MANTISSA_BITS) | (MANTISSA - 1);
  return (e << MANTISSA_BITS) | m;
}

/** A step's cell in its ring (steps before 1970 are negative). */
const cellOf = (step: number): number => ((step % HISTORY_POINTS) + HISTORY_POINTS) % HISTORY_POINTS;

export function decodeMemory(code: number): number {
  return (code & (MANTISSA - 1)) * 2 ** (code >>> MANTISSA_BITS);
}

/**
 * What the dashboard draws its sparklines from: each worker's CPU and memory over the last
 * 15 minutes, one point per 10 s step (the first heartbeat of each step), kept by worker name so
 * a worker that reconnects keeps its past. Points older than 15 minutes are not answered.
 *
 * A worker's ring is 90 cells, one per step modulo 90, in chunks of one Uint32Array for 256
 * workers (a typed array per worker cost 3.6 KiB each in allocator overhead). A cell is a point
 * packed in 4 bytes: CPU in tenths of a percent (12 bits) and memory (20 bits, see
 * encodeMemory), or EMPTY. The ring keeps the step of its last point, so a cell's step follows
 * from its place and no cell stores one; the steps it skipped are emptied as it passes them.
 * 360 bytes a worker (it was 720 with a step and a Float32 per point, 1.1 KiB of floats before).
 */
export class LoadHistory {
  private readonly chunks: Uint32Array[] = [];
  private readonly slots = new Map<string, { slot: number; last: number }>();
  private readonly free: number[] = [];
  private used = 0;

  record(worker: string, wallMs: number, load: Load): void {
    const step = Math.floor(wallMs / HISTORY_STEP_MS);
    let ring = this.slots.get(worker);
    const fresh = !ring;
    if (!ring) this.slots.set(worker, (ring = { slot: this.allocate(), last: step }));
    if (!fresh && step === ring.last) return;
    const cells = this.chunks[Math.floor(ring.slot / CHUNK_SLOTS)]!;
    const base = (ring.slot % CHUNK_SLOTS) * HISTORY_POINTS;
    if (fresh || step < ring.last || step - ring.last >= HISTORY_POINTS) cells.fill(EMPTY, base, base + HISTORY_POINTS);
    else for (let s = ring.last + 1; s < step; s++) cells[base + cellOf(s)] = EMPTY;
    const cpu = Math.min(CPU_MAX_TENTHS, Math.max(0, Math.round(load.cpuPercent * 10)));
    cells[base + cellOf(step)] = ((cpu << 20) | encodeMemory(load.memoryUsedBytes)) >>> 0;
    ring.last = step;
  }

  /** The points of the last 15 minutes before `nowMs`, oldest first. */
  series(worker: string, nowMs: number): LoadSeries {
    const out: LoadSeries = { stepMs: HISTORY_STEP_MS, t: [], cpuPercent: [], memoryUsedBytes: [] };
    const ring = this.slots.get(worker);
    if (!ring) return out;
    const cells = this.chunks[Math.floor(ring.slot / CHUNK_SLOTS)]!;
    const base = (ring.slot % CHUNK_SLOTS) * HISTORY_POINTS;
    for (let step = ring.last - HISTORY_POINTS + 1; step <= ring.last; step++) {
      const cell = cells[base + cellOf(step)]!;
      const t = step * HISTORY_STEP_MS;
      if (cell === EMPTY || t <= nowMs - HISTORY_POINTS * HISTORY_STEP_MS) continue;
      out.t.push(t);
      out.cpuPercent.push((cell >>> 20) / 10);
      out.memoryUsedBytes.push(decodeMemory(cell & 0xfffff));
    }
    return out;
  }

  forget(worker: string): void {
    const ring = this.slots.get(worker);
    if (!ring) return;
    this.slots.delete(worker);
    this.free.push(ring.slot);
  }

  private allocate(): number {
    const reused = this.free.pop();
    if (reused !== undefined) return reused;
    if (this.used === this.chunks.length * CHUNK_SLOTS) this.chunks.push(new Uint32Array(CHUNK_SLOTS * HISTORY_POINTS));
    return this.used++;
  }
}
