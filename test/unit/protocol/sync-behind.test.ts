import { expect, test } from 'vitest';
import { SyncBehind } from '../../../packages/protocol/src/sync-behind.js';

/** A file whose syncs end when the test says: how many started, and a way to end the running one. */
function file(): { datasync(): Promise<void>; started: number; finish(err?: Error): void } {
  let end: ((err?: Error) => void) | null = null;
  const f = {
    started: 0,
    datasync: () =>
      new Promise<void>((resolve, reject) => {
        f.started++;
        end = (err) => (err ? reject(err) : resolve());
      }),
    finish: (err?: Error) => end?.(err),
  };
  return f;
}
const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

test('a sync starts every N bytes written, one at a time, and settle waits for the one running', async () => {
  const f = file();
  const behind = new SyncBehind(f, undefined, 100);
  behind.wrote(99);
  expect(f.started).toBe(0);
  behind.wrote(100);
  expect(f.started).toBe(1);
  // One at a time: written meanwhile waits for the next step past the last start.
  behind.wrote(250);
  expect(f.started).toBe(1);
  let settled = false;
  void behind.settle().then(() => (settled = true));
  await turn();
  expect(settled).toBe(false);
  f.finish();
  await turn();
  expect(settled).toBe(true);
  behind.wrote(199);
  expect(f.started).toBe(1);
  behind.wrote(200);
  expect(f.started).toBe(2);
  f.finish();
  await behind.settle();
});

test("a sync's error goes to onError at once and settle rejects with it; no sync starts after it", async () => {
  const f = file();
  const seen: Error[] = [];
  const behind = new SyncBehind(f, (err) => seen.push(err), 10);
  behind.wrote(10);
  f.finish(Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' }));
  await expect(behind.settle()).rejects.toMatchObject({ code: 'EIO' });
  expect(seen.map((e) => e.message)).toEqual(['EIO: i/o error, fdatasync']);
  behind.wrote(100);
  expect(f.started).toBe(1);
  await expect(behind.settle()).rejects.toMatchObject({ code: 'EIO' });
});
