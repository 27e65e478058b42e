import { describe, expect, test } from 'vitest';
import { CHUNK_HEADER_BYTES, decodeChunk, encodeChunk, releaseChunk } from '@drover/protocol';

describe('releaseChunk', () => {
  test('frees a payload that is the whole of its memory after the header, at once', () => {
    const frame = encodeChunk(7, Buffer.alloc(1024 * 1024, 1));
    const decoded = decodeChunk(frame);
    if (!decoded.ok) throw new Error(decoded.error);
    const before = process.memoryUsage().arrayBuffers;
    expect(releaseChunk(decoded.payload)).toBe(true);
    // Every view of that memory is now empty, and the process holds a MiB less, without a GC.
    expect(decoded.payload.length).toBe(0);
    expect(frame.length).toBe(0);
    expect(before - process.memoryUsage().arrayBuffers).toBeGreaterThanOrEqual(1024 * 1024);
  });

  test('leaves alone what might share its memory', () => {
    // A small frame cut from Node's shared pool, a payload not right after its header, one short of its memory's end.
    const pooled = Buffer.from('12345678abcdef');
    const fromPool = decodeChunk(encodeChunk(1, Buffer.from('tiny')));
    if (!fromPool.ok) throw new Error(fromPool.error);
    const memory = Buffer.alloc(CHUNK_HEADER_BYTES + 100);
    const cases = [pooled.subarray(CHUNK_HEADER_BYTES), fromPool.payload, memory.subarray(4), memory.subarray(CHUNK_HEADER_BYTES, CHUNK_HEADER_BYTES + 99)];
    const lengths = cases.map((b) => b.length);
    for (const b of cases) expect(releaseChunk(b)).toBe(false);
    expect(cases.map((b) => b.length)).toEqual(lengths);
    expect(pooled.toString()).toBe('12345678abcdef');
  });
});
