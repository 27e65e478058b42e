import { createHash } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import path from 'node:path';
import { DroverError, ErrorCode, checkFileName, formatBytes, toDroverError, type AppFile, type InstanceInfo, type InstanceSpec } from '@drover/protocol';
import type { Files } from '../files.js';
import type { Fleet } from '../fleet.js';
import { localFiles } from '../local-files.js';
import type { Logger } from '../logger.js';
import { CopySources, copyToWorker, type CopiedSource } from '../upload.js';
import type { WorkerSession } from '../worker-session.js';
import { ArtifactStore } from './artifacts.js';
import { place, type Candidate } from './placement.js';
import { EventLog } from './events.js';
import { resolveDisconnect, type Disconnect, type ProgramSpec, type ServiceSpec } from './spec.js';
import { ServiceStore, appName, type ProgramState, type ServiceState, type Slot } from './state.js';

const RECONCILE_MS = 1000;
/**
 * Passes that events ask for start at least this far apart: while thousands of workers join at
 * once, each pass then takes a batch of them, and what a pass does over the whole fleet (a
 * queue's placement, an on-all program's cover) runs tens of times a second, not hundreds.
 */
const PASS_GAP_MS = 100;
/**
 * A worker whose instances are all running and healthy, and that reported no exit, is asked
 * what it keeps this often (with up to 5 s of jitter), not on every pass: a fleet of 5,000
 * costs a few requests a second, not 5,000.
 */
const FULL_LOOK_MS = 30_000;
/** How long the master waits past `healthy.after` for a new instance to prove itself. */
const HEALTHY_GRACE_MS = 30_000;
/** What a worker running none of our instances reported: one map shared by all such workers. */
const NO_INSTANCES: ReadonlyMap<string, InstanceInfo> = new Map();

export type InstanceStatus = 'running' | 'starting' | 'backoff' | 'pending' | 'failed' | 'exited' | 'lost';

export interface InstanceView {
  id: string;
  worker: string | null;
  /** Set when the master moved it: `rescheduled from w2 (lost 30 s ago)`. */
  movedFrom: { worker: string; why: 'lost' | 'drained'; at: string } | null;
  pid: number | null;
  state: InstanceStatus;
  restarts: number;
  lastExit: InstanceInfo['lastExit'];
  version: string;
}

export interface ProgramView {
  name: string;
  version: string;
  desired: number;
  running: number;
  instances: InstanceView[];
  pending: { id: string; reason: string }[];
}

export interface ServiceView {
  name: string;
  file: string;
  appliedAt: string;
  programs: ProgramView[];
}

export interface QueueEntry {
  service: string;
  program: string;
  id: string;
  priority: number;
  queuedAt: string;
  reason: string;
}

/** settings: placement, resources or priority changed; instances stay where they run. */
export type PlanAction = 'add' | 'update' | 'scale' | 'settings' | 'unchanged' | 'remove';

export interface PlanStep {
  program: string;
  action: PlanAction;
  version: string;
  /** What this apply starts and stops. */
  start: number;
  stop: number;
  /** Files sent to the master's store (the rest it had). */
  files: { name: string; kind: AppFile['kind']; bytes: number; sha256: string; path: string }[];
}

export interface ApplyResult {
  service: string;
  changed: boolean;
  dryRun: boolean;
  plan: PlanStep[];
  started: { id: string; program: string; worker: string; pid: number | null }[];
  stopped: { id: string; program: string; worker: string }[];
  pending: { id: string; program: string; reason: string }[];
}

/** Anything the master needs to know to place an instance: its program's resources and placement. */
interface SlotRef {
  service: ServiceState;
  program: ProgramState;
  slot: Slot;
}

/**
 * The desired state and the loop that keeps it: services applied from files, each program's
 * instances placed on workers (or queued with a reason), started through the worker's keeper
 * (which restarts them by their policy, even without the master), re-adopted after a master
 * restart from what the workers report, and anything the state does not name stopped.
 */
export class ServiceManager {
  readonly store: ServiceStore;
  readonly artifacts: ArtifactStore;
  readonly events: EventLog;
  /** Workers declared lost (and not back since). */
  private readonly lost = new Set<string>();
  /** Fencing reports already recorded as events (worker, id, when). */
  private readonly fencedSeen = new Set<string>();
  /** Monotonic start of this master: a worker not yet reconnected after a restart is silent since then. */
  private readonly startedAt: number;
  /**
   * What each worker reported at the last reconcile. A worker with no instances shares
   * NO_INSTANCES (an empty Map is ~180 bytes, and most of a big fleet runs none of ours): the
   * maps are read-only but for forgetObserved, which deletes only what a map holds.
   */
  private readonly observed = new Map<string, ReadonlyMap<string, InstanceInfo>>();
  /** When each worker was last asked for its instances (wall ms, minus jitter). */
  private readonly lookedAt = new Map<string, number>();
  /** Workers to ask on the next pass: they joined, or a process of theirs ended. */
  private readonly dirty = new Set<string>();
  /** Instances an operation is starting or stopping: the loop leaves them alone. */
  private readonly busy = new Set<string>();
  /** Why a queued instance waits, from the last placement attempt. */
  private readonly reasons = new Map<string, string>();
  /** Instances that failed to start from the master's side: not retried before this time. */
  private readonly retryAt = new Map<string, { at: number; tries: number }>();
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private again = false;
  /** The next pass, waiting out PASS_GAP_MS since the last one started. */
  private delayed: NodeJS.Timeout | null = null;
  /** performance.now() when the last pass started. */
  private passStartedAt = Number.NEGATIVE_INFINITY;
  /**
   * The next pass looks over the whole fleet (set by the once-a-second timer). Any other pass
   * looks only at the workers something happened to (joined, back, an exit of ours, an
   * instance of ours not running and healthy): while thousands of workers join, a pass runs
   * for every few joins, and each looking over all of them made a join storm quadratic
   * (10,000 workers joining: 8.8 s of the master's 26 s of CPU in these passes).
   */
  private sweep = true;
  private closed = false;
  private readonly files = localFiles();
  /** Instances placed on several workers at once read each artifact once for all of them. */
  private readonly sources = new CopySources(this.files);
  /** Copies of an app to a worker in flight or just done, so instances placed together copy once. */
  private readonly copies = new Map<string, Promise<void>>();
  /** The operation running on each service (see locked). */
  private readonly locks = new Map<string, Promise<void>>();
  /** Placed direct launches (launch --cpus/--mem): reserved until the process ends. */
  private readonly direct = new Map<string, { worker: string; cpus: number; memoryBytes: number }>();

  constructor(
    private readonly fleet: Fleet,
    stateDir: string,
    private readonly logger: Logger,
    /** --lost-after, --stop-after, and replace: what a program's disconnect leaves out. */
    readonly disconnectDefaults: Disconnect = { lostAfterMs: 30_000, stopAfterMs: 25_000, replace: true },
  ) {
    this.store = new ServiceStore(stateDir, logger);
    this.artifacts = new ArtifactStore(stateDir);
    this.events = new EventLog(stateDir, logger);
    this.startedAt = fleet.clock();
  }

