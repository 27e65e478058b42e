import type { IncomingMessage } from 'node:http';
import WebSocket from 'ws';
import {
  DroverError,
  ErrorCode,
  ResultData,
  TRANSFER_WINDOW_BYTES,
  encodeChunkHeader,
  type Hello,
  type Load,
  type MasterToWorker,
  type RequestParams,
  type RequestType,
  type ResultDataOf,
  type WorkerToMaster,
} from '@drover/protocol';
import type { Logger } from './logger.js';

export type WorkerStatus = 'available' | 'unavailable';

interface Pending {
  type: RequestType;
  resolve(data: unknown): void;
  reject(err: DroverError): void;
  timer: NodeJS.Timeout | null;
  cleanup(): void;
}

export interface RequestOptions {
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Receives the binary chunks the worker streams for this request (log fetches). */
  onChunk?: (payload: Buffer) => void | Promise<void>;
  /** Use this id (from allocateId) instead of a new one: uploads name their chunks by it. */
  id?: number;
}

const DEFAULT_TIMEOUT_MS = 60_000;

/** Bytes all uploads together may have unacknowledged: copy all to a large fleet stays bounded. */
const MASTER_IN_FLIGHT_BYTES = 128 * 1024 * 1024;
const MIN_WINDOW_BYTES = 1024 * 1024;
let activeUploads = 0;

/** A worker that acknowledges nothing of an upload for this long has stalled it. */
const UPLOAD_IDLE_MS = 60_000;

interface UploadWindow {
  acked: number;
  wake: (() => void) | null;
  /** Set when the worker reported that it failed (transfer-error). */
  error: DroverError | null;
}

/** One upload's window: the full window while few run, a fair share of the master's budget when many do. */
function uploadWindow(): number {
  return Math.max(MIN_WINDOW_BYTES, Math.min(TRANSFER_WINDOW_BYTES, Math.floor(MASTER_IN_FLIGHT_BYTES / Math.max(1, activeUploads))));
}

/** One worker's connection as the master sees it: facts, liveness, and request/response by id. */
export class WorkerSession {
  readonly name: string;
  readonly workerId: string;
  readonly address: string;
  readonly hello: Hello;
  readonly connectedAt = Date.now();
  lastHeartbeatAt = Date.now();
  status: WorkerStatus = 'available';
  connected = true;
  disconnectedAt: number | null = null;
  load: Load | null = null;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly chunkHandlers = new Map<number, { handle: (p: Buffer) => void | Promise<void>; consumed: number; chain: Promise<void> }>();
  private readonly windows = new Map<number, UploadWindow>();

  constructor(
    readonly ws: WebSocket,
    req: IncomingMessage,
    hello: Hello,
    private readonly logger: Logger,
  ) {
    this.hello = hello;
    this.name = hello.name;
    this.workerId = hello.workerId;
    const forwarded = req.socket.remoteAddress ?? 'unknown';
    this.address = forwarded.replace(/^::ffff:/, '');
  }

  send(message: MasterToWorker): void {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
  }

  /** Sends a request and resolves with the worker's validated result data. */
  request<T extends RequestType>(type: T, params: RequestParams<T>, opts: RequestOptions = {}): Promise<ResultDataOf<T>> {
    if (!this.connected || this.ws.readyState !== WebSocket.OPEN) {
      return Promise.reject(new DroverError(ErrorCode.WORKER_UNAVAILABLE, `worker ${this.name} is not connected`));
    }
    const id = opts.id ?? this.allocateId();
    return new Promise<ResultDataOf<T>>((resolve, reject) => {
      const onAbort = (): void => {
        this.send({ v: 1, type: 'cancel', ref: id });
        this.settle(id, new DroverError(ErrorCode.CANCELLED, 'cancelled'));
      };
      const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
      const timer =
        timeoutMs > 0 && Number.isFinite(timeoutMs)
          ? setTimeout(() => {
              this.send({ v: 1, type: 'cancel', ref: id });
              this.settle(id, new DroverError(ErrorCode.TIMEOUT, `worker ${this.name} did not answer ${type} within ${Math.round(timeoutMs / 1000)} s`));
            }, timeoutMs)
          : null;
      this.pending.set(id, {
        type,
        resolve: resolve,
        reject,
        timer,
        cleanup: () => opts.signal?.removeEventListener('abort', onAbort),
      });
      if (opts.onChunk) this.chunkHandlers.set(id, { handle: opts.onChunk, consumed: 0, chain: Promise.resolve() });
      if (opts.signal?.aborted) return onAbort();
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      this.send({ v: 1, type, id, ...params } as MasterToWorker);
    });
  }

  /** Reserves an id for a transfer whose chunks the master sends (an upload). */
  allocateId(): number {
    const id = this.nextId;
    this.nextId = this.nextId >= 0xfffffff0 ? 1 : this.nextId + 1;
    return id;
  }

