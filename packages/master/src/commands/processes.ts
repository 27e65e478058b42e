import { formatBytes, toDroverError, type ExitInfo, type ProcessInfo, type UsageInfo } from '@drover/protocol';
import { formatDuration, table } from '../format.js';
import { badArgs } from '../run-line.js';
import type { WorkerSession } from '../session.js';
import { defineCommand, type Command, type CommandContext } from './types.js';

type Row<T> = T & { worker: string };
interface Gathered<T> {
  rows: Row<T>[];
  errors: string[];
}

/** Asks every selected worker (default all) for a list and merges the answers, worker by worker. */
async function gather<T>(ctx: CommandContext, target: string | undefined, ask: (s: WorkerSession) => Promise<T[]>): Promise<Gathered<T>> {
  const sessions = ctx.fleet.select(target ?? 'all');
  const answers = await Promise.all(
    sessions.map(async (s) => {
      try {
        return { worker: s.name, rows: await ask(s) };
      } catch (err) {
        if (target && target !== 'all') throw err;
        return { worker: s.name, error: toDroverError(err).message };
      }
    }),
  );
  const rows: Row<T>[] = [];
  const errors: string[] = [];
  for (const a of answers) {
    if ('error' in a) errors.push(`error on ${a.worker}: ${a.error}`);
    else for (const r of a.rows) rows.push({ worker: a.worker, ...r });
  }
  const skipped = ctx.fleet.list().filter((s) => s.status !== 'available' && (target ?? 'all') === 'all');
  for (const s of skipped) errors.push(`note: ${s.name} is unavailable and not listed`);
  return { rows, errors };
}

const realErrors = (d: Gathered<unknown>): string[] => d.errors.filter((e) => e.startsWith('error'));

export const psCommand = defineCommand<Gathered<ProcessInfo>>({
  name: 'ps',
  usage: 'ps [WORKER|all] [--json]',
  summary: 'processes launched through drover: state from /proc, and why the dead ones ended',
  complete: ['worker-or-all'],
  maxArgs: 1,
  async run(args, ctx) {
    return gather(ctx, args.positionals[0], async (s) => (await s.request('ps', {}, { signal: ctx.signal })).processes);
  },
  format(d) {
    if (d.rows.length === 0) return ['no processes launched yet', ...d.errors].join('\n');
    const body = table(
      ['WORKER', 'PID', 'APP', 'STATE', 'STARTED', 'RUNTIME', 'ARGS', 'EXIT'],
      d.rows.map((p) => [
        p.worker,
        p.pid,
        p.app,
        p.state,
        p.startedAt.replace('T', ' ').slice(0, 19),
        formatDuration(p.runtimeMs),
        p.args.join(' ') || '-',
        p.exit?.reason ?? '',
      ]),
    );
    return [body, ...d.errors].join('\n');
  },
  toJson: (d) => d.rows,
  errors: realErrors,
});

export const usageCommand = defineCommand<Gathered<UsageInfo>>({
  name: 'usage',
  usage: 'usage [WORKER|all] [--json]',
  summary: 'CPU time, CPU %, current and peak memory of every launched process, with per-worker totals',
  complete: ['worker-or-all'],
  maxArgs: 1,
  async run(args, ctx) {
    return gather(ctx, args.positionals[0], async (s) => (await s.request('usage', {}, { signal: ctx.signal })).processes);
  },
  format(d) {
    if (d.rows.length === 0) return ['no processes launched yet', ...d.errors].join('\n');
    const rows: (string | number)[][] = [];
    const workers = [...new Set(d.rows.map((r) => r.worker))];
    for (const w of workers) {
      const mine = d.rows.filter((r) => r.worker === w);
      for (const u of mine)
        rows.push([
          w,
          u.pid,
          u.app,
          u.state,
          u.cpuUserSeconds.toFixed(2),
          u.cpuSystemSeconds.toFixed(2),
          u.cpuPercent.toFixed(1),
          formatBytes(u.rssBytes),
          formatBytes(u.maxRssBytes),
        ]);
      const live = mine.filter((u) => u.state !== 'dead');
      const sum = (f: (u: UsageInfo) => number, of = mine): number => of.reduce((n, u) => n + f(u), 0);
      rows.push([
        w,
        '',
        `total (${mine.length})`,
        `${live.length} live`,
        sum((u) => u.cpuUserSeconds).toFixed(2),
        sum((u) => u.cpuSystemSeconds).toFixed(2),
        sum((u) => u.cpuPercent, live).toFixed(1),
        formatBytes(sum((u) => u.rssBytes, live)),
        formatBytes(Math.max(0, ...mine.map((u) => u.maxRssBytes))),
      ]);
    }
    const body = table(['WORKER', 'PID', 'APP', 'STATE', 'CPU USER s', 'CPU SYS s', 'CPU%', 'RSS', 'MAX RSS'], rows);
    return [body, ...d.errors].join('\n');
  },
  toJson: (d) => d.rows,
  errors: realErrors,
});

