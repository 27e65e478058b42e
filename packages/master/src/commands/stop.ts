import { seconds } from './options.js';
import { formatSignalled, signalFailures, signalProcesses, type Signalled } from './signal-processes.js';
import { defineCommand } from './types.js';

export const stopCommand = defineCommand<Signalled[]>({
  name: 'stop',
  usage: 'stop WORKERS PID|APP [--timeout S] [--json]',
  summary: 'graceful stop: SIGINT to the process group (APP: each of its running processes); --timeout S escalates to SIGKILL',
  details:
    'Waits for the process to end and reports how. Without --timeout it waits up to 10 s and\nleaves a process that ignores SIGINT running. With --timeout the worker sends SIGKILL after S\nseconds even if this command is cancelled or the master goes away.',
  options: { timeout: { type: 'string', parse: seconds({ max: 24 * 3600 }) } },
  complete: ['worker-or-all'],
  minArgs: 2,
  maxArgs: 2,
  async run(args, ctx) {
    const [target, which] = args.positionals as [string, string];
    return signalProcesses(ctx, target, which, 'stop', (args.values.timeout as number | undefined) ?? null);
  },
  format: formatSignalled,
  failures: signalFailures('SIGINT'),
});
