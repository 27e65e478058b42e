/**
 * Bounds what peers that have not said a valid hello can hold: at most `perSource` connections
 * from one address and `total` from all, each only until its hello deadline. A flood from one
 * address cannot lock out workers from others, and memory held before authentication stays
 * small (each such connection may send one frame of at most PRE_HELLO_MAX_PAYLOAD).
 */
export class AdmissionGate {
  private readonly bySource = new Map<string, number>();
  private count = 0;

  constructor(
    // A slot is held for one round trip (connect to hello): 32 per address admit thousands of
    // workers a second even from behind one NAT address, and refused ones retry (503).
    readonly perSource = 32,
    readonly total = 512,
  ) {}

  /** Takes a slot for `source`; false when it has its share, or all slots are taken. */
  enter(source: string): boolean {
    const mine = this.bySource.get(source) ?? 0;
    if (mine >= this.perSource || this.count >= this.total) return false;
    this.bySource.set(source, mine + 1);
    this.count++;
    return true;
  }

  /** Gives the slot back (hello received, refused, or the socket closed). */
  leave(source: string): void {
    const mine = this.bySource.get(source) ?? 0;
    if (mine <= 1) this.bySource.delete(source);
    else this.bySource.set(source, mine - 1);
    this.count = Math.max(0, this.count - 1);
  }

  get pending(): number {
    return this.count;
  }
}

/** The largest frame a peer may send before its hello: a hello is a few KiB. */
export const PRE_HELLO_MAX_PAYLOAD = 64 * 1024;
/** A connection that has not said hello by then is destroyed (not closed politely: that can take 30 s). */
export const HELLO_DEADLINE_MS = 5_000;
