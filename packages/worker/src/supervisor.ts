import { rm } from 'node:fs/promises';
import {
  DroverError,
  ErrorCode,
  shrinkYoungWhenQuiet,
  type ExitInfo,
  type LogProblem,
  type ProcessExit,
  type ProcessInfo,
  type UsageInfo,
} from '@drover/protocol';
import { describeExit } from './exit-reason.js';
import { Launcher } from './launcher.js';
import type { Logger } from './logger.js';
import { findUnrecorded } from './orphans.js';
import { membersOf, readStat } from './proc.js';
import {
  DEFAULT_LOG_POLICY,
  HelperPump,
  LogPump,
  pipeOf,
  removeLogs,
  type LogPolicy,
  type LogProblem as PumpProblem,
  type Pump,
  type RotationClock,
} from './log-pump.js';
import { ProcessHandle } from './process-handle.js';
import { SpawnHelper } from './spawn-helper.js';
import { type ProcessRecord, type ProcessTable, toProcessInfo, toUsageInfo } from './process-table.js';
import { isCoreSignal } from './signals.js';
import type { AppStore } from './store.js';
import { UsageSampler } from './usage-sampler.js';

const STOP_WAIT_MS = 10_000;
const KILL_WAIT_MS = 5_000;

export interface SignalOutcome {
  pid: number;
  state: ProcessInfo['state'];
  exit: ExitInfo | null;
  alreadyEnded: boolean;
  leftovers?: number[];
}

/**
 * The worker's driver, built as Nomad builds one from small parts: the Launcher starts
 * processes, a ProcessHandle per live process signals and waits, the ProcessTable remembers
 * every launch on disk, and the UsageSampler measures them. This class only ties them together
 * and turns endings into ExitInfo and process-exit messages.
 */
export class Supervisor {
  private readonly handles = new Map<number, ProcessHandle>();
  /** Ended leaders whose process group still has members: what they left behind, by leader pid. */
  private readonly lingering = new Map<number, number[]>();
  private readonly launcher: Launcher;
  private readonly helper: SpawnHelper;
  private readonly sampler: UsageSampler;
  /** Live processes whose output the agent carries into their logs, by pid. */
  private readonly pumps = new Map<number, Pump>();

  constructor(
    readonly table: ProcessTable,
    private readonly store: AppStore,
    private readonly workerName: string,
    private readonly logger: Logger,
    private readonly emit: (message: ProcessExit | LogProblem) => void,
    /** How logs are kept unless a launch says otherwise (worker --log-max, --log-keep). */
    private readonly logPolicy: LogPolicy = DEFAULT_LOG_POLICY,
  ) {
    // Started by the first launch: an agent that never launches pays nothing for it (a Node
    // start is ~0.1 s of CPU, and ~6 MiB stay).
    this.helper = new SpawnHelper(store.stateDir, logger);
    this.launcher = new Launcher(store, workerName, logPolicy.maxBytes > 0, this.helper);
    this.sampler = new UsageSampler(
      () => table.live(),
      (r) => {
        // Our own children report their exit with its status; only adopted ones end unseen (and
        // those of a spawn helper that was lost).
        if (!this.handles.get(r.pid)?.child?.reporting) this.finish(r, { code: null, signal: r.signalled?.signal ?? null, known: false });
      },
    );
  }

  /**
   * Re-adopts processes launched before an agent restart, including launches the table never
   * recorded (the agent was killed first); marks the ones that ended meanwhile.
   */
  async adopt(): Promise<void> {
    const unrecorded = await findUnrecorded(this.store, new Set(this.table.all().map((r) => r.pid)), this.logPolicy);
    for (const r of [...unrecorded.live, ...unrecorded.ended]) {
      this.logger.warn({ pid: r.pid, app: r.app, alive: unrecorded.live.includes(r) }, 'found a launch the process table had not recorded');
      this.table.add(r);
    }
    for (const r of this.table.live()) {
      const stat = await readStat(r.pid);
      if (stat && r.startTicks !== null && stat.startTicks === r.startTicks && stat.state !== 'zombie') {
        r.adopted = true;
        this.handles.set(r.pid, new ProcessHandle(r, null));
        // Its output waited in its pipe while no agent ran: carried on from there.
        if (r.log) this.pump(r);
        this.logger.info({ pid: r.pid, app: r.app }, 're-adopted a running app');
      } else {
        this.finish(r, { code: null, signal: null, known: false, whileDown: true });
      }
    }
    // Pipes of processes that ended while no agent ran: what they held is gone with their last writer.
    for (const r of this.table.all()) if (r.exit && r.log) await rm(pipeOf(r.logPath), { force: true });
    this.table.save();
    this.sampler.ensure();
  }

