import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, openSync, closeSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Where the worker agent is: $DROVER_WORKER_CLI, else the sibling package in this checkout,
 * else `worker` on PATH. (The master does not import the worker package; it only starts it.)
 */
export function findWorkerCommand(): string[] {
  if (process.env.DROVER_WORKER_CLI) return [process.execPath, process.env.DROVER_WORKER_CLI];
  const sibling = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../worker/dist/worker.mjs');
  if (existsSync(sibling)) return [process.execPath, sibling];
  return ['worker'];
}

export interface DevCluster {
  names: string[];
  logDir: string;
  stop(): Promise<void>;
}

/** Starts N local workers (w1..wN), each its own process with its own state dir, for `master --dev N`. */
export function startDevCluster(opts: {
  count: number;
  port: number;
  token: string;
  stateDir: string;
  heartbeatMs: number;
  /** The master's TLS, with the pin of its self-signed certificate; null without TLS. */
  tls: { fingerprint?: string } | null;
}): DevCluster {
  const [cmd, ...prefix] = findWorkerCommand() as [string, ...string[]];
  const children: ChildProcess[] = [];
  const names: string[] = [];
  const logDir = path.join(opts.stateDir, 'dev');
  for (let i = 1; i <= opts.count; i++) {
    const name = `w${i}`;
    const dir = path.join(logDir, name);
    mkdirSync(dir, { recursive: true });
    const log = openSync(path.join(dir, 'worker.log'), 'a');
    const child = spawn(
      cmd,
      [
        ...prefix,
        '--master',
        `${opts.tls ? 'wss://' : ''}127.0.0.1:${opts.port}`,
        ...(opts.tls?.fingerprint ? ['--fingerprint', opts.tls.fingerprint] : []),
        '--name',
        name,
        '--state-dir',
        dir,
        '--heartbeat-ms',
        String(opts.heartbeatMs),
        '--exit-with-stdin',
      ],
      // stdin is a pipe that closes when the master dies, however it dies: the worker then exits too.
      // One malloc arena, as the installed worker runs (see install.sh).
      { stdio: ['pipe', log, log], env: { MALLOC_ARENA_MAX: '1', ...process.env, DROVER_TOKEN: opts.token } },
    );
    closeSync(log);
    child.on('error', () => undefined);
    children.push(child);
    names.push(name);
  }
  return {
    names,
    logDir,
    stop: async () => {
      await Promise.all(
        children.map(
          (c) =>
            new Promise<void>((resolve) => {
              if (c.exitCode !== null || c.signalCode !== null) return resolve();
              c.once('exit', () => resolve());
              c.kill('SIGTERM');
              setTimeout(() => (c.kill('SIGKILL'), resolve()), 3000).unref();
            }),
        ),
      );
    },
  };
}
