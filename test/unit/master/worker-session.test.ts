import { expect, test } from 'vitest';
import type WebSocket from 'ws';
import { pino } from 'pino';
import { Load, MAX_FRAME_BYTES, type Hello } from '@drover/protocol';
import { WorkerSession } from '../../../packages/master/src/worker-session.js';
import { UploadBudget } from '../../../packages/master/src/upload-budget.js';

const hello: Hello = {
  v: 1,
  type: 'hello',
  token: '',
  protocolVersion: 1,
  workerId: 'id-1',
  name: 'w1',
  hostname: 'h',
  os: { platform: 'linux', release: 'x', arch: 'x64' },
  cpus: 1,
  memoryBytes: 1,
  gpus: [],
  agentVersion: 'test',
};

test('a message past the frame limit is refused with TOO_LARGE and never sent; the request fails at once', async () => {
  const sent: string[] = [];
  const ws = { readyState: 1, OPEN: 1, send: (text: string) => void sent.push(text) } as unknown as WebSocket;
  const s = new WorkerSession(ws, '127.0.0.1', hello, 0, new UploadBudget(), pino({ level: 'silent' }));
  const big = 'é'.repeat(MAX_FRAME_BYTES / 2); // 2 bytes each in UTF-8: past the limit, though its length is not
  await expect(s.request('launch', { app: 'a', args: [big] })).rejects.toMatchObject({
    code: 'TOO_LARGE',
    message: expect.stringMatching(/^the launch for w1 is \d+ bytes, more than the 1048576 a message holds$/),
  });
  expect(sent).toEqual([]);
  expect(s.requests.size).toBe(0);
  // Just under the limit goes out.
  void s.request('launch', { app: 'a', args: ['x'.repeat(MAX_FRAME_BYTES - 200)] }).catch(() => undefined);
  expect(sent).toHaveLength(1);
  s.markDisconnected('the test ended', 0); // fails it, and clears its timer
});

test("a heartbeat's figures are copied into the session's own record, every field of Load", () => {
  const ws = { readyState: 1, OPEN: 1, send: () => undefined } as unknown as WebSocket;
  const s = new WorkerSession(ws, '127.0.0.1', hello, 0, new UploadBudget(), pino({ level: 'silent' }));
  expect(s.load).toBeNull();
  // Distinct values for each field the schema has: a field added to Load and not copied fails here.
  const fields = Object.keys(Load.shape) as (keyof Load)[];
  const make = (base: number): Load => Object.fromEntries(fields.map((k, i) => [k, base + i])) as Load;
  const first = make(1);
  s.noteLoad(first);
  expect(s.load).toEqual(first);
  expect(s.load).not.toBe(first);
  const record = s.load;
  const second = make(100);
  s.noteLoad(second);
  expect(s.load).toBe(record);
  expect(s.load).toEqual(second);
  expect(Load.safeParse(s.load).success).toBe(true);
});
