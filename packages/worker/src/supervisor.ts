import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, renameSync, rmSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import pidusage from 'pidusage';
import { DroverError, ErrorCode, type ExitInfo, type ProcessExit, type ProcessInfo, type UsageInfo } from '@drover/protocol';
import { checkLibraries } from './libraries.js';
import type { Logger } from './logger.js';
import { CLK_TCK, readCoreLimitSync, readMemory, readStat, readStatSync } from './proc.js';
import { type ProcessRecord, type ProcessTable, toProcessInfo, toUsageInfo } from './process-table.js';
import { describeSignal, isCoreSignal } from './signals.js';
import type { AppStore } from './store.js';

const SAMPLE_MS = 250;
const STOP_WAIT_MS = 10_000;
const KILL_WAIT_MS = 5_000;

export interface SignalOutcome {
  pid: number;
  state: ProcessInfo['state'];
  exit: ExitInfo | null;
  alreadyEnded: boolean;
}

/**
 * Launches apps in their own process groups with logs on disk, tracks how they end, signals
 * them, samples their resources, and re-adopts the live ones after an agent restart.
 */
export class Supervisor {
  private readonly children = new Map<number, ChildProcess>();
  private readonly waiters = new Map<number, Set<() => void>>();
  /** App versions whose executable and libraries were checked: the checks run once per copy. */
  private readonly checked = new Set<string>();
  private sampler: NodeJS.Timeout | null = null;
  private sampling = false;

  constructor(
    readonly table: ProcessTable,
    private readonly store: AppStore,
    private readonly workerName: string,
    private readonly logger: Logger,
    private readonly emit: (message: ProcessExit) => void,
  ) {}

  /** Re-adopts processes launched before an agent restart; marks the ones that ended meanwhile. */
  async adopt(): Promise<void> {
    for (const r of this.table.live()) {
      const stat = await readStat(r.pid);
      if (stat && r.startTicks !== null && stat.startTicks === r.startTicks && stat.state !== 'zombie') {
        r.adopted = true;
        this.logger.info({ pid: r.pid, app: r.app }, 're-adopted a running app');
      } else {
        this.finish(r, { code: null, signal: null, reason: 'ended while the agent was down' });
      }
    }
    this.table.save();
    this.ensureSampler();
  }

  liveCount(): number {
    let n = 0;
    for (const r of this.table.all()) if (r.exit === null) n++;
    return n;
  }

  async launch(app: string, args: string[]): Promise<ProcessRecord> {
    const manifest = await this.store.requireManifest(app);
    const exe = this.store.filePath(app, { kind: 'exe', name: manifest.executable });
    const libDir = path.join(this.store.appDir(app), 'lib');
    const env = {
      ...process.env,
      LD_LIBRARY_PATH: [libDir, process.env.LD_LIBRARY_PATH].filter(Boolean).join(':'),
      DROVER_APP: app,
      DROVER_WORKER: this.workerName,
    };
    // Once per copied version: is it runnable here, and does the loader find every library?
    // A missing library is then an error naming it, not a process that dies at once.
    const version = `${app}:${manifest.updatedAt}:${manifest.files.map((f) => f.sha256).join()}`;
    if (!this.checked.has(version)) {
      await this.store.checkExecutable(exe, app);
      await checkLibraries(exe, env, this.workerName);
      this.checked.add(version);
    }

    // Sync on purpose: open, close and rename touch no file data and cost microseconds, where
    // each thread-pool round trip would add a tick to every launch.
    const startingLog = path.join(this.store.logsDir, `${app}.starting-${process.pid}-${Date.now()}.log`);
    let child: ChildProcess;
    const fd = openSync(startingLog, 'a', 0o640);
    try {
      child = spawn(exe, args, { cwd: this.store.appDir(app), env, detached: true, stdio: ['ignore', fd, fd] });
    } finally {
      closeSync(fd);
    }
    const pid = child.pid;
    if (pid === undefined) {
      this.checked.delete(version);
      const err = await new Promise<Error>((resolve) => child.once('error', resolve));
      rmSync(startingLog, { force: true });
      const code = (err as NodeJS.ErrnoException).code ?? 'error';
      throw new DroverError(ErrorCode.EXEC_FAILED, `could not start ${manifest.executable} on ${this.workerName}: ${code} (${err.message})`, { cause: err });
    }
    child.on('error', (err) => this.logger.warn({ pid, err }, 'child process error'));
    child.on('exit', (code, signal) => this.onChildExit(pid, code, signal));
    child.unref();
    this.children.set(pid, child);

    const logPath = path.join(this.store.logsDir, `${app}.${pid}.log`);
    renameSync(startingLog, logPath);
    const stat = readStatSync(pid);
    const coreLimit = readCoreLimitSync(pid);
    const now = Date.now();
    const record: ProcessRecord = {
      pid,
      app,
      executable: manifest.executable,
      args,
      startedAt: new Date(now).toISOString(),
      startedAtMs: now,
      startTicks: stat?.startTicks ?? null,
      logPath,
      exit: null,
      adopted: false,
      coreLimit: coreLimit === Number.POSITIVE_INFINITY ? -1 : coreLimit,
      signalled: null,
      usage: { cpuUserSeconds: 0, cpuSystemSeconds: 0, cpuPercent: 0, rssBytes: 0, maxRssBytes: 0, sampledAt: null },
    };
    // A launch that pushes the oldest dead record out takes its log with it, so logs/ stays bounded.
    for (const old of this.table.add(record)) void rm(old.logPath, { force: true }).catch(() => undefined);
    this.ensureSampler();
    setTimeout(() => void this.sample(), 50).unref();
    this.logger.info({ pid, app, args }, 'launched');
    return record;
  }

