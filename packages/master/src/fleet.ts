import { createHash, timingSafeEqual } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { IncomingMessage } from 'node:http';
import WebSocket from 'ws';
import {
  AGENT_VERSION,
  CHUNK_BYTES,
  CHUNK_HEADER_BYTES,
  CloseCode,
  MAX_FRAME_BYTES,
  DroverError,
  ErrorCode,
  PROTOCOL_VERSION,
  checkWorkerName,
  decodeChunk,
  parseWorkerMessage,
  quietMsFor,
  unreachable,
  type Hello,
  type LogProblem,
  type ProcessExit,
  type WorkerToMaster,
  noteReceived,
} from '@drover/protocol';
import { monotonic, type Clock } from './clock.js';
import type { Logger } from './logger.js';
import { AdmissionGate, HELLO_DEADLINE_MS } from './gate.js';
import { LoadHistory } from './load-history.js';
import { LogLimiter } from './log-limiter.js';
import { UploadBudget } from './upload-budget.js';
import { WorkerSession } from './worker-session.js';

/** What an admitted worker's socket carries for the listeners all sockets share (Fleet.listen). */
const SESSION = Symbol('drover.session');
const FLEET = Symbol('drover.fleet');
type Tagged = WebSocket & { [SESSION]?: WorkerSession; [FLEET]?: Fleet };

/** Disconnected workers stay listed (as unavailable) this long, then are forgotten. */
const FORGET_AFTER_MS = 60 * 60 * 1000;
/** A name stays its worker's this long after it was last seen (`--name-hold`). */
export const DEFAULT_NAME_HOLD_MS = 10 * 60 * 1000;

export interface FleetEvents {
  joined: [WorkerSession];
  left: [WorkerSession, string];
  unavailable: [WorkerSession];
  available: [WorkerSession];
  'process-exit': [WorkerSession, ProcessExit];
  'log-problem': [WorkerSession, LogProblem];
}

export interface FleetOptions {
  token: string;
  heartbeatMs: number;
  logger: Logger;
  /** Monotonic milliseconds; tests pass a fake one. */
  clock?: Clock;
  nameHoldMs?: number;
  /** False in unit tests that call sweep() by hand. */
  sweepTimer?: boolean;
}

/**
 * Every worker session, keyed by name, and the one place worker → master messages are handled.
 * Liveness is one sweep timer for the whole fleet (not a timer per worker): a worker with no
 * heartbeat for 2 intervals is unavailable.
 */
/**
 * Round-trip pings the fleet sends a second at most: answering a ping costs a worker little, but
 * each costs the master a socket write and a read (5,000 a second: ~8% of a core). A larger fleet
 * samples each worker's RTT less often: every beat up to 250 workers, every 20 s at 5,000. (An
 * agent pings on its own when the master has been quiet, so these are for the RTT only.)
 */
const PINGS_PER_SECOND = 250;
/** w2 before w10; one collator, not a localeCompare (which builds one per call) for each comparison. */
export const byName = new Intl.Collator(undefined, { numeric: true });

export class Fleet extends EventEmitter<FleetEvents> {
  readonly heartbeatMs: number;
  readonly clock: Clock;
  readonly uploads = new UploadBudget();
  /** Slots for connections that have not said hello yet. */
  readonly gate = new AdmissionGate();
  /** Each worker's CPU and memory over the last 15 minutes (the dashboard's sparklines). */
  readonly history = new LoadHistory();
  private readonly sessions = new Map<string, WorkerSession>();
  /** The sessions, sorted by name (numbers in names compared as numbers: w2 before w10). */
  private readonly sorted: WorkerSession[] = [];
  private readonly sweeper: NodeJS.Timeout | null;
  private readonly tokenDigest: Buffer;
  private readonly logger: Logger;
  private readonly nameHoldMs: number;
  /** What unauthenticated or misbehaving peers make us log goes through here: bounded per source. */
  readonly peerLog: LogLimiter;

