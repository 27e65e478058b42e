import { describe, expect, test } from 'vitest';
import { CHUNK_BYTES, DroverError, ErrorCode, MAX_FRAME_BYTES, TRANSFER_WINDOW_BYTES, type MasterToWorker } from '@drover/protocol';
import { RequestTracker } from '../../../packages/master/src/request-tracker.js';

function tracker(): { t: RequestTracker; sent: MasterToWorker[] } {
  const sent: MasterToWorker[] = [];
  return { t: new RequestTracker({ name: 'w1', send: (m) => sent.push(m) }), sent };
}

describe('RequestTracker: a request that cannot be sent', () => {
  test("fails at once with the sender's error, and leaves nothing pending", async () => {
    const t = new RequestTracker({
      name: 'w1',
      send: () => {
        throw new DroverError(ErrorCode.TOO_LARGE, 'the launch for w1 is 2000000 bytes');
      },
    });
    await expect(t.request('launch', { app: 'a', args: ['x'] })).rejects.toMatchObject({ code: 'TOO_LARGE', message: 'the launch for w1 is 2000000 bytes' });
    expect(t.size).toBe(0);
  });
});

describe('RequestTracker: correlation by id', () => {
  test('each result settles the request with its id, validated for that request type', async () => {
    const { t, sent } = tracker();
    const ps = t.request('ps', {});
    const usage = t.request('usage', {});
    expect(sent.map((m) => [m.type, 'id' in m ? m.id : null])).toEqual([
      ['ps', 1],
      ['usage', 2],
    ]);
    t.settleResult({ v: 1, type: 'result', id: 2, ok: true, data: { processes: [] } });
    t.settleResult({ v: 1, type: 'result', id: 1, ok: false, error: { code: 'BUSY', message: 'busy' } });
    await expect(usage).resolves.toEqual({ processes: [] });
    await expect(ps).rejects.toMatchObject({ code: 'BUSY', message: 'busy' });
    expect(t.size).toBe(0);
  });

  test('a result of the wrong shape is a protocol error naming the field; an unknown id is ignored', async () => {
    const { t } = tracker();
    const launch = t.request('launch', { app: 'a', args: [] });
    t.settleResult({ v: 1, type: 'result', id: 99, ok: true, data: {} });
    t.settleResult({ v: 1, type: 'result', id: 1, ok: true, data: { pid: 'x' } });
    await expect(launch).rejects.toMatchObject({ code: 'PROTOCOL_ERROR', message: expect.stringContaining('malformed launch result at pid') });
  });

  test('a timeout or an abort cancels on the worker too', async () => {
    const { t, sent } = tracker();
    const slow = t.request('ps', {}, { timeoutMs: 20 });
    await expect(slow).rejects.toMatchObject({ code: 'TIMEOUT', message: 'worker w1 did not answer ps within 20 ms' });
    const abort = new AbortController();
    const aborted = t.request('ps', {}, { signal: abort.signal });
    abort.abort();
    await expect(aborted).rejects.toMatchObject({ code: 'CANCELLED' });
    expect(sent.filter((m) => m.type === 'cancel').map((m) => (m.type === 'cancel' ? m.ref : 0))).toEqual([1, 2]);
  });

  test('each request times out at its own deadline, never before; one answered in time is not timed out', async () => {
    const { t, sent } = tracker();
    const t0 = performance.now();
    const order: string[] = [];
    const track = (name: string, p: Promise<unknown>): Promise<unknown> =>
      p.then(
        () => order.push(name),
        (err: DroverError) => {
          order.push(name);
          return { code: err.code, message: err.message, after: performance.now() - t0 };
        },
      );
    const long = track('long', t.request('ps', {}, { timeoutMs: 250 }));
    // Later, but due sooner than the one before: the sweep comes for it first.
    const short = track('short', t.request('ps', {}, { timeoutMs: 40 }));
    const answered = track('answered', t.request('ps', {}, { timeoutMs: 60 }));
    const never = t.request('ps', {}, { timeoutMs: 0 });
    t.settleResult({ v: 1, type: 'result', id: 3, ok: true, data: { processes: [] } });
    expect(await short).toMatchObject({ code: 'TIMEOUT', message: 'worker w1 did not answer ps within 40 ms', after: expect.any(Number) });
    expect(((await short) as { after: number }).after).toBeGreaterThanOrEqual(39);
    expect(await long).toMatchObject({ code: 'TIMEOUT', message: 'worker w1 did not answer ps within 250 ms' });
    expect(((await long) as { after: number }).after).toBeGreaterThanOrEqual(249);
    await answered;
    expect(order).toEqual(['answered', 'short', 'long']);
    expect(sent.filter((m) => m.type === 'cancel').map((m) => (m.type === 'cancel' ? m.ref : 0))).toEqual([2, 1]);
    // No timeout at all: still pending, until the connection goes.
    expect(t.size).toBe(1);
    t.failAll(new DroverError(ErrorCode.WORKER_UNAVAILABLE, 'gone'));
    await expect(never).rejects.toMatchObject({ code: 'WORKER_UNAVAILABLE' });
  });

  test('chunks are handled in order before the result, acknowledged as consumed; overrunning the window is refused', async () => {
    const { t, sent } = tracker();
    const got: string[] = [];
    const logs = t.request('logs', { pid: 1, app: null, tail: null, follow: false }, { onChunk: async (p) => void got.push(p.toString()) });
    expect(t.receiveChunk(1, Buffer.from('a'))).toBe('ok');
    expect(t.receiveChunk(1, Buffer.from('b'))).toBe('ok');
    t.settleResult({ v: 1, type: 'result', id: 1, ok: true, data: { pid: 1, app: 'a', bytes: 2, path: '/x' } });
    await expect(logs).resolves.toMatchObject({ bytes: 2 });
    expect(got).toEqual(['a', 'b']);
    expect(sent.filter((m) => m.type === 'ack')).toEqual([
      { v: 1, type: 'ack', ref: 1, bytes: 1 },
      { v: 1, type: 'ack', ref: 1, bytes: 2 },
    ]);
    expect(t.receiveChunk(1, Buffer.from('late'))).toBe('dropped');

    const stuck = t.request('logs', { pid: 1, app: null, tail: null, follow: false }, { onChunk: () => new Promise(() => undefined) });
    const big = Buffer.alloc(CHUNK_BYTES);
    let outcome = 'ok';
    for (let sentBytes = 0; outcome === 'ok' && sentBytes <= TRANSFER_WINDOW_BYTES + MAX_FRAME_BYTES + 2 * CHUNK_BYTES; sentBytes += big.length)
      outcome = t.receiveChunk(2, big);
    expect(outcome).toBe('overrun');
    await expect(stuck).rejects.toMatchObject({ code: 'PROTOCOL_ERROR', message: expect.stringContaining('past the') });
  });
});

