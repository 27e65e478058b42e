import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach } from 'vitest';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const MASTER_CLI = path.join(ROOT, 'packages/master/dist/cli.js');
export const WORKER_CLI = path.join(ROOT, 'packages/worker/dist/worker.mjs');
export const TOKEN = 'test-token-0123456789abcdef';

type Cleanup = () => Promise<void> | void;
const perTest: Cleanup[] = [];
const perFile: Cleanup[] = [];

/** Registers teardown work that runs after the current test (or, with 'file', after the file), last first. */
export function onCleanup(fn: Cleanup, scope: 'test' | 'file' = 'test'): void {
  (scope === 'test' ? perTest : perFile).push(fn);
}

async function drain(list: Cleanup[]): Promise<void> {
  while (list.length) {
    try {
      await list.pop()!();
    } catch {
      // keep tearing down
    }
  }
}

afterEach(() => drain(perTest));
afterAll(() => drain(perFile));

export function tempDir(prefix = 'drover-', scope: 'test' | 'file' = 'test'): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  onCleanup(() => rmSync(dir, { recursive: true, force: true }), scope);
  return dir;
}

export interface Proc {
  child: ChildProcess;
  pid: number;
  stdout(): string;
  stderr(): string;
  /** Resolves with the exit code (or signal) once the process has ended. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

export function startProcess(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; stdin?: 'pipe' | 'ignore' } = {}): Proc {
  const child = spawn(cmd, args, { stdio: [opts.stdin ?? 'ignore', 'pipe', 'pipe'], env: { ...process.env, ...opts.env } });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  const proc: Proc = {
    child,
    pid: child.pid!,
    stdout: () => out,
    stderr: () => err,
    exited,
    kill: async (signal = 'SIGTERM') => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
  onCleanup(() => proc.kill('SIGKILL'));
  return proc;
}

/**
 * Polls `check` until it returns a truthy value; fails with `what` after `timeoutMs`. Between
 * checks it waits `everyMs`, or as long as the last check took if that was longer: a check that
 * starts a client process (~0.1 s of CPU) then keeps at most half a core busy, not all of one,
 * on a machine whose two cores every test file shares.
 */
export async function waitFor<T>(check: () => T | Promise<T>, what: string, timeoutMs = 10_000, everyMs = 25): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    const started = Date.now();
    try {
      const value = await check();
      if (value) return value;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline)
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${last instanceof Error ? last.message : JSON.stringify(last)})` : ''}`,
      );
    await new Promise((r) => setTimeout(r, Math.max(everyMs, Date.now() - started)));
  }
}

export interface Master extends Proc {
  port: number;
  stateDir: string;
  address: string;
  exec(line: string | null, opts?: { json?: boolean; input?: string }): Promise<ExecResult>;
  execJson<T = unknown>(line: string): Promise<T>;
  /** The first entry of a command whose JSON is a list of per-worker entries (launch, stop, kill, delete). */
  execFirst<T = unknown>(line: string): Promise<T>;
}

export interface ExecResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Starts the built master on 127.0.0.1 with an ephemeral port, no shell (unless stdin is piped).
 * Plain ws unless `tls` (most tests are about other things; tls.test.ts covers the default, TLS).
 */
