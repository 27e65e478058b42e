import { failureLines, fanOut, type PerWorker } from './fan-out.js';
import { DroverError, ErrorCode, MAX_ARGS, MAX_ARG_CHARS } from '@drover/protocol';
import { place } from '../services/placement.js';
import { appName, cpus, envPair, size } from './options.js';
import { defineCommand, type CommandContext } from './types.js';

type Launched = PerWorker<{ app: string; pid: number; state: string; startedAt: string; logPath: string }>;

export const launchCommand = defineCommand<Launched[]>({
  name: 'launch',
  usage: 'launch WORKERS|any APP [--cpus N] [--mem SIZE] [--env NAME=VALUE]... [-- ARGS...] [--json]',
  summary: 'start a copied app on workers, its output going to a log file there',
  details:
    "The app runs in its own process group with stdin from /dev/null, stdout and stderr to\nlogs/APP.PID.log in the worker state dir, and its lib/ folder first on LD_LIBRARY_PATH.\nIts environment is built afresh: PATH, HOME, LANG (and a few like them) from the agent,\neach --env, and DROVER_APP and DROVER_WORKER; nothing else of the agent's.\nany: the master picks the worker, among those that have the app, with the most room for\n--cpus and --mem after what services and other placed launches reserve (both reserved until\nthe process ends).",
  options: { env: { type: 'string', multiple: true, parse: envPair }, cpus: { type: 'string', parse: cpus }, mem: { type: 'string', parse: size() } },
  complete: ['worker-or-all'],
  minArgs: 2,
  maxArgs: 2,
  takesRest: true,
  async run(args, ctx) {
    const [target, name] = args.positionals as [string, string];
    const app = appName(name);
    const env = Object.fromEntries((args.values.env as [string, string][] | undefined) ?? []);
    const wants = { cpus: (args.values.cpus as number | undefined) ?? 0, memoryBytes: (args.values.mem as number | undefined) ?? 0 };
    // What the worker would refuse as a malformed frame, refused here with the reason.
    if (args.rest.length > MAX_ARGS) throw new DroverError(ErrorCode.BAD_REQUEST, `a launch takes at most ${MAX_ARGS} arguments, got ${args.rest.length}`);
    const long = args.rest.findIndex((a) => a.length > MAX_ARG_CHARS);
    if (long >= 0)
      throw new DroverError(
        ErrorCode.BAD_REQUEST,
        `argument ${long + 1} is ${args.rest[long]!.length} characters; a launch's arguments hold at most ${MAX_ARG_CHARS} each`,
      );
    // exec takes each argument and variable up to its first NUL: what follows would be lost.
    const nul = args.rest.findIndex((a) => a.includes('\0'));
    if (nul >= 0) throw new DroverError(ErrorCode.BAD_REQUEST, `argument ${nul + 1} holds a NUL byte, which no program's argument can`);
    const nulEnv = Object.entries(env).find(([, v]) => v.includes('\0'));
    if (nulEnv) throw new DroverError(ErrorCode.BAD_REQUEST, `--env ${nulEnv[0]} holds a NUL byte, which no environment value can`);
    const longEnv = Object.entries(env).find(([, v]) => v.length > MAX_ARG_CHARS);
    if (longEnv) throw new DroverError(ErrorCode.BAD_REQUEST, `--env ${longEnv[0]} is ${longEnv[1].length} characters; a value holds at most ${MAX_ARG_CHARS}`);
    const where = target === 'any' ? await pickWorker(ctx, app, wants) : target;
    return fanOut(ctx, where, async (s, signal) => {
      const r = await s.request('launch', { app, args: args.rest, env }, { signal });
      if (wants.cpus || wants.memoryBytes) ctx.services.reserve(s.name, r.pid, wants);
      return { app, ...r };
    });
  },
  format(list) {
    return list.flatMap((r) => (r.ok ? [`${r.worker}: ${r.app} launched, pid ${r.pid} (${r.state}); log ${r.logPath}`] : [])).join('\n');
  },
  failures: failureLines,
});

/** launch any: the worker with the most room among the available ones that have the app. */
async function pickWorker(ctx: CommandContext, app: string, wants: { cpus: number; memoryBytes: number }): Promise<string> {
  const available = ctx.fleet.list().filter((w) => w.status === 'available');
  const have = new Set<string>();
  await Promise.all(
    available.map(async (w) => {
      const inv = await w.request('inventory', { app }, { signal: ctx.signal, timeoutMs: 5000 }).catch(() => null);
      if (inv?.exists) have.add(w.name);
    }),
  );
  if (have.size === 0) throw new DroverError(ErrorCode.APP_NOT_FOUND, `no available worker has app "${app}"; copy it first (copy all PATH --as ${app})`);
  const where = place({ on: { workers: available.filter((w) => have.has(w.name)).map((w) => w.name) }, ...wants }, ctx.services.candidates().list);
  if (!where.ok) throw new DroverError(ErrorCode.BUSY, `no worker has room to launch ${app}: ${where.reason}`);
  return where.worker;
}
