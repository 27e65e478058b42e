export type WorkerStatus = 'available' | 'unavailable';

/**
 * One worker's liveness as the master sees it: when it last sent a heartbeat (on the
 * monotonic clock), whether its connection is up, and so whether it is available. The fleet's
 * one sweep timer calls `check`; nothing else writes these fields.
 */
export class Liveness {
  // Initialised here, not only in the constructor: a field declared without a value starts
  // undefined, and V8 then keeps it as a pointer to a boxed number, a new box (16 bytes) on each
  // heartbeat that lives its second and is moved to the old generation; a field that starts as
  // a number keeps its double in place.
  private lastBeat = 0;
  private since: number | null = null;
  private unavailableFrom: number | null = null;
  private state: WorkerStatus = 'available';
  private up = true;

  constructor(now: number) {
    this.lastBeat = now;
  }

  get status(): WorkerStatus {
    return this.state;
  }

  get connected(): boolean {
    return this.up;
  }

  /** Monotonic ms of the last heartbeat (or of the connection, before the first one). */
  get lastHeartbeatAt(): number {
    return this.lastBeat;
  }

  /** Monotonic ms when the connection dropped, or null while connected. */
  get disconnectedAt(): number | null {
    return this.since;
  }

  /** Monotonic ms since when it is unavailable, or null while available. */
  get unavailableAt(): number | null {
    return this.state === 'available' ? null : this.unavailableFrom;
  }

  /** Whole heartbeat intervals gone by without one: 2 make it unavailable. */
  missed(now: number, heartbeatMs: number): number {
    return Math.floor(this.silentMs(now) / heartbeatMs);
  }

  /**
   * A heartbeat is missed, not merely on its way: it is half an interval overdue (a heartbeat
   * a few ms late on a busy machine does not make a worker suspect).
   */
  suspect(now: number, heartbeatMs: number): boolean {
    return this.state === 'available' && this.silentMs(now) > 1.5 * heartbeatMs;
  }

  silentMs(now: number): number {
    return Math.max(0, now - this.lastBeat);
  }

  /** A heartbeat arrived; true when it made an unavailable worker available again. */
  beat(now: number): boolean {
    this.lastBeat = now;
    if (this.state === 'available' || !this.up) return false;
    this.state = 'available';
    return true;
  }

  /** True when the worker has just become unavailable: no heartbeat for more than `deadlineMs`. */
  check(now: number, deadlineMs: number): boolean {
    if (this.state !== 'available' || now - this.lastBeat <= deadlineMs) return false;
    this.state = 'unavailable';
    this.unavailableFrom = now;
    return true;
  }

  /** The connection is gone; false when it already was. */
  disconnect(now: number): boolean {
    if (!this.up) return false;
    this.up = false;
    if (this.state === 'available') this.unavailableFrom = now;
    this.state = 'unavailable';
    this.since = now;
    return true;
  }
}
