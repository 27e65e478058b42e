import { exitCommand, helpCommand } from './help.js';
import { joinCommand } from './join.js';
import type { Command } from './types.js';
import { waitCommand } from './wait.js';
import { workersCommand } from './workers.js';

/** The one command table: the shell, master exec, help and completion all read it. */
export const commands: Command[] = [helpCommand, workersCommand, waitCommand, joinCommand, exitCommand];
