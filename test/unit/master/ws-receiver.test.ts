import { expect, test } from 'vitest';
import * as wsModule from 'ws';
import { keepReceiverFragments } from '../../../packages/master/src/ws-receiver.js';

interface FrameOptions {
  fin: boolean;
  opcode: number;
  mask: boolean;
  readOnly: boolean;
  rsv1: boolean;
}
interface TestReceiver {
  _fragments: unknown[];
  on(event: 'message', listener: (data: Buffer | Buffer[], isBinary: boolean) => void): void;
  on(event: 'error', listener: (err: Error) => void): void;
  write(chunk: Buffer): boolean;
}
// ws's frame encoder and decoder (its types name neither).
const { Sender, Receiver } = wsModule as unknown as {
  Sender: { frame(data: Buffer, options: FrameOptions): Buffer[] };
  Receiver: new (options: { isServer: boolean; binaryType?: string; maxPayload?: number }) => TestReceiver;
};

/** A client's masked frame, as a worker sends it. */
const frame = (data: string | Buffer, opcode: number, fin = true): Buffer =>
  Buffer.concat(Sender.frame(Buffer.from(data), { fin, opcode, mask: true, readOnly: false, rsv1: false }));

function receiver(binaryType = 'nodebuffer') {
  const r = new Receiver({ isServer: true, binaryType, maxPayload: 1 << 20 });
  const got: Array<{ data: Buffer | Buffer[]; isBinary: boolean }> = [];
  r.on('message', (data, isBinary) => got.push({ data, isBinary }));
  r.on('error', (err) => {
    throw err;
  });
  return { r, got };
}

test('patched, every receiver keeps one array for its fragments, and the messages are what was sent', () => {
  expect(keepReceiverFragments()).toBe(true);
  expect(keepReceiverFragments()).toBe(true); // once only: a second call does not wrap it again
  const { r, got } = receiver();
  const kept = r._fragments;
  const heartbeat = '{"v":1,"type":"heartbeat","seq":7}';
  // One message a read; then three in one read; then one split across reads, and a message in
  // three frames (text, continuation, continuation), with a ping between two of its frames.
  r.write(frame(heartbeat, 1));
  r.write(Buffer.concat([frame('a', 1), frame(Buffer.from([1, 2, 3]), 2), frame('c', 1)]));
  const split = frame('split across two reads', 1);
  r.write(split.subarray(0, 5));
  r.write(split.subarray(5));
  r.write(Buffer.concat([frame('one ', 1, false), frame('two ', 0, false), frame('', 9), frame('three', 0, true)]));
  expect(got.map((m) => [m.isBinary, m.data.toString()])).toEqual([
    [false, heartbeat],
    [false, 'a'],
    [true, '\u0001\u0002\u0003'],
    [false, 'c'],
    [false, 'split across two reads'],
    [false, 'one two three'],
  ]);
  // The same array after every message, emptied: it holds nothing of the messages read.
  expect(r._fragments).toBe(kept);
  expect(r._fragments).toHaveLength(0);
});

test("a listener's own arrays (binaryType 'fragments') are left as ws makes them, one per message", () => {
  keepReceiverFragments();
  const { r, got } = receiver('fragments');
  r.write(Buffer.concat([frame('x', 2, false), frame('y', 0, true), frame('z', 2)]));
  expect(got).toHaveLength(2);
  const [first, second] = got.map((m) => m.data as Buffer[]);
  expect(first).not.toBe(second);
  expect(first!.map(String)).toEqual(['x', 'y']);
  expect(second!.map(String)).toEqual(['z']);
  // Text messages are still one buffer, and the array the receiver keeps is still its own.
  const kept = r._fragments;
  r.write(frame('text', 1));
  expect(got[2]!.data.toString()).toBe('text');
  expect(r._fragments).toBe(kept);
  expect(first!.map(String)).toEqual(['x', 'y']);
});
