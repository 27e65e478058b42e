import { mkdir, rm } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import { DroverError, ErrorCode } from '@drover/protocol';
import type { Logger } from './logger.js';

/**
 * The local control socket `drover` and `master exec` talk to: the operator API (a WebSocket
 * at /operator, the protocol of `@drover/protocol`'s control.ts) on a Unix socket in the state
 * dir, mode 0600, so only the master's user can drive it, and without a token.
 */
export function socketPath(stateDir: string): string {
  return path.join(stateDir, 'master.sock');
}

export async function startControlServer(
  stateDir: string,
  upgrade: (req: http.IncomingMessage, socket: Duplex, head: Buffer) => void,
  logger: Logger,
): Promise<{ close(): Promise<void> }> {
  const file = socketPath(stateDir);
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  if (await isListening(file)) {
    throw new DroverError(ErrorCode.BUSY, `a master is already running with state dir ${stateDir}; stop it or pick another --state-dir`);
  }
  await rm(file, { force: true });
  const server = http.createServer((_req, res) => {
    res.writeHead(426, { 'content-type': 'text/plain', connection: 'close' });
    res.end('this is the operator API of a drover master: use drover (or master exec)\n');
  });
  server.headersTimeout = 10_000;
  server.requestTimeout = 10_000;
  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => undefined);
    if (new URL(req.url ?? '/', 'http://local').pathname !== '/operator') {
      socket.end('HTTP/1.1 404 Not Found\r\nconnection: close\r\n\r\n');
      return;
    }
    upgrade(req, socket, head);
  });
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
        server.closeAllConnections();
        void rm(file, { force: true });
      }),
  };
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