  /** stop: SIGINT to the group, escalating to SIGKILL after `timeoutMs`; kill: SIGKILL at once. */
  async signal(pid: number, mode: 'stop' | 'kill', timeoutMs: number | null, abort: AbortSignal): Promise<SignalOutcome> {
    const r = this.require(pid);
    if (r.exit || !(await this.isOurs(r))) {
      return { pid, state: 'dead', exit: r.exit, alreadyEnded: true };
    }
    const first = mode === 'stop' ? 'SIGINT' : 'SIGKILL';
    r.signalled = { by: mode, signal: first, forced: false };
    this.table.save();
    sendToGroup(pid, first);
    let ended = await this.waitForExit(pid, mode === 'stop' ? (timeoutMs ?? STOP_WAIT_MS) : KILL_WAIT_MS, abort);
    if (!ended && mode === 'stop' && timeoutMs !== null && !abort.aborted) {
      r.signalled = { by: 'stop', signal: 'SIGKILL', forced: true };
      this.table.save();
      this.logger.info({ pid, timeoutMs }, 'stop timed out; sending SIGKILL');
      sendToGroup(pid, 'SIGKILL');
      ended = await this.waitForExit(pid, KILL_WAIT_MS, abort);
    }
    const state = ended ? 'dead' : ((await readStat(pid))?.state ?? 'dead');
    return { pid, state, exit: r.exit, alreadyEnded: false };
  }

  /** Every launch this worker remembers, with its state read from /proc. */
  async list(): Promise<ProcessInfo[]> {
    return Promise.all(this.table.all().map(async (r) => toProcessInfo(r, await this.stateOf(r))));
  }

  async usage(): Promise<UsageInfo[]> {
    await this.sample();
    return Promise.all(this.table.all().map(async (r) => toUsageInfo(r, await this.stateOf(r))));
  }

  require(pid: number): ProcessRecord {
    const r = this.table.get(pid);
    if (!r) throw new DroverError(ErrorCode.PROCESS_NOT_FOUND, `no process ${pid} was launched by drover on ${this.workerName} (see ps)`);
    return r;
  }

  /** Resolves true when `pid` has ended, false after `ms` or on abort. */
  waitForExit(pid: number, ms: number, abort?: AbortSignal): Promise<boolean> {
    const r = this.table.get(pid);
    if (!r || r.exit) return Promise.resolve(true);
    return new Promise((resolve) => {
      const set = this.waiters.get(pid) ?? new Set();
      this.waiters.set(pid, set);
      const done = (value: boolean): void => {
        clearTimeout(timer);
        set.delete(wake);
        abort?.removeEventListener('abort', onAbort);
        resolve(value);
      };
      const wake = (): void => done(true);
      const onAbort = (): void => done(false);
      const timer = setTimeout(() => done(false), ms);
      set.add(wake);
      abort?.addEventListener('abort', onAbort, { once: true });
    });
  }

  async close(): Promise<void> {
    if (this.sampler) clearInterval(this.sampler);
    this.sampler = null;
    await this.table.flush();
  }

  private async stateOf(r: ProcessRecord): Promise<ProcessInfo['state']> {
    if (r.exit) return 'dead';
    const stat = await readStat(r.pid);
    if (!stat || (r.startTicks !== null && stat.startTicks !== r.startTicks)) return 'dead';
    return stat.state;
  }