describe('RequestTracker: an answer in parts (past a frame)', () => {
  const partsOf = (text: string, size: number): Buffer[] => {
    const all = Buffer.from(text);
    const list: Buffer[] = [];
    for (let at = 0; at < all.length; at += size) list.push(all.subarray(at, at + size));
    return list;
  };

  test('the chunks read together are its result, validated like one in a frame', async () => {
    const { t } = tracker();
    const launch = t.request('launch', { app: 'a', args: [] });
    const data = { pid: 42, state: 'running', startedAt: '2026-12-05T00:00:00.000Z', logPath: `/logs/${'é漢字'.repeat(50)}.log` };
    const text = JSON.stringify({ v: 1, type: 'result', id: 1, ok: true, data });
    // Cut every 7 bytes: inside characters of two and three bytes too.
    for (const p of partsOf(text, 7)) expect(t.receiveChunk(1, p)).toBe('ok');
    t.settleParts({ v: 1, type: 'result-parts', id: 1, bytes: Buffer.byteLength(text) });
    await expect(launch).resolves.toEqual(data);
    expect(t.size).toBe(0);
  });

  test('a count that does not add up, a text that is not its result, or another request’s result: a protocol error, and the worker is told to stop', async () => {
    const { t, sent } = tracker();
    const cases: [string, number | null, RegExp][] = [
      [JSON.stringify({ v: 1, type: 'result', id: 1, ok: true, data: { processes: [] } }), 5, /bytes came, 5 were announced/],
      ['{"v":1,"type":"heartbeat"', null, /malformed ps answer in parts/],
      [JSON.stringify({ v: 1, type: 'result', id: 7, ok: true, data: { processes: [] } }), null, /they are not its result/],
    ];
    for (const [text, announced, why] of cases) {
      const before = sent.length;
      const ps = t.request('ps', {});
      const id = (sent[before] as { id: number }).id;
      for (const p of partsOf(text, 3)) t.receiveChunk(id, p);
      t.settleParts({ v: 1, type: 'result-parts', id, bytes: announced ?? Buffer.byteLength(text) });
      await expect(ps).rejects.toMatchObject({ code: 'PROTOCOL_ERROR', message: expect.stringMatching(why) });
      expect(sent.at(-1)).toEqual({ v: 1, type: 'cancel', ref: id });
    }
    expect(t.size).toBe(0);
  });

  test('past what one answer may hold: overrun, and the request fails', async () => {
    const { t } = tracker();
    const ps = t.request('ps', {});
    const mib = Buffer.alloc(MAX_FRAME_BYTES);
    let outcome = 'ok';
    for (let i = 0; i < 40 && outcome === 'ok'; i++) outcome = t.receiveChunk(1, mib);
    expect(outcome).toBe('overrun');
    await expect(ps).rejects.toMatchObject({ code: 'PROTOCOL_ERROR', message: expect.stringContaining('past the 33554432 bytes') });
    // Parts of no request in flight are dropped.
    expect(t.receiveChunk(1, mib)).toBe('dropped');
  });
});
