import { writeSync } from 'node:fs';
import { pino, type Logger } from 'pino';
import { LineSink } from '@drover/protocol';

export type { Logger };

/**
 * The agent's structured log: JSON lines on stdout (the journal under systemd). A stdout that
 * cannot take a line (a full disk behind a redirect, a pipe that would block) loses that line,
 * counted, instead of hanging the agent in a retry loop where it would ignore even SIGTERM.
 */
export function createLogger(level: string): Logger {
  const sink = new LineSink((line) => void writeSync(1, line), 'drover-worker');
  return pino({ name: 'drover-worker', level, base: { pid: process.pid } }, sink);
}
