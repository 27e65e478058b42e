/** What runs when a signal aborts, per signal: one listener each, however many callers. */
const waiting = new WeakMap<AbortSignal, Set<() => void>>();

/**
 * Runs `fn` once `signal` aborts (at once if it has); returns what takes it back. One listener
 * per signal serves every caller: a fleet-wide command hangs one request per worker on its
 * signal, and as many EventTarget listeners cost a linear search to remove each (and Node warns
 * past 10); a Set takes them back in constant time.
 */
export function onAbort(signal: AbortSignal, fn: () => void): () => void {
  if (signal.aborted) {
    fn();
    return () => undefined;
  }
  let fns = waiting.get(signal);
  if (!fns) {
    const all = new Set<() => void>();
    waiting.set(signal, all);
    signal.addEventListener(
      'abort',
      () => {
        waiting.delete(signal);
        for (const f of all) f();
      },
      { once: true },
    );
    fns = all;
  }
  const mine = fns;
  mine.add(fn);
  return () => void mine.delete(fn);
}
