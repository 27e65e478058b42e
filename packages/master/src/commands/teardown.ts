import { defineCommand } from './types.js';

export const teardownCommand = defineCommand<{ service: string; stopped: { id: string; program: string; worker: string }[] }>({
  name: 'teardown',
  usage: 'teardown SERVICE [--json]',
  summary: 'stop every instance of a service (its stop signal, then SIGKILL), remove its files, forget it',
  minArgs: 1,
  maxArgs: 1,
  async run(args, ctx) {
    return ctx.services.teardown(args.positionals[0]!, ctx.signal);
  },
  format: (d) => [...d.stopped.map((s) => `stopped ${s.id} on ${s.worker}`), `service ${d.service} is gone`].join('\n'),
});
