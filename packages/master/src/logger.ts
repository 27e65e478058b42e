import { pino, type Logger } from 'pino';

export type { Logger };

/** The master's log: to a file while the shell owns the terminal, else JSON lines on stdout. */
export function createLogger(level: string, file: string | null): Logger {
  const dest = file ? pino.destination({ dest: file, mkdir: true, sync: true }) : pino.destination({ dest: 1, sync: true });
  return pino({ name: 'drover-master', level, base: { pid: process.pid } }, dest);
}
