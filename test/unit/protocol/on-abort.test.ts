import { expect, test } from 'vitest';
import { onAbort } from '../../../packages/protocol/src/on-abort.js';

test('every callback on a signal runs once when it aborts; one taken back does not; one on an aborted signal runs at once', () => {
  const c = new AbortController();
  const ran: number[] = [];
  const offs = Array.from({ length: 50 }, (_, i) => onAbort(c.signal, () => ran.push(i)));
  for (let i = 0; i < 50; i += 2) offs[i]!();
  c.abort();
  c.abort();
  expect(ran).toEqual(Array.from({ length: 25 }, (_, i) => 2 * i + 1));
  let late = 0;
  const off = onAbort(c.signal, () => late++);
  expect(late).toBe(1);
  off();
});

test('fifty callers on one signal hang one listener on it: no MaxListeners warning', async () => {
  const warnings: Error[] = [];
  const listen = (w: Error): number => warnings.push(w);
  process.on('warning', listen);
  try {
    const c = new AbortController();
    for (let i = 0; i < 50; i++) onAbort(c.signal, () => undefined);
    await new Promise((r) => setImmediate(r));
    expect(warnings.filter((w) => w.name === 'MaxListenersExceededWarning')).toEqual([]);
    // The check can fail: fifty listeners of its own would have warned.
    for (let i = 0; i < 50; i++) c.signal.addEventListener('abort', () => undefined);
    await new Promise((r) => setImmediate(r));
    expect(warnings.filter((w) => w.name === 'MaxListenersExceededWarning').length).toBe(1);
  } finally {
    process.off('warning', listen);
  }
});
