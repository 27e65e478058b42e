import { EventEmitter } from 'node:events';
import { open, readFile, rename, stat, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from '../logger.js';

/** One thing that happened, as `events` prints it. */
export interface DroverEvent {
  at: string;
  /** worker-joined, worker-unavailable, worker-back, worker-left, worker-lost, placed, started, exited, rescheduled, fenced, stopped, apply-started, apply-done, apply-rolled-back, drain-started, drain-done, … */
  kind: string;
  worker?: string;
  service?: string;
  program?: string;
  instance?: string;
  /** One line for people. */
  text: string;
}

/** The log is moved to events.log.1 past this size (the one before is dropped): bounded on disk. */
const ROTATE_BYTES = 8 * 1024 * 1024;

/**
 * Every change in the fleet and its services, one JSON line each in <state>/events.log, so
 * "what happened at 03:12?" has an answer after the fact. Appended in order and fdatasync'd in
 * batches; rotated at 8 MiB (one old file kept). A full disk loses events (said once in the
 * log), never the master.
 */
export class EventLog extends EventEmitter<{ event: [DroverEvent] }> {
  private readonly file: string;
  private queue: string[] = [];
  private writing: Promise<void> | null = null;
  private fh: FileHandle | null = null;
  private size = 0;
  private failed = false;

  constructor(
    stateDir: string,
    private readonly logger: Logger,
  ) {
    super();
    this.file = path.join(stateDir, 'events.log');
  }

  record(kind: string, fields: Omit<DroverEvent, 'at' | 'kind' | 'text'>, text: string): void {
    const event: DroverEvent = { at: new Date().toISOString(), kind, ...fields, text };
    this.queue.push(`${JSON.stringify(event)}\n`);
    this.emit('event', event);
    this.writing ??= this.drain();
  }

  /** Resolves once everything recorded so far is on disk. */
  async flush(): Promise<void> {
    while (this.writing) await this.writing;
  }

  /** Events at or after `sinceMs` (wall clock), oldest first, from both files. */
  async read(sinceMs = 0): Promise<DroverEvent[]> {
    await this.flush();
    const out: DroverEvent[] = [];
    for (const f of [`${this.file}.1`, this.file]) {
      const text = await readFile(f, 'utf8').catch(() => '');
      for (const line of text.split('\n')) {
        if (!line) continue;
        try {
          const e = JSON.parse(line) as DroverEvent;
          if (Date.parse(e.at) >= sinceMs) out.push(e);
        } catch {
          // a torn last line after a crash: skipped
        }
      }
    }
    return out;
  }

  async close(): Promise<void> {
    await this.flush();
    await this.fh?.close().catch(() => undefined);
    this.fh = null;
  }

  private async drain(): Promise<void> {
    try {
      while (this.queue.length > 0) {
        const batch = this.queue.join('');
        this.queue = [];
        try {
          if (!this.fh) {
            this.fh = await open(this.file, 'a', 0o600);
            this.size = (await stat(this.file)).size;
          }
          if (this.size + batch.length > ROTATE_BYTES) {
            await this.fh.close();
            await rename(this.file, `${this.file}.1`);
            this.fh = await open(this.file, 'a', 0o600);
            this.size = 0;
          }
          await this.fh.write(batch);
          await this.fh.datasync();
          this.size += Buffer.byteLength(batch);
          this.failed = false;
        } catch (err) {
          if (!this.failed) this.logger.error({ err }, 'could not write events.log; events are lost until it can');
          this.failed = true;
          await this.fh?.close().catch(() => undefined);
          this.fh = null;
        }
      }
    } finally {
      this.writing = null;
    }
  }
}