  async start(): Promise<void> {
    await this.store.load();
    this.timer = setInterval(() => {
      this.sweep = true;
      this.poke();
    }, RECONCILE_MS);
    this.timer.unref();
    // An exit matters here when it is a service's (its worker is asked again what it keeps) or
    // frees room a direct launch held (queued instances may fit now). Any other launch's end
    // costs no pass and no question to its worker.
    this.fleet.on('process-exit', (s, m) => {
      const released = this.direct.delete(`${s.name}/${m.pid}`);
      const [service, program] = m.app.split('.');
      const ours = Boolean(service && program && this.store.get(service)?.programs.some((p) => p.spec.name === program && appName(service, p) === m.app));
      if (ours) {
        this.dirty.add(s.name);
        this.events.record('exited', { worker: s.name, service, program }, `${service}/${program} pid ${m.pid} on ${s.name} ${m.exit.reason}`);
      }
      if (ours || released) this.poke();
    });
    this.fleet.on('log-problem', (s, m) => {
      const [service, program] = m.app.split('.');
      const where = { worker: s.name, ...(service && program ? { service, program } : {}) };
      if (m.problem === 'no-space')
        this.events.record('log-full', where, `the disk of ${s.name} is full: output of ${m.app} pid ${m.pid} is not logged (the process runs on)`);
      else
        this.events.record(
          'log-resumed',
          where,
          `${m.app} pid ${m.pid} on ${s.name} is logged again; ${formatBytes(m.droppedBytes)} of its output were lost to the full disk`,
        );
    });
    this.fleet.on('joined', (s) => {
      this.dirty.add(s.name);
      const back = this.lost.delete(s.name);
      this.events.record(
        back ? 'worker-back' : 'worker-joined',
        { worker: s.name },
        `${s.name} ${back ? 'is back (it was lost)' : 'joined'} from ${s.address}`,
      );
      this.poke();
    });
    this.fleet.on('available', (s) => {
      this.dirty.add(s.name);
      const back = this.lost.delete(s.name);
      this.events.record(back ? 'worker-back' : 'worker-available', { worker: s.name }, `${s.name} is ${back ? 'back (it was lost)' : 'available again'}`);
      this.poke();
    });
    this.fleet.on('unavailable', (s) => {
      this.events.record('worker-unavailable', { worker: s.name }, `${s.name} is unavailable (missed heartbeats)`);
      this.wakeWhenLost(s);
    });
    this.fleet.on('left', (s, why) => {
      this.events.record('worker-left', { worker: s.name }, `${s.name} disconnected (${why})`);
      this.wakeWhenLost(s);
    });
    this.poke();
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    if (this.delayed) clearTimeout(this.delayed);
    void this.events.close();
  }

  /**
   * Runs a reconcile pass soon: one at a time, a poke during a pass runs another after it, and
   * passes start PASS_GAP_MS apart (`now`: at once, for settle()).
   */
  poke(now = false): void {
    if (this.closed) return;
    if (this.running) {
      this.again = true;
      return;
    }
    if (this.delayed) {
      if (!now) return;
      clearTimeout(this.delayed);
      this.delayed = null;
    }
    // Monotonic: a wall clock stepped back must not hold passes for the size of the step.
    const wait = now ? 0 : this.passStartedAt + PASS_GAP_MS - performance.now();
    if (wait > 0) {
      this.delayed = setTimeout(() => {
        this.delayed = null;
        this.poke(true);
      }, wait);
      this.delayed.unref();
      return;
    }
    this.passStartedAt = performance.now();
    this.running = this.reconcile()
      .catch((err: unknown) => this.logger.error({ err }, 'reconcile failed'))
      .finally(() => {
        this.running = null;
        if (this.again) {
          this.again = false;
          this.poke();
        }
      });
  }

  /** Resolves after a whole reconcile pass that started after this call. */
  async settle(): Promise<void> {
    if (this.running) await this.running;
    this.poke(true);
    if (this.running) await this.running;
  }

  // ---------------------------------------------------------------- views

  status(name?: string): ServiceView[] {
    const services = name ? [this.requireService(name)] : this.store.services;
    return services.map((s) => ({
      name: s.name,
      file: s.file,
      appliedAt: s.appliedAt,
      programs: s.programs.map((p) => {
        const instances = p.slots.map((slot) => this.viewOf(p, slot));
        return {
          name: p.spec.name,
          version: p.version,
          desired: p.slots.length,
          running: instances.filter((i) => i.state === 'running').length,
          instances,
          pending: p.slots.filter((slot) => slot.worker === null).map((slot) => ({ id: slot.id, reason: this.reasons.get(slot.id) ?? 'waiting to be placed' })),
        };
      }),
    }));
  }

  queue(): QueueEntry[] {
    const entries: (QueueEntry & { at: number })[] = [];
    for (const s of this.store.services)
      for (const p of s.programs)
        for (const slot of p.slots)
          if (slot.worker === null)
            entries.push({
              service: s.name,
              program: p.spec.name,
              id: slot.id,
              priority: p.spec.priority,
              queuedAt: new Date(slot.queuedAt).toISOString(),
              at: slot.queuedAt,
              reason: this.reasons.get(slot.id) ?? 'waiting to be placed',
            });
    return entries.sort((a, b) => b.priority - a.priority || a.at - b.at || a.id.localeCompare(b.id)).map(({ at: _at, ...e }) => e);
  }

  private viewOf(p: ProgramState, slot: Slot): InstanceView {
    const movedFrom = slot.movedFrom ? { worker: slot.movedFrom.worker, why: slot.movedFrom.why, at: new Date(slot.movedFrom.since).toISOString() } : null;
    const base = { id: slot.id, worker: slot.worker, version: p.version, movedFrom };
    if (slot.worker === null) return { ...base, pid: null, state: 'pending', restarts: 0, lastExit: null };
    const session = this.fleet.lookup(slot.worker);
    const info = this.observed.get(slot.worker)?.get(slot.id);
    if (!session || session.status !== 'available')
      return { ...base, pid: info?.pid ?? null, state: 'lost', restarts: info?.restarts ?? 0, lastExit: info?.lastExit ?? null };
    if (!info) return { ...base, pid: null, state: 'starting', restarts: 0, lastExit: null };
    const state: InstanceStatus = info.state === 'running' ? (info.healthy ? 'running' : 'starting') : info.state;
    return { ...base, pid: info.pid, state, restarts: info.restarts, lastExit: info.lastExit };
  }

  private requireService(name: string): ServiceState {
    const s = this.store.get(name);
    if (!s) {
      const known = this.store.services.map((x) => x.name);
      throw new DroverError(
        ErrorCode.NOT_FOUND,
        `no service named "${name}"${known.length ? ` (services: ${known.join(', ')})` : ' (apply a service file first)'}`,
      );
    }
    return s;
  }

