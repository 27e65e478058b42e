import {
  MAX_FRAME_BYTES,
  MAX_RESULT_BYTES,
  parseWorkerParts,
  type ResultParts,
  DroverError,
  ErrorCode,
  ReceiveWindow,
  ResultData,
  TRANSFER_WINDOW_BYTES,
  type MasterToWorker,
  type RequestParams,
  type RequestType,
  type Result,
  type ResultDataOf,
  releaseChunk,
  onAbort as onAbortOf,
  toDroverError,
} from '@drover/protocol';

export interface RequestOptions {
  timeoutMs?: number;
  signal?: AbortSignal;
  /**
   * Receives the binary chunks the worker streams for this request (log fetches), in order. The
   * payload is the handler's until it returns (or its promise settles): then its memory is freed.
   */
  onChunk?: (payload: Buffer) => void | Promise<void>;
  /** Use this id (from allocateId) instead of a new one: uploads name their chunks by it. */
  id?: number;
}

interface Pending {
  type: RequestType;
  resolve(data: unknown): void;
  reject(err: DroverError): void;
  /** performance.now() past which it times out (Infinity: never), and the timeout it came from. */
  deadline: number;
  timeoutMs: number;
  cleanup(): void;
  /** Chunks of this request: handled one after another, acknowledged once handled. */
  chunks: { handle: (p: Buffer) => void | Promise<void>; window: ReceiveWindow; chain: Promise<void> } | null;
  /** Of a request that streams nothing: the pieces of an answer too big for a frame, so far. */
  parts: { list: Buffer[]; bytes: number } | null;
}

const DEFAULT_TIMEOUT_MS = 60_000;

/** What a tracker sends through: the worker's session (one object, no closures kept per worker). */
export interface TrackerHost {
  /** The worker's name, for messages. */
  readonly name: string;
  /** Sends a message; may throw (TOO_LARGE), sending nothing. */
  send(message: MasterToWorker): void;
  /** A chunk handler failed; the transfer is being cancelled. */
  chunkFailed?(err: unknown, ref: number): void;
}

/**
 * The worker grants itself TRANSFER_WINDOW_BYTES unacknowledged and may be one chunk into it
 * when it checks; anything past that ignores flow control.
 */
const GRANTED_WINDOW_BYTES = TRANSFER_WINDOW_BYTES + MAX_FRAME_BYTES;

/** What a chunk for a request did to the window: fine, dropped (no such request), or overran it. */
export type ChunkOutcome = 'ok' | 'dropped' | 'overrun';

/**
 * Request/response correlation for one worker connection: ids, timeouts, cancellation, result
 * validation per request type, and the ordered handling of chunks a request streams back.
 * It knows nothing of sockets: it sends through its host and is fed what arrives.
 */
export class RequestTracker {
  private nextId = 1;
  /**
   * Requests in flight, or null while there are none: an empty Map is ~180 bytes, and a fleet's
   * workers spend nearly all their time with nothing asked of them.
   */
  private pending: Map<number, Pending> | null = null;
  /**
   * One timer for every request's deadline, set for the earliest: a request that comes and
   * goes within its timeout (nearly all) costs a comparison, not a timer made and cleared
   * (measured: ~5 µs of the master's ~300 µs per `ps`, cold as it is between commands). It
   * keeps no process alive: it only sweeps.
   */
  private timer: NodeJS.Timeout | null = null;
  private timerAt = Infinity;

  constructor(private readonly host: TrackerHost) {}

  get size(): number {
    return this.pending?.size ?? 0;
  }

  private get worker(): string {
    return this.host.name;
  }

  private send(message: MasterToWorker): void {
    this.host.send(message);
  }

  /**
   * Reserves an id for a request or a transfer. Ids stay below 2^31: the ids above are the
   * upload refs of shared reads, one for all the workers a file goes to (shared-read.ts).
   */
  allocateId(): number {
    const id = this.nextId;
    this.nextId = this.nextId >= 0x7fff_fff0 ? 1 : this.nextId + 1;
    return id;
  }

  /** Sends a request and resolves with the worker's validated result data. */
  request<T extends RequestType>(type: T, params: RequestParams<T>, opts: RequestOptions = {}): Promise<ResultDataOf<T>> {
    const id = opts.id ?? this.allocateId();
    return new Promise<ResultDataOf<T>>((resolve, reject) => {
      // Cancelled before it was sent: nothing to tell the worker.
      if (opts.signal?.aborted) return reject(new DroverError(ErrorCode.CANCELLED, 'cancelled'));
      const onAbort = (): void => this.cancel(id, new DroverError(ErrorCode.CANCELLED, 'cancelled'));
      const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
      const deadline = timeoutMs > 0 && Number.isFinite(timeoutMs) ? performance.now() + timeoutMs : Infinity;
      if (deadline < this.timerAt) this.sweepAt(deadline);
      (this.pending ??= new Map()).set(id, {
        type,
        resolve: resolve,
        reject,
        deadline,
        timeoutMs,
        cleanup: opts.signal ? onAbortOf(opts.signal, onAbort) : () => undefined,
        chunks: opts.onChunk ? { handle: opts.onChunk, window: new ReceiveWindow(GRANTED_WINDOW_BYTES), chain: Promise.resolve() } : null,
        parts: null,
      });
      try {
        this.send({ v: 1, type, id, ...params } as MasterToWorker);
      } catch (err) {
        // Not sent (too large): nothing to cancel on the worker.
        this.settle(id, toDroverError(err));
      }
    });
  }

