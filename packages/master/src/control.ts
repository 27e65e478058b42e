import { mkdir, rm } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import readline from 'node:readline';
import { DroverError, ErrorCode } from '@drover/protocol';
import type { CommandContext } from './commands/types.js';
import type { Logger } from './logger.js';
import { runLine } from './run-line.js';

/**
 * The local control socket `master exec` talks to: newline-delimited JSON over a Unix socket
 * in the state dir, mode 0600, so only the master's user can drive it.
 *   client → {"type":"run","line":"ps all","json":false,"cwd":"/home/me"}
 *   master → {"type":"out","text":"..."}*  then  {"type":"done","ok":true,"output":"..."}
 * Closing the connection cancels the running command.
 */
export type ControlRequest = { type: 'run'; line: string; json: boolean; cwd: string };
export type ControlReply =
  { type: 'out'; text: string } | { type: 'done'; ok: boolean; results: { ok: boolean; output: string; stderr?: string; thrown?: boolean }[] };

export function socketPath(stateDir: string): string {
  return path.join(stateDir, 'master.sock');
}

export async function startControlServer(
  stateDir: string,
  context: Omit<CommandContext, 'signal' | 'out' | 'interactive' | 'cwd'>,
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

function serve(socket: net.Socket, context: Omit<CommandContext, 'signal' | 'out' | 'interactive' | 'cwd'>, logger: Logger, onExit: () => void): void {
  const abort = new AbortController();
  socket.on('error', () => abort.abort());
  socket.on('close', () => abort.abort());
  const send = (reply: ControlReply): Promise<void> => {
    if (socket.destroyed || socket.write(`${JSON.stringify(reply)}\n`)) return Promise.resolve();
    return new Promise((resolve) => {
      socket.once('drain', resolve);
      socket.once('close', resolve);
    });
  };
  const lines = readline.createInterface({ input: socket });
  let busy: Promise<void> = Promise.resolve();
  lines.on('line', (raw) => {
    busy = busy.then(async () => {
      let req: ControlRequest;
      try {
        req = JSON.parse(raw) as ControlRequest;
        if (req.type !== 'run' || typeof req.line !== 'string') throw new Error('bad request');
      } catch {
        await send({ type: 'done', ok: false, results: [{ ok: false, thrown: true, output: 'error: malformed control request' }] });
        return;
      }
      logger.info({ line: req.line }, 'exec');
      const results = await runLine(
        req.line,
        {
          ...context,
          cwd: typeof req.cwd === 'string' ? req.cwd : process.cwd(),
          signal: abort.signal,
          interactive: false,
          out: { write: (text) => send({ type: 'out', text }), progress: () => undefined },
        },
        { json: req.json === true },
      );
      await send({
        type: 'done',
        ok: results.every((r) => r.ok),
        results: results.map((r) => ({ ok: r.ok, output: r.output, thrown: r.thrown === true, ...(r.stderr ? { stderr: r.stderr } : {}) })),
      });
      if (results.some((r) => r.exit)) socket.end(onExit);
    });
  });
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
