import { createHash, timingSafeEqual } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { IncomingMessage } from 'node:http';
import type WebSocket from 'ws';
import {
  AGENT_VERSION,
  CloseCode,
  DroverError,
  ErrorCode,
  PROTOCOL_VERSION,
  decodeChunk,
  parseWorkerMessage,
  type Hello,
  type ProcessExit,
} from '@drover/protocol';
import type { Logger } from './logger.js';
import { WorkerSession } from './session.js';

const HELLO_TIMEOUT_MS = 10_000;
/** Disconnected workers stay listed (as unavailable) this long, then are forgotten. */
const FORGET_AFTER_MS = 60 * 60 * 1000;

export interface FleetEvents {
  joined: [WorkerSession];
  left: [WorkerSession, string];
  unavailable: [WorkerSession];
  available: [WorkerSession];
  'process-exit': [WorkerSession, ProcessExit];
}

/**
 * Every worker session, keyed by name. Liveness is one sweep timer for the whole fleet
 * (not a timer per worker): a worker with no heartbeat for 2 intervals is unavailable.
 */
export class Fleet extends EventEmitter<FleetEvents> {
  private readonly sessions = new Map<string, WorkerSession>();
  private readonly sweeper: NodeJS.Timeout;
  private readonly tokenDigest: Buffer;

  constructor(
    token: string,
    readonly heartbeatMs: number,
    private readonly logger: Logger,
  ) {
    super();
    this.tokenDigest = digest(token);
    // Sweeping every H/4 bounds the detection slack at H/4 past the 2·H deadline.
    this.sweeper = setInterval(() => this.sweep(), Math.max(5, Math.floor(heartbeatMs / 4)));
    this.sweeper.unref();
  }

  list(): WorkerSession[] {
    return [...this.sessions.values()].sort((a, b) => a.name.localeCompare(b.name, undefined, { numeric: true }));
  }

  names(): string[] {
    return this.list().map((s) => s.name);
  }

  availableCount(): number {
    let n = 0;
    for (const s of this.sessions.values()) if (s.status === 'available') n++;
    return n;
  }

  /** The session of `name`, available, or a clear error naming the worker. */
  get(name: string): WorkerSession {
    const s = this.sessions.get(name);
    if (!s) {
      // A hint, not a listing: with thousands of workers the error must stay one readable line.
      const known = this.names();
      const shown = known.slice(0, 10).join(', ') + (known.length > 10 ? `, and ${known.length - 10} more (see workers)` : '');
      const hint = known.length ? `known workers: ${shown}` : 'no workers have joined';
      throw new DroverError(ErrorCode.UNKNOWN_WORKER, `unknown worker "${name}" (${hint})`);
    }
    if (s.status !== 'available') {
      const ago = ((Date.now() - s.lastHeartbeatAt) / 1000).toFixed(1);
      throw new DroverError(ErrorCode.WORKER_UNAVAILABLE, `worker ${name} is unavailable (last heartbeat ${ago} s ago)`);
    }
    return s;
  }

  /** `all` → every available worker (at least one); a name → that worker. */
  select(target: string): WorkerSession[] {
    if (target === 'all') {
      const up = this.list().filter((s) => s.status === 'available');
      if (up.length === 0) throw new DroverError(ErrorCode.WORKER_UNAVAILABLE, 'no worker is available');
      return up;
    }
    return [this.get(target)];
  }

  /**
   * Drops disconnected workers from the list: `name`, or every disconnected one with `gone`.
   * A connected worker is never forgotten (it would only join again).
   */
  forget(name: string): string[] {
    if (name !== 'gone') {
      const s = this.sessions.get(name);
      if (!s) throw new DroverError(ErrorCode.UNKNOWN_WORKER, `unknown worker "${name}"`);
      if (s.connected) throw new DroverError(ErrorCode.BAD_ARGUMENTS, `worker ${name} is connected; only disconnected workers can be forgotten`);
      this.sessions.delete(name);
      return [name];
    }
    const gone = this.list()
      .filter((s) => !s.connected)
      .map((s) => s.name);
    for (const n of gone) this.sessions.delete(n);
    return gone;
  }

  /** Takes a new WebSocket: the first frame must be a valid hello with the right token. */
  accept(ws: WebSocket, req: IncomingMessage): void {
    const peer = req.socket.remoteAddress ?? 'unknown';
    const timer = setTimeout(() => ws.close(CloseCode.HELLO_EXPECTED, 'no hello within 10 s'), HELLO_TIMEOUT_MS);
    ws.on('error', (err) => this.logger.debug({ peer, err: err.message }, 'worker socket error'));
    ws.once('message', (data: Buffer, isBinary: boolean) => {
      clearTimeout(timer);
      const parsed = isBinary ? null : parseWorkerMessage(data.toString('utf8'));
      if (!parsed || !parsed.ok || parsed.message.type !== 'hello') {
        const why = parsed && !parsed.ok ? parsed.error.message : 'the first frame must be a hello';
        this.logger.warn({ peer, why }, 'refused a connection');
        return ws.close(CloseCode.HELLO_EXPECTED, truncate(`expected hello: ${why}`));
      }
      this.admit(ws, req, parsed.message);
    });
    ws.once('close', () => clearTimeout(timer));
  }