  /** Sends one chunk of upload `ref`, waiting while the worker has a full window unacknowledged. */
  async sendChunk(ref: number, sentSoFar: number, payload: Buffer, signal?: AbortSignal): Promise<void> {
    let win = this.windows.get(ref);
    if (!win) {
      win = { acked: 0, wake: null, error: null };
      this.windows.set(ref, win);
      activeUploads++;
    }
    while (sentSoFar - win.acked >= uploadWindow() || win.error) {
      if (win.error) throw win.error;
      if (!this.connected) throw new DroverError(ErrorCode.WORKER_UNAVAILABLE, `worker ${this.name} disconnected`);
      if (signal?.aborted) throw new DroverError(ErrorCode.CANCELLED, 'cancelled');
      const acked = win.acked;
      const w = win;
      await new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(timer);
          signal?.removeEventListener('abort', done);
          resolve();
        };
        const timer = setTimeout(done, UPLOAD_IDLE_MS);
        w.wake = done;
        signal?.addEventListener('abort', done, { once: true });
      });
      if (win.acked === acked && !win.error && !signal?.aborted && this.connected) {
        throw new DroverError(ErrorCode.TIMEOUT, `worker ${this.name} acknowledged nothing of the upload for ${UPLOAD_IDLE_MS / 1000} s`);
      }
    }
    if (!this.connected || this.ws.readyState !== WebSocket.OPEN) throw new DroverError(ErrorCode.WORKER_UNAVAILABLE, `worker ${this.name} disconnected`);
    this.ws.send(Buffer.concat([encodeChunkHeader(ref), payload]), { binary: true });
  }

  endUpload(ref: number): void {
    if (this.windows.delete(ref)) activeUploads--;
  }

  /** Handles a validated message (hello excluded). */
  receive(message: WorkerToMaster): void {
    switch (message.type) {
      case 'result': {
        const p = this.pending.get(message.id);
        if (!p) return;
        if (!message.ok) {
          const e = message.error!;
          return this.settle(message.id, new DroverError(e.code as ErrorCode, e.message));
        }
        const parsed = ResultData[p.type].safeParse(message.data ?? {});
        if (!parsed.success) {
          const issue = parsed.error.issues[0];
          return this.settle(
            message.id,
            new DroverError(
              ErrorCode.PROTOCOL_ERROR,
              `worker ${this.name} sent a malformed ${p.type} result at ${issue?.path.join('.') || 'top'}: ${issue?.message}`,
            ),
          );
        }
        // Chunks the worker sent before its result must be handled first.
        const chunks = this.chunkHandlers.get(message.id);
        const id = message.id;
        if (chunks) void chunks.chain.then(() => this.settle(id, null, parsed.data));
        else this.settle(id, null, parsed.data);
        return;
      }
      case 'ack': {
        const win = this.windows.get(message.ref);
        if (!win) return;
        win.acked = Math.max(win.acked, message.bytes);
        const wake = win.wake;
        win.wake = null;
        wake?.();
        return;
      }
      case 'transfer-error': {
        const win = this.windows.get(message.ref);
        if (!win) return;
        win.error = new DroverError(message.error.code as ErrorCode, message.error.message);
        const wake = win.wake;
        win.wake = null;
        wake?.();
        return;
      }
      case 'heartbeat':
      case 'hello':
      case 'process-exit':
      case 'protocol-error':
        return; // handled by the fleet
    }
  }

  /** A binary chunk for request `ref`: handed on in order, acknowledged once handled. */
  receiveChunk(ref: number, payload: Buffer): void {
    const h = this.chunkHandlers.get(ref);
    if (!h) return;
    h.chain = h.chain.then(async () => {
      try {
        await h.handle(payload);
      } catch (err) {
        this.logger.warn({ err, ref }, 'chunk handler failed; cancelling the transfer');
        this.send({ v: 1, type: 'cancel', ref });
        this.settle(ref, new DroverError(ErrorCode.IO_ERROR, err instanceof Error ? err.message : String(err)));
        return;
      }
      h.consumed += payload.length;
      this.send({ v: 1, type: 'ack', ref, bytes: h.consumed });
    });
  }

  /** The connection is gone: every request in flight fails with a clear reason. */
  markDisconnected(reason: string): void {
    this.connected = false;
    this.status = 'unavailable';
    this.disconnectedAt = Date.now();
    for (const id of [...this.pending.keys()]) {
      this.settle(id, new DroverError(ErrorCode.WORKER_UNAVAILABLE, `worker ${this.name} disconnected (${reason})`));
    }
    for (const win of this.windows.values()) win.wake?.();
  }

  close(code: number, reason: string): void {
    this.ws.close(code, reason);
    setTimeout(() => this.ws.terminate(), 1000).unref();
  }

  private settle(id: number, err: DroverError | null, data?: unknown): void {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    this.chunkHandlers.delete(id);
    if (p.timer) clearTimeout(p.timer);
    p.cleanup();
    if (err) p.reject(err);
    else p.resolve(data);
  }
}
