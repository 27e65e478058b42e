import { closeSync, fstatSync, openSync, renameSync, writeSync } from 'node:fs';
import { pino, type Logger } from 'pino';
import { LineSink } from '@drover/protocol';

/** master.log is moved to master.log.1 once over this size, at start and while running. */
export const ROTATE_BYTES = 16 * 1024 * 1024;

export type { Logger };

/**
 * The master's log: to master.log (mode 0600, rotated by size as it grows) while the shell owns
 * the terminal, else JSON lines on stdout. Nothing it writes can crash or hang the master: a
 * full disk drops lines and counts them (LineSink).
 */
export function createLogger(level: string, file: string | null, rotateBytes = ROTATE_BYTES): Logger {
  const sink = new LineSink(file ? rotatingWriter(file, rotateBytes) : (line) => void writeSync(1, line), 'drover-master');
  return pino({ name: 'drover-master', level, base: { pid: process.pid } }, sink);
}

/** Appends to `file`, and when it passes `limit` bytes moves it to `file.1` (one generation) and starts anew. */
function rotatingWriter(file: string, limit: number): (line: string) => void {
  let fd = -1;
  let size = 0;
  const open = (): void => {
    fd = openSync(file, 'a', 0o600);
    size = fstatSync(fd).size;
  };
  const rotate = (): void => {
    if (fd >= 0) closeSync(fd);
    fd = -1;
    renameSync(file, `${file}.1`);
  };
  try {
    open();
    if (size > limit) {
      rotate();
      open();
    }
  } catch {
    fd = -1; // the first write tries again, and counts the line if it cannot
  }
  return (line) => {
    if (fd < 0) open();
    size += writeSync(fd, line);
    if (size > limit) {
      rotate();
      open();
    }
  };
}
