import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, expect, test } from 'vitest';
import { CHUNK_HEADER_BYTES, FILE_CHUNK_BYTES, decodeChunk } from '@drover/protocol';
import type { Files, ReadOptions, ReadSpec } from '../../../packages/master/src/files.js';
import { localFiles, readChunks } from '../../../packages/master/src/local-files.js';
import { FRESH_JOIN_BYTES, SHARED_READ_RING_BYTES, SHARED_REF_FIRST, SharedReads, type Cursor } from '../../../packages/master/src/shared-read.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A file of `mib` MiB of random bytes, and its facts as peek gives them. */
async function file(mib: number): Promise<{ spec: ReadSpec; bytes: Buffer }> {
  const d = mkdtempSync(path.join(os.tmpdir(), 'drover-shared-'));
  dirs.push(d);
  const p = path.join(d, 'big.bin');
  const bytes = randomBytes(mib * 1024 * 1024 + 123);
  writeFileSync(p, bytes);
  return { spec: await localFiles().peek(p), bytes };
}

/** The machine's files, counting the reads started and the bytes they read. */
function counted(): { files: Files; reads: { offset: number }[]; bytes: () => number } {
  const local = localFiles();
  const reads: { offset: number }[] = [];
  let bytes = 0;
  const files: Files = {
    ...local,
    async *read(spec: ReadSpec, signal: AbortSignal, opts?: ReadOptions) {
      reads.push({ offset: opts?.offset ?? 0 });
      for await (const chunk of local.read(spec, signal, opts)) {
        bytes += chunk.length;
        yield chunk;
      }
    },
  };
  return { files, reads, bytes: () => bytes };
}

/** Takes every chunk of a cursor as a worker's socket would: checks each frame names the read's ref. */
async function drain(cursor: Cursor, opts: { pauseEvery?: number; pauseMs?: number } = {}): Promise<Buffer> {
  const parts: Buffer[] = [];
  const signal = new AbortController().signal;
  for (let i = 0; ; i++) {
    const chunk = await cursor.next(signal);
    if (!chunk) break;
    const decoded = decodeChunk(chunk.frame);
    if (!decoded.ok) throw new Error(decoded.error);
    expect(decoded.ref).toBe(cursor.ref);
    parts.push(Buffer.from(decoded.payload));
    chunk.release();
    if (opts.pauseEvery && i % opts.pauseEvery === 0) await new Promise((r) => setTimeout(r, opts.pauseMs ?? 1));
  }
  cursor.close();
  return Buffer.concat(parts);
}

test('workers on one file share one read and one ref; each gets every byte', async () => {
  const { spec, bytes } = await file(20);
  const { files, reads, bytes: read } = counted();
  const shared = new SharedReads(files);
  const cursors = ['w1', 'w2', 'w3'].map((w) => shared.open(spec, w));
  expect(new Set(cursors.map((c) => c.ref)).size).toBe(1);
  expect(cursors[0]!.ref).toBeGreaterThanOrEqual(SHARED_REF_FIRST);
  const got = await Promise.all(cursors.map((c, i) => drain(c, { pauseEvery: i + 1 })));
  for (const g of got) expect(g.equals(bytes)).toBe(true);
  expect(reads).toHaveLength(1);
  expect(read()).toBe(bytes.length);
});

test('a worker far behind goes on alone from where it is; the others are not held back', async () => {
  const mib = SHARED_READ_RING_BYTES / (1024 * 1024) + 24;
  const { spec, bytes } = await file(mib);
  const { files, reads } = counted();
  const shared = new SharedReads(files);
  const fast = shared.open(spec, 'fast');
  const slow = shared.open(spec, 'slow');
  // The slow one takes 3 chunks and stops; the fast one reads the whole file meanwhile.
  const signal = new AbortController().signal;
  const head: Buffer[] = [];
  for (let i = 0; i < 3; i++) {
    const c = (await slow.next(signal))!;
    head.push(Buffer.from(c.frame.subarray(CHUNK_HEADER_BYTES)));
    c.release();
  }
  expect((await drain(fast)).equals(bytes)).toBe(true);
  const rest = await drain(slow);
  expect(Buffer.concat([...head, rest]).equals(bytes)).toBe(true);
  // The slow one's own read started at its offset, not at 0.
  expect(reads.map((r) => r.offset)).toEqual([0, 3 * FILE_CHUNK_BYTES]);
});

