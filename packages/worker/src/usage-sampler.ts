import pidusage from 'pidusage';
import { CLK_TCK, readMemory, readStat } from './proc.js';
import type { ProcessRecord } from './process-table.js';

const SAMPLE_MS = 250;

/**
 * The stats hook: samples CPU and memory of every live launched process while there are any
 * (one timer, stopped when none is live). A process found gone, or replaced by another with
 * its pid, is reported through `onGone`; a dead one keeps its last figures.
 */
export class UsageSampler {
  private timer: NodeJS.Timeout | null = null;
  private running = false;

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
  }

  /** Samples now (a usage request wants fresh figures). */
  async sample(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      const live = this.live();
      if (live.length === 0) this.stop();
      await Promise.all(live.map((r) => this.sampleOne(r)));
    } finally {
      this.running = false;
    }
  }

  /** Forgets per-process CPU history of ended processes. */
  forget(): void {
    pidusage.clear();
  }

  private async sampleOne(r: ProcessRecord): Promise<void> {
    const [stat, mem] = await Promise.all([readStat(r.pid), readMemory(r.pid)]);
    if (r.exit) return;
    if (!stat || (r.startTicks !== null && stat.startTicks !== r.startTicks)) return this.onGone(r);
    let cpuPercent = r.usage.cpuPercent;
    try {
      cpuPercent = (await pidusage(r.pid)).cpu;
    } catch {
      // gone between the two reads; keep the last figure
    }
    r.usage = {
      cpuUserSeconds: stat.utimeTicks / CLK_TCK,
      cpuSystemSeconds: stat.stimeTicks / CLK_TCK,
      cpuPercent: Math.max(0, Math.round(cpuPercent * 10) / 10),
      rssBytes: mem?.rssBytes ?? r.usage.rssBytes,
      maxRssBytes: Math.max(mem?.maxRssBytes ?? 0, r.usage.maxRssBytes),
      sampledAt: new Date().toISOString(),
    };
  }
}
