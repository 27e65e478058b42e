import { deleteCommand, launchCommand } from './apps.js';
import { benchCommand } from './bench.js';
import { copyCommand } from './copy.js';
import { exitCommand, helpCommand } from './help.js';
import { forgetCommand } from './forget.js';
import { joinCommand } from './join.js';
import { logsCommand } from './logs.js';
import { killCommand, psCommand, stopCommand, usageCommand } from './processes.js';
import type { Command } from './types.js';
import { waitCommand } from './wait.js';
import { workersCommand } from './workers.js';

/** The one command table: the shell, master exec, help and completion all read it. */
export const commands: Command[] = [
  helpCommand,
  workersCommand,
  waitCommand,
  copyCommand,
  deleteCommand,
  launchCommand,
  psCommand,
  stopCommand,
  killCommand,
  usageCommand,
  logsCommand,
  benchCommand,
  joinCommand,
  forgetCommand,
  exitCommand,
];
