import { failureLines, fanOut, type PerWorker } from './fan-out.js';
import { appName } from './options.js';
import { defineCommand } from './types.js';

type Deleted = PerWorker<{ app: string; removed: string[]; stopped: number[] }>;

export const deleteCommand = defineCommand<Deleted[]>({
  name: 'delete',
  usage: 'delete WORKERS APP [--force] [--json]',
  summary: "remove an app's executable and libraries from workers (--force stops its processes first)",
  options: { force: { type: 'boolean' } },
  complete: ['worker-or-all'],
  minArgs: 2,
  maxArgs: 2,
  async run(args, ctx) {
    const [target, name] = args.positionals as [string, string];
    const app = appName(name);
    const force = args.values.force === true;
    return fanOut(ctx, target, async (s, signal) => ({ app, ...(await s.request('app-delete', { app, force }, { signal, timeoutMs: 60_000 })) }));
  },
  format(results) {
    return results
      .flatMap((r) =>
        r.ok ? [`${r.worker}: deleted ${r.app} (${r.removed.join(', ')})${r.stopped.length ? `; stopped pid ${r.stopped.join(', ')} first` : ''}`] : [],
      )
      .join('\n');
  },
  failures: failureLines,
});
