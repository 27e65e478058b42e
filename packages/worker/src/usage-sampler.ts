import { closeSync, openSync, readSync } from 'node:fs';
import { CLK_TCK, parseMemory, parseStat, readUptimeSync, type ProcStat } from './proc.js';
import type { ProcessRecord } from './process-table.js';

const SAMPLE_MS = 250;
/**
 * Processes read in one turn of the loop. /proc is memory, so it is read at once: through the
 * thread pool each process took ten round trips a sample (and pidusage a third read of its
 * stat), which at 200 processes was 75% of a core at rest and a 130 ms `usage`. A table of
 * thousands is read in slices, so no turn holds the loop more than a few milliseconds.
 */
const SLICE = 200;

/** A process's stat text is ~300 bytes and its status ~1.5 KiB; VmRSS and VmHWM come early. */
const readBuffer = Buffer.allocUnsafe(16 * 1024);

/**
 * The text of a /proc file kept open: one pread (procfs makes the text afresh at each read from
 * offset 0); null once the process is gone (ESRCH: the file belongs to that process, never to a
 * later one with its pid).
 */
function readKept(fd: number): string | null {
  try {
    return readBuffer.toString('latin1', 0, readSync(fd, readBuffer, 0, readBuffer.length, 0));
  } catch {
    return null;
  }
}

/** /proc/PID/stat and status, opened once per process: opening a /proc file costs more than reading it (~15 µs against ~10). */
interface ProcFiles {
  stat: number;
  status: number;
}

/** A process's CPU ticks (user + system) when it was last sampled, and when (ms, monotonic). */
export interface CpuMark {
  ticks: number;
  atMs: number;
}

/**
 * CPU % of one core (above 100 for several threads) over the time since `prev`; without one,
 * over the process's life so far: its ticks against the ticks since it started.
 */
export function cpuPercent(prev: CpuMark | undefined, now: CpuMark, life: { startTicks: number; uptimeTicks: number | null }): number {
  if (prev) return now.atMs > prev.atMs ? ((now.ticks - prev.ticks) / CLK_TCK / ((now.atMs - prev.atMs) / 1000)) * 100 : 0;
  if (life.uptimeTicks === null) return 0;
  return (now.ticks / Math.max(1, life.uptimeTicks - life.startTicks)) * 100;
}

/**
 * The stats hook: samples CPU and memory of every live launched process while there are any
 * (one timer, stopped when none is live). A process found gone, or replaced by another with
 * its pid, is reported through `onGone`; a dead one keeps its last figures.
 */
export class UsageSampler {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private readonly marks = new Map<number, CpuMark>();
  private readonly files = new Map<number, ProcFiles>();

  constructor(
    private readonly live: () => ProcessRecord[],
    private readonly onGone: (r: ProcessRecord) => void,
  ) {}

  /** Starts the timer if a process is live. */
  ensure(): void {
    if (this.timer || this.live().length === 0) return;
    this.timer = setInterval(() => void this.sample(), SAMPLE_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    for (const pid of [...this.files.keys()]) this.forget(pid);
  }

  /** Samples every live process now (a usage request wants fresh figures); joins a sample under way. */
  sample(): Promise<void> {
    this.running ??= this.sampleAll().finally(() => (this.running = null));
    return this.running;
  }

  /** Samples one process now: a launch's first figures, without reading every other process. */
  sampleOne(r: ProcessRecord): void {
    this.read(r, readUptimeSync());
  }

  /** Forgets a process that ended: its CPU mark, and closes its /proc files. */
  forget(pid: number): void {
    this.marks.delete(pid);
    const f = this.files.get(pid);
    if (!f) return;
    this.files.delete(pid);
    closeSync(f.stat);
    closeSync(f.status);
  }

  private async sampleAll(): Promise<void> {
    const live = this.live();
    if (live.length === 0) this.stop();
    for (let at = 0; at < live.length; at += SLICE) {
      if (at > 0) await new Promise((resolve) => setImmediate(resolve));
      const uptime = readUptimeSync();
      for (const r of live.slice(at, at + SLICE)) this.read(r, uptime);
    }
    // Files of processes that left the table by any other way.
    const pids = new Set(live.map((r) => r.pid));
    for (const pid of [...this.files.keys()]) if (!pids.has(pid)) this.forget(pid);
  }

  private filesOf(pid: number): ProcFiles | null {
    let f = this.files.get(pid);
    if (f) return f;
    let stat: number;
    try {
      stat = openSync(`/proc/${pid}/stat`, 'r');
    } catch {
      return null;
    }
    try {
      f = { stat, status: openSync(`/proc/${pid}/status`, 'r') };
    } catch {
      closeSync(stat);
      return null;
    }
    this.files.set(pid, f);
    return f;
  }

  /**
   * A live process's /proc/PID/stat now, through its kept file (null once it is gone): `ps` reads
   * every process's state, and an open of a /proc file costs more than the read.
   */
  stat(r: ProcessRecord): ProcStat | null {
    const f = this.filesOf(r.pid);
    const text = f && readKept(f.stat);
    return text === null ? null : parseStat(text);
  }

  private read(r: ProcessRecord, uptimeSeconds: number | null): void {
    if (r.exit) return;
    const stat = this.stat(r);
    if (!stat || (r.startTicks !== null && stat.startTicks !== r.startTicks)) {
      this.forget(r.pid);
      return this.onGone(r);
    }
    const statusText = readKept(this.files.get(r.pid)!.status);
    const mem = statusText === null ? null : parseMemory(statusText);
    const mark = { ticks: stat.utimeTicks + stat.stimeTicks, atMs: performance.now() };
    const prev = this.marks.get(r.pid);
    let cpu = r.usage.cpuPercent;
    // Two reads within a tick's time say nothing of the rate: the last figure stands.
    if (!prev || mark.atMs - prev.atMs >= 1000 / CLK_TCK) {
      cpu = cpuPercent(prev, mark, { startTicks: stat.startTicks, uptimeTicks: uptimeSeconds === null ? null : uptimeSeconds * CLK_TCK });
      this.marks.set(r.pid, mark);
    }
    r.usage = {
      cpuUserSeconds: stat.utimeTicks / CLK_TCK,
      cpuSystemSeconds: stat.stimeTicks / CLK_TCK,
      cpuPercent: Math.max(0, Math.round(cpu * 10) / 10),
      rssBytes: mem?.rssBytes ?? r.usage.rssBytes,
      maxRssBytes: Math.max(mem?.maxRssBytes ?? 0, r.usage.maxRssBytes),
      sampledAt: new Date().toISOString(),
    };
  }
}