interface SignalData {
  worker: string;
  pid: number;
  state: string;
  exit: ExitInfo | null;
  alreadyEnded: boolean;
}

function parsePid(command: Command, text: string): number {
  const pid = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(pid) || pid <= 0) throw badArgs(command, `PID must be a positive whole number, got "${text}"`);
  return pid;
}

function formatSignal(d: SignalData, verb: string): string {
  if (d.alreadyEnded) return `${d.worker}: pid ${d.pid} had already ended${d.exit ? `: ${d.exit.reason}` : ''}`;
  if (d.exit) return `${d.worker}: pid ${d.pid} ${d.exit.reason}`;
  return `${d.worker}: pid ${d.pid} is still ${d.state} after ${verb}; use kill, or stop --timeout S to escalate`;
}

export const stopCommand = defineCommand<SignalData>({
  name: 'stop',
  usage: 'stop WORKER PID [--timeout S] [--json]',
  summary: 'graceful stop: SIGINT to the process group; with --timeout, SIGKILL after S seconds',
  details: 'Waits for the process to end and reports how. Without --timeout it waits up to 10 s and\nleaves a process that ignores SIGINT running.',
  options: { timeout: { type: 'string' } },
  complete: ['worker'],
  minArgs: 2,
  maxArgs: 2,
  async run(args, ctx) {
    const [worker, pidText] = args.positionals as [string, string];
    const pid = parsePid(this, pidText);
    let timeoutMs: number | null = null;
    if (args.values.timeout !== undefined) {
      const s = Number(args.values.timeout);
      if (!Number.isFinite(s) || s <= 0) throw badArgs(this, `--timeout must be seconds > 0, got "${String(args.values.timeout)}"`);
      timeoutMs = Math.round(s * 1000);
    }
    const session = ctx.fleet.get(worker);
    const r = await session.request('signal', { pid, mode: 'stop', timeoutMs }, { signal: ctx.signal, timeoutMs: (timeoutMs ?? 10_000) + 20_000 });
    return { worker, ...r };
  },
  format: (d) => formatSignal(d, 'SIGINT'),
  failed: (d) => !d.alreadyEnded && d.exit === null,
});

export const killCommand = defineCommand<SignalData>({
  name: 'kill',
  usage: 'kill WORKER PID [--json]',
  summary: 'forced stop: SIGKILL to the process group',
  complete: ['worker'],
  minArgs: 2,
  maxArgs: 2,
  async run(args, ctx) {
    const [worker, pidText] = args.positionals as [string, string];
    const pid = parsePid(this, pidText);
    const r = await ctx.fleet.get(worker).request('signal', { pid, mode: 'kill', timeoutMs: null }, { signal: ctx.signal, timeoutMs: 20_000 });
    return { worker, ...r };
  },
  format: (d) => formatSignal(d, 'SIGKILL'),
  failed: (d) => !d.alreadyEnded && d.exit === null,
});