  constructor(opts: FleetOptions) {
    super();
    this.heartbeatMs = opts.heartbeatMs;
    this.logger = opts.logger;
    this.clock = opts.clock ?? monotonic;
    this.nameHoldMs = opts.nameHoldMs ?? DEFAULT_NAME_HOLD_MS;
    this.tokenDigest = digest(opts.token);
    this.peerLog = new LogLimiter(opts.logger);
    // Sweeping every H/4 bounds the detection slack at H/4 past the 2·H deadline. The sweep
    // runs after the loop's next poll, not in the timer phase: when the master itself was
    // stalled (a long GC, a swapped page, a busy core), heartbeats that arrived meanwhile sit
    // unread in the socket buffers, and judging before reading them would call live workers
    // unavailable.
    const sweepAfterPoll = (): void => void setImmediate(() => this.sweep());
    this.sweeper = opts.sweepTimer === false ? null : setInterval(sweepAfterPoll, Math.max(5, Math.floor(opts.heartbeatMs / 4)));
    this.sweeper?.unref();
  }

  /**
   * Every worker, by name. Kept sorted as workers come and go (a binary search and a splice),
   * not sorted per call: metrics and the reconcile pass call it every second, and 5,000
   * collator sorts while a fleet joins took seconds of CPU.
   */
  list(): WorkerSession[] {
    return [...this.sorted];
  }

