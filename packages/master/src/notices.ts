import type { Fleet } from './fleet.js';

/**
 * Sends a one-line notice for every change in the fleet (joined, left, unavailable, available,
 * a process ended) to `notice`, as the shell prints them above the line being typed. Returns
 * a function that stops watching.
 */
export function watchFleet(fleet: Fleet, notice: (text: string) => void): () => void {
  const listeners = {
    joined: (s: { name: string; address: string }) => notice(`[${s.name} joined from ${s.address}]`),
    left: (s: { name: string }, why: string) => notice(`[${s.name} disconnected: ${why}]`),
    unavailable: (s: { name: string }) => notice(`[${s.name} missed 2 heartbeats: unavailable]`),
    available: (s: { name: string }) => notice(`[${s.name} available again]`),
    'process-exit': (s: { name: string }, m: { app: string; pid: number; exit: { reason: string } }) =>
      notice(`[${s.name}: ${m.app} pid ${m.pid} ${m.exit.reason}]`),
  };
  fleet
    .on('joined', listeners.joined)
    .on('left', listeners.left)
    .on('unavailable', listeners.unavailable)
    .on('available', listeners.available)
    .on('process-exit', listeners['process-exit']);
  return () => {
    fleet
      .off('joined', listeners.joined)
      .off('left', listeners.left)
      .off('unavailable', listeners.unavailable)
      .off('available', listeners.available)
      .off('process-exit', listeners['process-exit']);
  };
}
