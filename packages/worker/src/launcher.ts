import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, constants, openSync, renameSync, rmSync, statfsSync } from 'node:fs';
import path from 'node:path';
import { DroverError, ErrorCode, formatBytes } from '@drover/protocol';
import { checkLibraries } from './libraries.js';
import { DEFAULT_LOG_POLICY, SparePool, pipeOf, takeFifo, type LogPolicy } from './log-pump.js';
import { readCoreLimitSync, readStatSync } from './proc.js';
import type { ProcessRecord } from './process-table.js';
import { ownChild, type Child, type SpawnHelper } from './spawn-helper.js';
import { fileIn, type AppStore } from './store.js';

/** What of the agent's own environment an app gets; nothing else (the join token least of all). */
const PASSED_THROUGH = ['PATH', 'HOME', 'LANG', 'LC_ALL', 'TZ', 'USER', 'LOGNAME', 'SHELL', 'TMPDIR'];
/** Below this much free space on the state disk, a launch is refused (its log and record need room). */
const MIN_FREE_BYTES = 1024 * 1024;
const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/**
 * The environment of a launched app: a few harmless variables of the agent's, the user's own
 * (`launch --env K=V`), and drover's (DROVER_APP, DROVER_WORKER, LD_LIBRARY_PATH with the app's
 * lib/ first). Built from scratch, so no secret of the agent's can leak into it.
 */
export function appEnvironment(opts: {
  app: string;
  workerName: string;
  libDir: string;
  user: Record<string, string>;
  agentEnv?: NodeJS.ProcessEnv;
}): NodeJS.ProcessEnv {
  const agent = opts.agentEnv ?? process.env;
  const env: NodeJS.ProcessEnv = {};
  for (const key of PASSED_THROUGH) if (agent[key] !== undefined) env[key] = agent[key];
  env.PATH ??= DEFAULT_PATH;
  Object.assign(env, opts.user);
  env.LD_LIBRARY_PATH = [opts.libDir, opts.user.LD_LIBRARY_PATH ?? agent.LD_LIBRARY_PATH].filter(Boolean).join(':');
  env.DROVER_APP = opts.app;
  env.DROVER_WORKER = opts.workerName;
  return env;
}

export interface Started {
  child: Child;
  record: ProcessRecord;
  /** The agent's read end of the process's log pipe, opened before the spawn (see LogPump.start). */
  pipeFd?: number;
}

/**
 * Starts apps: checks once per copied version that the executable runs here and its libraries
 * resolve, then spawns it in its own process group, stdin from /dev/null and stdout and stderr
 * appended to logs/APP.PID.log.
 */
export class Launcher {
  /** App versions whose executable and libraries were checked: the checks run once per copy. */
  private readonly checked = new Set<string>();

  constructor(
    private readonly store: AppStore,
    private readonly workerName: string,
    /** Logs go through pipes by default (worker --log-max above 0): make spare ones now. */
    pipes = true,
    /** Forks for the agent (see SpawnHelper); without one, or while it cannot, the agent forks. */
    private readonly helper: SpawnHelper | null = null,
  ) {
    // Pipes by the 64: each refill runs mkfifo, which forks the agent (~4 ms of its loop, then its
    // next work slowed by the fork's copy-on-write faults); a FIFO costs an inode and no data.
    this.fifos = new SparePool(store.logsDir, 'pipe', 128, pipes);
    this.logs = new SparePool(store.logsDir, 'log', 32);
  }

  /** Each launch's pipe and log are made ahead of it and renamed into place (see SparePool). */
  private readonly fifos: SparePool;
  private readonly logs: SparePool;
  /** Tells apart the names of launches begun in the same millisecond (a spawn through the helper awaits). */
  private startingSeq = 0;

