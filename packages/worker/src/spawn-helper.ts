import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pipeOf, type HelperPump, type HelperPumpEvent, type PumpHost } from './log-pump.js';
import type { Logger } from './logger.js';

/** How a launched process ended, as Node reports a child's exit. */
export type ExitListener = (code: number | null, signal: NodeJS.Signals | null) => void;

/** A process the agent started, whichever way it was forked. */
export interface Child {
  readonly pid: number;
  /** Calls `fn` once with how the process ended (soon, if it has already). */
  onExit(fn: ExitListener): void;
  /**
   * True while its exit will be reported with its status. False once the helper that forked it
   * is gone: the process lives on (re-parented to init), and its end is found by polling /proc,
   * as for a process re-adopted after an agent restart.
   */
  readonly reporting: boolean;
}

/** What a spawn asks of the helper: the process, and the file its stdout and stderr go to. */
export interface SpawnRequest {
  exe: string;
  args: string[];
  cwd: string;
  env: NodeJS.ProcessEnv;
  /** The path its output goes to: a FIFO (opened read-write) or a log file (opened to append). */
  out: string;
  pipe: boolean;
}

export type SpawnResult = { ok: true; child: Child; startTicks: number | null; coreLimit: number | null } | { ok: false; code: string; message: string };

/** A child of the agent's own: Node's ChildProcess behind the same face as a helper's. */
export function ownChild(child: ChildProcess & { pid: number }): Child {
  return {
    pid: child.pid,
    reporting: true,
    onExit(fn) {
      child.once('exit', fn);
    },
  };
}

class HelperChild implements Child {
  reporting = true;
  private ended: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  private listeners: ExitListener[] = [];

  constructor(readonly pid: number) {}

  onExit(fn: ExitListener): void {
    const ended = this.ended;
    // Its exit may be read in the same chunk as its pid, before the supervisor listens: told
    // after this turn's ticks, in which the supervisor records the launch it belongs to.
    if (ended) setImmediate(() => fn(ended.code, ended.signal));
    else this.listeners.push(fn);
  }

  exited(code: number | null, signal: NodeJS.Signals | null): void {
    this.ended = { code, signal };
    for (const fn of this.listeners.splice(0)) fn(code, signal);
  }
}

/**
 * The helper's whole program: reads spawn requests (one JSON line each) on stdin, forks and
 * execs each, answers its pid with what /proc says of it before it can be reaped (its start
 * time and core limit), and reports each exit. It holds nothing else, and ends when the agent
 * closes its stdin (or dies): its children live on, re-parented, as they would after the agent.
 */
function helperMain(): void {
  // Builtins only, by getBuiltinModule: the function is written out as a program of its own.
  const { spawn: fork } = process.getBuiltinModule('node:child_process');
  const fs = process.getBuiltinModule('node:fs');
  const say = (m: object): void => {
    // Synchronous on a pipe: nothing said is lost when the helper ends right after.
    fs.writeSync(1, `${JSON.stringify(m)}\n`);
  };
  const facts = (pid: number): { startTicks: number | null; coreLimit: number | null } => {
    let startTicks: number | null = null;
    let coreLimit: number | null = null;
    try {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      startTicks = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
    } catch {
      // gone already
    }
    try {
      const m = /^Max core file size\s+(\S+)/m.exec(fs.readFileSync(`/proc/${pid}/limits`, 'utf8'));
      if (m) coreLimit = m[1] === 'unlimited' ? -1 : Number(m[1]);
    } catch {
      // gone already
    }
    return { startTicks, coreLimit };
  };
  const start = (r: { id: number; exe: string; args: string[]; cwd: string; env: NodeJS.ProcessEnv; out: string; pipe: boolean }): void => {
    let fd: number;
    try {
      fd = fs.openSync(r.out, r.pipe ? fs.constants.O_RDWR : fs.constants.O_WRONLY | fs.constants.O_APPEND | fs.constants.O_CREAT, 0o640);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      say({ id: r.id, error: { code: e.code ?? 'EIO', message: e.message } });
      return;
    }
    let child;
    try {
      child = fork(r.exe, r.args, { cwd: r.cwd, env: r.env, detached: true, stdio: ['ignore', fd, fd] });
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      say({ id: r.id, error: { code: e.code ?? 'ERR', message: e.message } });
      return;
    } finally {
      fs.closeSync(fd);
    }
    const pid = child.pid;
    if (pid === undefined) {
      // An 'error' before 'spawn' means 'exit' never comes.
      child.once('error', (e: NodeJS.ErrnoException) => say({ id: r.id, error: { code: e.code ?? 'ERR', message: e.message } }));
      return;
    }
    say({ id: r.id, pid, ...facts(pid) });
    child.on('error', () => undefined);
    child.on('exit', (code, signal) => say({ exit: pid, code, signal }));
  };
  let pending = '';
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', (text: string) => {
    pending += text;
    for (let nl = pending.indexOf('\n'); nl !== -1; nl = pending.indexOf('\n')) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      try {
        start(JSON.parse(line) as Parameters<typeof start>[0]);
      } catch {
        // not a request of ours
      }
    }
  });
  process.stdin.on('end', () => process.exit(0));
  process.stdin.on('error', () => process.exit(0));
}

