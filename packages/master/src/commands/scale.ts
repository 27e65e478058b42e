import { DroverError, ErrorCode } from '@drover/protocol';
import type { ServiceView } from '../services/manager.js';
import { wholeNumber } from './options.js';
import { defineCommand } from './types.js';

/** SERVICE/PROGRAM, or SERVICE alone where `program` is optional. */
export function serviceProgram(text: string, programOptional: boolean): { service: string; program: string | null } {
  const [service, program, more] = text.split('/');
  if (!service || more !== undefined || (!programOptional && !program)) {
    throw new DroverError(ErrorCode.BAD_ARGUMENTS, `expected SERVICE/PROGRAM${programOptional ? ' or SERVICE' : ''}, got "${text}"`);
  }
  return { service, program: program || null };
}

export const scaleCommand = defineCommand<ServiceView>({
  name: 'scale',
  usage: 'scale SERVICE/PROGRAM N [--json]',
  summary: 'run N instances of a program: new ones are placed (or queued), extra ones stopped',
  minArgs: 2,
  maxArgs: 2,
  async run(args, ctx) {
    const { service, program } = serviceProgram(args.positionals[0]!, false);
    let n: number;
    try {
      n = wholeNumber(0, 10_000)(args.positionals[1]!);
    } catch (err) {
      throw new DroverError(ErrorCode.BAD_ARGUMENTS, `scale: N must be ${(err as Error).message}, got "${args.positionals[1]}"`);
    }
    return ctx.services.scale(service, program!, n, ctx.signal);
  },
  format: (s) =>
    s.programs.map((p) => `${s.name}/${p.name}: ${p.running} of ${p.desired} running${p.pending.length ? `, ${p.pending.length} pending` : ''}`).join('\n'),
});

export const restartCommand = defineCommand<ServiceView>({
  name: 'restart',
  usage: 'restart SERVICE[/PROGRAM] [--json]',
  summary: 'restart instances one at a time: stop, start, wait until healthy, then the next',
  minArgs: 1,
  maxArgs: 1,
  async run(args, ctx) {
    const { service, program } = serviceProgram(args.positionals[0]!, true);
    return ctx.services.restart(service, program, ctx.signal);
  },
  format: (s) => s.programs.map((p) => `${s.name}/${p.name}: ${p.running} of ${p.desired} running`).join('\n'),
});
