import { execFile } from 'node:child_process';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import v8 from 'node:v8';
import { describe, expect, test } from 'vitest';
import { CHUNK_HEADER_BYTES, decodeChunk, encodeChunk, noteReceived, releaseChunk, releaseMemorySoon, useMalloc } from '@drover/protocol';

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

describe('releaseMemorySoon', () => {
  const oldSpaceKiB = () => (v8.getHeapSpaceStatistics().find((s) => s.space_name === 'old_space')?.space_size ?? 0) / 1024;

  test('compacts the heap once things settle: pages a plain full GC would keep go back', async () => {
    // ~30 MiB of small objects in old space, then 7 of every 8 dropped: every page stays a
    // little used, which a full GC without compaction sweeps but keeps (34 of 34 MiB kept, tried).
    let kept: ({ a: number; b: number[] } | null)[] = [];
    for (let i = 0; i < 300_000; i++) kept.push({ a: i, b: [i, i + 1] });
    releaseMemorySoon();
    await new Promise((r) => setTimeout(r, 7_500)); // promoted by the settle's collection
    for (let i = 0; i < kept.length; i++) if (i % 8) kept[i] = null;
    const before = oldSpaceKiB();
    releaseMemorySoon();
    releaseMemorySoon(); // a burst: one collection, ~7 s after the last call
    const deadline = Date.now() + 10_000;
    // Compacted, about half goes back (vitest's own objects share the space); a full GC
    // without compaction keeps nearly all of it. Two thirds tells them apart (half failed once,
    // at 50.7%).
    while (oldSpaceKiB() > (before * 2) / 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    expect(oldSpaceKiB()).toBeLessThan((before * 2) / 3);
    expect(kept.filter(Boolean).length).toBe(300_000 / 8);
    kept = [];
  }, 25_000);
});

describe('shrinkYoungWhenQuiet', () => {
  // In a process of its own, where nothing else allocates much (vitest's worker does, and its
  // own scavenges would shrink the young generation whether or not we ask).
  const protocol = pathToFileURL(path.resolve('packages/protocol/dist/index.js')).href;
  const youngAfterBurst = async (ask: boolean): Promise<{ grown: number; at: number[] }> => {
    const script = `
      import v8 from 'node:v8';
      import { shrinkYoungWhenQuiet } from ${JSON.stringify(protocol)};
      const young = () => v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size / 2 ** 20;
      // Objects that survive a scavenge or two, as a burst of launches makes: V8 grows its
      // young generation and, with nothing more allocated, keeps it.
      let keep = [];
      for (let i = 0; i < 3_000_000; i++) { keep.push({ a: i, b: [i] }); if (keep.length > 50_000) keep = []; }
      keep = [];
      const grown = young();
      // An idle process still allocates a little (an agent: its heartbeats). V8 counts no
      // allocation at all as unknown, not low, and then never shrinks.
      let tick;
      setInterval(() => (tick = JSON.stringify({ at: Date.now(), load: process.cpuUsage() })), 100);
      if (${ask}) shrinkYoungWhenQuiet();
      const at = [];
      for (const ms of [4_000, 14_000]) setTimeout(() => at.push(young()), ms);
      setTimeout(() => (console.log(JSON.stringify({ grown, at })), process.exit(0)), 14_100);`;
    const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], { timeout: 25_000 });
    return JSON.parse(stdout) as { grown: number; at: number[] };
  };

  test('gives back the young generation a burst grew, once the process has been quiet', async () => {
    const [asked, never] = await Promise.all([youngAfterBurst(true), youngAfterBurst(false)]);
    expect(asked.grown).toBeGreaterThanOrEqual(8);
    // Not during the quiet wait; by its second try (7 and 13 s; the first is enough when nothing
    // else runs, and was in every run tried).
    expect(asked.at[0]).toBe(asked.grown);
    expect(asked.at[1]).toBeLessThanOrEqual(asked.grown / 4);
    // Not asked: it stays grown.
    expect(never.at).toEqual([never.grown, never.grown]);
  }, 25_000);
});

describe('useMalloc', () => {
  test('tunes at once, and trims a second after binary frames stop arriving: once per burst, not per frame', async () => {
    const calls: string[] = [];
    const addon = { tune: () => (calls.push('tune'), true), trim: () => (calls.push('trim'), true) };
    try {
      expect(useMalloc(addon)).toBe(true);
      expect(calls).toEqual(['tune']);
      // 8 MiB in 1 MiB frames, 100 ms apart: the trim waits for the last.
      for (let i = 0; i < 8; i++) {
        noteReceived(1024 * 1024);
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(calls).toEqual(['tune']);
      await new Promise((r) => setTimeout(r, 1_300));
      expect(calls).toEqual(['tune', 'trim']);
    } finally {
      expect(useMalloc(null)).toBe(false);
    }
  });
});