/**
 * The native helper (native/drover-spawn.c), built beside the agent's bundle where a C compiler
 * was found (scripts/bundle.mjs), and installed beside it (deploy/install.sh). Where it is not
 * there, or cannot run on this machine, the Node helper below does the same work.
 */
export const NATIVE_HELPER = fileURLToPath(new URL('./drover-spawn', import.meta.url));

/** The largest request the native helper takes; a bigger one is refused here as exec would (E2BIG). */
const MAX_NATIVE_FRAME = 512 * 1024 * 1024;

/**
 * A spawn request as the native helper reads it: u32 (LE) length, id, flags, argc, envc, then
 * NUL-terminated strings. What exec could not take is refused here, as Node's spawn refuses it:
 * a NUL inside a string (it would end it early), more than the helper takes (E2BIG).
 */
export function encodeNativeRequest(id: number, r: SpawnRequest): Buffer | { code: string; message: string } {
  const strings = [r.exe, r.cwd, r.out, ...r.args];
  const env: string[] = [];
  for (const [name, value] of Object.entries(r.env)) if (value !== undefined) env.push(`${name}=${value}`);
  let bytes = 20;
  for (const s of strings) bytes += Buffer.byteLength(s) + 1;
  for (const s of env) bytes += Buffer.byteLength(s) + 1;
  if (bytes - 4 > MAX_NATIVE_FRAME) return { code: 'E2BIG', message: `spawn ${r.exe} E2BIG` };
  if (strings.some((s) => s.includes('\0')) || env.some((s) => s.includes('\0'))) {
    return { code: 'ERR_INVALID_ARG_VALUE', message: 'an argument or environment value holds a NUL byte' };
  }
  return nativeFrame(id, r.pipe ? 1 : 0, [...strings, ...env], r.args.length, env.length, bytes);
}

/** Flags of the native helper's control frames (a spawn's flags are 0 or 1). */
const PUMP_FRAME = 0x100;
const ROTATE_FRAME = 0x200;

/**
 * A frame of the native helper: u32 (LE) length of the rest, id, flags, argc, envc, then
 * `strings`, each NUL-terminated (`bytes`: the whole frame's size, when the caller has it).
 */
function nativeFrame(
  id: number,
  flags: number,
  strings: string[],
  argc = 0,
  envc = 0,
  bytes = 20 + strings.reduce((n, s) => n + Buffer.byteLength(s) + 1, 0),
): Buffer {
  const frame = Buffer.allocUnsafe(bytes);
  frame.writeUInt32LE(bytes - 4, 0);
  frame.writeUInt32LE(id, 4);
  frame.writeUInt32LE(flags, 8);
  frame.writeUInt32LE(argc, 12);
  frame.writeUInt32LE(envc, 16);
  let at = 20;
  for (const s of strings) {
    at += frame.write(s, at);
    frame[at++] = 0;
  }
  return frame;
}

/** Time a launch waits for a helper still starting before it forks the agent itself. */
const READY_WAIT_MS = 2000;
/** A spawn the helper has not answered in this long: the helper is killed (see spawn). */
const ANSWER_WAIT_MS = 10_000;
/** After the helper was lost, the next one starts no sooner than this. */
const RESTART_AFTER_MS = 1000;