  liveCount(): number {
    return this.handles.size;
  }

  /** Told of every process that ends (the keeper restarts instances by their policy). */
  onEnded: (r: ProcessRecord) => void = () => undefined;

  async launch(app: string, args: string[], env: Record<string, string> = {}, instance?: string, log: LogPolicy = this.logPolicy): Promise<ProcessRecord> {
    const { child, record, pipeFd } = await this.launcher.start(app, args, env, log);
    if (instance) record.instance = instance;
    const pid = record.pid;
    child.onExit((code, signal) => this.onChildExit(pid, code, signal));
    this.handles.set(pid, new ProcessHandle(record, child));
    // The rest waits for the reply. A fork leaves every page of the agent write-protected, so the
    // first work after it runs ~20× slower (a net.Socket over a pipe: 35 µs, 0.7 ms just after a
    // spawn); starting the log pump here was a third of a launch's time past its spawn. A tick
    // runs after this turn's promise callbacks (the reply goes out in them) and before any I/O:
    // so before the child can be reaped (its /proc entry is there), before its exit or any other
    // request (ps, logs) is seen, and before the table is written. Nothing written meanwhile is
    // lost: our read end of the pipe is open. A crashed agent finds the process by its pipe's
    // name (or its log's, unpiped), given before the reply.
    process.nextTick(() => {
      try {
        this.launcher.settle(record);
        // A launch that pushes the oldest dead record out takes its log with it, so logs/ stays bounded.
        for (const old of this.table.add(record)) void removeLogs(old.logPath);
        if (record.log) this.pump(record, pipeFd);
        this.sampler.ensure();
        setTimeout(() => this.sampler.sampleOne(record), 50).unref();
        this.logger.info({ pid, app, args }, 'launched');
        shrinkYoungWhenQuiet();
      } catch (err) {
        this.logger.error({ pid, err }, 'could not finish setting up a launch');
      }
    });
    return record;
  }

  /**
   * stop: SIGINT to the group, and with `timeoutMs` SIGKILL after it (armed on the process, so
   * it fires even if this request is cancelled); kill: SIGKILL at once. Answers how it ended.
   */
  async signal(
    pid: number,
    mode: 'stop' | 'kill',
    timeoutMs: number | null,
    abort: AbortSignal,
    /** The signal a stop sends first (a service's stop.signal); SIGINT by default. */
    stopSignal: NodeJS.Signals = 'SIGINT',
  ): Promise<SignalOutcome> {
    const r = this.require(pid);
    const h = this.handles.get(pid);
    if (r.exit || !h || !(await this.isOurs(r))) return this.signalLeftovers(r, mode, timeoutMs, abort);
    const first = mode === 'stop' ? stopSignal : 'SIGKILL';
    r.signalled = { by: mode, signal: first, forced: false };
    this.table.save(r);
    h.send(first);
    if (mode === 'stop' && timeoutMs !== null) {
      h.escalateAfter(timeoutMs, () => {
        r.signalled = { by: 'stop', signal: 'SIGKILL', forced: true };
        this.table.save(r);
        this.logger.info({ pid, timeoutMs }, 'stop timed out; sending SIGKILL');
        h.send('SIGKILL');
      });
    }
    let ended = await h.waitForExit(mode === 'stop' ? (timeoutMs ?? STOP_WAIT_MS) : KILL_WAIT_MS, abort);
    // The escalation fires at about the same moment: give SIGKILL its time to work.
    if (!ended && mode === 'stop' && timeoutMs !== null && !abort.aborted) ended = await h.waitForExit(KILL_WAIT_MS + 1000, abort);
    const state = ended ? 'dead' : ((await readStat(pid))?.state ?? 'dead');
    return { pid, state, exit: r.exit, alreadyEnded: false };
  }

  /** Every launch this worker remembers, with its state read from /proc and what its group left behind. */
  async list(): Promise<ProcessInfo[]> {
    // Most often nothing lingers: no turn spent on finding out.
    if (this.lingering.size > 0) await this.refreshLingering();
    // Each state is read synchronously: a table of 1,000 launches makes no promise per row.
    return this.table.all().map((r) => {
      const info = toProcessInfo(r, this.stateOf(r));
      const left = this.lingering.get(r.pid);
      return left?.length ? { ...info, leftovers: left } : info;
    });
  }

  /** Leaders of `app` that ended but left processes in their group. */
  lingeringOf(app: string): number[] {
    return [...this.lingering.keys()].filter((pid) => this.table.get(pid)?.app === app);
  }