  /** Where `name` is, or goes, in the sorted list. */
  private position(name: string): number {
    let lo = 0;
    let hi = this.sorted.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (byName.compare(this.sorted[mid]!.name, name) < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  names(): string[] {
    return this.list().map((s) => s.name);
  }

  /** How long agents should let this master say nothing before they ping it (quietMsFor). */
  quietMs(): number {
    return quietMsFor(this.sessions.size, this.heartbeatMs);
  }

  availableCount(): number {
    let n = 0;
    for (const s of this.sessions.values()) if (s.status === 'available') n++;
    return n;
  }

  /** The session of `name` whatever its status, if there is one. */
  lookup(name: string): WorkerSession | undefined {
    return this.sessions.get(name);
  }

  /** The session of `name` whatever its status, or a clear error naming the worker. */
  find(name: string): WorkerSession {
    const s = this.sessions.get(name);
    if (s) return s;
    // A hint, not a listing: with thousands of workers the error must stay one readable line.
    const known = this.names();
    const shown = known.slice(0, 10).join(', ') + (known.length > 10 ? `, and ${known.length - 10} more (see workers)` : '');
    const hint = known.length ? `known workers: ${shown}` : 'no workers have joined';
    throw new DroverError(ErrorCode.UNKNOWN_WORKER, `unknown worker "${name}" (${hint})`);
  }

  /** The session of `name`, available, or a clear error naming the worker. */
  get(name: string): WorkerSession {
    const s = this.find(name);
    if (s.status !== 'available') throw this.unavailableError(s);
    return s;
  }

  /** Why `s` cannot be asked anything now, in one line. */
  unavailableError(s: WorkerSession): DroverError {
    const ago = (s.liveness.silentMs(this.clock()) / 1000).toFixed(1);
    const why = s.connected ? `missed heartbeats; last one ${ago} s ago` : `disconnected; last heard ${ago} s ago`;
    return new DroverError(ErrorCode.WORKER_UNAVAILABLE, `worker ${s.name} is unavailable (${why})`);
  }

  /**
   * Drops disconnected workers from the list: `name`, or every disconnected one with `gone`.
   * A connected worker is never forgotten (it would only join again).
   */
  forget(name: string): string[] {
    if (name !== 'gone') {
      const s = this.find(name);
      if (s.connected) throw new DroverError(ErrorCode.BAD_ARGUMENTS, `worker ${name} is connected; only disconnected workers can be forgotten`);
      this.drop(name);
      return [name];
    }
    const gone = this.list()
      .filter((s) => !s.connected)
      .map((s) => s.name);
    for (const n of gone) this.drop(n);
    return gone;
  }

  /**
   * Takes a new WebSocket: the first frame must be a valid hello with the right token, within
   * HELLO_DEADLINE_MS. `done` gives back its slot in the admission gate. No closure here uses
   * `req`, only the peer's address: some listeners live as long as the connection, and a closure
   * over `req` would keep the upgrade request (headers, streams, parser state) for every worker.
   */
  accept(ws: WebSocket, req: IncomingMessage, done: () => void = () => undefined): void {
    const peer = req.socket.remoteAddress ?? 'unknown';
    const timer = setTimeout(() => {
      this.peerLog.log('warn', peer, { peer }, 'no hello in time; connection dropped');
      ws.terminate();
    }, HELLO_DEADLINE_MS);
    // Bound, not a closure: a closure would keep this call's context (the timer, `done`) with
    // it. Replaced by the shared listener once the worker is admitted.
    const onError = this.socketError.bind(this, peer);
    ws.on('error', onError);
    const closedEarly = (): void => {
      clearTimeout(timer);
      done();
    };
    ws.once('close', closedEarly);
    ws.once('message', (data: Buffer, isBinary: boolean) => {
      ws.off('close', closedEarly);
      closedEarly();
      const parsed = isBinary ? null : parseWorkerMessage(data.toString('utf8'));
      if (!parsed || !parsed.ok || parsed.message.type !== 'hello') {
        const why = parsed && !parsed.ok ? parsed.error.message : 'the first frame must be a hello';
        this.peerLog.log('warn', peer, { peer, why }, 'refused a connection');
        return closeSoon(ws, CloseCode.HELLO_EXPECTED, truncate(`expected hello: ${why}`));
      }
      this.admit(ws, peer, parsed.message, onError);
    });
  }

  /** Internal: an error on a worker's socket, before or after its hello. */
  socketError(peer: string, err: Error): void {
    this.peerLog.log('debug', peer, { peer, err: err.message }, 'worker socket error');
  }

  close(): void {
    if (this.sweeper) clearInterval(this.sweeper);
    this.peerLog.close();
    const now = this.clock();
    for (const s of this.sessions.values()) {
      if (s.connected) s.close(CloseCode.SHUTDOWN, 'master shutting down');
      s.markDisconnected('master shutting down', now);
    }
  }

  /** Marks workers silent for 2 intervals unavailable; drops long-disconnected ones. */
  sweep(now = this.clock()): void {
    const deadline = 2 * this.heartbeatMs;
    for (const s of this.sessions.values()) {
      if (s.liveness.check(now, deadline)) {
        this.logger.warn({ worker: s.name, silentMs: s.liveness.silentMs(now) }, 'worker missed 2 heartbeats: unavailable');
        this.emit('unavailable', s);
      }
      const since = s.liveness.disconnectedAt;
      if (since !== null && now - since > FORGET_AFTER_MS) this.drop(s.name);
    }
  }

  private drop(name: string): void {
    if (this.sessions.delete(name)) {
      const at = this.position(name);
      if (this.sorted[at]?.name === name) this.sorted.splice(at, 1);
    }
    this.history.forget(name);
  }

  private admit(ws: WebSocket, peer: string, hello: Hello, onError: (err: Error) => void): void {
    const refuse = (code: number, errorCode: ErrorCode, reason: string): void => {
      this.peerLog.log('warn', peer, { peer, worker: hello.name, code: errorCode, reason }, 'refused a worker');
      closeSoon(ws, code, truncate(reason));
    };
    if (!timingSafeEqual(digest(hello.token), this.tokenDigest)) {
      return refuse(CloseCode.UNAUTHORIZED, ErrorCode.UNAUTHORIZED, hello.token ? 'bad token' : 'missing token');
    }
    if (hello.protocolVersion !== PROTOCOL_VERSION) {
      const why = `protocol version ${hello.protocolVersion} is not supported; the master speaks ${PROTOCOL_VERSION}`;
      return refuse(CloseCode.VERSION_MISMATCH, ErrorCode.VERSION_MISMATCH, why);
    }
    const badName = checkWorkerName(hello.name);
    if (badName) return refuse(CloseCode.BAD_NAME, ErrorCode.BAD_NAME, badName);
    const now = this.clock();
    const existing = this.sessions.get(hello.name);
    if (existing && existing.workerId !== hello.workerId) {
      // A name belongs to its worker id: another machine may not take it while its owner is
      // connected, or was seen recently (a network blip), without `forget` first.
      const seenAgo = existing.connected ? 0 : now - (existing.liveness.disconnectedAt ?? now);
      if (existing.connected || seenAgo < this.nameHoldMs) {
        const when = existing.connected ? 'is connected' : `was seen ${Math.round(seenAgo / 1000)} s ago`;
        return refuse(
          CloseCode.DUPLICATE_NAME,
          ErrorCode.DUPLICATE_NAME,
          `name ${hello.name} belongs to another worker that ${when} from ${existing.address}; use another --name, or forget ${hello.name} on the master`,
        );
      }
    }
    if (existing?.connected) {
      existing.close(CloseCode.REPLACED, 'replaced by a newer connection of the same worker');
      existing.markDisconnected('replaced by a newer connection', now);
    }
    raiseMaxPayload(ws, MAX_FRAME_BYTES + CHUNK_HEADER_BYTES + CHUNK_BYTES);
    const session = new WorkerSession(ws, peer, hello, now, this.uploads, this.logger);
    this.sessions.set(hello.name, session);
    const at = this.position(hello.name);
    this.sorted.splice(at, this.sorted[at]?.name === hello.name ? 1 : 0, session);
    ws.off('error', onError);
    this.listen(ws, session);
    session.quietTold = this.quietMs();
    session.send({ v: 1, type: 'welcome', name: hello.name, heartbeatMs: this.heartbeatMs, masterVersion: AGENT_VERSION, quietMs: session.quietTold });
    this.logger.info({ worker: hello.name, peer, hostname: hello.hostname }, 'worker joined');
    this.emit('joined', session);
  }

  /**
   * The connection's listeners for its whole life: the same four functions for every worker,
   * which find the session and the fleet on the socket (two properties). A closure per listener
   * and worker, with their context and a bound error handler, cost ~280 bytes a worker.
   */
  private listen(ws: WebSocket, session: WorkerSession): void {
    const tagged = ws as Tagged;
    tagged[SESSION] = session;
    tagged[FLEET] = this;
    ws.on('message', sessionMessage);
    ws.on('close', sessionClose);
    ws.on('pong', sessionPong);
    ws.on('error', sessionError);
  }

  /** Internal: a frame of an admitted worker (the shared listeners call it). */
  onFrame(session: WorkerSession, data: Buffer, isBinary: boolean): void {
    if (this.sessions.get(session.name) !== session) return;
    if (isBinary) {
      noteReceived(data.length);
      const chunk = decodeChunk(data);
      if (!chunk.ok) return this.protocolError(session, chunk.error, null);
      if (session.requests.receiveChunk(chunk.ref, chunk.payload) === 'overrun') {
        this.logger.warn({ worker: session.name, ref: chunk.ref }, 'worker ignored flow control; disconnecting it');
        session.close(CloseCode.PROTOCOL_VIOLATION, 'sent past the flow-control window');
      }
      return;
    }
    const parsed = parseWorkerMessage(data.toString('utf8'));
    if (!parsed.ok) return this.protocolError(session, parsed.error.message, parsed.id);
    this.handle(session, parsed.message);
  }

  /** Heartbeats between two pings of a worker: 1 until the fleet's heartbeats pass PINGS_PER_SECOND. */
  private pingEvery(): number {
    return Math.max(1, Math.ceil((this.sessions.size * 1000) / this.heartbeatMs / PINGS_PER_SECOND));
  }

  /**
   * Tells an agent its new quiet time once the fleet has grown or shrunk twofold since it was
   * told the last one: a message per agent per doubling, none while the fleet holds its size.
   */
  private pace(session: WorkerSession): void {
    const quiet = this.quietMs();
    if (quiet < 2 * session.quietTold && 2 * quiet > session.quietTold) return;
    session.quietTold = quiet;
    session.send({ v: 1, type: 'pace', quietMs: quiet });
  }

  /** Every worker → master message is handled here, and only here. */
  private handle(session: WorkerSession, message: WorkerToMaster): void {
    switch (message.type) {
      case 'heartbeat':
        session.noteLoad(message.load);
        this.history.record(session.name, Date.now(), message.load);
        // One ping in flight per worker: its pong measures the round trip. A ping on every
        // heartbeat while the fleet sends fewer than PINGS_PER_SECOND heartbeats a second;
        // beyond that on every Nth, so a fleet of 5,000 spends a ping a second per 5 workers.
        if (session.pingAt === null && session.ws.readyState === WebSocket.OPEN && ++session.beatsSincePing >= this.pingEvery()) {
          session.beatsSincePing = 0;
          session.pingAt = this.clock();
          session.ws.ping();
        }
        this.pace(session);
        if (session.liveness.beat(this.clock())) {
          this.logger.info({ worker: session.name }, 'worker available again');
          this.emit('available', session);
        }
        return;
      case 'result':
        return session.requests.settleResult(message);
      case 'result-parts':
        return session.requests.settleParts(message);
      case 'ack':
        return session.ackUpload(message.ref, message.bytes);
      case 'transfer-error':
        return session.failUpload(message.ref, message.error);
      case 'process-exit':
        this.emit('process-exit', session, message);
        return;
      case 'log-problem':
        this.logger.warn(
          { worker: session.name, pid: message.pid, app: message.app, problem: message.problem, droppedBytes: message.droppedBytes },
          'a log could not be written',
        );
        this.emit('log-problem', session, message);
        return;
      case 'protocol-error':
        this.peerLog.log('warn', session.name, { worker: session.name, error: message.error }, 'worker could not read a frame of ours');
        return;
      case 'hello':
        return this.protocolError(session, 'hello was already received', null);
      default:
        return unreachable(message);
    }
  }

  private protocolError(session: WorkerSession, message: string, id: number | null): void {
    this.peerLog.log('warn', session.name, { worker: session.name, id, error: message }, 'bad frame from a worker');
    session.send({ v: 1, type: 'protocol-error', error: { code: ErrorCode.PROTOCOL_ERROR, message } });
  }

  /** Internal: an admitted worker's connection closed (the shared listeners call it). */
  onClose(session: WorkerSession, code: number, reason: string): void {
    if (!session.connected) return;
    const why = reason || `connection closed (${code})`;
    session.markDisconnected(why, this.clock());
    if (this.sessions.get(session.name) !== session) return;
    this.logger.info({ worker: session.name, code, reason }, 'worker left');
    this.emit('left', session, why);
  }
}

/** A close that does not wait for the peer: a refused peer gets its reason, then is cut off. */
function closeSoon(ws: WebSocket, code: number, reason: string): void {
  ws.close(code, reason);
  setTimeout(() => ws.terminate(), 1000).unref();
}

/**
 * An admitted worker may send file chunks (up to a chunk plus its header) and frames up to
 * MAX_FRAME_BYTES; before its hello it could send only PRE_HELLO_MAX_PAYLOAD. ws sets the limit
 * per server, so it is raised here on the connection's receiver (ws 8's Receiver._maxPayload).
 */
function raiseMaxPayload(ws: WebSocket, bytes: number): void {
  const receiver = (ws as unknown as { _receiver?: { _maxPayload?: number } })._receiver;
  if (receiver && typeof receiver._maxPayload === 'number') receiver._maxPayload = bytes;
}

function digest(token: string): Buffer {
  return createHash('sha256').update(token).digest();
}

/** Close reasons must fit in 123 bytes. */
function truncate(text: string): string {
  return Buffer.byteLength(text) <= 123
    ? text
    : `${Buffer.from(text)
        .subarray(0, 120)
        .toString('utf8')
        .replace(/\uFFFD$/, '')}…`;
}

// The listeners every admitted worker's socket shares (Fleet.listen): each is called with the
// socket as `this`, and finds its session and fleet on it.
function sessionMessage(this: Tagged, data: Buffer, isBinary: boolean): void {
  this[FLEET]!.onFrame(this[SESSION]!, data, isBinary);
}

function sessionClose(this: Tagged, code: number, reason: Buffer): void {
  this[FLEET]!.onClose(this[SESSION]!, code, reason.toString());
}

function sessionPong(this: Tagged): void {
  const session = this[SESSION]!;
  if (session.pingAt === null) return;
  session.rttMs = Math.round((this[FLEET]!.clock() - session.pingAt) * 100) / 100;
  session.pingAt = null;
}

function sessionError(this: Tagged, err: Error): void {
  this[FLEET]!.socketError(this[SESSION]!.address, err);
}
