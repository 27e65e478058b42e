import { DroverError, ErrorCode, type ProcessInfo } from '@drover/protocol';
import { formatDuration, table } from '../format.js';
import { READ_DEADLINE_MS, failureLines, fanOut, type Failed } from './fan-out.js';
import { seconds } from './options.js';
import type { RequestOptions, WorkerSession } from '../worker-session.js';
import { defineCommand, type CommandContext } from './types.js';

/** One row per process, or one failed entry per worker that could not answer. */
export type Rows<T> = (({ worker: string; ok: true; error: null } & T) | Failed)[];

/**
 * Asks the workers for a list each (every worker by default; each within its deadline) and
 * flattens the answers into rows that carry their worker. `ask` makes one request with the
 * options it is given: the deadline is that request's own timeout, which cancels it on the
 * worker too (no controller, timer and listener of its own per command: the round trip of
 * `ps` is what scripts feel).
 */
export async function gatherRows<T extends object>(
  ctx: CommandContext,
  target: string | undefined,
  timeoutMs: number | undefined,
  ask: (s: WorkerSession, opts: RequestOptions) => Promise<T[]>,
): Promise<Rows<T>> {
  const deadlineMs = timeoutMs ?? READ_DEADLINE_MS;
  const opts: RequestOptions = { signal: ctx.signal, timeoutMs: deadlineMs };
  const entries = await fanOut(ctx, target ?? 'all', async (s) => {
    try {
      return { rows: await ask(s, opts) };
    } catch (err) {
      if (err instanceof DroverError && err.code === ErrorCode.TIMEOUT && !ctx.signal.aborted) {
        throw new DroverError(ErrorCode.TIMEOUT, `worker ${s.name} did not answer within ${deadlineMs / 1000} s (use --timeout to wait longer)`);
      }
      throw err;
    }
  });
  return entries.flatMap((e): Rows<T> => (e.ok ? e.rows.map((r) => ({ worker: e.worker, ok: true as const, error: null, ...r })) : [e]));
}

export const timeoutOption = { type: 'string', parse: seconds({ max: 3600 }) } as const;

export const psCommand = defineCommand<Rows<ProcessInfo>>({
  name: 'ps',
  usage: 'ps [WORKERS] [--timeout S] [--json]',
  summary: 'processes launched through drover: state from /proc, and why the dead ones ended',
  details: 'Asks every worker (default all) at once; one that has not answered within --timeout\n(default 5 s) is reported as an error, the rest are printed.',
  options: { timeout: timeoutOption },
  complete: ['worker-or-all'],
  maxArgs: 1,
  // Not async: an async function that returns a promise waits three turns more for it.
  run: (args, ctx) =>
    gatherRows(ctx, args.positionals[0], args.values.timeout as number | undefined, async (s, opts) => (await s.request('ps', {}, opts)).processes),
  format(all) {
    const rows = all.filter((r) => r.ok);
    if (rows.length === 0) return all.length === 0 ? 'no processes launched yet' : '';
    return table(
      ['WORKER', 'PID', 'APP', 'STATE', 'STARTED', 'RUNTIME', 'ARGS', 'EXIT'],
      rows.map((p) => [
        p.worker,
        p.pid,
        // A service instance: how often its worker restarted it.
        p.instance?.restarts !== undefined ? `${p.app} (restarts ${p.instance.restarts})` : p.app,
        p.leftovers?.length ? `${p.state} (+${p.leftovers.length} left in its group)` : p.state,
        p.startedAt.replace('T', ' ').slice(0, 19),
        formatDuration(p.runtimeMs),
        p.args.join(' ') || '-',
        p.exit?.reason ?? '',
      ]),
    );
  },
  failures: failureLines,
});