  /** True when `r.pid` is still the process we launched (not a later one that reused the pid). */
  private async isOurs(r: ProcessRecord): Promise<boolean> {
    if (this.children.has(r.pid)) return true;
    const stat = await readStat(r.pid);
    if (stat && r.startTicks !== null && stat.startTicks === r.startTicks) return true;
    this.finish(r, { code: null, signal: null, reason: 'ended (exit status unknown: re-adopted after an agent restart)' });
    return false;
  }

  private onChildExit(pid: number, code: number | null, signal: NodeJS.Signals | null): void {
    this.children.delete(pid);
    const r = this.table.get(pid);
    if (!r || r.exit) return;
    this.finish(r, { code, signal, reason: describeExit(r, code, signal) });
  }

  private finish(r: ProcessRecord, how: { code: number | null; signal: string | null; reason: string }): void {
    const coreDumped = how.signal !== null && isCoreSignal(how.signal) && r.coreLimit !== null && r.coreLimit !== 0;
    r.exit = {
      code: how.code,
      signal: how.signal,
      reason: coreDumped ? `${how.reason}, core dumped` : how.reason,
      signalledBy: r.signalled?.by ?? null,
      forced: r.signalled?.forced ?? false,
      coreDumped,
      endedAt: new Date().toISOString(),
    };
    r.usage.cpuPercent = 0;
    this.table.save();
    this.logger.info({ pid: r.pid, app: r.app, exit: r.exit }, 'process ended');
    this.emit({ v: 1, type: 'process-exit', pid: r.pid, app: r.app, exit: r.exit });
    for (const wake of this.waiters.get(r.pid) ?? []) wake();
    this.waiters.delete(r.pid);
    pidusage.clear();
  }

  private ensureSampler(): void {
    if (this.sampler || this.liveCount() === 0) return;
    this.sampler = setInterval(() => void this.sample(), SAMPLE_MS);
    this.sampler.unref();
  }

  /** Samples CPU and memory of every live process; a dead one keeps its last figures. */
  private async sample(): Promise<void> {
    if (this.sampling) return;
    this.sampling = true;
    try {
      const live = this.table.live();
      if (live.length === 0 && this.sampler) {
        clearInterval(this.sampler);
        this.sampler = null;
      }
      await Promise.all(live.map((r) => this.sampleOne(r)));
    } finally {
      this.sampling = false;
    }
  }

  private async sampleOne(r: ProcessRecord): Promise<void> {
    const [stat, mem] = await Promise.all([readStat(r.pid), readMemory(r.pid)]);
    if (r.exit) return;
    if (!stat || (r.startTicks !== null && stat.startTicks !== r.startTicks)) {
      if (!this.children.has(r.pid)) this.finish(r, { code: null, signal: r.signalled?.signal ?? null, reason: adoptedEnding(r) });
      return;
    }
    let cpuPercent = r.usage.cpuPercent;
    try {
      cpuPercent = (await pidusage(r.pid)).cpu;
    } catch {
      // gone between the two reads; keep the last figure
    }
    r.usage = {
      cpuUserSeconds: stat.utimeTicks / CLK_TCK,
      cpuSystemSeconds: stat.stimeTicks / CLK_TCK,
      cpuPercent: Math.max(0, Math.round(cpuPercent * 10) / 10),
      rssBytes: mem?.rssBytes ?? r.usage.rssBytes,
      maxRssBytes: Math.max(mem?.maxRssBytes ?? 0, r.usage.maxRssBytes),
      sampledAt: new Date().toISOString(),
    };
  }
}

function sendToGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    try {
      process.kill(pid, signal);
    } catch {
      // already gone; its exit is on its way
    }
  }
}

function describeExit(r: ProcessRecord, code: number | null, signal: string | null): string {
  const sent = r.signalled;
  if (signal) {
    if (sent && sent.signal === signal) {
      if (sent.forced) return `killed by drover (SIGKILL after the stop timeout)`;
      return sent.by === 'stop' ? `stopped by drover (${signal})` : `killed by drover (${signal})`;
    }
    return `killed by ${signal} (${describeSignal(signal)})`;
  }
  if (sent) return `exited with code ${code} after drover's ${sent.signal} (${sent.by})`;
  return `exited with code ${code}`;
}

function adoptedEnding(r: ProcessRecord): string {
  if (r.signalled) return `ended after drover's ${r.signalled.signal} (${r.signalled.by}); exit status unknown (re-adopted after an agent restart)`;
  return 'ended; exit status unknown (re-adopted after an agent restart)';
}
