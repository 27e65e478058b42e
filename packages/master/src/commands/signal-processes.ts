import { DroverError, ErrorCode, toDroverError, type ErrorBody, type ExitInfo } from '@drover/protocol';
import { failureLines, fanOut, type PerWorker } from './fan-out.js';
import { pidOrApp } from './options.js';
import type { CommandContext } from './types.js';

export type Signalled = PerWorker<{ pid: number; app: string | null; state: string; exit: ExitInfo | null; alreadyEnded: boolean; leftovers?: number[] }>;

/**
 * stop and kill: signals a pid, or every live process of an app, on each of the workers; one
 * entry per process. A pid or app that none of the workers has is an error.
 */
export async function signalProcesses(
  ctx: CommandContext,
  target: string,
  which: string,
  mode: 'stop' | 'kill',
  timeoutMs: number | null,
): Promise<Signalled[]> {
  const what = pidOrApp(which);
  const answerWithin = (mode === 'stop' ? (timeoutMs ?? 10_000) : 0) + 20_000;
  const perWorker = await fanOut(ctx, target, async (s, signal) => {
    const pids =
      'pid' in what
        ? [{ pid: what.pid, app: null }]
        : (await s.request('ps', {}, { signal })).processes.filter((p) => p.app === what.app && p.exit === null).map((p) => ({ pid: p.pid, app: p.app }));
    const outcomes = await Promise.all(
      pids.map(async ({ pid, app }) => {
        try {
          const r = await s.request('signal', { pid, mode, timeoutMs }, { signal, timeoutMs: answerWithin });
          return { ok: true as const, app, ...r };
        } catch (err) {
          return { ok: false as const, pid, error: toDroverError(err).toJSON() };
        }
      }),
    );
    return { outcomes };
  });
  const entries = perWorker.flatMap((e): Signalled[] =>
    e.ok
      ? e.outcomes.map((o) =>
          o.ok
            ? {
                worker: e.worker,
                ok: true,
                error: null,
                pid: o.pid,
                app: o.app,
                state: o.state,
                exit: o.exit,
                alreadyEnded: o.alreadyEnded,
                ...(o.leftovers ? { leftovers: o.leftovers } : {}),
              }
            : { worker: e.worker, ok: false, error: withPid(o.error, o.pid) },
        )
      : [e],
  );
  if (entries.length === 0) {
    const app = 'app' in what ? what.app : String(which);
    throw new DroverError(ErrorCode.PROCESS_NOT_FOUND, `no running process of app "${app}" on ${target === 'all' ? 'any worker' : target}`);
  }
  return entries;
}

function withPid(error: ErrorBody, pid: number): ErrorBody {
  return error.message.includes(String(pid)) ? error : { code: error.code, message: `pid ${pid}: ${error.message}` };
}

/** How each process ended, for people. */
export function formatSignalled(entries: Signalled[]): string {
  return entries
    .flatMap((d) => {
      if (!d.ok) return [];
      if (d.alreadyEnded) {
        const group =
          d.leftovers === undefined
            ? ''
            : d.leftovers.length
              ? `; ${d.leftovers.length} left in its group survive`
              : '; what it left in its group was signalled and is gone';
        return [`${d.worker}: pid ${d.pid} had already ended${d.exit ? `: ${d.exit.reason}` : ''}${group}`];
      }
      if (d.exit) return [`${d.worker}: pid ${d.pid} ${d.exit.reason}`];
      return [];
    })
    .join('\n');
}

/** Errors, and processes still alive after a stop without --timeout. */
export function signalFailures(verb: string): (entries: Signalled[]) => string[] {
  return (entries) => [
    ...entries.flatMap((d) =>
      d.ok && !d.alreadyEnded && d.exit === null
        ? [`${d.worker}: pid ${d.pid} is still ${d.state} after ${verb}; use kill, or stop --timeout S to escalate`]
        : [],
    ),
    ...failureLines(entries),
  ];
}