type Answer = {
  id: number;
  child?: HelperChild;
  pid?: number;
  startTicks?: number | null;
  coreLimit?: number | null;
  error?: { code: string; message: string };
};

/**
 * Forks launched processes from a small process of its own, so the agent never forks.
 *
 * A fork copies the forking process's page tables and leaves every page of it write-protected:
 * the agent's next work then faults on each page it writes (~135 faults a launch, measured with
 * perf, each costly under a hypervisor), and that work was most of a launch's time past its
 * spawn; back to back, the next request waited unread behind it. A Node process that does
 * nothing but fork pays little of either.
 *
 * The helper's program is written to the state dir (so `ps` shows what it is) and runs with
 * an environment of PATH alone: no secret of the agent's reaches it, and each process gets
 * the environment its launch built. When the helper is lost, its children live on re-parented;
 * they are told to the supervisor as no longer reporting (their ends are found by polling, their
 * statuses unknown), and the next launch starts another helper. While no helper can run, the
 * agent forks itself, as before.
 */
export class SpawnHelper implements PumpHost {
  private proc: ChildProcess | null = null;
  /** Pumps the running native helper was asked for, by pid. */
  private readonly pumps = new Map<number, HelperPump>();
  /** Pumps that fell back to the agent for want of a native helper: handed back when one is ready. */
  private readonly fallen = new Set<HelperPump>();
  /** Which program the running helper is. */
  private kind: 'native' | 'node' = 'node';
  /** The native helper could not start here (not built, another architecture, too old a kernel): the Node one is used. */
  private nativeBroken: boolean;
  private ready: Promise<boolean> | null = null;
  private nextId = 1;
  private readonly waiting = new Map<number, (a: Answer) => void>();
  private readonly children = new Map<number, HelperChild>();
  private lostAt = 0;
  private closed = false;
  /** The native helper's {"ready":1} came (a helper that ends before it never worked here). */
  private saidReady = false;
  /** Resolves the native helper's ready promise. */
  private onReady: (ok: boolean) => void = () => undefined;
  private readonly script: string;

  constructor(
    stateDir: string,
    private readonly logger: Logger,
    private readonly nativeHelper: string = NATIVE_HELPER,
  ) {
    this.script = path.join(stateDir, 'spawn-helper.cjs');
    // DROVER_SPAWN_HELPER=node: the Node helper even where the native one is (the tests run both).
    this.nativeBroken = process.env.DROVER_SPAWN_HELPER === 'node' || !existsSync(this.nativeHelper);
  }

  /** Which helper launches go through now: 'native', 'node', or null while none runs. */
  get running(): 'native' | 'node' | null {
    return this.proc ? this.kind : null;
  }