  /**
   * A leader that has ended may have left children in its group, unseen by anyone: the signal
   * goes to the whole group all the same (stop escalating to SIGKILL after `timeoutMs`).
   */
  private async signalLeftovers(r: ProcessRecord, mode: 'stop' | 'kill', timeoutMs: number | null, abort: AbortSignal): Promise<SignalOutcome> {
    const base: SignalOutcome = { pid: r.pid, state: 'dead', exit: r.exit, alreadyEnded: true };
    let left = (await membersOf(new Set([r.pid]))).get(r.pid) ?? [];
    if (left.length === 0) {
      this.lingering.delete(r.pid);
      return base;
    }
    this.logger.info({ pid: r.pid, leftovers: left, mode }, 'signalling what an ended process left in its group');
    signalGroup(r.pid, mode === 'stop' ? 'SIGINT' : 'SIGKILL');
    const deadline = performance.now() + (mode === 'stop' ? (timeoutMs ?? STOP_WAIT_MS) : KILL_WAIT_MS);
    let escalated = mode === 'kill';
    while (left.length > 0 && !abort.aborted) {
      if (!escalated && timeoutMs !== null && performance.now() >= deadline) {
        signalGroup(r.pid, 'SIGKILL');
        escalated = true;
      } else if (performance.now() >= deadline + (escalated && mode === 'stop' ? KILL_WAIT_MS : 0)) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
      left = (await membersOf(new Set([r.pid]))).get(r.pid) ?? [];
    }
    if (left.length) this.lingering.set(r.pid, left);
    else this.lingering.delete(r.pid);
    return { ...base, leftovers: left };
  }

  /** Re-reads which lingering groups still have members (one pass over /proc). */
  private async refreshLingering(): Promise<void> {
    if (this.lingering.size === 0) return;
    const now = await membersOf(new Set(this.lingering.keys()));
    for (const pid of [...this.lingering.keys()]) {
      const left = now.get(pid);
      if (left?.length) this.lingering.set(pid, left);
      else this.lingering.delete(pid);
    }
  }

  /** Every launch the table remembers, or with `liveOnly` those still running. */
  async usage(liveOnly = false): Promise<UsageInfo[]> {
    await this.sampler.sample();
    const all = (liveOnly ? this.table.live() : this.table.all()).map((r) => toUsageInfo(r, this.stateOf(r)));
    // A record not yet marked ended whose process /proc no longer shows is dead too.
    return liveOnly ? all.filter((u) => u.state !== 'dead') : all;
  }

  require(pid: number): ProcessRecord {
    const r = this.table.get(pid);
    if (!r) throw new DroverError(ErrorCode.PROCESS_NOT_FOUND, `no process ${pid} was launched by drover on ${this.workerName} (see ps)`);
    return r;
  }

  /** The worker's log policy with what a service program says over it. */
  logPolicyFor(given: { maxBytes?: number; keep?: number } | undefined): LogPolicy {
    return { maxBytes: given?.maxBytes ?? this.logPolicy.maxBytes, keep: given?.keep ?? this.logPolicy.keep };
  }

  /** True while the agent still carries output of `pid` into its log (it may outlive the process a little). */
  pumping(pid: number): boolean {
    return this.pumps.get(pid)?.running ?? false;
  }

  /** The rotation clock of a log the agent writes now (readers of its files use it); null otherwise. */
  rotationOf(pid: number): RotationClock | null {
    return this.pumps.get(pid)?.rotation ?? null;
  }

  /**
   * Before reading the log of a process that has ended (seen or not yet: an adopted one is found
   * dead by the sampler a moment later): waits, at most `ms`, until its log has all it wrote.
   */
  async settleLog(r: ProcessRecord, ms: number): Promise<void> {
    if (!this.pumps.has(r.pid)) return;
    if (r.exit) return this.drained(r.pid, ms);
    const state = this.stateOf(r);
    // A zombie has ended too (its status not yet collected): its output is done.
    if (state === 'dead' || state === 'zombie') await this.drained(r.pid, ms);
  }

  /** Waits (at most `ms`) until the log of `pid` has everything its process wrote. */
  async drained(pid: number, ms: number): Promise<void> {
    const p = this.pumps.get(pid);
    if (!p) return;
    let t: NodeJS.Timeout | undefined;
    await Promise.race([p.done, new Promise<void>((resolve) => (t = setTimeout(resolve, ms)))]);
    clearTimeout(t);
  }