export async function startMaster(
  opts: { heartbeatMs?: number; stateDir?: string; port?: number; args?: string[]; stdin?: 'pipe'; tls?: boolean; env?: NodeJS.ProcessEnv } = {},
): Promise<Master> {
  const stateDir = opts.stateDir ?? tempDir('drover-master-');
  const args = [
    MASTER_CLI,
    '--host',
    '127.0.0.1',
    '--port',
    String(opts.port ?? 0),
    '--token',
    TOKEN,
    '--state-dir',
    stateDir,
    '--heartbeat-ms',
    String(opts.heartbeatMs ?? 200),
    ...(opts.stdin === 'pipe' ? [] : ['--no-shell']),
    ...(opts.tls ? [] : ['--no-tls']),
    ...(opts.args ?? []),
  ];
  const proc = startProcess(process.execPath, args, { stdin: opts.stdin ?? 'ignore', env: opts.env });
  const m = await waitFor(
    () => /listening on [^ ]+:(\d+)/.exec(proc.stdout()) ?? (proc.child.exitCode !== null ? Promise.reject(new Error(proc.stderr())) : null),
    'the master to listen',
  );
  const port = Number(m[1]);
  return Object.assign(proc, {
    port,
    stateDir,
    address: `127.0.0.1:${port}`,
    // From this process but where the client program itself is what counts: lines on stdin, and
    // a line the client refuses before it sends it (262,144 characters at most).
    exec: (line: string | null, o: { json?: boolean; input?: string } = {}) =>
      line === null || o.input !== undefined || line.length > 200_000 ? exec(stateDir, line, o) : execHere(stateDir, line, o.json ?? false),
    execJson: async <T>(line: string): Promise<T> => {
      const r = await execHere(stateDir, line);
      if (r.code !== 0) throw new Error(`exec "${line}" failed (${r.code}): ${r.stdout}${r.stderr}`);
      return JSON.parse(r.stdout) as T;
    },
    execFirst: async <T>(line: string): Promise<T> => {
      const r = await execHere(stateDir, line);
      if (r.code !== 0) throw new Error(`exec "${line}" failed (${r.code}): ${r.stdout}${r.stderr}`);
      const list = JSON.parse(r.stdout) as T[];
      if (!Array.isArray(list) || list.length === 0) throw new Error(`exec "${line}" printed no entries: ${r.stdout}`);
      return list[0]!;
    },
  });
}

/**
 * What `master exec LINE [--json]` prints and exits with, from a connection this process makes
 * to the master's control socket (the client's own transport, client-transport.ts, and its
 * printing, runLine in exec-client.ts): for the many commands a test runs to set up, to poll
 * and to check answers. A client process each was ~0.2 s of CPU, ~130 s of a suite run whose
 * two cores every test file shares. The client program itself (its flags, stdin, signals,
 * its refusal of an over-long line) is tested through `exec`, which starts it.
 */
export async function execHere(stateDir: string, line: string, json = true): Promise<ExecResult> {
  const { connectLocal } = await import('../../packages/master/dist/client-transport.js');
  const connection = await connectLocal(stateDir);
  const failed = (code: string, message: string, exitCode: number): ExecResult =>
    json
      ? { code: exitCode, stdout: `${JSON.stringify({ error: { code, message } })}\n`, stderr: '' }
      : { code: exitCode, stdout: '', stderr: `master exec: ${message}\n` };
  if ('exitCode' in connection) return failed(connection.code, connection.message, connection.exitCode);
  const { runLine } = await import('../../packages/master/dist/exec-client.js');
  const printed = { stdout: '', stderr: '' };
  try {
    const outcome = await runLine(connection, line, json, (to, text) => void (printed[to === 'stderr' ? 'stderr' : 'stdout'] += text));
    if ('failure' in outcome) return failed(outcome.failure.code, outcome.failure.message, 2);
    return { code: outcome.ok ? 0 : 1, ...printed };
  } finally {
    await connection.close();
  }
}

/** Runs `master exec` as its own process, as a script would. */
export function exec(stateDir: string, line: string | null, opts: { json?: boolean; input?: string } = {}): Promise<ExecResult> {
  const args = [MASTER_CLI, 'exec', ...(line === null ? [] : [line]), '--state-dir', stateDir, ...(opts.json ? ['--json'] : [])];
  return new Promise((resolve) => {
    const child = spawn(process.execPath, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    // 'close', not 'exit': on a loaded machine the exit can come before the last of the output is read.
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(opts.input ?? '');
  });
}

export interface Worker extends Proc {
  name: string;
  stateDir: string;
}

/** Kills every process whose executable lives under `dir`: apps a test launched outlive their worker by design. */
export function killAppsUnder(dir: string): void {
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      if (readlinkSync(`/proc/${pid}/exe`).startsWith(`${dir}/`)) process.kill(Number(pid), 'SIGKILL');
    } catch {
      // gone, or not ours to read
    }
  }
}