test('a worker that comes after the first chunk was let go gets a read of its own; the same worker twice gets two', async () => {
  const mib = SHARED_READ_RING_BYTES / (1024 * 1024) + 8;
  const { spec, bytes } = await file(mib);
  const { files, reads } = counted();
  const shared = new SharedReads(files);
  const first = shared.open(spec, 'w1');
  const again = shared.open(spec, 'w1');
  expect(again.ref).not.toBe(first.ref);
  const a = await drain(first);
  // The second read of w1 has not started: w2 joins it; w3 after it went on gets a third.
  const late = shared.open(spec, 'w2');
  expect(late.ref).toBe(again.ref);
  const [b, c] = await Promise.all([drain(again), drain(late)]);
  const last = shared.open(spec, 'w3');
  expect([first.ref, again.ref]).not.toContain(last.ref);
  const d = await drain(last);
  for (const x of [a, b, c, d]) expect(x.equals(bytes)).toBe(true);
  expect(reads).toHaveLength(3);
});

test('when every worker has left, the read stops', async () => {
  const { spec } = await file(40);
  const { files, bytes } = counted();
  const shared = new SharedReads(files);
  const cursor = shared.open(spec, 'w1');
  const chunk = await cursor.next(new AbortController().signal);
  chunk!.release();
  cursor.close();
  await new Promise((r) => setTimeout(r, 50));
  expect(bytes()).toBeLessThan(4 * FILE_CHUNK_BYTES);
  // A new worker starts a new read from the start.
  expect(shared.open(spec, 'w2').ref).not.toBe(cursor.ref);
});

test('a file written to while it is read (not hashed before sending) fails the read: it changed', async () => {
  const { spec } = await file(4);
  const chunks = readChunks(spec, new AbortController().signal);
  const it = chunks[Symbol.asyncIterator]();
  await it.next();
  // Same size, new contents: only the mtime tells.
  utimesSync(spec.path, new Date(), new Date(Date.now() + 5000));
  await expect(
    (async () => {
      for (;;) if ((await it.next()).done) break;
    })(),
  ).rejects.toThrow(/changed while it was being copied/);
});

/**
 * A file read through a client: each chunk arrives in memory of its own, as ws assembles a frame
 * (the 8-byte header, then the payload to the end), not in the read's pool.
 */
function throughClient(): { files: Files; chunks: Buffer[]; reads: () => number } {
  const local = localFiles();
  const chunks: Buffer[] = [];
  let reads = 0;
  const files: Files = {
    ...local,
    async *read(spec: ReadSpec, signal: AbortSignal, opts?: ReadOptions) {
      reads++;
      for await (const chunk of local.read(spec, signal, { ...(opts?.offset ? { offset: opts.offset } : {}) })) {
        const frame = Buffer.allocUnsafeSlow(CHUNK_HEADER_BYTES + chunk.length);
        chunk.copy(frame, CHUNK_HEADER_BYTES);
        const payload = frame.subarray(CHUNK_HEADER_BYTES);
        chunks.push(payload);
        yield payload;
      }
    },
  };
  return { files, chunks, reads: () => reads };
}

test('chunks a client sent are freed once every worker took them, past a few MiB kept for a worker a moment late', async () => {
  const { spec, bytes } = await file(24);
  const { files, chunks, reads } = throughClient();
  const shared = new SharedReads(files);
  const first = shared.open(spec, 'w1');
  const signal = new AbortController().signal;
  const head: Buffer[] = [];
  for (let i = 0; i < 2; i++) {
    const c = (await first.next(signal))!;
    head.push(Buffer.from(c.frame.subarray(CHUNK_HEADER_BYTES)));
    c.release();
  }
  // A moment late: still joins the same read, from the start.
  const late = shared.open(spec, 'w2');
  expect(late.ref).toBe(first.ref);
  // Each a full frame of the pool's buffer size, yet not kept by the pool: freed (detached) once taken.
  const signalLate = new AbortController().signal;
  let held = 0;
  const rest: Buffer[] = [];
  const lateParts: Buffer[] = [];
  // The two take turns, the late one two chunks behind.
  for (let done = 0; done < 2;) {
    done = 0;
    for (const [cursor, sig, into] of [
      [first, signal, rest],
      [late, signalLate, lateParts],
    ] as const) {
      const c = await cursor.next(sig);
      if (!c) {
        done++;
        continue;
      }
      into.push(Buffer.from(c.frame.subarray(CHUNK_HEADER_BYTES)));
      c.release();
    }
    held = Math.max(held, chunks.filter((c) => c.buffer.byteLength > 0).length * FILE_CHUNK_BYTES);
  }
  first.close();
  late.close();
  expect(Buffer.concat([...head, ...rest]).equals(bytes)).toBe(true);
  expect(Buffer.concat(lateParts).equals(bytes)).toBe(true);
  expect(reads()).toBe(1);
  // Never more held than the few MiB for a late worker and the chunk in hand: not the ring.
  expect(held).toBeLessThanOrEqual(FRESH_JOIN_BYTES + 2 * FILE_CHUNK_BYTES);
  expect(chunks.length).toBeGreaterThan(20);
  expect(chunks.every((c) => c.buffer.byteLength === 0)).toBe(true);
});
