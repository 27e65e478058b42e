import { pino, type Logger } from 'pino';

export type { Logger };

/** The agent's structured log: JSON lines on stdout (the journal under systemd). */
export function createLogger(level: string): Logger {
  return pino({ name: 'drover-worker', level, base: { pid: process.pid } });
}
