import path from 'node:path';
import { DroverError, ErrorCode, toDroverError, unreachable, type ExitInfo, type InstanceInfo, type InstanceSpec, type InstanceState } from '@drover/protocol';
import { writeFileAtomic } from './atomic.js';
import { loadJsonTable } from './json-table.js';
import type { Logger } from './logger.js';
import type { ProcessRecord } from './process-table.js';
import type { Supervisor } from './supervisor.js';

/** What the worker remembers of one service instance; persisted in instances.json. */
interface InstanceRecord {
  spec: InstanceSpec;
  app: string;
  args: string[];
  env: Record<string, string>;
  pid: number | null;
  state: InstanceState;
  restarts: number;
  /** When each restart in the current window happened (ms since the epoch). */
  restartTimes: number[];
  /** Restarts since the last healthy run: the exponent of the back-off. */
  failures: number;
  lastExit: ExitInfo | null;
  startedAtMs: number | null;
  nextStartAtMs: number | null;
  /** A run lasted healthyAfterMs. */
  everHealthy?: boolean;
}

/** What decides whether an ended instance starts again, and when: pure, so it is unit-tested. */
export function nextAfterExit(
  r: Pick<InstanceRecord, 'spec' | 'restartTimes' | 'failures' | 'startedAtMs'>,
  exit: ExitInfo,
  now: number,
): { state: 'exited' } | { state: 'failed'; why: string } | { state: 'backoff'; delayMs: number; failures: number; restartTimes: number[] } {
  const { policy, maxRestarts, windowMs, backoffMs } = r.spec.restart;
  // Stopped or killed on purpose (stop, kill): the user wanted it down.
  if (exit.signalledBy !== null) return { state: 'exited' };
  const failed = exit.code !== 0 || exit.signal !== null;
  if (policy === 'never' || (policy === 'on-failure' && !failed)) return { state: 'exited' };
  const recent = r.restartTimes.filter((t) => t > now - windowMs);
  if (recent.length >= maxRestarts) {
    return { state: 'failed', why: `restarted ${recent.length} times in ${Math.round(windowMs / 1000)} s (maxRestarts ${maxRestarts}); last: ${exit.reason}` };
  }
  const [first, max] = backoffMs;
  // A run that lasted past the back-off's ceiling (and counted as healthy) starts the back-off afresh.
  const ranMs = r.startedAtMs === null ? 0 : now - r.startedAtMs;
  const failures = ranMs >= Math.max(max, r.spec.healthyAfterMs) ? 0 : r.failures;
  const delayMs = Math.min(max, first * 2 ** Math.min(failures, 30));
  return { state: 'backoff', delayMs, failures: failures + 1, restartTimes: recent };
}

/**
 * Keeps service instances running by their restart policies, on the worker itself, so a crash
 * is handled while the master is away: doubling back-off, `failed` after maxRestarts in the
 * window. Durable in instances.json (written before a launch is reported), so an agent restart
 * re-adopts the processes and keeps the policies.
 */
export class Keeper {
  private readonly records = new Map<string, InstanceRecord>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly stopping = new Set<string>();
  private readonly file: string;
  private closed = false;
  private fenceTimer: NodeJS.Timeout | null = null;
  /** Instances stopped by self-fencing, for the master to hear of (newest last). */
  private readonly fencedLog: { id: string; at: string }[] = [];
  private saving: Promise<void> = Promise.resolve();

  constructor(
    stateDir: string,
    private readonly supervisor: Supervisor,
    private readonly logger: Logger,
  ) {
    this.file = path.join(stateDir, 'instances.json');
  }

  async load(): Promise<void> {
    for (const r of await loadJsonTable<InstanceRecord>(this.file, this.logger, (r) => typeof r?.spec?.id === 'string')) this.records.set(r.spec.id, r);
  }

  /** After the supervisor re-adopted what survived an agent restart: instances that ended meanwhile follow their policy. */
  async resume(): Promise<void> {
    for (const r of this.records.values()) {
      if (r.state === 'running' && r.pid !== null) {
        const p = this.supervisor.table.get(r.pid);
        if (!p || p.exit) this.ended(r, p?.exit ?? lostExit());
      } else if (r.state === 'backoff') {
        this.schedule(r, Math.max(0, (r.nextStartAtMs ?? Date.now()) - Date.now()));
      }
    }
    await this.save();
  }