  // ---------------------------------------------------------------- apply

  /**
   * Applies a service file: the plan first, then all or nothing. New instances start (every
   * one of them) while the old version keeps running; only when all are healthy is the new
   * state written and the old instances stopped. If one fails, everything this apply started
   * is stopped and removed, and the error says which program, where, and why.
   */
  apply(
    spec: ServiceSpec,
    file: string,
    from: Files,
    opts: { dryRun: boolean; signal: AbortSignal; onPlan?(plan: PlanStep[]): Promise<void> },
  ): Promise<ApplyResult> {
    return this.locked(spec.name, () => this.applyNow(spec, file, from, opts));
  }

  /**
   * One change to a service at a time (two applies, an apply and a teardown): the second waits
   * for the first, then sees what it left.
   */
  private locked<T>(service: string, fn: () => Promise<T>): Promise<T> {
    const before = this.locks.get(service) ?? Promise.resolve();
    const run = before.then(fn, fn);
    const tail = run.then(
      () => undefined,
      () => undefined,
    );
    this.locks.set(service, tail);
    void tail.then(() => {
      if (this.locks.get(service) === tail) this.locks.delete(service);
    });
    return run;
  }

  private async applyNow(
    spec: ServiceSpec,
    file: string,
    from: Files,
    opts: { dryRun: boolean; signal: AbortSignal; onPlan?(plan: PlanStep[]): Promise<void> },
  ): Promise<ApplyResult> {
    // Every instance started waits on this one signal: thousands of listeners are expected.
    setMaxListeners(0, opts.signal);
    const old = this.store.get(spec.name);
    const dir = path.dirname(file);
    const programs: ProgramState[] = [];
    const plan: PlanStep[] = [];
    const sources = new Map<string, CopiedSource[]>();
    for (const given of spec.programs) {
      // The master's defaults fill what the file leaves out; stopAfter >= lostAfter is refused here.
      const p: ProgramSpec = { ...given, disconnect: resolveDisconnect(given, this.disconnectDefaults) };
      const collected = await collectProgramFiles(p, dir, from);
      const version = versionOf(p, collected);
      const prev = old?.programs.find((x) => x.spec.name === p.name);
      const action: PlanAction = !prev
        ? 'add'
        : prev.version !== version
          ? 'update'
          : prev.slots.length !== desiredCount(p, prev, this.fleet)
            ? 'scale'
            : JSON.stringify(prev.spec) !== JSON.stringify(p)
              ? 'settings'
              : 'unchanged';
      const state: ProgramState = {
        spec: p,
        version,
        files: collected.map(({ kind, name, size, sha256 }) => ({ kind, name, size, sha256 })),
        slots: action === 'unchanged' || action === 'scale' || action === 'settings' ? prev!.slots : [],
      };
      programs.push(state);
      sources.set(p.name, collected);
      const wanted = desiredCount(p, action === 'add' || action === 'update' ? undefined : prev, this.fleet);
      plan.push({
        program: p.name,
        action,
        version,
        start: action === 'add' || action === 'update' ? wanted : action === 'scale' ? Math.max(0, wanted - prev!.slots.length) : 0,
        stop: action === 'update' ? prev!.slots.length : action === 'scale' ? Math.max(0, prev!.slots.length - wanted) : 0,
        files: collected.map((f) => ({ name: f.name, kind: f.kind, bytes: f.size, sha256: f.sha256, path: f.source })),
      });
    }
    for (const prev of old?.programs ?? []) {
      if (!spec.programs.some((p) => p.name === prev.spec.name))
        plan.push({ program: prev.spec.name, action: 'remove', version: prev.version, start: 0, stop: prev.slots.length, files: [] });
    }
    const base: ApplyResult = {
      service: spec.name,
      changed: plan.some((s) => s.action !== 'unchanged'),
      dryRun: opts.dryRun,
      plan,
      started: [],
      stopped: [],
      pending: [],
    };
    await opts.onPlan?.(plan);
    if (!base.changed || opts.dryRun) return base;
    this.events.record('apply-started', { service: spec.name }, `apply of ${spec.name} from ${file} started`);

    // The master keeps the files, so it can place instances later without the client.
    for (const list of sources.values())
      for (const f of list) await this.artifacts.put({ path: f.source, size: f.size, sha256: f.sha256, identity: f.identity }, from, opts.signal);

    const now = Date.now();
    const fresh: SlotRef[] = [];
    const next: ServiceState = { name: spec.name, file, appliedAt: new Date().toISOString(), programs };
    for (const p of programs) {
      const step = plan.find((s) => s.program === p.spec.name)!;
      if (step.action === 'add' || step.action === 'update') {
        p.slots = slotKeys(p.spec, this.fleet, desiredCount(p.spec, undefined, this.fleet)).map((key) => ({
          id: instanceId(spec.name, p, key),
          worker: null,
          queuedAt: now,
        }));
        for (const slot of p.slots) fresh.push({ service: next, program: p, slot });
      } else if (step.action === 'scale') {
        const wanted = desiredCount(p.spec, p, this.fleet);
        const kept = p.slots.slice(0, wanted);
        const used = new Set(kept.map((s) => s.id));
        const added = slotKeys(p.spec, this.fleet, wanted)
          .map((key) => ({ id: instanceId(spec.name, p, key), worker: null, queuedAt: now }))
          .filter((s) => !used.has(s.id))
          .slice(0, wanted - kept.length);
        p.slots = [...kept, ...added];
        for (const slot of added) fresh.push({ service: next, program: p, slot });
      }
    }
    const keptIds = new Set(programs.flatMap((p) => p.slots.map((s) => s.id)));
    const retiring: { id: string; program: string; worker: string; app: string }[] = [];
    for (const prev of old?.programs ?? [])
      for (const slot of prev.slots)
        if (!keptIds.has(slot.id) && slot.worker) retiring.push({ id: slot.id, program: prev.spec.name, worker: slot.worker, app: appName(spec.name, prev) });

    for (const ref of fresh) this.busy.add(ref.slot.id);
    try {
      // Placement sees the old instances (they run until the new ones are healthy) and the new ones as they are placed.
      this.placeAll(fresh, [next]);
      const placed = fresh.filter((r) => r.slot.worker !== null);
      const launched = await Promise.allSettled(placed.map((ref) => this.startSlot(ref, opts.signal)));
      const failedLaunch = launched.findIndex((r) => r.status === 'rejected');
      if (failedLaunch >= 0) {
        const ref = placed[failedLaunch]!;
        const err = toDroverError((launched[failedLaunch] as PromiseRejectedResult).reason);
        await this.rollBack(placed, next, `${ref.program.spec.name} on ${ref.slot.worker}: ${err.message}`);
        throw new DroverError(err.code, `${spec.name}/${ref.program.spec.name} on ${ref.slot.worker}: ${err.message}; nothing of this apply is left running`);
      }
      const unhealthy = await this.waitHealthy(placed, opts.signal);
      if (opts.signal.aborted) {
        await this.rollBack(placed, next, 'cancelled');
        throw new DroverError(
          ErrorCode.CANCELLED,
          `apply of ${spec.name} cancelled; nothing of it is left running${old ? ', the previous version runs on' : ''}`,
        );
      }
      if (unhealthy) {
        await this.rollBack(placed, next, unhealthy.split('\n')[0]!);
        throw new DroverError(
          ErrorCode.EXEC_FAILED,
          `${unhealthy}\nnothing of this apply is left running${old ? '; the previous version runs on untouched' : ''}`,
        );
      }
      // All new instances are healthy: the new state becomes current, then the old instances go.
      await this.store.put(spec.name, next);
      base.started = placed.map((r) => ({
        id: r.slot.id,
        program: r.program.spec.name,
        worker: r.slot.worker!,
        pid: this.observed.get(r.slot.worker!)?.get(r.slot.id)?.pid ?? null,
      }));
      base.pending = fresh
        .filter((r) => r.slot.worker === null)
        .map((r) => ({ id: r.slot.id, program: r.program.spec.name, reason: this.reasons.get(r.slot.id)! }));
    } finally {
      for (const ref of fresh) this.busy.delete(ref.slot.id);
    }
    base.stopped = await this.retire(retiring, opts.signal);
    await this.artifacts.prune(this.store.referencedFiles());
    this.events.record(
      'apply-done',
      { service: spec.name },
      `apply of ${spec.name} done: ${base.started.length} started, ${base.stopped.length} stopped, ${base.pending.length} queued`,
    );
    this.poke();
    return base;
  }

