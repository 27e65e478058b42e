import type { Load } from '@drover/protocol';

/** One point per this many ms: 90 points cover the last 15 minutes. */
export const HISTORY_STEP_MS = 10_000;
export const HISTORY_POINTS = 90;

/** A worker's recent load, oldest first: wall times (ms), CPU % and memory used (bytes). */
export interface LoadSeries {
  stepMs: number;
  t: number[];
  cpuPercent: number[];
  memoryUsedBytes: number[];
}

/** A fixed ring per worker: a few KiB each, whatever the heartbeat interval. */
class Ring {
  readonly t = new Float64Array(HISTORY_POINTS);
  readonly cpu = new Float32Array(HISTORY_POINTS);
  readonly mem = new Float64Array(HISTORY_POINTS);
  /** Points written so far (the newest is at (count - 1) % HISTORY_POINTS). */
  count = 0;
}

/**
 * What the dashboard draws its sparklines from: each worker's CPU and memory over the last
 * 15 minutes, one point per 10 s step (the first heartbeat of each step), kept by worker name so
 * a worker that reconnects keeps its past. Points older than 15 minutes are not answered.
 */
export class LoadHistory {
  private readonly rings = new Map<string, Ring>();

  record(worker: string, wallMs: number, load: Load): void {
    let ring = this.rings.get(worker);
    if (!ring) this.rings.set(worker, (ring = new Ring()));
    const step = Math.floor(wallMs / HISTORY_STEP_MS);
    if (ring.count > 0 && Math.floor(ring.t[(ring.count - 1) % HISTORY_POINTS]! / HISTORY_STEP_MS) === step) return;
    const i = ring.count % HISTORY_POINTS;
    ring.t[i] = wallMs;
    ring.cpu[i] = load.cpuPercent;
    ring.mem[i] = load.memoryUsedBytes;
    ring.count++;
  }

  /** The points of the last 15 minutes before `nowMs`, oldest first. */
  series(worker: string, nowMs: number): LoadSeries {
    const out: LoadSeries = { stepMs: HISTORY_STEP_MS, t: [], cpuPercent: [], memoryUsedBytes: [] };
    const ring = this.rings.get(worker);
    if (!ring) return out;
    const from = Math.max(0, ring.count - HISTORY_POINTS);
    for (let n = from; n < ring.count; n++) {
      const i = n % HISTORY_POINTS;
      if (ring.t[i]! <= nowMs - HISTORY_POINTS * HISTORY_STEP_MS) continue;
      out.t.push(ring.t[i]!);
      out.cpuPercent.push(Math.round(ring.cpu[i]! * 10) / 10);
      out.memoryUsedBytes.push(ring.mem[i]!);
    }
    return out;
  }

  forget(worker: string): void {
    this.rings.delete(worker);
  }
}