export function startWorker(
  master: { address: string },
  opts: { name: string; token?: string | null; stateDir?: string; heartbeatMs?: number; args?: string[]; env?: NodeJS.ProcessEnv },
): Worker {
  const stateDir = opts.stateDir ?? tempDir(`drover-${opts.name}-`);
  onCleanup(() => killAppsUnder(stateDir));
  const proc = startProcess(
    process.execPath,
    [
      WORKER_CLI,
      '--master',
      master.address,
      '--name',
      opts.name,
      // token: null leaves the token to the environment (DROVER_TOKEN) or --token-file in args.
      ...(opts.token === null ? [] : ['--token', opts.token ?? TOKEN]),
      '--state-dir',
      stateDir,
      '--heartbeat-ms',
      String(opts.heartbeatMs ?? 200),
      ...(opts.args ?? []),
    ],
    { env: opts.env },
  );
  return Object.assign(proc, { name: opts.name, stateDir });
}

export interface WorkerRow {
  name: string;
  status: string;
  address: string;
  lastHeartbeatMs: number;
  cpus: number;
  memoryBytes: number;
}

/** Starts a master and `n` workers (w1..wn) and waits until all are available. */
export async function startCluster(n: number, opts: { heartbeatMs?: number } = {}): Promise<{ master: Master; workers: Worker[] }> {
  const master = await startMaster({ heartbeatMs: opts.heartbeatMs });
  const workers = Array.from({ length: n }, (_, i) => startWorker(master, { name: `w${i + 1}`, heartbeatMs: opts.heartbeatMs }));
  try {
    await waitForAvailable(master, n);
  } catch (err) {
    // What each worker said last: a cluster that once did not come up in CI said nothing of why.
    const said = workers.map((w) => {
      const state = w.child.exitCode === null && w.child.signalCode === null ? 'running' : `ended (${w.child.exitCode ?? w.child.signalCode})`;
      const last = `${w.stdout()}${w.stderr()}`.trim().split('\n').slice(-3).join(' | ');
      return `${w.name}, ${state}: ${last || 'nothing'}`;
    });
    throw new Error(`${(err as Error).message}\n${said.join('\n')}`);
  }
  return { master, workers };
}

/**
 * Waits for n available workers and returns the workers list. The master does the waiting
 * (`wait N`, then `workers`, in one request from this process: execHere): polling `workers` started a client process
 * every few tens of milliseconds, ~0.13 s of CPU each, four or five per cluster started.
 */
export async function waitForAvailable(master: Master, n: number): Promise<WorkerRow[]> {
  return waitFor(async () => {
    const r = await execHere(master.stateDir, `wait ${n} --timeout 10; workers`);
    if (r.code !== 0) throw new Error(`${r.stdout}${r.stderr}`.trim());
    const rows = JSON.parse(r.stdout.trimEnd().split('\n').pop()!) as WorkerRow[];
    return rows.filter((w) => w.status === 'available').length >= n ? rows : null;
  }, `${n} available workers`);
}

/** The pid of `pid`'s parent, from /proc (the fields after the command's closing parenthesis). */
export function parentOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
}

/** True while `pid` runs: a zombie (ended, waiting for a parent that may never reap it) is not alive. */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** Mounts a tmpfs of `mib` MiB at a new temp folder (root only); null where mounting is not allowed. */
export function mountTmpfs(mib: number): string | null {
  const dir = tempDir('drover-tmpfs-');
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${mib}m`, 'tmpfs', dir], { stdio: 'pipe' });
  } catch {
    return null;
  }
  onCleanup(() => void execFileSync('umount', ['-l', dir], { stdio: 'ignore' }));
  return dir;
}

/** Whether this process may mount a tmpfs (root, outside a restricted container): decided once, for skipIf. */
export const CAN_MOUNT: boolean = (() => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'drover-probe-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', dir], { stdio: 'pipe' });
    execFileSync('umount', [dir], { stdio: 'pipe' });
    return true;
  } catch {
    return false;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
})();