  /** Stops instances the state no longer names, and deletes their app from the worker when nothing else uses it. */
  private async retire(list: { id: string; program: string; worker: string; app: string }[], signal: AbortSignal): Promise<ApplyResult['stopped']> {
    for (const r of list) this.busy.add(r.id);
    try {
      const done = await Promise.allSettled(
        list.map(async (r) => {
          const s = this.fleet.lookup(r.worker);
          if (!s || s.status !== 'available') return null;
          await s.request('instance-stop', { instance: r.id, mode: 'stop' }, { signal, timeoutMs: 120_000 });
          this.events.record('stopped', { worker: r.worker, instance: r.id }, `${r.id} stopped on ${r.worker}`);
          return r;
        }),
      );
      await this.deleteUnusedApps(new Set(list.map((r) => `${r.worker}\n${r.app}`)), signal);
      return done.flatMap((d) => (d.status === 'fulfilled' && d.value ? [{ id: d.value.id, program: d.value.program, worker: d.value.worker }] : []));
    } finally {
      for (const r of list) this.busy.delete(r.id);
    }
  }

  /** Deletes `worker\napp` pairs no instance of the desired state uses. */
  private async deleteUnusedApps(pairs: Set<string>, signal: AbortSignal): Promise<void> {
    const used = new Set(
      this.store.services.flatMap((s) => s.programs.flatMap((p) => p.slots.filter((x) => x.worker).map((x) => `${x.worker}\n${appName(s.name, p)}`))),
    );
    await Promise.allSettled(
      [...pairs]
        .filter((pair) => !used.has(pair))
        .map((pair) => {
          const [worker, app] = pair.split('\n') as [string, string];
          this.copies.delete(pair);
          const s = this.fleet.lookup(worker);
          if (!s || s.status !== 'available') return Promise.resolve();
          return s.request('app-delete', { app, force: true }, { signal, timeoutMs: 60_000 }).catch(() => undefined);
        }),
    );
  }

  private async rollBack(started: SlotRef[], next: ServiceState, why: string): Promise<void> {
    this.events.record('apply-rolled-back', { service: next.name }, `apply of ${next.name} rolled back: ${why}`);
    const signal = new AbortController().signal;
    await Promise.allSettled(
      started.map((ref) =>
        Promise.resolve(this.fleet.lookup(ref.slot.worker!)?.request('instance-stop', { instance: ref.slot.id, mode: 'kill' }, { signal, timeoutMs: 30_000 })),
      ),
    );
    const pairs = new Set(started.map((ref) => `${ref.slot.worker}\n${appName(next.name, ref.program)}`));
    await this.deleteUnusedApps(pairs, signal);
    for (const ref of started) this.forgetObserved(ref.slot.worker!, ref.slot.id);
  }

