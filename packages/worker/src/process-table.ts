import { open, rm, truncate, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import type { ExitInfo, ProcessInfo, UsageInfo } from '@drover/protocol';
import { forEachLine, syncDir, writeFileAtomic, writePieces } from './atomic.js';
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

/**
 * Characters of arguments the remembered dead launches may hold together; past it the oldest are
 * forgotten sooner. A launch may carry ~1 MB of arguments, so a thousand of them would otherwise
 * keep a gigabyte in the agent's memory and on its disk.
 */
export const MAX_DEAD_ARG_CHARS = 64 * 1024 * 1024;

/** Journal lines past which the table is written whole again (at least twice its records). */
const COMPACT_AFTER_LINES = 1000;
/** Journal bytes past which the table is written whole again (at least twice the last snapshot). */
const COMPACT_AFTER_BYTES = 64 * 1024 * 1024;

/** The characters of a record's command line, counted against MAX_DEAD_ARG_CHARS. */
function argChars(r: ProcessRecord): number {
  let chars = r.executable.length;
  for (const a of r.args) chars += a.length;
  return chars;
}

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
 *
 * The snapshot is a JSON array with one record per line, written and read line by line in slices
 * of about a MiB: a table of launches with long command lines (tens of MB) never blocks the
 * agent's loop past its heartbeat, nor has to fit in one string. The records are taken when the
 * snapshot is due and each is serialized as its slice is written, so one changed meanwhile may be
 * newer there than in the journal; its change is queued for the next journal, which only a crash
 * in the moment between the snapshot's rename and the old journal's removal would lose, as it
 * would lose any change not yet appended.
 */
export class ProcessTable {
  private readonly records = new Map<number, ProcessRecord>();
  /** pid → argChars of its record (a record's command line never changes). */
  private readonly chars = new Map<number, number>();
  private writing: Promise<void> | null = null;
  /** Records changed (pid → record, or null once forgotten) since the last append. */
  private readonly changed = new Map<number, ProcessRecord | null>();
  /** The whole table is to be written (a change not tied to one record). */
  private whole = false;
  private journalLines = 0;
  private journalBytes = 0;
  /** The bytes of processes.json as last written or read. */
  private snapshotBytes = 0;
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
    await this.loadSnapshot();
    let skipped = 0;
    const read = await forEachLine(this.journal, (line) => {
      if (!line) return;
      let entry: JournalLine;
      try {
        entry = JSON.parse(line) as JournalLine;
      } catch {
        skipped++;
        return;
      }
      if (typeof entry !== 'object' || entry === null) return;
      this.journalLines++;
      if ('drop' in entry) this.records.delete(entry.drop);
      else if (typeof entry.pid === 'number') this.records.set(entry.pid, entry);
    }).catch((err: unknown) => {
      this.logger.error({ err }, 'could not read processes.journal');
      return null;
    });
    if (skipped > 0) this.logger.warn({ lines: skipped }, 'skipped unreadable lines of processes.journal');
    if (!read) return;
    this.journalBytes = read.whole;
    // A torn last line (a crash mid-append) is cut off, so the next append starts a line of its own.
    if (read.size > read.whole) {
      await truncate(this.journal, read.whole).catch((err: unknown) => this.logger.warn({ err }, 'could not cut the torn last line of processes.journal'));
    }
  }

  /** Reads processes.json: one record a line, or (written by an older agent) an array on one line. */
  private async loadSnapshot(): Promise<void> {
    let lines = 0;
    let skipped = 0;
    let oneLine = false;
    const read = await forEachLine(this.file, (line) => {
      if (lines++ === 0 && line !== '[') oneLine = true;
      if (oneLine || line === '[' || line === ']') return;
      try {
        const r = JSON.parse(line.endsWith(',') ? line.slice(0, -1) : line) as ProcessRecord;
        if (typeof r?.pid === 'number') this.records.set(r.pid, r);
      } catch {
        skipped++;
      }
    }).catch((err: unknown) => {
      this.logger.error({ err }, 'could not read processes.json');
      return null;
    });
    if (!read) return;
    this.snapshotBytes = read.size;
    if (skipped > 0) this.logger.warn({ lines: skipped }, 'skipped unreadable lines of processes.json');
    // An older agent's snapshot has no newline at all.
    if (lines === 0 && read.size > 0) oneLine = true;
    if (oneLine) for (const r of await loadJsonTable<ProcessRecord>(this.file, this.logger, (r) => typeof r?.pid === 'number')) this.records.set(r.pid, r);
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

  /** The characters of every remembered command line: a floor under the size of a `ps` answer. */
  argChars(): number {
    let chars = 0;
    for (const r of this.records.values()) chars += this.charsOf(r);
    return chars;
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
    this.chars.delete(record.pid);
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
    this.changed.clear();
    const compact =
      this.whole ||
      this.journalLines + batch.length >= Math.max(COMPACT_AFTER_LINES, 2 * this.records.size) ||
      this.journalBytes >= Math.max(COMPACT_AFTER_BYTES, 2 * this.snapshotBytes);
    this.whole = false;
    // The records as they are now; each is serialized as its slice is written.
    const snapshot = compact ? this.all() : null;
    if (batch.length > 0) {
      try {
        if (!this.journalFile) {
          this.journalFile = await open(this.journal, 'a', 0o600);
          await syncDir(path.dirname(this.journal));
        }
        const bytes = await writePieces(this.journalFile, journalLines(batch)).catch(async (err: unknown) => {
          // Part of the batch may be on disk, its last line torn: cut back, so the next append
          // does not run on from half a line.
          await this.journalFile?.truncate(this.journalBytes).catch(() => undefined);
          throw err;
        });
        await this.journalFile.datasync();
        this.journalBytes += bytes;
      } catch (err) {
        // Not written (a full disk): the batch waits for the next change, newer states first.
        for (const [pid, r] of batch) if (!this.changed.has(pid)) this.changed.set(pid, r);
        if (compact) this.whole = true;
        throw err;
      }
      this.journalLines += batch.length;
    }
    if (snapshot === null) return;
    this.snapshotBytes = await writeFileAtomic(this.file, snapshotLines(snapshot), 0o600);
    const done = this.journalFile;
    this.journalFile = null;
    await done?.close();
    await rm(this.journal, { force: true });
    this.journalLines = 0;
    this.journalBytes = 0;
  }

  private prune(): ProcessRecord[] {
    // Counted before anything is sorted: a launch must not sort a thousand records to learn that
    // nothing needs dropping.
    let deadCount = 0;
    let deadChars = 0;
    for (const r of this.records.values()) {
      if (r.exit === null) continue;
      deadCount++;
      deadChars += this.charsOf(r);
    }
    if (deadCount <= MAX_DEAD_RECORDS && deadChars <= MAX_DEAD_ARG_CHARS) return [];
    const dropped: ProcessRecord[] = [];
    for (const r of this.all()) {
      if (deadCount <= MAX_DEAD_RECORDS && deadChars <= MAX_DEAD_ARG_CHARS) break;
      if (r.exit === null) continue;
      dropped.push(r);
      deadCount--;
      deadChars -= this.charsOf(r);
      this.records.delete(r.pid);
      this.chars.delete(r.pid);
    }
    return dropped;
  }

  /** argChars, remembered: a launch's prune must not walk a thousand records' arguments. */
  private charsOf(r: ProcessRecord): number {
    let chars = this.chars.get(r.pid);
    if (chars === undefined) this.chars.set(r.pid, (chars = argChars(r)));
    return chars;
  }
}

/** A batch of changes as journal lines, each serialized as its slice is written. */
function* journalLines(batch: [number, ProcessRecord | null][]): Generator<string> {
  for (const [pid, r] of batch) yield `${JSON.stringify(r ?? { drop: pid })}\n`;
}

/** processes.json: a JSON array with one record a line, each serialized as its slice is written. */
function* snapshotLines(records: ProcessRecord[]): Generator<string> {
  yield '[\n';
  for (let i = 0; i < records.length; i++) yield `${JSON.stringify(records[i])}${i < records.length - 1 ? ',' : ''}\n`;
  yield ']\n';
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
