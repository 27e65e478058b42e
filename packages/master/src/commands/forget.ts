import { defineCommand } from './types.js';

export const forgetCommand = defineCommand<{ forgotten: string[] }>({
  name: 'forget',
  usage: 'forget WORKER|gone [--json]',
  summary: 'drop disconnected workers from the list (gone: all of them); they are dropped after an hour anyway',
  complete: ['worker'],
  minArgs: 1,
  maxArgs: 1,
  async run(args, ctx) {
    return { forgotten: ctx.fleet.forget(args.positionals[0]!) };
  },
  format(d) {
    return d.forgotten.length ? `forgot ${d.forgotten.join(', ')}` : 'no disconnected workers to forget';
  },
});
