import { execFile, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, constants, fstatSync, lstatSync, openSync, readdirSync, renameSync, rmSync, unlinkSync, writeSync } from 'node:fs';
import { open, readdir, unlink } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { DroverError, ErrorCode, unreachable } from '@drover/protocol';

/** How an app's log is kept: rotated past maxBytes, with `keep` rotated files (APP.PID.log.1 … .keep). 0: never rotated. */
export interface LogPolicy {
  maxBytes: number;
  keep: number;
}

export const DEFAULT_LOG_POLICY: LogPolicy = { maxBytes: 64 * 1024 * 1024, keep: 5 };
/** Smaller caps would rotate on every burst; the keep count bounds the files. */
export const MIN_LOG_MAX_BYTES = 64 * 1024;
export const MAX_LOG_KEEP = 100;

/** What a problem with writing a log looks like to the agent (and, through it, the master). */
export type LogProblem = { kind: 'no-space'; pid: number; app: string } | { kind: 'resumed'; pid: number; app: string; droppedBytes: number };

/** A line under way at the cap is finished in its file when it ends within this much past the cap. */
export const LINE_SLACK = 16 * 1024;

/** A full disk: output is read and counted, not written, and writing is tried again this often. */
const RETRY_FULL_MS = 5_000;

/** A log's rotation count, as readers of its files see it. */
export interface RotationClock {
  generation(): number;
  /**
   * Calls `fn` at each rotation, before any file is renamed or removed (a reader opens what it
   * has yet to read, so a removal cannot take it away); returns the call that stops it.
   */
  watch?(fn: () => void): () => void;
}

/**
 * A log's rotations as its pumps count them: the clock its readers see, told before each one.
 * A HelperPump hands its own to the LogPump that stands in for it, so readers see one clock.
 */
export class Rotations {
  /** Rotations so far (a reader listing the files checks it did not change meanwhile). */
  private count = 0;
  /** Readers told of each rotation before it (see RotationClock.watch). */
  private readonly watchers = new Set<() => void>();

  readonly clock: RotationClock = {
    generation: () => this.count,
    watch: (fn) => {
      this.watchers.add(fn);
      return () => this.watchers.delete(fn);
    },
  };

  /** A rotation is about to rename files: its readers are told (their errors go to `onError`), then it counts. */
  tell(onError: (err: Error) => void): void {
    for (const fn of this.watchers) {
      try {
        fn();
      } catch (err) {
        onError(err as Error);
      }
    }
    this.count++;
  }
}

/** The pipe next to a log: logs/APP.PID.pipe for logs/APP.PID.log. */
export const pipeOf = (logPath: string): string => logPath.replace(/\.log$/, '.pipe');

/** The log files of a process, oldest first: APP.PID.log.KEEP … APP.PID.log.1, APP.PID.log (those that exist). */
export function logChain(logPath: string): string[] {
  const dir = path.dirname(logPath);
  const base = path.basename(logPath);
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [logPath];
  }
  const rotated = rotationsIn(names, base)
    .sort((a, b) => b - a)
    .map((n) => `${logPath}.${n}`);
  return [...rotated, logPath];
}

/** The N of each BASE.N in `names` (a log's rotated files). */
function rotationsIn(names: string[], base: string): number[] {
  return names.map((n) => (n.startsWith(`${base}.`) ? Number(n.slice(base.length + 1)) : NaN)).filter((n) => Number.isInteger(n) && n > 0);
}

/**
 * Removes a file that may be gone already: one unlink (rmSync's force walks a path through
 * lstat and its recursive remover: ~4× the work, on every process's end).
 */
