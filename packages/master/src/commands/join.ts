import type { JoinInfo } from '../join-lines.js';
import { defineCommand } from './types.js';

export const joinCommand = defineCommand<JoinInfo>({
  name: 'join',
  usage: 'join [--json]',
  summary: 'show the command a VM runs to join this master as a worker',
  maxArgs: 0,
  async run(_args, ctx) {
    return ctx.joinInfo();
  },
  format(d) {
    const lines = [];
    if (d.installCommand) lines.push('On a fresh Linux VM (installs Node if needed, a systemd service, and joins):', `  ${d.installCommand}`, '');
    lines.push('Where the worker is installed already:', `  ${d.workerCommand}`);
    return lines.join('\n');
  },
});
