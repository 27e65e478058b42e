import { mkdir, rm } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import readline from 'node:readline';
import { DroverError, ErrorCode, type ControlReply } from '@drover/protocol';
import type { Logger } from './logger.js';
import { LOCAL_CALLER } from './operator-tokens.js';
import { operatorSession, type BaseContext } from './operator-session.js';

/**
 * The local control socket `master exec` talks to: the operator protocol of
 * `@drover/protocol`'s control.ts, newline-delimited JSON over a Unix socket in the state dir,
 * mode 0600, so only the master's user can drive it. Closing the connection cancels the
 * running command.
 */
export function socketPath(stateDir: string): string {
  return path.join(stateDir, 'master.sock');
}

export async function startControlServer(
  stateDir: string,
  context: BaseContext,
  logger: Logger,
  /** `exit` was run: the master should stop (after the reply is sent). */
  onExit: () => void,
): Promise<{ close(): Promise<void> }> {
  const file = socketPath(stateDir);
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  if (await isListening(file)) {
    throw new DroverError(ErrorCode.BUSY, `a master is already running with state dir ${stateDir}; stop it or pick another --state-dir`);
  }
  await rm(file, { force: true });
  const server = net.createServer((socket) => serve(socket, context, logger, onExit));
  const oldMask = process.umask(0o177);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(file, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } finally {
    process.umask(oldMask);
  }
  server.on('error', (err) => logger.error({ err }, 'control socket error'));
  return {
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        void rm(file, { force: true });
      }),
  };
}

function serve(socket: net.Socket, base: BaseContext, logger: Logger, onExit: () => void): void {
  const send = (reply: ControlReply): Promise<void> => {
    if (socket.destroyed || socket.write(`${JSON.stringify(reply)}\n`)) return Promise.resolve();
    return new Promise((resolve) => {
      socket.once('drain', resolve);
      socket.once('close', resolve);
    });
  };
  // The socket is 0600 in the master's state dir: whoever reaches it is the master's own user.
  const session = operatorSession({ base, caller: LOCAL_CALLER, remote: false, logger, send, onExit: () => socket.end(onExit) });
  socket.on('error', () => session.close());
  socket.on('close', () => session.close());
  readline.createInterface({ input: socket }).on('line', (raw) => session.receive(raw));
}

function isListening(file: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(file);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}
