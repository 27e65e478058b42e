import { defineCommand } from './types.js';

type Drained = { worker: string; moved: { id: string; to: string }[]; stayed: { id: string; reason: string }[] };

export const drainCommand = defineCommand<Drained>({
  name: 'drain',
  usage: 'drain WORKER [--json]',
  summary: "move a worker's service instances elsewhere (each healthy there before it stops here); no new placements there",
  details:
    'For maintenance: the worker stays connected; its direct launches are not touched. workers shows it\ndraining, then drained. undrain WORKER lets placements come back.',
  complete: ['worker'],
  minArgs: 1,
  maxArgs: 1,
  async run(args, ctx) {
    return ctx.services.drain(args.positionals[0]!, ctx.signal);
  },
  format: (d) =>
    [
      ...d.moved.map((m) => `moved ${m.id} from ${d.worker} to ${m.to}`),
      `${d.worker} ${d.stayed.length ? 'is draining' : 'is drained'}: ${d.moved.length} instance(s) moved${d.stayed.length ? `, ${d.stayed.length} could not move` : ''}`,
    ].join('\n'),
  failures: (d) => d.stayed.map((s) => `${s.id} stays on ${d.worker}: ${s.reason}`),
});

export const undrainCommand = defineCommand<{ worker: string; wasDrained: boolean }>({
  name: 'undrain',
  usage: 'undrain WORKER [--json]',
  summary: 'let service instances be placed on a drained worker again',
  complete: ['worker'],
  minArgs: 1,
  maxArgs: 1,
  async run(args, ctx) {
    ctx.fleet.find(args.positionals[0]!);
    return ctx.services.undrain(args.positionals[0]!);
  },
  format: (d) => (d.wasDrained ? `${d.worker} takes new placements again` : `${d.worker} was not drained`),
});
