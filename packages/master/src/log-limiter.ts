import type { Logger } from './logger.js';

/** Lines of one kind from one source logged per window; the rest are counted and summarised. */
const PER_WINDOW = 20;
const WINDOW_MS = 10_000;
/** Distinct sources tracked at once; past this every new one shares one bucket. */
const MAX_KEYS = 1024;

interface Bucket {
  logged: number;
  suppressed: number;
  level: 'warn' | 'info' | 'debug';
  what: string;
  source: string;
}

/**
 * Keeps what peers can make the master say from filling its disk: 37,000 bad-token hellos in
 * 20 s were 7-13 MiB of master.log. Each (source, kind) may log PER_WINDOW lines per window;
 * past that, lines are counted, and one summary line per window says how many were left out.
 */
export class LogLimiter {
  private buckets = new Map<string, Bucket>();
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly logger: Logger) {
    this.timer = setInterval(() => this.flush(), WINDOW_MS);
    this.timer.unref();
  }

  /** Logs `msg` with `fields` unless this source has said this too often in the current window. */
  log(level: Bucket['level'], source: string, fields: Record<string, unknown>, msg: string): void {
    let key = `${source}\u0000${msg}`;
    if (!this.buckets.has(key) && this.buckets.size >= MAX_KEYS) key = `*\u0000${msg}`;
    let b = this.buckets.get(key);
    if (!b) {
      b = { logged: 0, suppressed: 0, level, what: msg, source: key.startsWith('*\u0000') ? 'many sources' : source };
      this.buckets.set(key, b);
    }
    if (b.logged < PER_WINDOW) {
      b.logged++;
      this.logger[level](fields, msg);
    } else {
      b.suppressed++;
    }
  }

  /** Ends the window: one summary line per source that was cut short. */
  flush(): void {
    for (const b of this.buckets.values()) {
      if (b.suppressed > 0) {
        this.logger.warn({ source: b.source, suppressed: b.suppressed, windowMs: WINDOW_MS }, `${b.what}: ${b.suppressed} more from ${b.source} left out`);
      }
    }
    this.buckets = new Map();
  }

  close(): void {
    clearInterval(this.timer);
    this.flush();
  }
}
