import type { TLSSocket } from 'node:tls';
import WebSocket from 'ws';
import {
  CloseCode,
  ErrorCode,
  MAX_FRAME_BYTES,
  CHUNK_HEADER_BYTES,
  CHUNK_BYTES,
  FILE_CHUNK_BYTES,
  encodeChunk,
  decodeChunk,
  noteReceived,
  parseMasterMessage,
  publicKeyPin,
  pinnedTls,
  type Hello,
  type Load,
  type MasterToWorker,
  type WorkerToMaster,
} from '@drover/protocol';
import { backoffDelay } from './backoff.js';
import type { Logger } from './logger.js';

export interface LinkOptions {
  /** ws:// or wss:// URL of the master's worker endpoint. */
  url: string;
  /** PEM CA certificates to trust for wss (a private CA); the system's otherwise. */
  ca?: Buffer;
  /**
   * `sha256:HEX` of the master's public key (its self-signed certificate): the only server this
   * worker will talk to. No CA or host name is checked then; the pin is, before the hello.
   */
  fingerprint?: string;
  logger: Logger;
  /** Heartbeat interval until the master's welcome names its own. */
  heartbeatMs: number;
  hello(): Hello;
  load(): Load;
  /** A validated message from the master (welcome excluded). */
  onMessage(message: MasterToWorker): void;
  /** A binary chunk for transfer `ref`. */
  onChunk(ref: number, payload: Buffer): void;
  /** The shortest stopAfter of the instances that fence themselves, or null: pings come often enough for it. */
  fenceAfterMs?(): number | null;
  /** The connection is gone; in-flight work tied to it should stop. */
  onDown(): void;
  /** The master refused us for a reason that retrying will not fix (bad token, version). */
  onRefused(code: number, reason: string, errorCode: ErrorCode): void;
}

// Client frames must be masked, but a zero mask lets ws skip the XOR: the worker sends the bulk
// of the data (log fetches) and masking in JavaScript costs ~7x throughput (DESIGN.md).
const zeroMask = (mask: Buffer): void => {
  mask.fill(0);
};

/** Refusals that retrying will not fix: the agent stops and says why. */
const FATAL_CLOSES: Partial<Record<number, ErrorCode>> = {
  [CloseCode.UNAUTHORIZED]: ErrorCode.UNAUTHORIZED,
  [CloseCode.VERSION_MISMATCH]: ErrorCode.VERSION_MISMATCH,
  [CloseCode.BAD_NAME]: ErrorCode.BAD_NAME,
};

/** A beat due at 2 intervals may fire a few ms early or late: ping at 2 intervals less this. */
const PING_SLACK_MS = 50;

/** The worker's one connection to the master: dial, hello, heartbeat, reconnect with backoff. */
export class Link {
  private ws: WebSocket | null = null;
  private welcomed = false;
  /** Why the last connection attempt failed (an errno code or a message), for the reconnect line. */
  private lastError: string | null = null;
  private attempt = 0;
  private seq = 0;
  private heartbeatMs: number;
  private heartbeatTimer: NodeJS.Timeout | null = null;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private lastHeard = 0;
  /** When the master last said anything (a message, a pong), across reconnects: what self-fencing goes by. */
  private lastFromMaster = Date.now();
  private lastBeat = 0;
  private stopped = false;
  /** How long the master may be quiet before a heartbeat carries a ping (its welcome or pace), or null: two heartbeats. */
  private quietMs: number | null = null;

  constructor(private readonly opts: LinkOptions) {
    this.heartbeatMs = opts.heartbeatMs;
  }

  get connected(): boolean {
    return this.welcomed && this.ws?.readyState === WebSocket.OPEN;
  }

  /** Bytes queued in the socket but not yet written: senders of bulk data watch this. */
  get bufferedAmount(): number {
    return this.ws?.bufferedAmount ?? 0;
  }

  start(): void {
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.stopHeartbeat();
    this.ws?.close(1000, 'worker shutting down');
    this.ws?.terminate();
  }

  /** Sends a JSON message; false when there is no connection (the message is dropped). */
  send(message: WorkerToMaster): boolean {
    return this.sendText(JSON.stringify(message));
  }

  /** Sends a message already serialized (send does it for the rest). */
  sendText(text: string): boolean {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    ws.send(text);
    return true;
  }

  /**
   * Sends a serialized message too big for a frame as binary chunks of request `id`'s ref, then
   * `result-parts`, which the master reads as the message whole.
   */
  sendInParts(id: number, text: string): boolean {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    const bytes = Buffer.from(text);
    for (let at = 0; at < bytes.length; at += FILE_CHUNK_BYTES) ws.send(encodeChunk(id, bytes.subarray(at, at + FILE_CHUNK_BYTES)), { binary: true });
    return this.send({ v: 1, type: 'result-parts', id, bytes: bytes.length });
  }

