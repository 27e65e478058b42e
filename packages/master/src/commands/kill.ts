import { formatSignalled, signalFailures, signalProcesses, type Signalled } from './signal-processes.js';
import { defineCommand } from './types.js';

export const killCommand = defineCommand<Signalled[]>({
  name: 'kill',
  usage: 'kill WORKERS PID|APP [--json]',
  summary: 'forced stop: SIGKILL to the process group (APP: each of its running processes)',
  complete: ['worker-or-all'],
  minArgs: 2,
  maxArgs: 2,
  async run(args, ctx) {
    const [target, which] = args.positionals as [string, string];
    return signalProcesses(ctx, target, which, 'kill', null);
  },
  format: formatSignalled,
  failures: signalFailures('SIGKILL'),
});