  /** Starts an instance; resolves once it is recorded on disk. */
  async launch(app: string, args: string[], env: Record<string, string>, spec: InstanceSpec): Promise<ProcessRecord> {
    const existing = this.records.get(spec.id);
    if (existing && (existing.state === 'running' || existing.state === 'backoff')) {
      throw new DroverError(ErrorCode.BUSY, `instance ${spec.id} is already kept here (${existing.state}${existing.pid ? `, pid ${existing.pid}` : ''})`);
    }
    const p = await this.supervisor.launch(app, args, env, spec.id, this.supervisor.logPolicyFor(spec.log));
    this.records.set(spec.id, {
      spec,
      app,
      args,
      env,
      pid: p.pid,
      state: 'running',
      restarts: 0,
      restartTimes: [],
      failures: 0,
      lastExit: null,
      startedAtMs: p.startedAtMs,
      nextStartAtMs: null,
    });
    try {
      await this.save();
    } catch (err) {
      // Not recorded, so not reported: the process goes, and the master hears why (NO_SPACE on a full disk).
      this.records.delete(spec.id);
      await this.supervisor.signal(p.pid, 'kill', null, new AbortController().signal).catch(() => undefined);
      throw err;
    }
    // It may have ended before it was recorded.
    if (p.exit) this.ended(this.records.get(spec.id)!, p.exit);
    return p;
  }

  /** A process ended (called by the supervisor): if it runs an instance, its policy decides what next. */
  onProcessEnded(p: ProcessRecord): void {
    if (!p.instance || !p.exit) return;
    const r = this.records.get(p.instance);
    if (!r || r.pid !== p.pid || this.stopping.has(r.spec.id)) return;
    this.ended(r, p.exit);
    void this.save();
  }

  /** Stops an instance for good (its stop signal, SIGKILL after its timeout) and forgets it. */
  async stop(
    id: string,
    mode: 'stop' | 'kill',
    abort: AbortSignal,
    /** SIGKILL after this long, instead of the instance's stop.timeout (fencing must be quick). */
    timeoutMs?: number,
  ): Promise<{ instance: string; pid: number | null; exit: ExitInfo | null; known: boolean }> {
    const r = this.records.get(id);
    if (!r) return { instance: id, pid: null, exit: null, known: false };
    this.stopping.add(id);
    try {
      clearTimeout(this.timers.get(id));
      this.timers.delete(id);
      let exit: ExitInfo | null = r.lastExit;
      const live = r.pid !== null && this.supervisor.table.get(r.pid)?.exit === null;
      if (live && r.pid !== null) {
        const outcome = await this.supervisor.signal(r.pid, mode, mode === 'stop' ? (timeoutMs ?? r.spec.stop.timeoutMs) : null, abort, r.spec.stop.signal);
        if (outcome.state !== 'dead') throw new DroverError(ErrorCode.APP_RUNNING, `instance ${id} (pid ${r.pid}) did not end`);
        exit = outcome.exit;
      }
      this.records.delete(id);
      await this.save();
      return { instance: id, pid: r.pid, exit, known: true };
    } finally {
      this.stopping.delete(id);
    }
  }

  list(): InstanceInfo[] {
    const now = Date.now();
    return [...this.records.values()].map((r) => {
      const healthy = r.state === 'running' && r.startedAtMs !== null && now - r.startedAtMs >= r.spec.healthyAfterMs;
      if (healthy) r.everHealthy = true;
      return {
        id: r.spec.id,
        app: r.app,
        pid: r.pid,
        state: r.state,
        healthy,
        everHealthy: r.everHealthy === true,
        restarts: r.restarts,
        lastExit: r.lastExit,
        startedAt: r.startedAtMs === null ? null : new Date(r.startedAtMs).toISOString(),
        nextStartAt: r.nextStartAtMs === null ? null : new Date(r.nextStartAtMs).toISOString(),
      };
    });
  }

  /** The instance a process runs, for ps. */
  tagOf(pid: number, instance: string | undefined): { id: string; restarts?: number } | undefined {
    if (!instance) return undefined;
    const r = this.records.get(instance);
    return r && r.pid === pid ? { id: instance, restarts: r.restarts } : { id: instance };
  }

  /**
   * Self-fencing: every 250 ms, an instance whose master has been silent for its stopAfterMs is
   * stopped (its stop signal, SIGKILL well before the master's lostAfterMs) and forgotten, so by
   * the time the master starts it elsewhere this copy is gone.
   */
  startFencing(masterSilentMs: () => number): void {
    this.fenceTimer = setInterval(() => {
      const silent = masterSilentMs();
      for (const r of this.records.values()) {
        if (!r.spec.fence || silent < r.spec.fence.stopAfterMs || this.stopping.has(r.spec.id)) continue;
        if (r.state !== 'running' && r.state !== 'backoff') continue;
        void this.fence(r, silent);
      }
    }, 250);
    this.fenceTimer.unref();
  }

