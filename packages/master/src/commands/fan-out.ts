import { DroverError, ErrorCode, toDroverError, type ErrorBody } from '@drover/protocol';
import { byName, type Fleet } from '../fleet.js';
import type { WorkerSession } from '../worker-session.js';
import type { CommandContext } from './types.js';

/**
 * The one per-worker result shape: `{worker, ok: true, error: null, ...data}` or
 * `{worker, ok: false, error: {code, message}}`. JSON output prints these entries as they are.
 */
export type PerWorker<T extends object> = ({ worker: string; ok: true; error: null } & T) | { worker: string; ok: false; error: ErrorBody };

export type Failed = Extract<PerWorker<object>, { ok: false }>;

/** Default deadline of a fleet-wide read (ps, usage): one slow worker must not hold up the rest. */
export const READ_DEADLINE_MS = 5_000;

/** Splits `w1,w2` (or `all`) into names, each once. */
export function parseTargets(text: string): string[] {
  // One name (`ps w1`, what scripts send most): no split, filter and set to make.
  if (!text.includes(',')) return text ? [text] : [];
  return [...new Set(text.split(',').filter(Boolean))];
}

/**
 * Which workers a command runs on: `all` is every known worker; `w1,w2` those. An unknown name
 * fails the whole command before anything runs. A known worker that is unavailable is not asked,
 * and becomes a failed entry that names it: never skipped in silence.
 */
export function selectWorkers(fleet: Fleet, target: string): { sessions: WorkerSession[]; unavailable: Failed[] } {
  const names = parseTargets(target);
  if (names.length === 0) throw new DroverError(ErrorCode.BAD_ARGUMENTS, `no worker named in "${target}"`);
  let chosen: WorkerSession[];
  if (names.includes('all')) {
    chosen = fleet.list();
    if (chosen.length === 0) throw new DroverError(ErrorCode.WORKER_UNAVAILABLE, 'no workers have joined (type join to see how a VM joins)');
  } else {
    chosen = names.map((n) => fleet.find(n));
  }
  const sessions: WorkerSession[] = [];
  const unavailable: Failed[] = [];
  for (const s of chosen) {
    if (s.status === 'available') sessions.push(s);
    else unavailable.push({ worker: s.name, ok: false, error: fleet.unavailableError(s).toJSON() });
  }
  return { sessions, unavailable };
}

export interface FanOutOptions {
  /** Workers worked on at once (file handles and sockets stay bounded); default all. */
  concurrency?: number;
}

/**
 * Runs `fn` on every selected worker at once (or `concurrency` at a time) and returns one entry
 * per worker, in name order. `fn`'s signal aborts on Ctrl-C. A deadline per worker is the
 * requests' own (`timeoutMs`, as gatherRows sets it): one slow worker then fails alone.
 */
export async function fanOut<T extends object>(
  ctx: Pick<CommandContext, 'fleet' | 'signal'>,
  target: string,
  fn: (session: WorkerSession, signal: AbortSignal) => Promise<T>,
  opts: FanOutOptions = {},
): Promise<PerWorker<T>[]> {
  const { sessions, unavailable } = selectWorkers(ctx.fleet, target);
  const limit = opts.concurrency ?? sessions.length;
  const one = async (s: WorkerSession): Promise<PerWorker<T>> => {
    try {
      return { worker: s.name, ok: true, error: null, ...(await fn(s, ctx.signal)) };
    } catch (err) {
      return { worker: s.name, ok: false, error: toDroverError(err).toJSON() };
    }
  };
  // One worker (`ps w1`): its entry, without Promise.all's turns.
  const done =
    sessions.length === 1
      ? [await one(sessions[0]!)]
      : limit >= sessions.length
        ? await Promise.all(sessions.map(one))
        : await mapLimited(sessions, limit, one);
  return [...done, ...unavailable].sort((a, b) => byName.compare(a.worker, b.worker));
}

/** `error on w2: …` lines for the entries that failed. */
export function failureLines(entries: readonly { worker: string; ok: boolean; error: ErrorBody | null }[]): string[] {
  return entries.flatMap((e) => (e.ok || !e.error ? [] : [`error on ${e.worker}: ${e.error.message}`]));
}

/** Like Promise.all over `items`, with at most `limit` calls of `fn` running at a time; order kept. */
async function mapLimited<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const run = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, run));
  return results;
}
