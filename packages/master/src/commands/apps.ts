import { DroverError, ErrorCode, checkName } from '@drover/protocol';
import { failureLines, fanOut, type PerWorker } from './fan-out.js';
import { defineCommand } from './types.js';

function appArg(name: string): string {
  const bad = checkName(name, 'app name');
  if (bad) throw new DroverError(ErrorCode.BAD_NAME, bad);
  return name;
}

type DeleteData = PerWorker<{ app: string; removed: string[]; stopped: number[] }>[];

/** Per-worker entries as JSON: `{worker, ok, error, ...data}`, one flat object each. */
function flatten<T extends object>(results: PerWorker<T>[]): object[] {
  return results.map((r) => (r.ok ? { worker: r.worker, ok: true, error: null, ...r.data } : { worker: r.worker, ok: false, error: r.error }));
}

export const deleteCommand = defineCommand<DeleteData>({
  name: 'delete',
  usage: 'delete WORKER|all APP [--force] [--json]',
  summary: "remove an app's executable and libraries from workers (--force stops its processes first)",
  options: { force: { type: 'boolean' } },
  complete: ['worker-or-all'],
  minArgs: 2,
  maxArgs: 2,
  async run(args, ctx) {
    const [target, name] = args.positionals as [string, string];
    const app = appArg(name);
    const force = args.values.force === true;
    return fanOut(ctx, target, async (s) => ({ app, ...(await s.request('app-delete', { app, force }, { signal: ctx.signal, timeoutMs: 60_000 })) }));
  },
  format(results) {
    const lines = results.flatMap((r) =>
      r.ok
        ? [
            `${r.worker}: deleted ${r.data.app} (${r.data.removed.join(', ')})${r.data.stopped.length ? `; stopped pid ${r.data.stopped.join(', ')} first` : ''}`,
          ]
        : [],
    );
    return [...lines, ...failureLines(results)].join('\n');
  },
  failed: (results) => results.some((r) => !r.ok),
  toJson: flatten,
});

interface Launched {
  worker: string;
  app: string;
  pid: number;
  state: string;
  startedAt: string;
  logPath: string;
}

export const launchCommand = defineCommand<Launched | PerWorker<Launched>[]>({
  name: 'launch',
  usage: 'launch WORKER|all APP [-- ARGS...] [--json]',
  summary: 'start a copied app on workers, its output going to a log file there',
  details:
    'The app runs in its own process group with stdin from /dev/null, stdout and stderr to\nlogs/APP.PID.log in the worker state dir, and its lib/ folder first on LD_LIBRARY_PATH.',
  complete: ['worker-or-all'],
  minArgs: 2,
  maxArgs: 2,
  takesRest: true,
  async run(args, ctx) {
    const [target, name] = args.positionals as [string, string];
    const app = appArg(name);
    const results = await fanOut(ctx, target, async (s) => ({
      worker: s.name,
      app,
      ...(await s.request('launch', { app, args: args.rest }, { signal: ctx.signal })),
    }));
    if (target !== 'all') return (results[0] as { data: Launched }).data;
    return results;
  },
  format(data) {
    const list = Array.isArray(data) ? data : [{ worker: data.worker, ok: true as const, data }];
    const lines = list.flatMap((r) => (r.ok ? [`${r.worker}: ${r.data.app} launched, pid ${r.data.pid} (${r.data.state}); log ${r.data.logPath}`] : []));
    return [...lines, ...failureLines(list)].join('\n');
  },
  failed: (data) => Array.isArray(data) && data.some((r) => !r.ok),
  toJson: (data) => (Array.isArray(data) ? flatten(data) : data),
});
