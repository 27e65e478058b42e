import { applyCommand } from './apply.js';
import { benchCommand } from './bench.js';
import { queueCommand } from './queue.js';
import { restartCommand, scaleCommand } from './scale.js';
import { servicesCommand, statusCommand } from './status.js';
import { teardownCommand } from './teardown.js';
import { copyCommand } from './copy.js';
import { deleteCommand } from './delete.js';
import { drainCommand, undrainCommand } from './drain.js';
import { eventsCommand } from './events.js';
import { exitCommand } from './exit.js';
import { forgetCommand } from './forget.js';
import { helpCommand } from './help.js';
import { joinCommand } from './join.js';
import { killCommand } from './kill.js';
import { launchCommand } from './launch.js';
import { logsCommand } from './logs.js';
import { psCommand } from './ps.js';
import { stopCommand } from './stop.js';
import { tokenCommand } from './token.js';
import type { Command } from './types.js';
import { usageCommand } from './usage.js';
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
  applyCommand,
  statusCommand,
  servicesCommand,
  scaleCommand,
  restartCommand,
  queueCommand,
  teardownCommand,
  drainCommand,
  undrainCommand,
  eventsCommand,
  joinCommand,
  tokenCommand,
  forgetCommand,
  exitCommand,
];
