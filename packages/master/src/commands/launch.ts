import { failureLines, fanOut, type PerWorker } from './fan-out.js';
import { appName, envPair } from './options.js';
import { defineCommand } from './types.js';

type Launched = PerWorker<{ app: string; pid: number; state: string; startedAt: string; logPath: string }>;

export const launchCommand = defineCommand<Launched[]>({
  name: 'launch',
  usage: 'launch WORKERS APP [--env NAME=VALUE]... [-- ARGS...] [--json]',
  summary: 'start a copied app on workers, its output going to a log file there',
  details:
    "The app runs in its own process group with stdin from /dev/null, stdout and stderr to\nlogs/APP.PID.log in the worker state dir, and its lib/ folder first on LD_LIBRARY_PATH.\nIts environment is built afresh: PATH, HOME, LANG (and a few like them) from the agent,\neach --env, and DROVER_APP and DROVER_WORKER; nothing else of the agent's.",
  options: { env: { type: 'string', multiple: true, parse: envPair } },
  complete: ['worker-or-all'],
  minArgs: 2,
  maxArgs: 2,
  takesRest: true,
  async run(args, ctx) {
    const [target, name] = args.positionals as [string, string];
    const app = appName(name);
    const env = Object.fromEntries((args.values.env as [string, string][] | undefined) ?? []);
    return fanOut(ctx, target, async (s, signal) => ({ app, ...(await s.request('launch', { app, args: args.rest, env }, { signal })) }));
  },
  format(list) {
    return list.flatMap((r) => (r.ok ? [`${r.worker}: ${r.app} launched, pid ${r.pid} (${r.state}); log ${r.logPath}`] : [])).join('\n');
  },
  failures: failureLines,
});
