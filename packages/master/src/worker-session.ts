import WebSocket from 'ws';
import {
  MAX_FRAME_BYTES,
  bytesPastFrame,
  DroverError,
  ErrorCode,
  SendWindow,
  type ErrorBody,
  type Hello,
  type Load,
  type MasterToWorker,
  type RequestParams,
  type RequestType,
  type ResultDataOf,
} from '@drover/protocol';
import { Liveness } from './liveness.js';
import type { Logger } from './logger.js';
import { RequestTracker, type RequestOptions, type TrackerHost } from './request-tracker.js';
import type { UploadBudget } from './upload-budget.js';
import type { SharedChunk } from './shared-read.js';
import { writeWholeFrame } from './ws-frame.js';

export type { RequestOptions } from './request-tracker.js';

/** A worker that acknowledges nothing of an upload for this long has stalled it. */
const UPLOAD_IDLE_MS = 60_000;

/**
 * One worker's connection as the master sees it: its facts (from hello), its liveness, its
 * requests in flight, and its uploads. Each of those is its own small object; this one only
 * ties them to the socket.
 */
export class WorkerSession implements TrackerHost {
  readonly name: string;
  readonly workerId: string;
  readonly address: string;
  readonly hello: Hello;
  /** Wall time of the connection, for display only. */
  readonly connectedAtWall = Date.now();
  readonly liveness: Liveness;
  /** The last heartbeat's figures (noteLoad): updated in place, never replaced. */
  load: Load | null = null;
  /** Round trip of the last ping the master sent on a heartbeat (ms), once one came back. */
  rttMs: number | null = null;
  /** Monotonic ms the ping in flight was sent. */
  pingAt: number | null = null;
  /** Heartbeats since the last ping (the fleet pings every Nth at scale). */
  beatsSincePing = Number.MAX_SAFE_INTEGER;
  /** The quiet time (ms) this agent was last told, in its welcome or a pace message. */
  quietTold = 0;
  readonly requests: RequestTracker;
  /** Made at the first upload: an empty Map is ~180 bytes, and most workers are sent nothing. */
  private uploads: Map<number, SendWindow> | null = null;

  constructor(
    readonly ws: WebSocket,
    peer: string,
    hello: Hello,
    now: number,
    private readonly budget: UploadBudget,
    private readonly logger: Logger,
  ) {
    // Kept for the worker's facts; its token is not one of them (nothing reads it after admission).
    this.hello = { ...hello, token: '' };
    this.name = hello.name;
    this.workerId = hello.workerId;
    this.address = peer.replace(/^::ffff:/, '');
    this.liveness = new Liveness(now);
    this.requests = new RequestTracker(this);
  }

  chunkFailed(err: unknown, ref: number): void {
    this.logger.warn({ err, ref, worker: this.name }, 'chunk handler failed; cancelling the transfer');
  }

  /**
   * A heartbeat's figures, copied into this session's own record: the parsed frame then dies
   * young. Kept as it came, each heartbeat's object lived its second and survived the young
   * generation's collections into the old one, to be swept from there: at thousands of workers
   * a heartbeat each a second, the master's GC work.
   */
  noteLoad(load: Load): void {
    const mine = (this.load ??= new LoadFigures());
    mine.cpuPercent = load.cpuPercent;
    mine.memoryUsedBytes = load.memoryUsedBytes;
    mine.memoryTotalBytes = load.memoryTotalBytes;
    mine.loadAverage = load.loadAverage;
    mine.processes = load.processes;
  }

  get connected(): boolean {
    return this.liveness.connected;
  }

  get status(): Liveness['status'] {
    return this.liveness.status;
  }

  /**
   * Sends a message; throws TOO_LARGE, sending nothing, for one past the frame limit (a launch
   * whose arguments come from a service file may be): the agent would drop the connection.
   */
  send(message: MasterToWorker): void {
    if (this.ws.readyState !== WebSocket.OPEN) return;
    const text = JSON.stringify(message);
    const bytes = bytesPastFrame(text);
    if (bytes !== null) {
      throw new DroverError(ErrorCode.TOO_LARGE, `the ${message.type} for ${this.name} is ${bytes} bytes, more than the ${MAX_FRAME_BYTES} a message holds`);
    }
    this.ws.send(text);
  }

