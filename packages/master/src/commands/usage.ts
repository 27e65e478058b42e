import { formatBytes, type UsageInfo } from '@drover/protocol';
import { table } from '../format.js';
import { failureLines } from './fan-out.js';
import { gatherRows, timeoutOption, type Rows } from './ps.js';
import { defineCommand } from './types.js';

export const usageCommand = defineCommand<Rows<UsageInfo>>({
  name: 'usage',
  usage: 'usage [WORKERS] [--live] [--timeout S] [--json]',
  summary: 'CPU time, CPU %, current and peak memory of every launched process, with per-worker totals',
  details: '--live: only the processes still running (the dead ones keep their last figures and are\nlisted without it).',
  options: { timeout: timeoutOption, live: { type: 'boolean' } },
  complete: ['worker-or-all'],
  maxArgs: 1,
  async run(args, ctx) {
    const live = args.values.live === true;
    return gatherRows(ctx, args.positionals[0], args.values.timeout as number | undefined, async (s, opts) => {
      const rows = (await s.request('usage', { live }, opts)).processes;
      // An agent from before --live answers every launch: the dead are dropped here too.
      return live ? rows.filter((u) => u.state !== 'dead') : rows;
    });
  },
  format(all, args) {
    const ok = all.filter((r) => r.ok);
    if (ok.length === 0) return all.length > 0 ? '' : args.values.live === true ? 'no processes running' : 'no processes launched yet';
    const rows: (string | number)[][] = [];
    for (const w of [...new Set(ok.map((r) => r.worker))]) {
      const mine = ok.filter((r) => r.worker === w);
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
      const sum = (f: (u: UsageInfo) => number, of: UsageInfo[] = mine): number => of.reduce((n, u) => n + f(u), 0);
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
    return table(['WORKER', 'PID', 'APP', 'STATE', 'CPU USER s', 'CPU SYS s', 'CPU%', 'RSS', 'MAX RSS'], rows);
  },
  failures: failureLines,
});