  close(): void {
    clearInterval(this.sweeper);
    for (const s of this.sessions.values()) {
      if (s.connected) s.close(CloseCode.SHUTDOWN, 'master shutting down');
      s.markDisconnected('master shutting down');
    }
  }

  private admit(ws: WebSocket, req: IncomingMessage, hello: Hello): void {
    const peer = req.socket.remoteAddress ?? 'unknown';
    if (!timingSafeEqual(digest(hello.token), this.tokenDigest)) {
      this.logger.warn({ peer, worker: hello.name }, 'refused a worker: bad token');
      return ws.close(CloseCode.UNAUTHORIZED, hello.token ? 'bad token' : 'missing token');
    }
    if (hello.protocolVersion !== PROTOCOL_VERSION) {
      this.logger.warn({ peer, worker: hello.name, version: hello.protocolVersion }, 'refused a worker: protocol version');
      return ws.close(CloseCode.VERSION_MISMATCH, `protocol version ${hello.protocolVersion} is not supported; the master speaks ${PROTOCOL_VERSION}`);
    }
    const existing = this.sessions.get(hello.name);
    if (existing?.connected) {
      if (existing.workerId !== hello.workerId && existing.status === 'available') {
        this.logger.warn({ peer, worker: hello.name }, 'refused a worker: duplicate name');
        return ws.close(
          CloseCode.DUPLICATE_NAME,
          truncate(`a worker named ${hello.name} is already connected from ${existing.address}; start this one with another --name`),
        );
      }
      existing.close(CloseCode.REPLACED, 'replaced by a newer connection of the same worker');
      existing.markDisconnected('replaced by a newer connection');
    }
    const session = new WorkerSession(ws, req, hello, this.logger);
    this.sessions.set(hello.name, session);
    ws.on('message', (data: Buffer, isBinary: boolean) => this.onFrame(session, data, isBinary));
    ws.on('close', (code, reason) => this.onClose(session, code, reason.toString()));
    session.send({ v: 1, type: 'welcome', name: hello.name, heartbeatMs: this.heartbeatMs, masterVersion: AGENT_VERSION });
    this.logger.info({ worker: hello.name, peer, hostname: hello.hostname }, 'worker joined');
    this.emit('joined', session);
  }

  private onFrame(session: WorkerSession, data: Buffer, isBinary: boolean): void {
    if (this.sessions.get(session.name) !== session) return;
    if (isBinary) {
      const chunk = decodeChunk(data);
      if (!chunk.ok) return this.protocolError(session, chunk.error, null);
      return session.receiveChunk(chunk.ref, chunk.payload);
    }
    const parsed = parseWorkerMessage(data.toString('utf8'));
    if (!parsed.ok) return this.protocolError(session, parsed.error.message, parsed.id);
    const message = parsed.message;
    switch (message.type) {
      case 'heartbeat':
        session.lastHeartbeatAt = Date.now();
        session.load = message.load;
        if (session.status !== 'available') {
          session.status = 'available';
          this.logger.info({ worker: session.name }, 'worker available again');
          this.emit('available', session);
        }
        return;
      case 'process-exit':
        this.emit('process-exit', session, message);
        return;
      case 'protocol-error':
        this.logger.warn({ worker: session.name, error: message.error }, 'worker could not read a frame of ours');
        return;
      case 'hello':
        return this.protocolError(session, 'hello was already received', null);
      default:
        session.receive(message);
    }
  }

  private protocolError(session: WorkerSession, message: string, id: number | null): void {
    this.logger.warn({ worker: session.name, id, error: message }, 'bad frame from a worker');
    session.send({ v: 1, type: 'protocol-error', error: { code: ErrorCode.PROTOCOL_ERROR, message } });
  }

  private onClose(session: WorkerSession, code: number, reason: string): void {
    if (!session.connected) return;
    const why = reason || `connection closed (${code})`;
    session.markDisconnected(why);
    if (this.sessions.get(session.name) !== session) return;
    this.logger.info({ worker: session.name, code, reason }, 'worker left');
    this.emit('left', session, why);
  }

  private sweep(): void {
    const now = Date.now();
    const deadline = 2 * this.heartbeatMs;
    for (const s of this.sessions.values()) {
      if (s.status === 'available' && now - s.lastHeartbeatAt > deadline) {
        s.status = 'unavailable';
        this.logger.warn({ worker: s.name, silentMs: now - s.lastHeartbeatAt }, 'worker missed 2 heartbeats: unavailable');
        this.emit('unavailable', s);
      }
      if (!s.connected && s.disconnectedAt !== null && now - s.disconnectedAt > FORGET_AFTER_MS) this.sessions.delete(s.name);
    }
  }
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
