import { open, readFile, rm, truncate, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import type { ExitInfo, ProcessInfo, UsageInfo } from '@drover/protocol';
import { syncDir, writeFileAtomic } from './atomic.js';
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

/** Journal lines past which the table is written whole again (at least twice its records). */
const COMPACT_AFTER_LINES = 1000;

/** A journal line: a record as it is now, or a record forgotten. */
type JournalLine = ProcessRecord | { drop: number };

/**
 * The launched-process table: in memory, and on disk as a snapshot (processes.json, written
 * atomically) plus a journal (processes.journal, one JSON line per changed record, appended and
 * fdatasync'd). A launch appends one line, not the whole table of up to a thousand records
 * (rewriting it cost the agent ~1.2 ms of CPU per launch). Once the journal is long, the table is
 * written whole and the journal emptied; the journal's lines are appended first, so a crash at
 * any point between leaves a snapshot and journal that read back to the same table. A torn last
 * line (a crash mid-append) is skipped.
 */
export class ProcessTable {
  private readonly records = new Map<number, ProcessRecord>();
  private writing: Promise<void> | null = null;
  /** Records changed (pid → record, or null once forgotten) since the last append. */
  private readonly changed = new Map<number, ProcessRecord | null>();
  /** The whole table is to be written (a change not tied to one record). */
  private whole = false;
  private journalLines = 0;
  /** The journal, open for appending between the table's whole writes. */
  private journalFile: FileHandle | null = null;
  private readonly file: string;
  private readonly journal: string;

  constructor(
    stateDir: string,
    private readonly logger: Logger,
  ) {
    this.file = path.join(stateDir, 'processes.json');
    this.journal = path.join(stateDir, 'processes.journal');
  }

  async load(): Promise<void> {
    for (const r of await loadJsonTable<ProcessRecord>(this.file, this.logger, (r) => typeof r?.pid === 'number')) this.records.set(r.pid, r);
    let text = '';
    try {
      text = await readFile(this.journal, 'utf8');
    } catch {
      return;
    }
    // A torn last line is cut off, so the next append starts a line of its own.
    if (text && !text.endsWith('\n')) {
      await truncate(this.journal, Buffer.byteLength(text.slice(0, text.lastIndexOf('\n') + 1))).catch((err: unknown) =>
        this.logger.warn({ err }, 'could not cut the torn last line of processes.journal'),
      );
    }
    const lines = text.split('\n');
    lines.forEach((line, i) => {
      if (!line) return;
      let entry: JournalLine;
      try {
        entry = JSON.parse(line) as JournalLine;
      } catch {
        // The last line may be torn by a crash mid-append; anything else is damage worth a word.
        if (i < lines.length - 1) this.logger.warn({ line: i + 1 }, 'skipped an unreadable line of processes.journal');
        return;
      }
      if (typeof entry !== 'object' || entry === null) return;
      this.journalLines++;
      if ('drop' in entry) this.records.delete(entry.drop);
      else if (typeof entry.pid === 'number') this.records.set(entry.pid, entry);
    });
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
    for (const r of dropped) this.changed.set(r.pid, null);
    this.save(record);
    return dropped;
  }

  /**
   * Schedules the write of a changed record (or, without one, of the whole table); writes
   * coalesce and the last state always lands. The work waits for the next turn of the event
   * loop, so a launch's reply is not held up by it.
   */
  save(record?: ProcessRecord): void {
    if (record) this.changed.set(record.pid, record);
    else this.whole = true;
    if (this.writing) return;
    this.writing = (async () => {
      await new Promise((resolve) => setImmediate(resolve));
      while (this.changed.size > 0 || this.whole) {
        try {
          await this.writeOnce();
        } catch (err) {
          this.logger.error({ err }, 'could not write the process table');
          // Not in a loop on a full disk: the next change tries again.
          break;
        }
      }
      this.writing = null;
    })();
  }

  /** Resolves when every scheduled write has landed. */
  async flush(): Promise<void> {
    while (this.writing) await this.writing;
  }

  /** Lands every scheduled write and lets the journal file go (the agent is stopping). */
  async close(): Promise<void> {
    await this.flush();
    const fh = this.journalFile;
    this.journalFile = null;
    await fh?.close();
  }

  /** Appends what changed; writes the whole table (and empties the journal) when due. */
  private async writeOnce(): Promise<void> {
    // Taken together, synchronously: the lines and the snapshot describe the same table.
    const batch = [...this.changed];
    const lines = batch.map(([pid, r]) => `${JSON.stringify(r ?? { drop: pid })}\n`).join('');
    this.changed.clear();
    const compact = this.whole || this.journalLines + batch.length >= Math.max(COMPACT_AFTER_LINES, 2 * this.records.size);
    this.whole = false;
    const snapshot = compact ? JSON.stringify(this.all()) : null;
    if (lines) {
      try {
        if (!this.journalFile) {
          this.journalFile = await open(this.journal, 'a', 0o600);
          await syncDir(path.dirname(this.journal));
        }
        await this.journalFile.writeFile(lines);
        await this.journalFile.datasync();
      } catch (err) {
        // Not written (a full disk): the batch waits for the next change, newer states first.
        for (const [pid, r] of batch) if (!this.changed.has(pid)) this.changed.set(pid, r);
        if (compact) this.whole = true;
        throw err;
      }
      this.journalLines += batch.length;
    }
    if (snapshot === null) return;
    await writeFileAtomic(this.file, snapshot, 0o600);
    const done = this.journalFile;
    this.journalFile = null;
    await done?.close();
    await rm(this.journal, { force: true });
    this.journalLines = 0;
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
