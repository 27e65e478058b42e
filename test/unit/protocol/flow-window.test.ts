import { describe, expect, test } from 'vitest';
import { DroverError, ReceiveWindow, SendWindow } from '@drover/protocol';

describe('SendWindow', () => {
  test('waits while the window is full and wakes on an ack', async () => {
    const w = new SendWindow(() => 10);
    w.sentBytes(10);
    let through = false;
    const waiting = w.waitForRoom().then(() => (through = true));
    await new Promise((r) => setTimeout(r, 5));
    expect(through).toBe(false);
    w.ack(5);
    await waiting;
    expect(through).toBe(true);
  });

  test("throws the receiver's error, CANCELLED on abort or close, and a stall after idleMs", async () => {
    const failed = new SendWindow(() => 1);
    failed.sentBytes(1);
    const p = failed.waitForRoom();
    failed.fail(new DroverError('NO_SPACE', 'disk full'));
    await expect(p).rejects.toMatchObject({ code: 'NO_SPACE' });

    const abort = new AbortController();
    const aborted = new SendWindow(() => 1);
    aborted.sentBytes(1);
    const q = aborted.waitForRoom({ signal: abort.signal });
    abort.abort();
    await expect(q).rejects.toMatchObject({ code: 'CANCELLED' });

    const idle = new SendWindow(() => 1);
    idle.sentBytes(1);
    await expect(idle.waitForRoom({ idleMs: 10 })).rejects.toMatchObject({ code: 'TIMEOUT' });

    const dropped = new SendWindow(() => 1);
    dropped.sentBytes(1);
    let connected = true;
    const r = dropped.waitForRoom({
      check: () => {
        if (!connected) throw new DroverError('WORKER_UNAVAILABLE', 'gone');
      },
    });
    connected = false;
    dropped.poke();
    await expect(r).rejects.toMatchObject({ code: 'WORKER_UNAVAILABLE' });
  });
});

test('ReceiveWindow tells a peer that ignores flow control', () => {
  const w = new ReceiveWindow(10);
  expect(w.arrive(8)).toBe(true);
  expect(w.consume(8)).toBe(8);
  expect(w.arrive(10)).toBe(true);
  expect(w.arrive(1)).toBe(false);
});
