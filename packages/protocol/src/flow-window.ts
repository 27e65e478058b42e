import { onAbort } from './on-abort.js';
import { DroverError, ErrorCode } from './errors.js';

/**
 * The sender's side of one flow-controlled transfer: it may have at most `limit()` bytes that
 * the receiver has not acknowledged. Uploads (master → worker) and log streams (worker → master)
 * both pace themselves with it, so memory stays flat whatever the file size.
 */
export class SendWindow {
  sent = 0;
  acked = 0;
  /** Set when the receiver reported that it failed: the sender stops at once. */
  error: DroverError | null = null;
  closed = false;
  private wake: (() => void) | null = null;

  constructor(private readonly limit: () => number) {}

  /** True while the unacknowledged bytes fill the window. */
  get full(): boolean {
    return this.sent - this.acked >= this.limit();
  }

  /**
   * Waits until there is room for more. Throws the receiver's error, CANCELLED on abort or
   * close, `stalled()` when nothing was acknowledged for `idleMs`, and whatever `check` throws
   * (a dropped connection) each time it wakes.
   */
  async waitForRoom(opts: { signal?: AbortSignal; idleMs?: number; check?: () => void; stalled?: () => DroverError } = {}): Promise<void> {
    for (;;) {
      if (this.error) throw this.error;
      if (this.closed || opts.signal?.aborted) throw new DroverError(ErrorCode.CANCELLED, 'cancelled');
      opts.check?.();
      if (!this.full) return;
      const before = this.acked;
      const timedOut = await new Promise<boolean>((resolve) => {
        let off = (): void => undefined;
        const done = (value: boolean): void => {
          if (timer) clearTimeout(timer);
          off();
          this.wake = null;
          resolve(value);
        };
        const timer = opts.idleMs ? setTimeout(() => done(true), opts.idleMs) : null;
        this.wake = () => done(false);
        // One listener per signal however many windows wait on it (a copy to many workers).
        if (opts.signal) off = onAbort(opts.signal, () => done(false));
      });
      if (timedOut && this.acked === before && !this.error && !this.closed) {
        throw opts.stalled?.() ?? new DroverError(ErrorCode.TIMEOUT, `the receiver acknowledged nothing for ${Math.round((opts.idleMs ?? 0) / 1000)} s`);
      }
    }
  }

  /** Records `bytes` more sent. */
  sentBytes(bytes: number): void {
    this.sent += bytes;
  }

  /** The receiver has consumed `total` bytes in all. */
  ack(total: number): void {
    this.acked = Math.max(this.acked, total);
    this.wake?.();
  }

  /** The receiver failed: the next wait throws `error`. */
  fail(error: DroverError): void {
    this.error ??= error;
    this.wake?.();
  }

  close(): void {
    this.closed = true;
    this.wake?.();
  }

  /** Wakes a waiter so it re-runs its checks (the connection dropped). */
  poke(): void {
    this.wake?.();
  }
}

/**
 * The receiver's side: counts what arrived against what it consumed, and tells when a peer
 * sends past the window it was granted (a peer that ignores flow control would otherwise grow
 * the receiver's memory without bound).
 */
export class ReceiveWindow {
  received = 0;
  consumed = 0;

  constructor(readonly limit: number) {}

  /** Counts `bytes` arriving; false when they overrun the granted window. */
  arrive(bytes: number): boolean {
    this.received += bytes;
    return this.received - this.consumed <= this.limit;
  }

  consume(bytes: number): number {
    this.consumed += bytes;
    return this.consumed;
  }
}