  /**
   * Starts carrying a process's output into its log: in the native spawn helper where it runs
   * (in the kernel: no kill loses a byte), else here. `pipeFd` is our read end of its FIFO,
   * opened before the process started (a launch); an adopted process's FIFO is opened by name.
   */
  private pump(r: ProcessRecord, pipeFd?: number): void {
    const onProblem = (problem: PumpProblem): void => {
      this.logger.warn(
        { ...problem },
        problem.kind === 'no-space' ? 'the disk is full: output of this process is not logged' : 'logging again after a full disk',
      );
      this.emit({
        v: 1,
        type: 'log-problem',
        pid: problem.pid,
        app: problem.app,
        problem: problem.kind,
        droppedBytes: problem.kind === 'resumed' ? problem.droppedBytes : 0,
      });
    };
    const onError = (err: Error): void => this.logger.warn({ pid: r.pid, err }, 'could not carry output into the log');
    let p: Pump;
    if (this.helper.pumpsLogs) {
      const hp = new HelperPump(r.pid, r.app, r.logPath, r.log!, onProblem, onError, pipeFd, this.helper);
      hp.start();
      p = hp;
    } else {
      const lp = new LogPump(r.pid, r.app, r.logPath, r.log!, onProblem, onError);
      try {
        lp.start(pipeFd);
      } catch (err) {
        this.logger.warn({ pid: r.pid, err }, 'could not open the log pipe; its output waits in the pipe');
        return;
      }
      p = lp;
    }
    if (!p.running) return;
    this.pumps.set(r.pid, p);
    void p.done.then(() => {
      if (this.pumps.get(r.pid) === p) this.pumps.delete(r.pid);
    });
  }

  async close(): Promise<void> {
    this.helper.close();
    // The pipes stay: the processes keep running, and the next agent carries their output on.
    for (const p of this.pumps.values()) p.detach();
    this.sampler.stop();
    await this.table.close();
  }

  private stateOf(r: ProcessRecord): ProcessInfo['state'] {
    if (r.exit) return 'dead';
    // Synchronous: /proc is memory, read in microseconds (through the thread pool it took three
    // round trips per process on every ps), and through the file the sampler keeps open.
    const stat = this.sampler.stat(r);
    if (!stat || (r.startTicks !== null && stat.startTicks !== r.startTicks)) {
      // Reaped by the helper (or Node), its status on its way to us: ended, not yet recorded. A
      // `ps` between the two said 'dead' with no exit; it is 'dead' once the exit is in.
      return this.handles.get(r.pid)?.child?.reporting ? 'zombie' : 'dead';
    }
    return stat.state;
  }

  /** True when `r.pid` is still the process we launched (not a later one that reused the pid). */
  private async isOurs(r: ProcessRecord): Promise<boolean> {
    if (this.handles.get(r.pid)?.child?.reporting) return true;
    const stat = await readStat(r.pid);
    if (stat && r.startTicks !== null && stat.startTicks === r.startTicks) return true;
    this.finish(r, { code: null, signal: null, known: false });
    return false;
  }

  private onChildExit(pid: number, code: number | null, signal: NodeJS.Signals | null): void {
    const r = this.table.get(pid);
    if (!r || r.exit) return;
    this.finish(r, { code, signal, known: true });
  }

  /** Records how `r` ended, tells the master, and wakes whoever waits for it. */
  private finish(r: ProcessRecord, how: { code: number | null; signal: string | null; known: boolean; whileDown?: boolean }): void {
    const coreDumped = how.known && how.signal !== null && isCoreSignal(how.signal) && r.coreLimit !== null && r.coreLimit !== 0;
    const reason = describeExit({ ...how, signalled: r.signalled });
    r.exit = {
      code: how.code,
      signal: how.signal,
      reason: coreDumped ? `${reason}, core dumped` : reason,
      signalledBy: r.signalled?.by ?? null,
      forced: r.signalled?.forced ?? false,
      coreDumped,
      endedAt: new Date().toISOString(),
    };
    r.usage.cpuPercent = 0;
    this.table.save(r);
    this.logger.info({ pid: r.pid, app: r.app, exit: r.exit }, 'process ended');
    this.emit({ v: 1, type: 'process-exit', pid: r.pid, app: r.app, exit: r.exit });
    this.onEnded(r);
    const h = this.handles.get(r.pid);
    this.handles.delete(r.pid);
    h?.markEnded();
    this.sampler.forget(r.pid);
    shrinkYoungWhenQuiet();
    // Children it started in its group live on after it: note them, so ps shows them and stop/kill reach them.
    void membersOf(new Set([r.pid])).then((m) => {
      const left = m.get(r.pid);
      if (left?.length) this.lingering.set(r.pid, left);
    });
  }
}

/** Signals a process group whose leader is gone: never the pid alone, which may be another process by now. */
function signalGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch {
    // the group emptied meanwhile
  }
}
