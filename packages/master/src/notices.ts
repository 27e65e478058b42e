import type { Fleet, FleetEvents } from './fleet.js';

/**
 * Sends a one-line notice for every change in the fleet (joined, left, unavailable, available,
 * a process ended) to `notice`, as the shell prints them above the line being typed. Returns
 * a function that stops watching.
 */
export function watchFleet(fleet: Fleet, notice: (text: string) => void): () => void {
  const listeners: { [E in keyof FleetEvents]: (...args: FleetEvents[E]) => void } = {
    joined: (s) => notice(`[${s.name} joined from ${s.address}]`),
    left: (s, why) => notice(`[${s.name} disconnected: ${why}]`),
    unavailable: (s) => notice(`[${s.name} missed 2 heartbeats: unavailable]`),
    available: (s) => notice(`[${s.name} available again]`),
    'process-exit': (s, m) => notice(`[${s.name}: ${m.app} pid ${m.pid} ${m.exit.reason}]`),
    'log-problem': (s, m) =>
      notice(
        m.problem === 'no-space'
          ? `[${s.name}: the disk is full; output of ${m.app} pid ${m.pid} is not logged]`
          : `[${s.name}: ${m.app} pid ${m.pid} is logged again (${m.droppedBytes} bytes were lost)]`,
      ),
  };
  const events = Object.keys(listeners) as (keyof FleetEvents)[];
  // One typed table; the emitter's per-event overloads do not survive a loop over its keys.
  const emitter = fleet as unknown as { on(e: string, f: unknown): void; off(e: string, f: unknown): void };
  for (const e of events) emitter.on(e, listeners[e]);
  return () => {
    for (const e of events) emitter.off(e, listeners[e]);
  };
}
