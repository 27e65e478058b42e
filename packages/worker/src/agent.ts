import type { LogPolicy } from './log-pump.js';
import os from 'node:os';
import {
  AGENT_VERSION,
  DroverError,
  ErrorCode,
  MAX_RESULT_BYTES,
  PROTOCOL_VERSION,
  bytesPastFrame,
  toDroverError,
  type Hello,
  type MasterToWorker,
  type Request,
} from '@drover/protocol';
import { LoadSampler, detectGpus, loadWorkerId } from './facts.js';
import { Link } from './link.js';
import type { Logger } from './logger.js';
import { handleRequest, type HandlerContext } from './handlers.js';
import { Services } from './services.js';
import { lockStateDir } from './state-lock.js';

export interface AgentOptions {
  url: string;
  ca?: Buffer;
  fingerprint?: string;
  name: string;
  token: string;
  stateDir: string;
  heartbeatMs: number;
  /** What service files select this worker by (`--label zone=a`). */
  labels?: Record<string, string>;
  /** What it offers to placement, where not all of the machine. */
  capacity?: { cpus?: number; memoryBytes?: number };
  /** How app logs are kept (--log-max, --log-keep); a service program may say otherwise. */
  logPolicy?: LogPolicy;
  logger: Logger;
  /** The master refused this worker for a reason retrying will not fix. */
  onFatal(message: string, code: ErrorCode): void;
}

/** The worker agent: one link to the master, and the services that answer its requests. */
export class Agent {
  private link: Link | null = null;
  private readonly inflight = new Map<number, AbortController>();
  private services!: Services;
  private unlock: (() => Promise<void>) | null = null;

  constructor(private readonly opts: AgentOptions) {}

  async start(): Promise<void> {
    const { opts } = this;
    this.unlock = await lockStateDir(opts.stateDir);
    const [workerId, gpus] = await Promise.all([loadWorkerId(opts.stateDir), detectGpus()]);
    this.services = await Services.open({
      stateDir: opts.stateDir,
      workerName: opts.name,
      logger: opts.logger,
      send: (m) => this.link?.send(m) ?? false,
      logPolicy: opts.logPolicy,
    });
    const sampler = new LoadSampler();
    const hello = (): Hello => ({
      v: 1,
      type: 'hello',
      token: opts.token,
      protocolVersion: PROTOCOL_VERSION,
      workerId,
      name: opts.name,
      hostname: os.hostname(),
      os: { platform: os.platform(), release: os.release(), arch: os.arch() },
      cpus: opts.capacity?.cpus ?? os.availableParallelism(),
      memoryBytes: opts.capacity?.memoryBytes ?? os.totalmem(),
      gpus,
      agentVersion: AGENT_VERSION,
      labels: opts.labels ?? {},
    });
    const link = new Link({
      url: opts.url,
      ca: opts.ca,
      fingerprint: opts.fingerprint,
      logger: opts.logger,
      heartbeatMs: opts.heartbeatMs,
      hello,
      load: () => sampler.sample(this.services.supervisor.liveCount()),
      onMessage: (m) => this.dispatch(m),
      onChunk: (ref, payload) => this.services.transfers.receive(ref, payload),
      fenceAfterMs: () => this.services.keeper.fenceAfterMs(),
      onDown: () => this.abortAll(),
      onRefused: (code, reason, errorCode) => opts.onFatal(`the master refused this worker (${code}): ${reason}`, errorCode),
    });
    this.link = link;
    this.services.attachLink(link);
    link.start();
  }

  async stop(): Promise<void> {
    this.abortAll();
    this.link?.stop();
    await this.services?.close();
    await this.unlock?.();
  }

  /** Every master → worker message is handled here; each request type has its handler in handlers.ts. */
  private dispatch(message: MasterToWorker): void {
    switch (message.type) {
      case 'welcome':
      case 'pace':
        return; // the link handles them
      case 'protocol-error':
        this.opts.logger.warn({ error: message.error }, 'the master could not read a frame of ours');
        return;
      case 'cancel':
        this.inflight.get(message.ref)?.abort();
        return;
      case 'ack':
        this.services.transfers.ack(message.ref, message.bytes);
        return;
      default:
        // Only requests are left: a new non-request message type fails to compile here.
        void this.answer(message);
    }
  }

  private async answer(request: Request): Promise<void> {
    const controller = new AbortController();
    this.inflight.set(request.id, controller);
    // The signal is made on first use: most requests (ps, usage, inventory) never look at it, and
    // making one cost ~8 µs of a ~160 µs request.
    const ctx: HandlerContext = {
      services: this.services,
      get signal() {
        return controller.signal;
      },
      logger: this.opts.logger,
    };
    try {
      const data = await handleRequest(request, ctx);
      let text: string;
      try {
        text = JSON.stringify({ v: 1, type: 'result', id: request.id, ok: true, data });
      } catch (err) {
        // Past what one string may hold (~512 MB): far past what an answer may hold.
        if (!(err instanceof RangeError)) throw err;
        throw new DroverError(
          ErrorCode.TOO_LARGE,
          `the answer to ${request.type} on ${this.opts.name} is more than the ${MAX_RESULT_BYTES} bytes an answer may hold`,
        );
      }
      // A frame over the limit would make the master drop the connection: an answer that big goes
      // in chunks, and one past what the master holds for a request is answered why instead.
      const bytes = bytesPastFrame(text);
      if (bytes === null) this.link?.sendText(text);
      else if (bytes <= MAX_RESULT_BYTES) this.link?.sendInParts(request.id, text);
      else {
        throw new DroverError(
          ErrorCode.TOO_LARGE,
          `the answer to ${request.type} on ${this.opts.name} is ${bytes} bytes, more than the ${MAX_RESULT_BYTES} an answer may hold (launches with very long arguments?)`,
        );
      }
    } catch (err) {
      const error = toDroverError(err);
      this.opts.logger.warn({ type: request.type, id: request.id, code: error.code, err: error.cause ?? error }, error.message);
      this.link?.send({ v: 1, type: 'result', id: request.id, ok: false, error: error.toJSON() });
    } finally {
      this.inflight.delete(request.id);
    }
  }

  /** The master is gone: stop whatever it asked for that only makes sense while it listens. */
  private abortAll(): void {
    for (const controller of this.inflight.values()) controller.abort();
    this.inflight.clear();
    this.services?.transfers.abortAll();
  }
}
