import { expect, test } from 'vitest';
import * as wsModule from 'ws';
import { WS_HEADER_ROOM } from '../../../packages/master/src/local-files.js';
import { withHeader } from '../../../packages/master/src/ws-frame.js';

/** ws's frame encoder (its types do not name it): a header and the data, as it sends them. */
const { Sender } = wsModule as unknown as {
  Sender: { frame(data: Buffer, options: { fin: boolean; opcode: number; mask: boolean; readOnly: boolean; rsv1: boolean }): Buffer[] };
};

test("a frame's WebSocket header written in place is ws's own for that length: 2, 4 and 10 bytes", () => {
  for (const length of [0, 1, 125, 126, 1000, 65_535, 65_536, 1024 * 1024]) {
    const memory = Buffer.alloc(WS_HEADER_ROOM + length, 0xee);
    const frame = memory.subarray(WS_HEADER_ROOM);
    frame.fill(7);
    const whole = withHeader(frame);
    // ws's Sender, as a server sends a final binary frame (no mask).
    const oracle = Buffer.concat(Sender.frame(frame, { fin: true, opcode: 2, mask: false, readOnly: false, rsv1: false }));
    expect(whole.equals(oracle)).toBe(true);
    expect(whole.length - length).toBe(length < 126 ? 2 : length < 65_536 ? 4 : 10);
    // The payload is where it was, untouched: only the bytes in front of it were written.
    expect(whole.subarray(whole.length - length).equals(frame)).toBe(true);
    expect(whole.buffer).toBe(memory.buffer);
  }
  expect(() => withHeader(Buffer.alloc(300).subarray(2))).toThrow(RangeError);
});