function removeIfThere(file: string): void {
  try {
    unlinkSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

/** How long after taking a spare the pool refills (see refillLater). */
const REFILL_DELAY_MS = 50;

/**
 * Files made ahead of time in logs/, so that a launch renames one (~20 µs) instead of making it
 * on its way: Node has no mkfifo (running the program forks the agent: milliseconds, more as it
 * grows), and creating an empty file measured 0.45 ms on an ext4 VM disk where a rename took
 * 0.02. Spares wait in logs/ as .spare-HEX.pipe or .spare-HEX.log; below half of `size` the rest
 * are made at once, in the background (one mkfifo run, or the thread pool's opens).
 */
export class SparePool {
  private readonly spares: string[] = [];
  private refilling = false;
  private refillTimer: NodeJS.Timeout | null = null;
  /** Spare names are this (random, per pool) and a count. */
  private readonly prefix = randomBytes(6).toString('hex');
  private made = 0;

  constructor(
    private readonly dir: string,
    private readonly kind: 'pipe' | 'log',
    private readonly size = 32,
    prefill = true,
  ) {
    // Spares left by an agent before us are as good as new (a spare log is never written: only renamed).
    const spare = new RegExp(`^\\.spare-[0-9a-f]+\\.${kind}$`);
    try {
      for (const n of readdirSync(dir)) if (spare.test(n)) this.spares.push(path.join(dir, n));
    } catch {
      // no logs folder yet
    }
    if (prefill) this.refill();
  }

  /** Spares ready to be taken. */
  get available(): number {
    return this.spares.length;
  }

  /**
   * Moves a spare to `target`; false when there was none, or something is at `target` already
   * (a log of an earlier process with the same pid is appended to, never replaced).
   */
  takeInto(target: string): boolean {
    if (this.spares.length === 0 || lstatSync(target, { throwIfNoEntry: false })) {
      this.refill();
      return false;
    }
    const spare = this.spares.pop()!;
    this.refillLater();
    try {
      renameSync(spare, target);
      return true;
    } catch {
      return false; // gone meanwhile
    }
  }

  /**
   * A refill once the launch that took a spare has answered: making pipes runs mkfifo, and
   * running anything forks the agent, which holds its loop for milliseconds (every 16th launch
   * paid them on its way). The pool still holds half its size meanwhile.
   */
  private refillLater(): void {
    if (this.refillTimer || this.refilling || this.spares.length > this.size / 2) return;
    this.refillTimer = setTimeout(() => {
      this.refillTimer = null;
      this.refill();
    }, REFILL_DELAY_MS);
    this.refillTimer.unref();
  }

  refill(): void {
    if (this.refilling || this.spares.length > this.size / 2) return;
    this.refilling = true;
    // Named by a prefix drawn once and a count: drawing random bytes for each name cost ~20 µs
    // apiece on a launch's heels, right after a fork.
    const made = Array.from({ length: this.size - this.spares.length }, () =>
      path.join(this.dir, `.spare-${this.prefix}${(this.made++).toString(16).padStart(6, '0')}.${this.kind}`),
    );
    const done = (ok: boolean): void => {
      this.refilling = false;
      if (ok) this.spares.push(...made);
      else for (const f of made) rmSync(f, { force: true });
    };
    if (this.kind === 'pipe') {
      execFile('mkfifo', ['-m', '600', ...made], (err) => done(!err));
      return;
    }
    Promise.all(made.map(async (f) => (await open(f, 'wx', 0o640)).close())).then(
      () => done(true),
      () => done(false),
    );
  }
}

/** A new FIFO at `target`, synchronously: a spare renamed, else mkfifo run now. */
export function takeFifo(spares: SparePool, target: string): void {
  if (spares.takeInto(target)) return;
  const r = spawnSync('mkfifo', ['-m', '600', target], { stdio: ['ignore', 'ignore', 'pipe'] });
  if (r.status !== 0)
    throw new DroverError(
      ErrorCode.IO_ERROR,
      `could not make the log pipe ${target}: ${r.error?.message ?? (r.stderr.toString().trim() || `mkfifo exited ${r.status}`)}`,
    );
}

/** What the supervisor holds of a log being written: a LogPump here, or a HelperPump. */
export interface Pump {
  /** Resolves once the process and everything it started closed their output and the log has it all. */
  readonly done: Promise<void>;
  readonly running: boolean;
  readonly rotation: RotationClock;
  /** Stops pumping (agent shutdown): the pipe stays, and the next agent carries on from it. */
  detach(): void;
}

/**
 * What every pump reads its pipe into. Each chunk is written to its log synchronously in the read
 * callback, so one buffer serves every pump (the loop reads one pipe at a time); a fresh 64 KiB
 * buffer a read, freed only when V8 next collects, left glibc's main arena fragmented and the
 * agent ~25 MiB larger after a chatty process.
 */
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);

/**
 * Carries one process's output from its pipe into its log, rotating it past the policy's size
 * with `keep` older files. The process holds the pipe read-write, so it never gets EPIPE: while
 * no agent reads (an agent restart) its output waits in the pipe, and once that is full the
 * process waits on its write. Each chunk read is written to the log in the same tick, with
 * synchronous writes (to the page cache: microseconds), so no reader in this process ever sees a
 * rotation half done, and a stopped agent has nothing read but not yet written. A SIGKILL that
 * lands between a read and its write loses that chunk (64 KiB at most): where the native spawn
 * helper runs, HelperPump moves the bytes in the kernel instead, and this pump only stands in
 * for it. A full disk: output is then read and counted (the process must not hang on a disk it
 * cannot fix), writing is retried every 5 s, and the log says how much was lost.
 *
 * A rotation is a rename (log → log.1, … → log.KEEP, the oldest removed) and happens at a line
 * end, so readers that follow a log by its inode (log-stream.ts) pass from one file to the next
 * without losing or repeating a line.
 */
export class LogPump implements Pump {
  private socket: net.Socket | null = null;
  private fd: number | null = null;
  private size = 0;
  /** The file does not end at a line end. */
  private midLine = false;
  private dropped = 0;
  private full = false;
  private retryAt = 0;
  private readonly finished: Promise<void>;
  private finish!: () => void;
  private closed = false;

  constructor(
    readonly pid: number,
    readonly app: string,
    readonly logPath: string,
    private readonly policy: LogPolicy,
    private readonly onProblem: (p: LogProblem) => void,
    private readonly onError: (err: Error) => void,
    /** Its rotations (a HelperPump this pump stands in for keeps its own). */
    private readonly rotations = new Rotations(),
  ) {
    this.finished = new Promise((resolve) => (this.finish = resolve));
  }

  /** Resolves once the process and everything it started closed their output and the log has it all. */
  get done(): Promise<void> {
    return this.finished;
  }

  get running(): boolean {
    return !this.closed;
  }

  /** Output is being counted, not written (a full disk), until a retry writes the note of it. */
  get dropping(): boolean {
    return this.full;
  }

  /** For readers of the chain: a listing taken while the count did not change saw no rename. */
  get rotation(): RotationClock {
    return this.rotations.clock;
  }

  /**
   * Opens the log and starts pumping from the pipe: from `fd`, its read end opened before the
   * process started (a launch), or opened now (non-blocking: no writer needed; an adopted process).
   */
  start(fd?: number): void {
    fd ??= openSync(pipeOf(this.logPath), constants.O_RDONLY | constants.O_NONBLOCK);
    try {
      this.fd = openSync(this.logPath, 'a', 0o640);
      this.size = fstatSync(this.fd).size;
    } catch (err) {
      closeSync(fd);
      throw err;
    }
    const onread = {
      buffer: READ_BUFFER,
      callback: (n: number): boolean => {
        try {
          this.write(READ_BUFFER.subarray(0, n));
        } catch (err) {
          this.onError(err as Error);
        }
        return true;
      },
    };
    // Node takes `onread` in the constructor too (its types list it only for connect()).
    const socket = new net.Socket({ fd, readable: true, writable: false, onread } as net.SocketConstructorOpts);
    this.socket = socket;
    // Every writer closed the pipe: the process and whatever it left behind are done writing.
    socket.on('end', () => this.close());
    socket.on('error', (err) => {
      this.onError(err);
      this.close();
    });
  }

  /** Stops pumping (agent shutdown): the pipe stays, and the next agent carries on from it. */
  detach(): void {
    this.closed = true;
    this.socket?.destroy();
    this.closeLog();
    this.finish();
  }

  private close(): void {
    if (this.closed) return;
    this.closed = true;
    this.socket?.destroy();
    // A pipe with no writer left will never be written again.
    removeIfThere(pipeOf(this.logPath));
    if (this.dropped > 0 && this.fd !== null) this.tryResume();
    this.closeLog();
    this.finish();
  }

  private closeLog(): void {
    if (this.fd === null) return;
    try {
      closeSync(this.fd);
    } catch {
      // closed already
    }
    this.fd = null;
  }

  private write(chunk: Buffer): void {
    if (this.fd === null) return;
    if (this.full && (Date.now() < this.retryAt || !this.tryResume())) {
      this.dropped += chunk.length;
      return;
    }
    try {
      const max = this.policy.maxBytes;
      if (max > 0 && this.size > 0 && this.size + chunk.length > max) {
        // Up to the last line end that fits goes into this file; the rest starts the next. A line
        // under way is finished here first (up to LINE_SLACK past the cap): files end at line ends.
        const room = max - this.size;
        let cut = room > 0 ? chunk.lastIndexOf(0x0a, room - 1) : -1;
        if (cut < 0 && this.midLine) {
          const end = chunk.indexOf(0x0a);
          if (end >= 0 && this.size + end < max + LINE_SLACK) cut = end;
          else if (end < 0 && this.size + chunk.length < max + LINE_SLACK) return this.append(chunk);
        }
        if (cut >= 0) {
          this.append(chunk.subarray(0, cut + 1));
          chunk = chunk.subarray(cut + 1);
        }
        this.rotate();
      }
      if (chunk.length > 0) this.append(chunk);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOSPC' && (err as NodeJS.ErrnoException).code !== 'EDQUOT') throw err;
      this.full = true;
      this.retryAt = Date.now() + RETRY_FULL_MS;
      this.dropped += chunk.length;
      this.onProblem({ kind: 'no-space', pid: this.pid, app: this.app });
    }
  }

  private append(data: Buffer): void {
    let off = 0;
    while (off < data.length) {
      const n = writeSync(this.fd!, data, off, data.length - off);
      off += n;
      this.size += n;
    }
    if (data.length > 0) this.midLine = data[data.length - 1] !== 0x0a;
  }

  /** After a full disk: a line saying what was lost, then logging as before. */
  private tryResume(): boolean {
    const note = Buffer.from(`${this.midLine ? '\n' : ''}[drover] ${this.dropped} bytes of output were not logged: the disk was full\n`);
    try {
      this.append(note);
    } catch {
      this.retryAt = Date.now() + RETRY_FULL_MS;
      return false;
    }
    this.onProblem({ kind: 'resumed', pid: this.pid, app: this.app, droppedBytes: this.dropped });
    this.full = false;
    this.dropped = 0;
    return true;
  }

  private rotate(): void {
    this.rotations.tell(this.onError);
    this.closeLog();
    const { keep } = this.policy;
    rmSync(`${this.logPath}.${keep}`, { force: true });
    for (let i = keep - 1; i >= 1; i--) {
      try {
        renameSync(`${this.logPath}.${i}`, `${this.logPath}.${i + 1}`);
      } catch {
        // a gap in the chain (removed by hand): the rest moves on
      }
    }
    if (keep > 0) renameSync(this.logPath, `${this.logPath}.1`);
    else rmSync(this.logPath, { force: true });
    this.fd = openSync(this.logPath, 'a', 0o640);
    this.size = 0;
    this.midLine = false;
  }
}

/** What the native spawn helper says of a pump it runs (native/drover-spawn.c). */
export type HelperPumpEvent =
  | { pump: number; open: 1 }
  | { pump: number; rotate: 1 }
  | { pump: number; full: 1 }
  | { pump: number; resumed: number }
  | { pump: number; error: string }
  | { pump: number; failed: string }
  | { pump: number; end: 1 };

/** How a HelperPump talks to the helper that runs it. */
export interface PumpHost {
  /**
   * Asks the helper to pump, once it runs; the pump hears what the helper says of it, or
   * `lost()` when there is no native helper to do it, or it ends.
   */
  pump(pump: HelperPump): void;
  /** The go-ahead for a rotation the helper asked for: the log's readers are told. */
  rotate(pid: number): void;
}

/**
 * A process's output carried into its log by the native spawn helper, which moves the bytes in
 * the kernel (splice): a SIGKILL of the agent, or of the helper, loses none of them (LogPump's
 * read-then-write loses what it read when the kill lands between the two). Same rules, same
 * files; the agent keeps the rotation clock (the helper waits at each rotation until the agent
 * has told the readers of the log) and the problems it reports. Until the helper has the FIFO
 * open the agent holds its own read end (a FIFO nobody has open drops what is in it); when the
 * helper is lost, or cannot pump, a LogPump here carries on from the FIFO.
 */
export class HelperPump implements Pump {
  private closed = false;
  private readonly rotations = new Rotations();
  private readonly finished: Promise<void>;
  private finish!: () => void;
  private fallback: LogPump | null = null;

  constructor(
    readonly pid: number,
    readonly app: string,
    readonly logPath: string,
    readonly policy: LogPolicy,
    private readonly onProblem: (p: LogProblem) => void,
    private readonly onError: (err: Error) => void,
    /** The agent's read end of the FIFO, held until the helper says it has its own. */
    private heldFd: number | undefined,
    private readonly host: PumpHost,
  ) {
    this.finished = new Promise((resolve) => (this.finish = resolve));
  }

  get done(): Promise<void> {
    return this.finished;
  }

  get running(): boolean {
    return !this.closed;
  }

  get rotation(): RotationClock {
    return this.rotations.clock;
  }

  /** Asks the helper to start (see PumpHost.pump). */
  start(): void {
    this.host.pump(this);
  }

  /** One line the helper said of this pump. */
  heard(m: HelperPumpEvent): void {
    if (this.closed || this.fallback) return;
    if ('open' in m) this.release();
    else if ('rotate' in m) {
      this.rotations.tell(this.onError);
      this.host.rotate(this.pid);
    } else if ('full' in m) this.onProblem({ kind: 'no-space', pid: this.pid, app: this.app });
    else if ('resumed' in m) this.onProblem({ kind: 'resumed', pid: this.pid, app: this.app, droppedBytes: m.resumed });
    else if ('error' in m) this.onError(new Error(m.error));
    else if ('failed' in m) {
      this.onError(new Error(m.failed));
      this.takeOver();
    } else if ('end' in m) this.end();
    else unreachable(m);
  }

  /** The helper is gone (or never ran): a LogPump here carries on from the FIFO. */
  lost(): void {
    if (!this.closed && !this.fallback) this.takeOver();
  }

  detach(): void {
    if (this.closed) return;
    this.fallback?.detach();
    this.end();
  }

  private takeOver(): void {
    const p = new LogPump(this.pid, this.app, this.logPath, this.policy, this.onProblem, this.onError, this.rotations);
    const fd = this.heldFd;
    this.heldFd = undefined;
    try {
      p.start(fd);
    } catch (err) {
      this.onError(err as Error);
      this.end();
      return;
    }
    this.fallback = p;
    void p.done.then(() => {
      if (this.fallback === p) this.end();
    });
  }

  /**
   * A native helper runs again (after this pump's was lost): the pump goes back to it. Our read
   * end is held meanwhile (opened anew: Node cannot dup the pump's), so the FIFO never goes
   * unheld; the pump here stops between two chunks (its writes are synchronous: nothing is in
   * flight). Not while it counts output a full disk stops: the note of what was lost is its.
   */
  handBack(): void {
    const p = this.fallback;
    if (this.closed || !p || !p.running || p.dropping) return;
    try {
      this.heldFd = openSync(pipeOf(this.logPath), constants.O_RDONLY | constants.O_NONBLOCK);
    } catch {
      return; // gone: the pump here sees its end
    }
    this.fallback = null;
    p.detach();
    this.host.pump(this);
  }

  private release(): void {
    if (this.heldFd === undefined) return;
    try {
      closeSync(this.heldFd);
    } catch {
      // closed already
    }
    this.heldFd = undefined;
  }

  private end(): void {
    if (this.closed) return;
    this.closed = true;
    this.release();
    this.finish();
  }
}

/**
 * Removes a process's log, its rotated files and a pipe nobody writes. The listing is the thread
 * pool's (readdir, not readdirSync): this runs on every launch once the table is full, and a
 * synchronous listing of the thousand logs kept there held the agent's loop ~1 ms a launch.
 */
export async function removeLogs(logPath: string): Promise<void> {
  const names = await readdir(path.dirname(logPath)).catch(() => [] as string[]);
  const rotated = rotationsIn(names, path.basename(logPath)).map((n) => `${logPath}.${n}`);
  for (const f of [logPath, ...rotated, pipeOf(logPath)]) await unlink(f).catch(() => undefined);
}