  /**
   * Waits until every started instance has run `healthy.after`; returns why the first that did
   * not failed (program, worker, exit, and the end of its log), or null when all are healthy.
   */
  private async waitHealthy(refs: SlotRef[], signal: AbortSignal): Promise<string | null> {
    const deadline = Date.now() + Math.max(0, ...refs.map((r) => r.program.spec.healthyAfterMs)) + HEALTHY_GRACE_MS;
    const waiting = new Set(refs);
    while (waiting.size > 0) {
      if (signal.aborted) return 'cancelled';
      const byWorker = new Map<string, SlotRef[]>();
      for (const ref of waiting) byWorker.set(ref.slot.worker!, [...(byWorker.get(ref.slot.worker!) ?? []), ref]);
      for (const [worker, list] of byWorker) {
        const session = this.fleet.lookup(worker);
        const infos = session ? await this.fetch(session).catch(() => null) : null;
        for (const ref of list) {
          const info = infos?.get(ref.slot.id);
          const what = `${ref.service.name}/${ref.program.spec.name} on ${worker}`;
          if (!infos) return `${what}: the worker stopped answering`;
          if (!info) return `${what}: the worker does not keep the instance`;
          // Started: it ran healthy.after (now, or before an exit its restart policy handles).
          if ((info.state === 'running' && info.restarts === 0 && info.healthy) || info.everHealthy) waiting.delete(ref);
          else if (info.state !== 'running' || info.restarts > 0)
            return `${what} ${info.lastExit ? `ended: ${info.lastExit.reason}` : `is ${info.state}`}${await this.logTail(session!, info)}`;
        }
      }
      if (waiting.size === 0) break;
      if (Date.now() > deadline) {
        const ref = [...waiting][0]!;
        return `${ref.service.name}/${ref.program.spec.name} on ${ref.slot.worker} did not become healthy within ${Math.round((deadline - Date.now() + HEALTHY_GRACE_MS) / 1000)} s`;
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    return null;
  }

  /** The last lines of an instance's log, indented, for an error message. */
  private async logTail(session: WorkerSession, info: InstanceInfo): Promise<string> {
    if (info.pid === null) return '';
    let text = '';
    try {
      await session.request(
        'logs',
        { pid: info.pid, app: null, tail: 5, follow: false },
        { timeoutMs: 5000, onChunk: (c) => void (text += c.toString('utf8')) },
      );
    } catch {
      return '';
    }
    const lines = text.trimEnd().split('\n').filter(Boolean).slice(-5);
    return lines.length ? `\n  last lines of its log:\n${lines.map((l) => `    ${l.slice(0, 300)}`).join('\n')}` : '';
  }

  // ---------------------------------------------------------------- teardown, scale, restart

  teardown(name: string, signal: AbortSignal): Promise<{ service: string; stopped: ApplyResult['stopped'] }> {
    return this.locked(name, () => this.teardownNow(name, signal));
  }

  private async teardownNow(name: string, signal: AbortSignal): Promise<{ service: string; stopped: ApplyResult['stopped'] }> {
    const s = this.requireService(name);
    const list = s.programs.flatMap((p) =>
      p.slots.filter((x) => x.worker).map((x) => ({ id: x.id, program: p.spec.name, worker: x.worker!, app: appName(s.name, p) })),
    );
    await this.store.put(name, null);
    const stopped = await this.retire(list, signal);
    await this.artifacts.prune(this.store.referencedFiles());
    return { service: name, stopped };
  }

  scale(name: string, program: string, replicas: number, signal: AbortSignal): Promise<ServiceView> {
    return this.locked(name, () => this.scaleNow(name, program, replicas, signal));
  }

  private async scaleNow(name: string, program: string, replicas: number, signal: AbortSignal): Promise<ServiceView> {
    const s = this.requireService(name);
    const p = this.requireProgram(s, program);
    if (p.spec.on === 'all') throw new DroverError(ErrorCode.BAD_ARGUMENTS, `${name}/${program} runs on all workers: its count follows the fleet`);
    const now = Date.now();
    const kept = p.slots.slice(0, replicas);
    const removed = p.slots.slice(replicas);
    const used = new Set(kept.map((x) => x.id));
    for (let i = 0; kept.length < replicas; i++) {
      const id = instanceId(name, p, String(i));
      if (!used.has(id)) kept.push({ id, worker: null, queuedAt: now });
    }
    p.spec = { ...p.spec, replicas };
    p.slots = kept;
    await this.store.save();
    await this.retire(
      removed.filter((x) => x.worker).map((x) => ({ id: x.id, program, worker: x.worker!, app: appName(name, p) })),
      signal,
    );
    await this.settle();
    return this.status(name)[0]!;
  }

  /** Restarts instances one at a time: stop, start on the same worker, wait healthy, next. */
  restart(name: string, program: string | null, signal: AbortSignal): Promise<ServiceView> {
    return this.locked(name, () => this.restartNow(name, program, signal));
  }

  private async restartNow(name: string, program: string | null, signal: AbortSignal): Promise<ServiceView> {
    const s = this.requireService(name);
    const programs = program ? [this.requireProgram(s, program)] : s.programs;
    for (const p of programs) {
      for (const slot of p.slots) {
        if (!slot.worker) continue;
        const session = this.fleet.lookup(slot.worker);
        if (!session || session.status !== 'available') continue;
        const ref = { service: s, program: p, slot };
        this.busy.add(slot.id);
        try {
          await session.request('instance-stop', { instance: slot.id, mode: 'stop' }, { signal, timeoutMs: p.spec.stop.timeoutMs + 30_000 });
          await this.startSlot(ref, signal);
          const why = await this.waitHealthy([ref], signal);
          if (why) throw new DroverError(ErrorCode.EXEC_FAILED, `${why}\nrestart stopped there; the instances after it were not restarted`);
        } finally {
          this.busy.delete(slot.id);
        }
      }
    }
    return this.status(name)[0]!;
  }

  private requireProgram(s: ServiceState, name: string): ProgramState {
    const p = s.programs.find((x) => x.spec.name === name);
    if (!p)
      throw new DroverError(ErrorCode.NOT_FOUND, `service ${s.name} has no program "${name}" (programs: ${s.programs.map((x) => x.spec.name).join(', ')})`);
    return p;
  }

  // ---------------------------------------------------------------- placement and starting

  /** A direct launch with --cpus/--mem holds its room on `worker` until the process ends. */
  reserve(worker: string, pid: number, wants: { cpus: number; memoryBytes: number }): void {
    this.direct.set(`${worker}/${pid}`, { worker, ...wants });
  }

  /**
   * The workers as placement sees them: what every desired instance reserves (those of the
   * stored state, and of `extra` states an apply is building, old and new alike: old instances
   * hold their room until they stop), and placed direct launches.
   */
  candidates(extra: ServiceState[] = []): { list: Candidate[]; counts: Map<string, Map<string, number>> } {
    const byWorker = new Map<string, { cpus: number; memory: number; instances: number }>();
    const counts = new Map<string, Map<string, number>>();
    const seen = new Set<string>();
    for (const s of [...this.store.services, ...extra])
      for (const p of s.programs)
        for (const slot of p.slots) {
          if (!slot.worker || seen.has(slot.id)) continue;
          seen.add(slot.id);
          const r = byWorker.get(slot.worker) ?? { cpus: 0, memory: 0, instances: 0 };
          r.instances += 1;
          r.cpus += p.spec.resources.cpus;
          r.memory += p.spec.resources.memoryBytes;
          byWorker.set(slot.worker, r);
          const key = programKey(s, p);
          const c = counts.get(key) ?? new Map<string, number>();
          c.set(slot.worker, (c.get(slot.worker) ?? 0) + 1);
          counts.set(key, c);
        }
    for (const d of this.direct.values()) {
      const r = byWorker.get(d.worker) ?? { cpus: 0, memory: 0, instances: 0 };
      r.cpus += d.cpus;
      r.memory += d.memoryBytes;
      byWorker.set(d.worker, r);
    }
    const list = this.fleet.list().map((w) => {
      const r = byWorker.get(w.name) ?? { cpus: 0, memory: 0, instances: 0 };
      return {
        name: w.name,
        available: w.status === 'available',
        labels: w.hello.labels ?? {},
        cpus: w.hello.cpus,
        memoryBytes: w.hello.memoryBytes,
        memoryUsedBytes: w.load?.memoryUsedBytes ?? null,
        reservedCpus: r.cpus,
        reservedMemoryBytes: r.memory,
        sameProgram: 0,
        instances: r.instances,
      };
    });
    return { list, counts };
  }

  /**
   * Places the slots in order, each as if the ones before it were already there (their room
   * reserved, their program's spread counted): one snapshot of the fleet, updated as it goes,
   * so a queue of N on a fleet of W costs N·W, not N·(N+W) with a sort each time.
   */
  private placeAll(refs: SlotRef[], extra: ServiceState[] = []): SlotRef[] {
    if (refs.length === 0) return [];
    const { list, counts } = this.candidates(extra);
    for (const c of list) c.draining = this.store.drained.has(c.name);
    const byName = new Map(list.map((c) => [c.name, c]));
    const placed: SlotRef[] = [];
    for (const ref of refs) {
      const key = programKey(ref.service, ref.program);
      const mine = counts.get(key) ?? new Map<string, number>();
      counts.set(key, mine);
      for (const c of list) c.sameProgram = mine.get(c.name) ?? 0;
      const { resources } = ref.program.spec;
      const where = place({ on: ref.program.spec.on, cpus: resources.cpus, memoryBytes: resources.memoryBytes }, list);
      if (!where.ok) {
        this.reasons.set(ref.slot.id, where.reason);
        continue;
      }
      ref.slot.worker = where.worker;
      this.reasons.delete(ref.slot.id);
      this.events.record(
        'placed',
        { worker: where.worker, instance: ref.slot.id, service: ref.service.name, program: ref.program.spec.name },
        `${ref.slot.id} placed on ${where.worker}`,
      );
      const c = byName.get(where.worker)!;
      c.reservedCpus += resources.cpus;
      c.reservedMemoryBytes += resources.memoryBytes;
      c.instances += 1;
      mine.set(where.worker, (mine.get(where.worker) ?? 0) + 1);
      placed.push(ref);
    }
    return placed;
  }

  /** Copies the program's files to the slot's worker (what it lacks) and starts the instance there. */
  private async startSlot(ref: SlotRef, signal: AbortSignal): Promise<void> {
    const session = this.fleet.get(ref.slot.worker!);
    const app = appName(ref.service.name, ref.program);
    const files: CopiedSource[] = ref.program.files.map((f) => ({ ...f, source: this.artifacts.pathOf(f.sha256), mode: f.kind === 'exe' ? 0o755 : 0o644 }));
    await this.ensureApp(session, app, files, signal);
    const spec = ref.program.spec;
    const d = disconnectOf(spec, this.disconnectDefaults);
    const instance: InstanceSpec = {
      id: ref.slot.id,
      restart: spec.restart,
      stop: spec.stop,
      healthyAfterMs: spec.healthyAfterMs,
      ...(d.replace ? { fence: { stopAfterMs: d.stopAfterMs, lostAfterMs: d.lostAfterMs } } : {}),
      ...(spec.log ? { log: spec.log } : {}),
    };
    const r = await session.request('launch', { app, args: spec.args, env: spec.env, instance }, { signal, timeoutMs: 30_000 });
    this.events.record(
      'started',
      { worker: session.name, instance: ref.slot.id, service: ref.service.name, program: spec.name },
      `${ref.slot.id} started on ${session.name}, pid ${r.pid}`,
    );
  }

  /**
   * Copies an app's files to a worker once however many instances start there at the same time
   * (two copies of one app racing on a worker would each commit the other's half). A copy that
   * succeeded is trusted for a minute; one that failed is tried again by the next caller.
   */
  private ensureApp(session: WorkerSession, app: string, files: CopiedSource[], signal: AbortSignal): Promise<void> {
    const key = `${session.name}\n${app}`;
    let copy = this.copies.get(key);
    if (!copy) {
      copy = copyToWorker(session, app, files, { from: this.files, sources: this.sources, signal, onProgress: () => undefined }).then((outcome) =>
        this.onCopied(outcome.files.filter((f) => f.sent).reduce((n, f) => n + f.file.size, 0)),
      );
      this.copies.set(key, copy);
      copy.then(
        () => setTimeout(() => this.copies.get(key) === copy && this.copies.delete(key), 60_000).unref(),
        () => this.copies.get(key) === copy && this.copies.delete(key),
      );
    }
    return copy;
  }

  private async fetch(session: WorkerSession): Promise<ReadonlyMap<string, InstanceInfo>> {
    // An exit reported while this request is out marks it again.
    this.dirty.delete(session.name);
    const asked = Date.now();
    const r = await session.request('instances', {}, { timeoutMs: 5000 }).catch((err: unknown) => {
      this.dirty.add(session.name);
      throw err;
    });
    this.lookedAt.set(session.name, asked - Math.random() * 5000);
    const map: ReadonlyMap<string, InstanceInfo> = r.instances.length === 0 ? NO_INSTANCES : new Map(r.instances.map((i) => [i.id, i]));
    // What changed since the last look: restarts the worker made, instances that became healthy.
    const before = this.observed.get(session.name);
    for (const i of r.instances) {
      const was = before?.get(i.id);
      if (was && i.restarts > was.restarts)
        this.events.record(
          'restarted',
          { worker: session.name, instance: i.id },
          `${i.id} restarted by ${session.name} (${i.restarts} in all)${i.lastExit ? ` after it ${i.lastExit.reason}` : ''}`,
        );
      if (i.healthy && (!was || !was.healthy || i.restarts > was.restarts))
        this.events.record('healthy', { worker: session.name, instance: i.id }, `${i.id} is healthy on ${session.name}`);
      if (i.state === 'failed' && was && was.state !== 'failed')
        this.events.record(
          'failed',
          { worker: session.name, instance: i.id },
          `${i.id} failed on ${session.name}: restarted too often${i.lastExit ? `; last: ${i.lastExit.reason}` : ''}`,
        );
    }
    for (const f of r.fenced ?? []) {
      const key = `${session.name}\n${f.id}\n${f.at}`;
      if (this.fencedSeen.has(key)) continue;
      this.fencedSeen.add(key);
      this.events.record(
        'fenced',
        { worker: session.name, instance: f.id },
        `${f.id} was stopped by ${session.name} itself at ${f.at}: it had lost the master (fencing)`,
      );
    }
    this.observed.set(session.name, map);
    return map;
  }

  /**
   * One pass: learn what every available worker keeps, start desired instances that are not
   * there (placing queued ones where there is room, in queue order), and stop instances no
   * service wants (left by an apply the master did not live to finish).
   */
  private async reconcile(): Promise<void> {
    const desired = new Set<string>();
    const refs: SlotRef[] = [];
    for (const s of this.store.services)
      for (const p of s.programs) {
        if (p.spec.on === 'all') this.coverAllWorkers(s, p);
        for (const slot of p.slots) {
          desired.add(slot.id);
          refs.push({ service: s, program: p, slot });
        }
      }
    const now = Date.now();
    if (this.markLost(refs)) await this.store.save();
    const queue = refs
      .filter((r) => r.slot.worker === null)
      .sort((a, b) => b.program.spec.priority - a.program.spec.priority || a.slot.queuedAt - b.slot.queuedAt);
    const placedNow = this.placeAll(queue.filter((ref) => !this.busy.has(ref.slot.id)));
    for (const ref of placedNow) this.logger.info({ instance: ref.slot.id, worker: ref.slot.worker }, 'placed a queued instance');
    const changed = placedNow.length > 0;
    if (changed) await this.store.save();
    // Who to ask what it keeps: workers with an instance of ours not (yet) running and healthy,
    // workers that joined or reported an exit, and every worker that keeps instances now and
    // then. One that kept none at its last look gains one only by a launch of ours (after
    // which it is asked) or is asked when it rejoins: a look at each every 30 s cost a
    // 19,500-worker master a burst of 19,500 requests.
    const ask = new Set<string>();
    for (const { slot } of refs) {
      if (!slot.worker) continue;
      const seen = this.observed.get(slot.worker)?.get(slot.id);
      if (!seen || seen.state !== 'running' || !seen.healthy) ask.add(slot.worker);
    }
    const fresh = new Set<string>();
    const sweep = this.sweep;
    this.sweep = false;
    const candidates = sweep ? this.fleet.list() : [...new Set([...ask, ...this.dirty])].flatMap((name) => this.fleet.lookup(name) ?? []);
    await Promise.all(
      candidates
        .filter((w) => w.status === 'available')
        .filter(
          (w) =>
            ask.has(w.name) ||
            this.dirty.has(w.name) ||
            !this.observed.has(w.name) ||
            (this.observed.get(w.name) !== NO_INSTANCES && now - (this.lookedAt.get(w.name) ?? 0) > FULL_LOOK_MS),
        )
        .map(async (w) => {
          try {
            await this.fetch(w);
            fresh.add(w.name);
          } catch {
            // not this pass
          }
        }),
    );
    for (const ref of refs) {
      const { slot } = ref;
      if (!slot.worker || this.busy.has(slot.id) || !fresh.has(slot.worker)) continue;
      if (this.observed.get(slot.worker)?.has(slot.id)) continue;
      const retry = this.retryAt.get(slot.id);
      if (retry && retry.at > now) continue;
      this.busy.add(slot.id);
      void this.startSlot(ref, new AbortController().signal)
        .then(() => {
          this.retryAt.delete(slot.id);
          // Seen at once (status, the next pass), not a pass later.
          const session = this.fleet.lookup(slot.worker!);
          if (session)
            return this.fetch(session).then(
              () => undefined,
              () => undefined,
            );
        })
        .catch((err: unknown) => {
          const tries = (retry?.tries ?? 0) + 1;
          this.retryAt.set(slot.id, { at: Date.now() + Math.min(60_000, 1000 * 2 ** tries), tries });
          this.reasons.set(slot.id, toDroverError(err).message);
          this.logger.warn({ instance: slot.id, worker: slot.worker, err: toDroverError(err).message }, 'could not start an instance; will retry');
        })
        .finally(() => this.busy.delete(slot.id));
    }
    // Instances no service wants (what a master killed mid-apply left, or a teardown missed), and
    // instances wanted elsewhere now (a lost worker back after its instances were moved).
    const home = new Map(refs.map((r) => [r.slot.id, r.slot.worker]));
    for (const worker of fresh) {
      for (const id of this.observed.get(worker)!.keys()) {
        const session = this.fleet.lookup(worker);
        if ((desired.has(id) && home.get(id) === worker) || this.busy.has(id) || !session) continue;
        if (desired.has(id))
          this.events.record('stopped', { worker, instance: id }, `${id} stopped on ${worker}: it runs on ${home.get(id) ?? 'another worker'} now`);
        this.busy.add(id);
        this.logger.warn({ instance: id, worker }, 'stopping an instance no service wants');
        void session
          .request('instance-stop', { instance: id, mode: 'stop' }, { timeoutMs: 120_000 })
          .catch(() => undefined)
          .finally(() => this.busy.delete(id));
      }
    }
  }

  /**
   * Instances on a worker unheard of for their lostAfter (from its last heartbeat, or from this
   * master's start for one not back since) go back to the queue, to be placed elsewhere, when
   * their program says replace. Returns whether anything moved.
   */
  private markLost(refs: SlotRef[]): boolean {
    const nowMono = this.fleet.clock();
    let moved = false;
    for (const ref of refs) {
      const { slot } = ref;
      if (!slot.worker || this.busy.has(slot.id)) continue;
      const session = this.fleet.lookup(slot.worker);
      if (session?.status === 'available') continue;
      const d = disconnectOf(ref.program.spec, this.disconnectDefaults);
      if (!d.replace) continue;
      const silent = session ? session.liveness.silentMs(nowMono) : nowMono - this.startedAt;
      if (silent < d.lostAfterMs) continue;
      const worker = slot.worker;
      if (!this.lost.has(worker)) {
        this.lost.add(worker);
        this.events.record('worker-lost', { worker }, `${worker} is lost (nothing heard for ${Math.round(silent / 1000)} s)`);
      }
      slot.movedFrom = { worker, why: 'lost', since: Date.now() - silent };
      slot.worker = null;
      slot.queuedAt = Date.now();
      this.forgetObserved(worker, slot.id);
      moved = true;
      this.events.record(
        'rescheduled',
        { worker, instance: slot.id, service: ref.service.name, program: ref.program.spec.name },
        `${slot.id} rescheduled from ${worker} (lost ${Math.round(silent / 1000)} s ago)`,
      );
    }
    return moved;
  }

  /** Drops instance `id` from what `worker` reported (a map that holds it is never NO_INSTANCES). */
  private forgetObserved(worker: string, id: string): void {
    const seen = this.observed.get(worker);
    if (seen?.has(id)) (seen as Map<string, InstanceInfo>).delete(id);
  }

  /** What `worker` reported of its instances at the last look (for metrics). */
  observedOn(worker: string): ReadonlyMap<string, InstanceInfo> | undefined {
    return this.observed.get(worker);
  }

  /** Told of the bytes each copy to a worker sent (metrics). */
  onCopied: (bytes: number) => void = () => undefined;

  /** draining while instances are still on it, drained once none are; null when not drained. */
  drainState(worker: string): 'draining' | 'drained' | null {
    if (!this.store.drained.has(worker)) return null;
    return this.store.services.some((s) => s.programs.some((p) => p.slots.some((x) => x.worker === worker))) ? 'draining' : 'drained';
  }

  /**
   * Moves every instance off `worker` and places nothing new there: each instance starts
   * elsewhere, is waited on until healthy, and only then stops here, so the count never dips.
   */
  async drain(worker: string, signal: AbortSignal): Promise<{ worker: string; moved: { id: string; to: string }[]; stayed: { id: string; reason: string }[] }> {
    this.fleet.find(worker);
    this.store.drained.add(worker);
    await this.store.save();
    this.events.record('drain-started', { worker }, `draining ${worker}`);
    const moved: { id: string; to: string }[] = [];
    const stayed: { id: string; reason: string }[] = [];
    for (const s of this.store.services)
      for (const p of s.programs)
        for (const slot of p.slots.filter((x) => x.worker === worker)) {
          await this.locked(s.name, () => this.moveOff(s, p, slot, worker, signal, moved, stayed));
        }
    this.events.record('drain-done', { worker }, `${worker} drained: ${moved.length} moved${stayed.length ? `, ${stayed.length} could not move` : ''}`);
    return { worker, moved, stayed };
  }

  private async moveOff(
    s: ServiceState,
    p: ProgramState,
    slot: Slot,
    worker: string,
    signal: AbortSignal,
    moved: { id: string; to: string }[],
    stayed: { id: string; reason: string }[],
  ): Promise<void> {
    if (slot.worker !== worker) return;
    this.busy.add(slot.id);
    try {
      const probe: SlotRef = { service: s, program: p, slot: { ...slot, worker: null } };
      this.placeAll([probe]);
      const to = probe.slot.worker;
      if (!to) return void stayed.push({ id: slot.id, reason: this.reasons.get(slot.id) ?? 'no room elsewhere' });
      await this.startSlot(probe, signal);
      const why = await this.waitHealthy([probe], signal);
      if (why) {
        await Promise.resolve(this.fleet.lookup(to)?.request('instance-stop', { instance: slot.id, mode: 'kill' }, { timeoutMs: 30_000 })).catch(
          () => undefined,
        );
        return void stayed.push({ id: slot.id, reason: why });
      }
      slot.worker = to;
      slot.movedFrom = { worker, why: 'drained', since: Date.now() };
      await this.store.save();
      this.events.record(
        'rescheduled',
        { worker, instance: slot.id, service: s.name, program: p.spec.name },
        `${slot.id} moved from ${worker} to ${to} (drain)`,
      );
      await Promise.resolve(
        this.fleet.lookup(worker)?.request('instance-stop', { instance: slot.id, mode: 'stop' }, { signal, timeoutMs: p.spec.stop.timeoutMs + 30_000 }),
      ).catch(() => undefined);
      this.events.record('stopped', { worker, instance: slot.id }, `${slot.id} stopped on ${worker} (drain)`);
      moved.push({ id: slot.id, to });
    } finally {
      this.busy.delete(slot.id);
    }
  }

  async undrain(worker: string): Promise<{ worker: string; wasDrained: boolean }> {
    const wasDrained = this.store.drained.delete(worker);
    await this.store.save();
    if (wasDrained) this.events.record('undrained', { worker }, `${worker} takes new placements again`);
    this.poke();
    return { worker, wasDrained };
  }

  /** Runs a pass the moment a silent worker's instances are due to be lost, not up to a second later. */
  private wakeWhenLost(s: WorkerSession): void {
    let due = Infinity;
    for (const svc of this.store.services)
      for (const p of svc.programs) {
        const d = disconnectOf(p.spec, this.disconnectDefaults);
        if (d.replace && p.slots.some((x) => x.worker === s.name)) due = Math.min(due, d.lostAfterMs - s.liveness.silentMs(this.fleet.clock()));
      }
    if (due === Infinity) return;
    setTimeout(() => this.poke(), Math.max(0, due) + 5).unref();
  }

  /** A program on all workers has one slot per available matching worker. */
  private coverAllWorkers(s: ServiceState, p: ProgramState): void {
    const have = new Set(p.slots.map((x) => x.worker));
    const before = p.slots.length;
    for (const w of this.fleet.list()) {
      if (w.status !== 'available' || have.has(w.name)) continue;
      p.slots.push({ id: instanceId(s.name, p, w.name), worker: w.name, queuedAt: Date.now() });
    }
    if (p.slots.length > before) void this.store.save();
  }
}

/** A program's disconnect settings (services applied before they existed get the defaults). */
function disconnectOf(spec: ProgramSpec, defaults: Disconnect): Disconnect {
  return {
    lostAfterMs: spec.disconnect?.lostAfterMs ?? defaults.lostAfterMs,
    stopAfterMs: spec.disconnect?.stopAfterMs ?? defaults.stopAfterMs,
    replace: spec.disconnect?.replace ?? defaults.replace,
  };
}

/** A program version, for spreading its replicas. */
function programKey(s: ServiceState, p: ProgramState): string {
  return `${s.name}/${p.spec.name}/${p.version}`;
}

/**
 * How many instances a program wants: its replicas; on all workers, one per available worker
 * (the slots it has follow the fleet, so re-applying it is no change of count).
 */
function desiredCount(spec: ProgramSpec, prev: ProgramState | undefined, fleet: Fleet): number {
  if (spec.on !== 'all') return spec.replicas;
  return prev ? prev.slots.length : fleet.list().filter((w) => w.status === 'available').length;
}

function slotKeys(spec: ProgramSpec, fleet: Fleet, count: number): string[] {
  if (spec.on === 'all')
    return fleet
      .list()
      .filter((w) => w.status === 'available')
      .map((w) => w.name);
  return Array.from({ length: count }, (_, i) => String(i));
}

function instanceId(service: string, p: ProgramState, key: string): string {
  return `${service}.${p.spec.name}.${p.version.slice(0, 8)}.${key}`;
}

/** What makes a run: the files, and everything but how many and where. A change is a new version. */
function versionOf(p: ProgramSpec, files: CopiedSource[]): string {
  const { replicas: _r, on: _on, resources: _res, priority: _pr, path: _path, libs: _libs, ...run } = p;
  return createHash('sha256')
    .update(JSON.stringify({ run, files: files.map((f) => [f.kind, f.name, f.sha256]) }))
    .digest('hex')
    .slice(0, 12);
}

/** The executable and its non-system libraries (found by ldd where the user is), and each lib the file lists. */
async function collectProgramFiles(p: ProgramSpec, dir: string, from: Files): Promise<CopiedSource[]> {
  const exePath = path.resolve(dir, p.path);
  const exeName = path.basename(exePath);
  const bad = checkFileName(exeName);
  if (bad) throw new DroverError(ErrorCode.BAD_NAME, `program ${p.name}: ${bad}`);
  const describe = async (file: string, kind: AppFile['kind'], name: string): Promise<CopiedSource> => {
    const facts = await from.describe(file).catch((err: unknown) => {
      const e = toDroverError(err);
      throw new DroverError(e.code, `program ${p.name}: ${e.message}`);
    });
    return { kind, name, size: facts.size, sha256: facts.sha256, source: facts.path, identity: facts.identity, mode: kind === 'exe' ? 0o755 : 0o644 };
  };
  const list: CopiedSource[] = [await describe(exePath, 'exe', exeName)];
  const byName = new Map<string, string>();
  const explicit = p.libs.map((l) => path.resolve(dir, l));
  for (const lib of explicit) byName.set(path.basename(lib), lib);
  for (const scanned of [exePath, ...explicit]) {
    const scan = await from.libraries(scanned);
    for (const lib of scan.libraries) if (!byName.has(lib.name)) byName.set(lib.name, lib.path);
    if (scan.missing.some((m) => !byName.has(m)))
      throw new DroverError(
        ErrorCode.LIBRARY_MISSING,
        `program ${p.name}: ${scan.missing.filter((m) => !byName.has(m)).join(', ')} (needed by ${path.basename(scanned)}) not found where the file was applied; add it to libs`,
      );
  }
  for (const [name, lib] of byName) {
    const bad = checkFileName(name);
    if (bad) throw new DroverError(ErrorCode.BAD_NAME, `program ${p.name}: --lib ${lib}: ${bad}`);
    list.push(await describe(lib, 'lib', name));
  }
  return list;
}
