import * as ws from 'ws';

/** What this module touches of ws's Receiver (ws 8, lib/receiver.js): the library's own fields. */
interface ReceiverInternals {
  _fragments: Buffer[];
  _binaryType: string;
  _opcode: number;
  dataMessage: (this: ReceiverInternals, cb: unknown) => void;
}

const PATCHED = Symbol('drover.keepsFragments');

/**
 * Makes every ws Receiver of this process keep one array for a message's fragments, emptied
 * after each message, where ws makes a new one each time (`this._fragments = []` in dataMessage).
 *
 * Why it matters: a connection that sends a message a second (a worker's heartbeat) keeps that
 * array for a second, so it outlives two young-generation collections and is moved to the old
 * generation. When the next message comes, its payload (a view of the 64 KiB read that brought
 * it, and that read's buffer) is pushed into the array, which is dropped a moment later: dead,
 * but in the old generation, where only a full collection finds it dead. Until then, every
 * young collection treats what it points to as alive: the array's new backing store, the
 * payload's view and the read's buffer are copied, then moved to the old generation in turn.
 * At 19,500 workers that was ~440 bytes of each heartbeat moved to the old generation (8.5 MB
 * a second, measured with V8's sampling heap profiler counting what only a full collection
 * freed), and the master's heap grew from 86 to 260 MB between full collections.
 *
 * Arrays a listener is handed (binaryType 'fragments') and Blobs are left as ws makes them.
 * Returns false, and changes nothing, where ws's Receiver is not the shape this expects.
 */
export function keepReceiverFragments(): boolean {
  const Receiver = (ws as unknown as { Receiver?: { prototype: ReceiverInternals & { [PATCHED]?: true } } }).Receiver;
  const proto = Receiver?.prototype;
  if (!proto || typeof proto.dataMessage !== 'function') return false;
  if (proto[PATCHED]) return true;
  const dataMessage = proto.dataMessage;
  proto.dataMessage = function (this: ReceiverInternals, cb: unknown): void {
    const fragments = this._fragments;
    dataMessage.call(this, cb);
    // ws replaced the array: the message is complete and its data already made of the fragments.
    if (this._fragments === fragments || this._fragments.length !== 0 || !Array.isArray(fragments)) return;
    if (this._opcode === 2 && this._binaryType !== 'nodebuffer' && this._binaryType !== 'arraybuffer') return;
    fragments.length = 0;
    this._fragments = fragments;
  };
  proto[PATCHED] = true;
  return true;
}
