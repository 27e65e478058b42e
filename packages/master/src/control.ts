import { mkdir, rm } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import readline from 'node:readline';
import { CONTROL_VERSION, DroverError, ErrorCode, parseControlRequest, unreachable, type ControlReply, type ControlRun } from '@drover/protocol';
import type { CommandContext } from './commands/types.js';
import type { Logger } from './logger.js';
import { runLine } from './run-line.js';

/**
 * The local control socket `master exec` talks to: the operator protocol of
 * `@drover/protocol`'s control.ts, newline-delimited JSON over a Unix socket in the state dir,
 * mode 0600, so only the master's user can drive it. Closing the connection cancels the
 * running command.
 */
export function socketPath(stateDir: string): string {
  return path.join(stateDir, 'master.sock');
}

type BaseContext = Omit<CommandContext, 'signal' | 'out' | 'interactive' | 'cwd'>;

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

function serve(socket: net.Socket, context: BaseContext, logger: Logger, onExit: () => void): void {
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
      const parsed = parseControlRequest(raw);
      if (!parsed.ok) {
        await send({ v: CONTROL_VERSION, type: 'error', error: { code: ErrorCode.BAD_REQUEST, message: parsed.error } });
        return;
      }
      const request = parsed.message;
      switch (request.type) {
        case 'run':
          return run(request);
        default:
          return unreachable(request.type);
      }
    });
  });

  const run = async (req: ControlRun): Promise<void> => {
    logger.info({ line: req.line }, 'exec');
    const results = await runLine(
      req.line,
      {
        ...context,
        cwd: req.cwd,
        signal: abort.signal,
        interactive: false,
        out: { write: (text) => send({ v: CONTROL_VERSION, type: 'out', text }), progress: () => undefined },
      },
      { json: req.json },
    );
    await send({
      v: CONTROL_VERSION,
      type: 'done',
      ok: results.every((r) => r.ok),
      results: results.map(({ exit: _exit, ...outcome }) => outcome),
    });
    if (results.some((r) => r.exit)) socket.end(onExit);
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