  /** Sends a request and resolves with the worker's validated result data. */
  request<T extends RequestType>(type: T, params: RequestParams<T>, opts: RequestOptions = {}): Promise<ResultDataOf<T>> {
    if (!this.connected || this.ws.readyState !== WebSocket.OPEN) {
      return Promise.reject(new DroverError(ErrorCode.WORKER_UNAVAILABLE, `worker ${this.name} is not connected`));
    }
    return this.requests.request(type, params, opts);
  }

  allocateId(): number {
    return this.requests.allocateId();
  }

  /**
   * Sends a whole chunk frame of upload `ref` (its header already names `ref`), waiting while
   * the worker has a full window unacknowledged; `release` runs once the socket has written it
   * (its memory may be reused then), or at once if it is not sent.
   */
  async sendFrame(ref: number, chunk: SharedChunk, signal?: AbortSignal): Promise<void> {
    this.uploads ??= new Map();
    let win = this.uploads.get(ref);
    if (!win) {
      win = new SendWindow(() => this.budget.windowBytes());
      this.uploads.set(ref, win);
      this.budget.open();
    }
    const check = (): void => {
      if (!this.connected || this.ws.readyState !== WebSocket.OPEN) throw new DroverError(ErrorCode.WORKER_UNAVAILABLE, `worker ${this.name} disconnected`);
    };
    try {
      await win.waitForRoom({
        signal,
        idleMs: UPLOAD_IDLE_MS,
        check,
        stalled: () => new DroverError(ErrorCode.TIMEOUT, `worker ${this.name} acknowledged nothing of the upload for ${UPLOAD_IDLE_MS / 1000} s`),
      });
      check();
    } catch (err) {
      chunk.release();
      throw err;
    }
    const written = (): void => chunk.release();
    // Over TLS, a chunk read here goes as one buffer (ws-frame.ts); anything else through ws.
    if (!chunk.wsRoom || !writeWholeFrame(this.ws, chunk.frame, written)) this.ws.send(chunk.frame, { binary: true }, written);
    win.sentBytes(chunk.bytes);
  }

  endUpload(ref: number): void {
    if (this.uploads?.delete(ref)) this.budget.close();
  }

  /** The worker has written `bytes` of upload `ref`. */
  ackUpload(ref: number, bytes: number): void {
    this.uploads?.get(ref)?.ack(bytes);
  }

  /** The worker failed upload `ref` (disk full, bad data): the sender stops at once. */
  failUpload(ref: number, error: ErrorBody): void {
    this.uploads?.get(ref)?.fail(new DroverError(error.code, error.message));
  }

  /** The connection is gone: every request in flight fails with a clear reason. */
  markDisconnected(reason: string, now: number): void {
    if (!this.liveness.disconnect(now)) return;
    this.requests.failAll(new DroverError(ErrorCode.WORKER_UNAVAILABLE, `worker ${this.name} disconnected (${reason})`));
    for (const win of this.uploads?.values() ?? []) win.poke();
  }

  close(code: number, reason: string): void {
    this.ws.close(code, reason);
    setTimeout(() => this.ws.terminate(), 1000).unref();
  }
}

/**
 * A session's copy of the last heartbeat's figures, an object of its own class, so its numbers
 * are written in place. A copy of the parsed object (`{ ...load }`) shares the shape V8 gives
 * every parsed JSON object with these keys in this order, and in the master that shape held
 * them boxed (a value of another kind under one of these keys, in any message the process
 * parses, can make it so): a new 16-byte box per figure per heartbeat, each living its second
 * and so moved to the old generation. At 19,500 workers V8's sampling heap profiler counted 48
 * bytes of each heartbeat freed only by full collections that way; ~0 as this.
 */
class LoadFigures implements Load {
  // Numbers from the start (a field declared without a value starts undefined: see Liveness).
  cpuPercent = 0;
  memoryUsedBytes = 0;
  memoryTotalBytes = 0;
  loadAverage = 0;
  processes = 0;
}