  /** Sends one whole binary chunk frame; `done` runs once it is handed to the kernel. */
  sendFrame(frame: Buffer, done?: (err?: Error) => void): boolean {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    ws.send(frame, { binary: true }, done);
    return true;
  }

  private connect(): void {
    if (this.stopped) return;
    const { logger } = this.opts;
    const ws = new WebSocket(this.opts.url, {
      perMessageDeflate: false,
      maxPayload: MAX_FRAME_BYTES + CHUNK_HEADER_BYTES + CHUNK_BYTES,
      handshakeTimeout: 10_000,
      generateMask: zeroMask,
      ...(this.opts.fingerprint ? pinnedTls() : this.opts.ca ? { ca: this.opts.ca } : {}),
    });
    this.ws = ws;
    this.welcomed = false;

    // The pin is checked when the server's answer arrives, before 'open' and so before the hello
    // (and its token) is sent: a server with another key learns nothing.
    ws.on('upgrade', (res) => {
      const want = this.opts.fingerprint;
      if (!want) return;
      const cert = (res.socket as TLSSocket).getPeerX509Certificate?.();
      const got = cert ? publicKeyPin(cert).fingerprint : 'none';
      if (got === want) return;
      logger.error({ want, got }, `TLS: the master's certificate does not match --fingerprint (it presents ${got}); not sending the hello`);
      ws.terminate();
    });
    // An HTTP answer instead of a WebSocket (a plain-text client at a TLS master, a full admission queue): say what it said.
    ws.on('unexpected-response', (req, res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        if (body.length < 1024) body += chunk;
      });
      const done = (): void => {
        logger.error({ status: res.statusCode }, `the master answered ${res.statusCode}: ${body.trim().slice(0, 300) || res.statusMessage}`);
        req.destroy();
      };
      res.once('end', done);
      setTimeout(() => !req.destroyed && done(), 2000).unref();
    });
    ws.on('open', () => {
      logger.debug({ url: this.opts.url }, 'connected, saying hello');
      this.lastHeard = Date.now();
      ws.send(JSON.stringify(this.opts.hello()));
    });
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      this.lastHeard = Date.now();
      this.lastFromMaster = this.lastHeard;
      if (isBinary) return this.receiveChunk(data);
      this.receiveText(data.toString('utf8'));
    });
    // A pong answers our ping; a ping is the master measuring its round trip (ws answers it).
    const heard = (): void => {
      this.lastHeard = Date.now();
      this.lastFromMaster = this.lastHeard;
    };
    ws.on('pong', heard);
    ws.on('ping', heard);
    // Without an error listener a refused or reset connection would crash the agent.
    ws.on('error', (err: NodeJS.ErrnoException) => {
      // A certificate the worker does not trust will not fix itself: say so loudly.
      if (/CERT|SELF_SIGNED|ERR_TLS|UNABLE_TO_VERIFY/i.test(err.code ?? '')) {
        logger.error(
          { code: err.code },
          `TLS: the master's certificate is not trusted (${err.message}); pass --fingerprint (from its join line) or --ca with its CA`,
        );
      } else if (err.code === 'ERR_SSL_WRONG_VERSION_NUMBER' || /wrong version number/i.test(err.message)) {
        logger.error({ code: err.code }, 'TLS: the master does not speak TLS on this port (it runs with --no-tls): use HOST:PORT or ws://');
      } else if (!this.welcomed && this.opts.url.startsWith('wss://') && /socket hang up|ECONNRESET|EPROTO/.test(`${err.code ?? ''} ${err.message}`)) {
        // A plain master answers a TLS hello with an HTTP 400 and hangs up.
        logger.error(
          { code: err.code },
          'TLS: the master closed the connection during the handshake: if it runs with --no-tls, join with --master HOST:PORT (ws://)',
        );
      } else if (!this.welcomed && this.opts.url.startsWith('ws://') && /socket hang up|ECONNRESET/.test(`${err.code ?? ''} ${err.message}`)) {
        // A TLS master (the default) hangs up on a plain-text request without a word.
        logger.error(
          { code: err.code },
          'the master closed the connection at once: if it uses TLS (the default), join with --master wss://HOST:PORT --fingerprint sha256:… (its join line)',
        );
      } else {
        logger.debug({ err: err.message }, 'connection error');
      }
      this.lastError = err.code ?? err.message;
    });
    ws.on('close', (code, reasonBuf) => {
      if (this.ws !== ws) return;
      const reason = reasonBuf.toString() || 'connection closed';
      const wasUp = this.welcomed;
      this.ws = null;
      this.welcomed = false;
      this.stopHeartbeat();
      if (wasUp) {
        logger.warn({ code, reason }, 'lost the master');
        this.opts.onDown();
      }
      const fatal = FATAL_CLOSES[code];
      if (fatal) {
        this.stopped = true;
        this.opts.onRefused(code, reason, fatal);
        return;
      }
      if (code === CloseCode.DUPLICATE_NAME || code === CloseCode.HELLO_EXPECTED) {
        // The name may be free again later (its owner forgotten): keep trying, but say why.
        const errorCode = code === CloseCode.DUPLICATE_NAME ? ErrorCode.DUPLICATE_NAME : ErrorCode.PROTOCOL_ERROR;
        logger.error({ code: errorCode, closeCode: code, reason }, `master refused this worker: ${reason}`);
      }
      this.scheduleReconnect();
    });
  }

  private scheduleReconnect(): void {
    if (this.stopped) return;
    const delay = backoffDelay(this.attempt++);
    this.opts.logger.info({ delayMs: delay, attempt: this.attempt, ...(this.lastError ? { why: this.lastError } : {}) }, 'reconnecting to the master');
    this.lastError = null;
    this.reconnectTimer = setTimeout(() => this.connect(), delay);
  }

  private receiveText(raw: string): void {
    const parsed = parseMasterMessage(raw);
    if (!parsed.ok) {
      this.opts.logger.warn({ error: parsed.error.message }, 'bad frame from the master');
      if (parsed.id !== null) {
        this.send({ v: 1, type: 'result', id: parsed.id, ok: false, error: parsed.error });
      } else {
        this.send({ v: 1, type: 'protocol-error', error: parsed.error });
      }
      return;
    }
    const message = parsed.message;
    if (message.type === 'welcome') {
      this.welcomed = true;
      this.attempt = 0;
      this.heartbeatMs = message.heartbeatMs;
      this.quietMs = message.quietMs ?? null;
      this.opts.logger.info({ worker: message.name, heartbeatMs: message.heartbeatMs }, 'joined the master');
      this.startHeartbeat();
      return;
    }
    if (message.type === 'pace') {
      this.quietMs = message.quietMs;
      this.opts.logger.debug({ quietMs: message.quietMs }, 'the master set how long it may be quiet');
      return;
    }
    if (!this.welcomed) {
      this.opts.logger.warn({ type: message.type }, 'message before welcome ignored');
      return;
    }
    this.opts.onMessage(message);
  }

  private receiveChunk(frame: Buffer): void {
    noteReceived(frame.length);
    const chunk = decodeChunk(frame);
    if (!chunk.ok) {
      this.opts.logger.warn({ error: chunk.error }, 'bad chunk from the master');
      this.send({ v: 1, type: 'protocol-error', error: { code: 'PROTOCOL_ERROR', message: chunk.error } });
      return;
    }
    this.opts.onChunk(chunk.ref, chunk.payload);
  }

  /** How long the master may be quiet: what it said (it scales with its fleet), else two intervals. */
  private quiet(): number {
    return this.quietMs ?? 2 * this.heartbeatMs;
  }

  /**
   * Master silence after which a heartbeat carries a ping: the master's quiet time, or less
   * where an instance fences itself sooner (a quarter of its stopAfter), so fencing never acts
   * on a quiet but healthy master.
   */
  private pingAfterMs(): number {
    const fence = this.opts.fenceAfterMs?.() ?? null;
    return Math.min(this.quiet() - PING_SLACK_MS, fence === null ? Infinity : fence / 4);
  }

  /** How long since the master last said anything, whatever the connection did meanwhile. */
  masterSilentMs(): number {
    return Date.now() - this.lastFromMaster;
  }

  private startHeartbeat(): void {
    this.stopHeartbeat();
    const beat = (): void => {
      const ws = this.ws;
      if (!ws || ws.readyState !== WebSocket.OPEN) return;
      const now = Date.now();
      // Timers run before socket reads after a pause (SIGSTOP, a suspended VM): what the master
      // sent meanwhile is still unread, so a long gap since our last beat is no sign of a dead master.
      if (now - this.lastBeat > 2 * this.heartbeatMs) this.lastHeard = now;
      this.lastBeat = now;
      // A master that vanished without closing (machine gone) would otherwise leave us waiting forever.
      if (now - this.lastHeard > Math.max(4 * this.heartbeatMs, 5000, 2 * this.quiet())) {
        this.opts.logger.warn('the master stopped answering; reconnecting');
        ws.terminate();
        return;
      }
      this.send({ v: 1, type: 'heartbeat', seq: this.seq++, load: this.opts.load() });
      // The heartbeat tells the master we live; a ping asks whether it does. Only when it has been
      // quiet: a pong per heartbeat cost a 5,000-worker master ~8% of a core for nothing.
      if (now - this.lastFromMaster >= this.pingAfterMs()) ws.ping();
    };
    this.lastBeat = Date.now();
    beat();
    this.heartbeatTimer = setInterval(beat, this.heartbeatMs);
  }

  private stopHeartbeat(): void {
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = null;
  }
}