  async start(app: string, args: string[], userEnv: Record<string, string> = {}, log: LogPolicy = DEFAULT_LOG_POLICY): Promise<Started> {
    const manifest = await this.store.requireManifest(app);
    // The version folder itself, not the `current` link: a copy made while the app runs must not
    // change the files (libraries loaded later, its working folder) under it.
    const cwd = (await this.store.versionDir(app))!;
    const exe = fileIn(cwd, { kind: 'exe', name: manifest.executable });
    const env = appEnvironment({ app, workerName: this.workerName, libDir: path.join(cwd, 'lib'), user: userEnv });
    // Once per copied version: is it runnable here, and does the loader find every library?
    // A missing library is then an error naming it, not a process that dies at once.
    const version = `${app}:${manifest.updatedAt}:${manifest.files.map((f) => f.sha256).join()}`;
    if (!this.checked.has(version)) {
      await this.store.checkExecutable(exe, app);
      await checkLibraries(exe, env, this.workerName);
      this.checked.add(version);
    }

    // A launch that could not be recorded must not start: refuse on a full state disk.
    const free = freeBytesSync(this.store.logsDir);
    if (free !== null && free < MIN_FREE_BYTES) {
      throw new DroverError(ErrorCode.NO_SPACE, `the state disk of ${this.workerName} is full (${formatBytes(free)} free); nothing was started`);
    }
    // Sync on purpose: open, close and rename touch no file data and cost microseconds, where
    // each thread-pool round trip would add a tick to every launch.
    // Rotated logs: the output goes into a pipe the agent carries into the log (log-pump.ts);
    // otherwise straight into the log file.
    const piped = log.maxBytes > 0;
    const starting = `${Date.now()}${String(this.startingSeq++ % 1000).padStart(3, '0')}`;
    const startingLog = path.join(this.store.logsDir, `${app}.starting-${process.pid}-${starting}.${piped ? 'pipe' : 'log'}`);
    if (piped) takeFifo(this.fifos, startingLog);
    else this.logs.takeInto(startingLog);
    // Our read end first: a pipe nobody has open drops what is in it, and a short-lived process
    // may be done before the pump starts.
    const pipeFd = piped ? openSync(startingLog, constants.O_RDONLY | constants.O_NONBLOCK) : undefined;
    const failed = (code: string, message: string, cause?: Error): DroverError => {
      this.checked.delete(version);
      rmSync(startingLog, { force: true });
      if (pipeFd !== undefined) closeSync(pipeFd);
      return new DroverError(
        ErrorCode.EXEC_FAILED,
        `could not start ${manifest.executable} on ${this.workerName}: ${code} (${message})`,
        cause ? { cause } : undefined,
      );
    };
    let child: Child;
    const helped = await this.helper?.spawn({ exe, args, cwd, env, out: startingLog, pipe: piped });
    if (helped?.ok === false) throw failed(helped.code, helped.message);
    if (helped?.ok) child = helped.child;
    else {
      // No helper: the agent forks (the child's stdout opened here and passed down).
      const fd = piped ? openSync(startingLog, constants.O_RDWR) : openSync(startingLog, 'a', 0o640);
      let own: ChildProcess;
      try {
        own = spawn(exe, args, { cwd, env, detached: true, stdio: ['ignore', fd, fd] });
      } finally {
        closeSync(fd);
      }
      if (own.pid === undefined) {
        // An 'error' before 'spawn' means 'exit' never comes (execa's exit-async.js).
        const err = await new Promise<Error>((resolve) => own.once('error', resolve));
        throw failed((err as NodeJS.ErrnoException).code ?? 'error', err.message, err);
      }
      own.on('error', () => undefined);
      own.unref();
      child = ownChild(own as ChildProcess & { pid: number });
    }
    const pid = child.pid;
    // The log is named by pid at once: a crashed agent finds its orphans by these names.
    const logPath = path.join(this.store.logsDir, `${app}.${pid}.log`);
    renameSync(startingLog, piped ? pipeOf(logPath) : logPath);
    const now = Date.now();
    const record: ProcessRecord = {
      pid,
      app,
      executable: manifest.executable,
      args,
      startedAt: new Date(now).toISOString(),
      startedAtMs: now,
      // From the helper, which read /proc before it could reap the process; else read by
      // settle(), once the launch has answered.
      startTicks: helped?.ok ? helped.startTicks : null,
      logPath,
      exit: null,
      adopted: false,
      coreLimit: helped?.ok ? helped.coreLimit : null,
      signalled: null,
      usage: { cpuUserSeconds: 0, cpuSystemSeconds: 0, cpuPercent: 0, rssBytes: 0, maxRssBytes: 0, sampledAt: null },
      ...(piped ? { log } : {}),
    };
    return { child, record, ...(pipeFd !== undefined ? { pipeFd } : {}) };
  }

  /**
   * What a launch needs once it has answered, off the way to the pid (the supervisor calls it
   * first thing after the reply, before any I/O): the log the pump carries the pipe into (it
   * opens it to append, making it only if this could not), and what /proc tells of the process:
   * its start time (which tells it from a later process with its pid) and its core-dump limit.
   * The process is not reaped before then (that takes a turn of the event loop), so its /proc
   * entry is there (a zombie's too).
   */
  settle(record: ProcessRecord): void {
    if (record.log) this.logs.takeInto(record.logPath);
    // Told by the spawn helper already (here the process may be reaped and gone).
    if (record.startTicks !== null) return;
    const stat = readStatSync(record.pid);
    const coreLimit = readCoreLimitSync(record.pid);
    record.startTicks = stat?.startTicks ?? null;
    record.coreLimit = coreLimit === Number.POSITIVE_INFINITY ? -1 : coreLimit;
  }
}

/** Free bytes for an unprivileged user on the filesystem of `dir` (statfs: a syscall, no disk I/O); null if unknown. */
function freeBytesSync(dir: string): number | null {
  try {
    const s = statfsSync(dir);
    return s.bavail * s.bsize;
  } catch {
    return null;
  }
}
