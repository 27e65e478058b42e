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

/** Floats a point takes: its step, CPU %, memory used in MiB. */
const FIELDS = 3;
const STRIDE = HISTORY_POINTS * FIELDS;
const MiB = 2 ** 20;

/**
 * What the dashboard draws its sparklines from: each worker's CPU and memory over the last
 * 15 minutes, one point per 10 s step (the first heartbeat of each step), kept by worker name so
 * a worker that reconnects keeps its past. Points older than 15 minutes are not answered.
 *
 * All rings live in one Float32Array (a slot of 90 points per worker, about 1 KiB): a typed
 * array per worker cost 3.6 KiB each in allocator overhead, 18 MiB at 5,000 workers. Steps are
 * counted from the first one recorded (exact in a float for five years), memory in MiB.
 */
export class LoadHistory {
  private data = new Float32Array(STRIDE * 16);
  private readonly slots = new Map<string, { slot: number; count: number }>();
  private readonly free: number[] = [];
  private used = 0;
  private baseStep: number | null = null;

  record(worker: string, wallMs: number, load: Load): void {
    const step = Math.floor(wallMs / HISTORY_STEP_MS);
    this.baseStep ??= step;
    const rel = step - this.baseStep;
    let ring = this.slots.get(worker);
    if (!ring) this.slots.set(worker, (ring = { slot: this.allocate(), count: 0 }));
    const at = (n: number): number => ring.slot * STRIDE + (n % HISTORY_POINTS) * FIELDS;
    if (ring.count > 0 && this.data[at(ring.count - 1)] === rel) return;
    const o = at(ring.count);
    this.data[o] = rel;
    this.data[o + 1] = load.cpuPercent;
    this.data[o + 2] = load.memoryUsedBytes / MiB;
    ring.count++;
  }

  /** The points of the last 15 minutes before `nowMs`, oldest first. */
  series(worker: string, nowMs: number): LoadSeries {
    const out: LoadSeries = { stepMs: HISTORY_STEP_MS, t: [], cpuPercent: [], memoryUsedBytes: [] };
    const ring = this.slots.get(worker);
    if (!ring || this.baseStep === null) return out;
    for (let n = Math.max(0, ring.count - HISTORY_POINTS); n < ring.count; n++) {
      const o = ring.slot * STRIDE + (n % HISTORY_POINTS) * FIELDS;
      const t = (this.baseStep + this.data[o]!) * HISTORY_STEP_MS;
      if (t <= nowMs - HISTORY_POINTS * HISTORY_STEP_MS) continue;
      out.t.push(t);
      out.cpuPercent.push(Math.round(this.data[o + 1]! * 10) / 10);
      out.memoryUsedBytes.push(Math.round(this.data[o + 2]! * MiB));
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
    if ((this.used + 1) * STRIDE > this.data.length) {
      const bigger = new Float32Array(this.data.length * 2);
      bigger.set(this.data);
      this.data = bigger;
    }
    return this.used++;
  }
}