  /** Starts the helper (the first launch does, and then a lost helper's replacement). */
  start(): void {
    if (this.closed || this.proc || Date.now() - this.lostAt < RESTART_AFTER_MS) return;
    let proc: ChildProcess;
    const env = { PATH: process.env.PATH ?? '/usr/bin:/bin' };
    this.saidReady = false;
    // Written new at each start: it is the program of this agent's version.
    const tmp = `${this.script}.tmp-${process.pid}`;
    try {
      if (!this.nativeBroken) {
        proc = spawn(this.nativeHelper, [], { stdio: ['pipe', 'pipe', 'pipe'], env });
        this.kind = 'native';
      } else {
        writeFileSync(tmp, `'use strict';\n(${helperMain.toString()})();\n`, { mode: 0o600 });
        renameSync(tmp, this.script);
        proc = spawn(process.execPath, ['--max-old-space-size=32', this.script], { stdio: ['pipe', 'pipe', 'pipe'], env });
        this.kind = 'node';
      }
    } catch (err) {
      // A full or read-only state disk: no half-written program left behind.
      rmSync(tmp, { force: true });
      this.logger.warn({ err }, 'could not start the spawn helper; launches fork the agent');
      this.lostAt = Date.now();
      return;
    }
    // What it says on stderr (only a crash of its own): the last of it, for the log line of its end.
    let said = '';
    proc.stderr!.setEncoding('utf8');
    proc.stderr!.on('data', (text: string) => (said = (said + text).slice(-2000)));
    this.proc = proc;
    let pending = '';
    proc.stdout!.setEncoding('utf8');
    const kind = this.kind;
    this.ready = new Promise<boolean>((resolve) => {
      // The native helper says it is ready once it runs (a binary that cannot run here ends
      // first); Node's is ready once it is spawned (it reads its stdin from its first turn).
      if (kind === 'native') this.onReady = resolve;
      else proc.once('spawn', () => resolve(true));
      proc.once('error', (err) => {
        // Not started at all: no 'exit' follows.
        resolve(false);
        if (this.proc !== proc) return;
        this.proc = null;
        this.ready = null;
        if (kind === 'native') {
          this.nativeBroken = true;
          this.logger.info({ err, helper: this.nativeHelper }, 'the native spawn helper cannot run here; launches go through the Node helper');
        } else {
          this.lostAt = Date.now();
          this.logger.warn({ err }, 'could not start the spawn helper; launches fork the agent');
        }
      });
    });
    proc.stdout!.on('data', (text: string) => {
      pending += text;
      for (let nl = pending.indexOf('\n'); nl !== -1; nl = pending.indexOf('\n')) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        this.receive(line);
      }
    });
    proc.stdin!.on('error', () => undefined);
    proc.once('exit', (code, signal) => this.lost(proc, code, signal, said));
    // The helper never keeps the agent alive: the link and the timers do.
    proc.unref();
    (proc.stdin as unknown as { unref?: () => void }).unref?.();
    (proc.stdout as unknown as { unref?: () => void }).unref?.();
    (proc.stderr as unknown as { unref?: () => void }).unref?.();
  }

  /** Forks and execs through the helper; null when there is no helper to do it (fork here). */
  async spawn(request: SpawnRequest): Promise<SpawnResult | null> {
    if (!this.proc) this.start();
    const proc = this.proc;
    if (!proc || !this.ready) return null;
    if (!(await Promise.race([this.ready, new Promise<boolean>((r) => setTimeout(() => r(false), READY_WAIT_MS).unref())]))) return null;
    if (this.proc !== proc) return null;
    const id = this.nextId;
    // Within the native frame's u32.
    this.nextId = (this.nextId % 0xffff_ffff) + 1;
    if (this.kind === 'native') {
      const frame = encodeNativeRequest(id, request);
      if (!Buffer.isBuffer(frame)) return { ok: false, ...frame };
      proc.stdin!.write(frame);
    } else {
      proc.stdin!.write(`${JSON.stringify({ id, ...request })}\n`);
    }
    const answer = new Promise<Answer>((resolve) => this.waiting.set(id, resolve));
    // A helper that does not answer (stopped, wedged) is killed: this launch then fails with a
    // reason, and the next one gets a new helper.
    const wedged = setTimeout(() => {
      this.logger.warn({ pid: proc.pid, waitedMs: ANSWER_WAIT_MS }, 'the spawn helper did not answer; killing it');
      proc.kill('SIGKILL');
    }, ANSWER_WAIT_MS);
    const a = await answer;
    clearTimeout(wedged);
    if (a.error) return { ok: false, code: a.error.code, message: a.error.message };
    if (!a.child) return null;
    return { ok: true, child: a.child, startTicks: a.startTicks ?? null, coreLimit: a.coreLimit ?? null };
  }

  /** Whether logs can be pumped by the native helper (it may still have to start, or fail to). */
  get pumpsLogs(): boolean {
    return !this.nativeBroken && !this.closed;
  }

  pump(p: HelperPump): void {
    if (!this.proc) this.start();
    const proc = this.proc;
    if (!proc || !this.ready || this.kind !== 'native') return this.fellBack(p);
    const send = (ok: boolean): void => {
      if (!p.running) return;
      // A path with a NUL cannot name a file: the pump here fails to open it, and says why.
      if (!ok || this.proc !== proc || p.logPath.includes('\0')) return this.fellBack(p);
      this.pumps.set(p.pid, p);
      proc.stdin!.write(nativeFrame(p.pid, PUMP_FRAME, [pipeOf(p.logPath), p.logPath, String(p.policy.maxBytes), String(p.policy.keep)]));
    };
    if (this.saidReady) return send(true);
    // A helper that never gets ready: the pump runs here (its bytes wait in the FIFO meanwhile).
    void Promise.race([this.ready, new Promise<boolean>((r) => setTimeout(() => r(false), READY_WAIT_MS).unref())]).then(send);
  }

  /** `p` runs in the agent for now; a native helper that gets ready takes it back. */
  private fellBack(p: HelperPump): void {
    p.lost();
    if (p.running && !this.nativeBroken && !this.closed) this.fallen.add(p);
    void p.done.then(() => this.fallen.delete(p));
  }

  rotate(pid: number): void {
    if (this.proc && this.kind === 'native') this.proc.stdin!.write(nativeFrame(pid, ROTATE_FRAME, []));
  }

  /** The agent stops: the helper ends with its stdin, its children live on. */
  close(): void {
    this.closed = true;
    this.proc?.stdin?.end();
  }

  private receive(line: string): void {
    let m: Answer | { exit: number; code: number | null; signal: NodeJS.Signals | null } | { ready: 1 } | HelperPumpEvent;
    try {
      m = JSON.parse(line) as typeof m;
    } catch {
      return;
    }
    if ('pump' in m) {
      const p = this.pumps.get(m.pump);
      if ('end' in m || 'failed' in m) this.pumps.delete(m.pump);
      p?.heard(m);
      return;
    }
    if ('ready' in m) {
      this.saidReady = true;
      this.onReady(true);
      const fallen = [...this.fallen];
      this.fallen.clear();
      for (const p of fallen) p.handBack();
      return;
    }
    if ('exit' in m) {
      const child = this.children.get(m.exit);
      this.children.delete(m.exit);
      child?.exited(m.code, m.signal);
      return;
    }
    const resolve = this.waiting.get(m.id);
    if (!resolve) return;
    this.waiting.delete(m.id);
    // Known before the answer goes on: its exit may be the next line of this very chunk.
    if (typeof m.pid === 'number') {
      const child = new HelperChild(m.pid);
      this.children.set(m.pid, child);
      resolve({ ...m, child });
    } else resolve(m);
  }

  private lost(proc: ChildProcess, code: number | null, signal: NodeJS.Signals | null, said: string): void {
    if (this.proc !== proc) return;
    this.proc = null;
    this.ready = null;
    this.lostAt = Date.now();
    if (this.kind === 'native' && !this.saidReady) {
      // It ran but could not work here (a dynamic build on an older glibc, no signalfd): the
      // Node helper takes over at once, for good.
      this.nativeBroken = true;
      this.lostAt = 0;
      this.onReady(false);
      this.logger.info(
        { code, signal, ...(said ? { stderr: said.trim() } : {}) },
        'the native spawn helper cannot run here; launches go through the Node helper',
      );
      // Asked nothing yet (requests wait for ready): the next launch starts the Node helper.
      return;
    }
    // Spawns it was asked for and did not answer: refused, never forked again here (it may have
    // forked one before it ended).
    for (const resolve of this.waiting.values()) resolve({ id: -1, error: { code: 'EHELPER', message: 'the spawn helper ended during the launch' } });
    this.waiting.clear();
    // Its pumps stopped between two splices: pumps in the agent carry on from the FIFOs (not
    // when the agent is stopping: the next agent does).
    const pumps = [...this.pumps.values()];
    this.pumps.clear();
    if (!this.closed) for (const p of pumps) this.fellBack(p);
    // Children whose exit it did not report (those it did are no longer in the map).
    const orphans = [...this.children.values()];
    this.children.clear();
    for (const c of orphans) c.reporting = false;
    if (this.closed) return;
    // Launches meanwhile fork the agent; a new helper takes over shortly.
    setTimeout(() => {
      this.lostAt = 0;
      this.start();
    }, RESTART_AFTER_MS).unref();
    this.logger.warn(
      { code, signal, processes: orphans.map((c) => c.pid), ...(said ? { stderr: said.trim() } : {}) },
      'the spawn helper ended; the processes it started run on, their ends found by polling (exit status unknown)',
    );
  }
}
