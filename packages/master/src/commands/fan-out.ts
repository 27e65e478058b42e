import { toDroverError, type ErrorBody } from '@drover/protocol';
import type { WorkerSession } from '../session.js';
import type { CommandContext } from './types.js';

export type PerWorker<T> = { worker: string; ok: true; data: T } | { worker: string; ok: false; error: ErrorBody };

/**
 * Runs `fn` on the target (a worker name, or `all` available workers) concurrently. A named
 * worker that is unknown or unavailable fails the command; with `all`, each worker's failure is
 * its own entry and the others carry on.
 */
export async function fanOut<T>(ctx: CommandContext, target: string, fn: (session: WorkerSession) => Promise<T>): Promise<PerWorker<T>[]> {
  const sessions = ctx.fleet.select(target);
  if (target !== 'all') return [{ worker: sessions[0]!.name, ok: true, data: await fn(sessions[0]!) }];
  return Promise.all(
    sessions.map(async (s): Promise<PerWorker<T>> => {
      try {
        return { worker: s.name, ok: true, data: await fn(s) };
      } catch (err) {
        return { worker: s.name, ok: false, error: toDroverError(err).toJSON() };
      }
    }),
  );
}

/** `error on w2: …` lines for the workers that failed. */
export function failureLines(results: { worker: string; ok: boolean; error?: ErrorBody }[]): string[] {
  return results.filter((r) => !r.ok).map((r) => `error on ${r.worker}: ${r.error!.message}`);
}