  /** The shortest stopAfter among the instances that fence themselves, or null when none does. */
  fenceAfterMs(): number | null {
    let least: number | null = null;
    for (const r of this.records.values()) {
      const after = r.spec.fence?.stopAfterMs;
      if (after !== undefined && (least === null || after < least)) least = after;
    }
    return least;
  }

  fenced(): { id: string; at: string }[] {
    return [...this.fencedLog];
  }

  private async fence(r: InstanceRecord, silentMs: number): Promise<void> {
    const { stopAfterMs, lostAfterMs } = r.spec.fence!;
    this.logger.warn({ instance: r.spec.id, silentMs, stopAfterMs }, 'no word from the master: stopping the instance (fencing) so it never runs twice');
    // SIGKILL by halfway to the master's lostAfter at the latest: down before another starts.
    const grace = Math.max(200, Math.min(r.spec.stop.timeoutMs, Math.floor((lostAfterMs - stopAfterMs) / 2)));
    try {
      await this.stop(r.spec.id, 'stop', new AbortController().signal, grace);
      this.fencedLog.push({ id: r.spec.id, at: new Date().toISOString() });
      if (this.fencedLog.length > 100) this.fencedLog.shift();
    } catch (err) {
      this.logger.error({ err, instance: r.spec.id }, 'could not fence an instance');
    }
  }

  close(): void {
    this.closed = true;
    if (this.fenceTimer) clearInterval(this.fenceTimer);
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
  }

  private ended(r: InstanceRecord, exit: ExitInfo): void {
    r.lastExit = exit;
    if (r.startedAtMs !== null && Date.parse(exit.endedAt) - r.startedAtMs >= r.spec.healthyAfterMs) r.everHealthy = true;
    const next = nextAfterExit(r, exit, Date.now());
    switch (next.state) {
      case 'exited':
        r.state = 'exited';
        this.logger.info({ instance: r.spec.id, exit: exit.reason }, 'instance ended; its policy does not restart it');
        return;
      case 'failed':
        r.state = 'failed';
        this.logger.warn({ instance: r.spec.id, why: next.why }, 'instance failed');
        return;
      case 'backoff':
        r.state = 'backoff';
        r.failures = next.failures;
        r.restartTimes = next.restartTimes;
        r.nextStartAtMs = Date.now() + next.delayMs;
        this.logger.info({ instance: r.spec.id, exit: exit.reason, delayMs: next.delayMs }, 'instance ended; restarting after back-off');
        this.schedule(r, next.delayMs);
        return;
      default:
        return unreachable(next);
    }
  }

  private schedule(r: InstanceRecord, delayMs: number): void {
    clearTimeout(this.timers.get(r.spec.id));
    const timer = setTimeout(() => {
      this.timers.delete(r.spec.id);
      void this.restart(r);
    }, delayMs);
    timer.unref();
    this.timers.set(r.spec.id, timer);
  }

  private async restart(r: InstanceRecord): Promise<void> {
    if (this.closed || this.records.get(r.spec.id) !== r || r.state !== 'backoff') return;
    const now = Date.now();
    r.restarts += 1;
    r.restartTimes.push(now);
    r.nextStartAtMs = null;
    try {
      const p = await this.supervisor.launch(r.app, r.args, r.env, r.spec.id, this.supervisor.logPolicyFor(r.spec.log));
      r.pid = p.pid;
      r.state = 'running';
      r.startedAtMs = p.startedAtMs;
      await this.save();
      if (p.exit) this.ended(r, p.exit);
    } catch (err) {
      // Could not even start (the executable is gone, a library missing): counts as a failed run.
      const e = toDroverError(err);
      r.pid = null;
      r.startedAtMs = now;
      this.ended(r, {
        code: null,
        signal: null,
        reason: `could not start: ${e.message}`,
        signalledBy: null,
        forced: false,
        coreDumped: false,
        endedAt: new Date().toISOString(),
      });
      await this.save();
    }
  }

  /** Writes the table; writes run one after another, each with the state of its own moment. */
  private save(): Promise<void> {
    const write = async (): Promise<void> => {
      try {
        await writeFileAtomic(this.file, JSON.stringify([...this.records.values()]), 0o600);
      } catch (err) {
        this.logger.error({ err }, 'could not write instances.json');
        throw toDroverError(err);
      }
    };
    const next = this.saving.then(write, write);
    this.saving = next.catch(() => undefined);
    return next;
  }
}

function lostExit(): ExitInfo {
  return {
    code: null,
    signal: null,
    reason: 'ended while the agent was down',
    signalledBy: null,
    forced: false,
    coreDumped: false,
    endedAt: new Date().toISOString(),
  };
}
