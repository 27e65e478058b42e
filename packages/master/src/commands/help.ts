import { DroverError, ErrorCode } from '@drover/protocol';
import { table } from '../format.js';
import { defineCommand, type Completion } from './types.js';

type HelpData = {
  commands: { name: string; usage: string; summary: string; details?: string; options: string[]; complete: Completion[] }[];
};

export const helpCommand = defineCommand<HelpData>({
  name: 'help',
  usage: 'help [COMMAND] [--json]',
  summary: 'list commands, or show one command in full',
  complete: ['command'],
  maxArgs: 1,
  async run(args, ctx) {
    const name = args.positionals[0];
    const list = name ? ctx.commands.filter((c) => c.name === name) : ctx.commands;
    if (name && list.length === 0) throw new DroverError(ErrorCode.UNKNOWN_COMMAND, `no command "${name}"; type help for the list`);
    return {
      // options and complete let a client (drover's interactive shell) complete what it types.
      commands: list.map((c) => ({
        name: c.name,
        usage: c.usage,
        summary: c.summary,
        ...(c.details ? { details: c.details } : {}),
        options: Object.keys(c.options ?? {}),
        complete: c.complete ?? [],
      })),
    };
  },
  format(d, args) {
    if (args.positionals[0]) {
      const c = d.commands[0]!;
      return [`usage: ${c.usage}`, '', c.summary, ...(c.details ? ['', c.details] : [])].join('\n');
    }
    return `${table(
      ['COMMAND', 'WHAT IT DOES'],
      d.commands.map((c) => [c.name, c.summary]),
    )}\n\nEvery command takes --json. help COMMAND shows its usage. WORKERS is a name, a list (w1,w3) or all.`;
  },
});
