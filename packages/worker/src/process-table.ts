import path from 'node:path';
import type { ExitInfo, ProcessInfo, UsageInfo } from '@drover/protocol';
import { writeFileAtomic } from './atomic.js';
import { loadJsonTable } from './json-table.js';
import type { Signalled } from './exit-reason.js';
import type { Logger } from './logger.js';
import type { LogPolicy } from './log-pump.js';

export interface Usage {
  cpuUserSeconds: number;
  cpuSystemSeconds: number;
  cpuPercent: number;
  rssBytes: number;
  maxRssBytes: number;
  sampledAt: string | null;
}

/** What the worker remembers of one launch; persisted in processes.json. */
export interface ProcessRecord {
  pid: number;
  app: string;
  executable: string;
  args: string[];
  startedAt: string;
  startedAtMs: number;
  /** /proc start time in clock ticks: tells our process from a later one that reused the pid. */
  startTicks: number | null;
  logPath: string;
  exit: ExitInfo | null;
  /** Found alive after an agent restart: not our child, so its exit status cannot be known. */
  adopted: boolean;
  /** Soft RLIMIT_CORE at launch (-1 = unlimited), to tell whether a crash dumped core. */
  coreLimit: number | null;
  signalled: Signalled | null;
  usage: Usage;
  /** The service instance it runs (see keeper.ts). */
  instance?: string;
  /** Its output goes through logs/APP.PID.pipe and the agent, rotated by this policy; absent: straight into its log. */
  log?: LogPolicy;
}

/** Dead launches remembered (with their logs); older ones are forgotten and their logs removed. */
export const MAX_DEAD_RECORDS = 1000;

/** The launched-process table: in memory, written to disk atomically after every change. */
export class ProcessTable {
  private readonly records = new Map<number, ProcessRecord>();
  private writing: Promise<void> | null = null;
  private dirty = false;
  private readonly file: string;

  constructor(
    stateDir: string,
    private readonly logger: Logger,
  ) {
    this.file = path.join(stateDir, 'processes.json');
  }

  async load(): Promise<void> {
    for (const r of await loadJsonTable<ProcessRecord>(this.file, this.logger, (r) => typeof r?.pid === 'number')) this.records.set(r.pid, r);
  }

  get(pid: number): ProcessRecord | undefined {
    return this.records.get(pid);
  }

  all(): ProcessRecord[] {
    return [...this.records.values()].sort((a, b) => a.startedAtMs - b.startedAtMs);
  }

  live(): ProcessRecord[] {
    // Filtered before sorting: the live few, not up to a thousand dead, are sorted (the sampler
    // asks after every launch).
    const live: ProcessRecord[] = [];
    for (const r of this.records.values()) if (r.exit === null) live.push(r);
    return live.sort((a, b) => a.startedAtMs - b.startedAtMs);
  }

  /** The newest launch of `app`. */
  latestOf(app: string): ProcessRecord | undefined {
    let latest: ProcessRecord | undefined;
    for (const r of this.records.values()) if (r.app === app && (!latest || r.startedAtMs >= latest.startedAtMs)) latest = r;
    return latest;
  }

  /** Adds a launch; returns the oldest dead records it dropped to stay within the limit. */
  add(record: ProcessRecord): ProcessRecord[] {
    this.records.set(record.pid, record);
    const dropped = this.prune();
    this.save();
    return dropped;
  }

  /**
   * Schedules a write of the table; writes coalesce, the last state always lands. The
   * serialization waits for the next turn of the event loop, so a launch's reply is not held up
   * by stringifying up to a thousand records.
   */
  save(): void {
    this.dirty = true;
    if (this.writing) return;
    this.writing = (async () => {
      await new Promise((resolve) => setImmediate(resolve));
      while (this.dirty) {
        this.dirty = false;
        try {
          await writeFileAtomic(this.file, JSON.stringify(this.all()), 0o600);
        } catch (err) {
          this.logger.error({ err }, 'could not write processes.json');
        }
      }
      this.writing = null;
    })();
  }

  /** Resolves when every scheduled write has landed. */
  async flush(): Promise<void> {
    while (this.writing) await this.writing;
  }

  private prune(): ProcessRecord[] {
    // Counted before anything is sorted: a launch must not sort a thousand records to learn that
    // nothing needs dropping.
    let deadCount = 0;
    for (const r of this.records.values()) if (r.exit !== null) deadCount++;
    if (deadCount <= MAX_DEAD_RECORDS) return [];
    const dead = this.all().filter((r) => r.exit !== null);
    const dropped = dead.slice(0, Math.max(0, dead.length - MAX_DEAD_RECORDS));
    for (const r of dropped) this.records.delete(r.pid);
    return dropped;
  }
}

export function toProcessInfo(r: ProcessRecord, state: ProcessInfo['state']): ProcessInfo {
  const end = r.exit ? Date.parse(r.exit.endedAt) : Date.now();
  return {
    pid: r.pid,
    app: r.app,
    executable: r.executable,
    args: r.args,
    startedAt: r.startedAt,
    runtimeMs: Math.max(0, end - r.startedAtMs),
    state,
    exit: r.exit,
    logPath: r.logPath,
    adopted: r.adopted,
  };
}

export function toUsageInfo(r: ProcessRecord, state: UsageInfo['state']): UsageInfo {
  return { pid: r.pid, app: r.app, state, ...r.usage, cpuPercent: r.exit ? 0 : r.usage.cpuPercent };
}