  /** A result arrived: validated against what was asked, then handed to the waiting caller. */
  settleResult(message: Result): void {
    const p = this.pending?.get(message.id);
    if (!p) return;
    if (!message.ok) return this.settle(message.id, new DroverError(message.error.code, message.error.message));
    const parsed = ResultData[p.type].safeParse(message.data);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const where = issue?.path.join('.') || 'top';
      return this.settle(
        message.id,
        new DroverError(ErrorCode.PROTOCOL_ERROR, `worker ${this.worker} sent a malformed ${p.type} result at ${where}: ${issue?.message}`),
      );
    }
    // Chunks the worker sent before its result must be handled first.
    const id = message.id;
    if (p.chunks) void p.chunks.chain.then(() => this.settle(id, null, parsed.data));
    else this.settle(id, null, parsed.data);
  }

  /**
   * The answer to `message.id` came in chunks (it is past a frame): read together, they must be
   * one `result` message for that request, of `message.bytes` bytes.
   */
  settleParts(message: ResultParts): void {
    const p = this.pending?.get(message.id);
    if (!p) return;
    const parts = p.parts ?? { list: [], bytes: 0 };
    p.parts = null;
    const malformed = (why: string): void =>
      this.cancel(message.id, new DroverError(ErrorCode.PROTOCOL_ERROR, `worker ${this.worker} sent a malformed ${p.type} answer in parts: ${why}`));
    if (parts.bytes !== message.bytes) return malformed(`${parts.bytes} bytes came, ${message.bytes} were announced`);
    const parsed = parseWorkerParts(Buffer.concat(parts.list, parts.bytes).toString('utf8'));
    if (!parsed.ok) return malformed(parsed.error.message);
    if (parsed.message.type !== 'result' || parsed.message.id !== message.id) return malformed(`they are not its result`);
    this.settleResult(parsed.message);
  }

  /**
   * A binary chunk for request `ref`: handed on in order and acknowledged once handled, for a
   * request that streams; kept, for one whose answer comes in parts.
   */
  receiveChunk(ref: number, payload: Buffer): ChunkOutcome {
    const p = this.pending?.get(ref);
    if (!p) return 'dropped';
    const h = p.chunks;
    if (!h) {
      const parts = (p.parts ??= { list: [], bytes: 0 });
      if (parts.bytes + payload.length > MAX_RESULT_BYTES) {
        this.cancel(ref, new DroverError(ErrorCode.PROTOCOL_ERROR, `worker ${this.worker} sent an answer past the ${MAX_RESULT_BYTES} bytes one may hold`));
        return 'overrun';
      }
      parts.list.push(payload);
      parts.bytes += payload.length;
      return 'ok';
    }
    if (!h.window.arrive(payload.length)) {
      this.cancel(ref, new DroverError(ErrorCode.PROTOCOL_ERROR, `worker ${this.worker} sent past the ${GRANTED_WINDOW_BYTES}-byte window it was granted`));
      return 'overrun';
    }
    const bytes = payload.length;
    h.chain = h.chain.then(async () => {
      if (!this.pending?.has(ref)) return;
      try {
        await h.handle(payload);
      } catch (err) {
        this.host.chunkFailed?.(err, ref);
        this.cancel(ref, err instanceof DroverError ? err : new DroverError(ErrorCode.IO_ERROR, err instanceof Error ? err.message : String(err)));
        return;
      } finally {
        // Handled (written, or sent on and out of the socket): its memory goes back now, not at the next GC.
        releaseChunk(payload);
      }
      this.send({ v: 1, type: 'ack', ref, bytes: h.window.consume(bytes) });
    });
    return 'ok';
  }

  /** The connection is gone: every request in flight fails with `err`. */
  failAll(err: DroverError): void {
    for (const id of [...(this.pending?.keys() ?? [])]) this.settle(id, err);
  }

  /** Sets the one timer for `at` (performance.now() ms). */
  private sweepAt(at: number): void {
    if (this.timer) clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(() => this.sweep(), Math.max(0, at - performance.now()));
    this.timer.unref();
  }

  /** Times out every request past its deadline, and sets the timer for the next one. */
  private sweep(): void {
    this.timer = null;
    this.timerAt = Infinity;
    const now = performance.now();
    let next = Infinity;
    for (const [id, p] of [...(this.pending ?? [])]) {
      if (p.deadline <= now) {
        this.cancel(id, new DroverError(ErrorCode.TIMEOUT, `worker ${this.worker} did not answer ${p.type} within ${formatSeconds(p.timeoutMs)}`));
      } else if (p.deadline < next) next = p.deadline;
    }
    if (next < Infinity) this.sweepAt(next);
  }

  /** Tells the worker to stop working on `id` and fails the caller with `err`. */
  private cancel(id: number, err: DroverError): void {
    if (!this.pending?.has(id)) return;
    this.send({ v: 1, type: 'cancel', ref: id });
    this.settle(id, err);
  }

  private settle(id: number, err: DroverError | null, data?: unknown): void {
    const p = this.pending?.get(id);
    if (!p) return;
    this.pending!.delete(id);
    if (this.pending!.size === 0) this.pending = null;
    p.cleanup();
    if (err) p.reject(err);
    else p.resolve(data);
  }
}

function formatSeconds(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${Math.round(ms / 100) / 10} s`;
}
