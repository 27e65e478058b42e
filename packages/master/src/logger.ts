import { renameSync, statSync } from 'node:fs';
import { pino, type Logger } from 'pino';

/** A master.log over this size is moved to master.log.1 at start (one generation kept). */
const ROTATE_BYTES = 16 * 1024 * 1024;

export type { Logger };

/** The master's log: to a file while the shell owns the terminal, else JSON lines on stdout. */
export function createLogger(level: string, file: string | null): Logger {
  if (file) rotate(file);
  const dest = file ? pino.destination({ dest: file, mkdir: true, sync: true, mode: 0o600 }) : pino.destination({ dest: 1, sync: true });
  return pino({ name: 'drover-master', level, base: { pid: process.pid } }, dest);
}

function rotate(file: string): void {
  try {
    if (statSync(file).size > ROTATE_BYTES) renameSync(file, `${file}.1`);
  } catch {
    // no log yet
  }
}
