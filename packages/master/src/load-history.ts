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

const MiB = 2 ** 20;
/** Workers' slots per chunk of the arrays: a new chunk when they are full, nothing copied. */
const CHUNK_SLOTS = 256;

/**
 * What the dashboard draws its sparklines from: each worker's CPU and memory over the last
 * 15 minutes, one point per 10 s step (the first heartbeat of each step), kept by worker name so
 * a worker that reconnects keeps its past. Points older than 15 minutes are not answered.
 *
 * The rings live in chunks of typed arrays, 256 workers' slots of 90 points each: a typed array
 * per worker cost 3.6 KiB each in allocator overhead. A point is 8 bytes: its step modulo 2^16 and its CPU
 * in tenths of a percent (Uint16 each), memory in MiB (Float32). The ring keeps its last step in
 * full, and a gap of 15 minutes or a step back in time empties it, so the points of a ring span
 * far less than 2^16 steps and their steps are exact. At 5,000 workers: ~0.74 KiB each (it was
 * 1.1 KiB of floats in one array that doubled: 1.8 KiB each at 5,000).
 */
export class LoadHistory {
  private readonly chunks: { steps: Uint16Array; memory: Float32Array }[] = [];
  private readonly slots = new Map<string, { slot: number; count: number; last: number }>();
  private readonly free: number[] = [];
  private used = 0;

  record(worker: string, wallMs: number, load: Load): void {
    const step = Math.floor(wallMs / HISTORY_STEP_MS);
    let ring = this.slots.get(worker);
    if (!ring) this.slots.set(worker, (ring = { slot: this.allocate(), count: 0, last: step }));
    if (ring.count > 0) {
      if (step === ring.last) return;
      if (step < ring.last || step - ring.last >= HISTORY_POINTS) ring.count = 0;
    }
    const { steps, memory } = this.chunks[Math.floor(ring.slot / CHUNK_SLOTS)]!;
    const i = (ring.slot % CHUNK_SLOTS) * HISTORY_POINTS + (ring.count % HISTORY_POINTS);
    steps[2 * i] = step & 0xffff;
    steps[2 * i + 1] = Math.min(0xffff, Math.max(0, Math.round(load.cpuPercent * 10)));
    memory[i] = load.memoryUsedBytes / MiB;
    ring.count++;
    ring.last = step;
  }

  /** The points of the last 15 minutes before `nowMs`, oldest first. */
  series(worker: string, nowMs: number): LoadSeries {
    const out: LoadSeries = { stepMs: HISTORY_STEP_MS, t: [], cpuPercent: [], memoryUsedBytes: [] };
    const ring = this.slots.get(worker);
    if (!ring) return out;
    const { steps, memory } = this.chunks[Math.floor(ring.slot / CHUNK_SLOTS)]!;
    for (let n = Math.max(0, ring.count - HISTORY_POINTS); n < ring.count; n++) {
      const i = (ring.slot % CHUNK_SLOTS) * HISTORY_POINTS + (n % HISTORY_POINTS);
      // Steps before the ring's last, modulo 2^16: exact, since a ring spans far fewer.
      const t = (ring.last - (((ring.last & 0xffff) - steps[2 * i]!) & 0xffff)) * HISTORY_STEP_MS;
      if (t <= nowMs - HISTORY_POINTS * HISTORY_STEP_MS) continue;
      out.t.push(t);
      out.cpuPercent.push(steps[2 * i + 1]! / 10);
      out.memoryUsedBytes.push(Math.round(memory[i]! * MiB));
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
    if (this.used === this.chunks.length * CHUNK_SLOTS) {
      this.chunks.push({ steps: new Uint16Array(CHUNK_SLOTS * HISTORY_POINTS * 2), memory: new Float32Array(CHUNK_SLOTS * HISTORY_POINTS) });
    }
    return this.used++;
  }
}
