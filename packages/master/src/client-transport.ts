import os from 'node:os';
import net from 'node:net';
import path from 'node:path';
import type { SecureContext, TLSSocket } from 'node:tls';
import {
  OutputParts,
  CONTROL_VERSION,
  ErrorCode,
  MAX_FRAME_BYTES,
  parseControlReply,
  publicKeyPin,
  pinnedTls,
  type ControlParsed,
  type ControlReply,
  type ControlRun,
  type ErrorCode as Code,
  noteReceived,
} from '@drover/protocol';
import { socketPath } from './control.js';
import { FileServer } from './file-server.js';
import { tuneClientMalloc } from './malloc.js';
import { upgrade, type WsClient } from './ws-client.js';

/** What the master says about a command (its file asks are served inside the transport). */
export type CommandReply = Exclude<ControlReply, { type: 'file' | 'file-ack' | 'part' }>;

/** One connection to a master's operator API, whatever carries it: requests out, replies in. */
export interface Transport {
  /** Sends a command line; files it names may be read (or written) here while it runs. */
  run(line: string, json: boolean): void;
  /** Asks for a notice of every change in the fleet. */
  subscribe(): void;
  /** The next reply; null once the master has closed. */
  next(): Promise<ControlParsed<CommandReply> | null>;
  /** Holds replies while our stdout is full, so back-pressure reaches the master. */
  pause(): void;
  resume(): void;
  /** Ctrl-C: stops the command that runs on the master; resolves once that is sent and files here are tidy. */
  cancel(): Promise<void>;
  /** Stops the running command but keeps the connection (an interactive session). */
  interrupt(): void;
  /** Ends the session (after any file being written here is finished or removed). */
  close(): Promise<void>;
}

/** Why a connection could not be made: a code, one line, and the exit status it means. */
export interface ConnectFailure {
  code: Code;
  message: string;
  exitCode: number;
}

/** Where the client keeps the sha256 of files it hashed, so an unchanged file is not read again. */
function hashCacheFile(): string {
  return path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'drover', 'hashes.json');
}

/**
 * The session over an open WebSocket: replies queued for the reader (paused while it lags, so
 * back-pressure reaches the master), the master's file asks served here, by a FileServer.
 */
function overWebSocket(ws: WsClient): Transport {
  const items: ControlParsed<CommandReply>[] = [];
  const parts = new OutputParts();
  let ended = false;
  let wake: (() => void) | null = null;
  const backlog = (): void => {
    if (items.length > 16) ws.pause();
    else if (ws.isPaused) ws.resume();
  };
  const sendText = (message: unknown): void => {
    if (ws.isOpen) ws.send(JSON.stringify(message));
  };
  const files = new FileServer(
    sendText,
    (frame) =>
      new Promise((resolve, reject) => {
        if (!ws.isOpen) return reject(new Error('the master closed the connection'));
        // The callback runs once the frame is written out (or the socket failed): its memory is free again.
        ws.send(frame, () => resolve());
      }),
    { hashCache: hashCacheFile() },
  );
  const onMessage = (data: Buffer, isBinary: boolean): void => {
    if (isBinary) {
      tuneClientMalloc();
      noteReceived(data.length);
      return files.chunk(data);
    }
    const parsed = parseControlReply(data.toString('utf8'));
    if (parsed.ok && parsed.message.type === 'file') return files.ask(parsed.message);
    if (parsed.ok && parsed.message.type === 'file-ack') return files.ack(parsed.message);
    if (parsed.ok && parsed.message.type === 'part') return parts.add(parsed.message);
    if (parsed.ok && parsed.message.type === 'done') parts.fill(parsed.message);
    items.push(parsed as ControlParsed<CommandReply>);
    backlog();
    wake?.();
  };
  ws.start({
    onMessage,
    onClose: () => {
      ended = true;
      void files.close();
      wake?.();
    },
  });
  const cancelMessage = JSON.stringify({ v: CONTROL_VERSION, type: 'cancel' });
  return {
    run(line, json) {
      const cwd = process.cwd();
      files.allowLine(line, cwd);
      const color = !json && Boolean(process.stdout.isTTY) && !('NO_COLOR' in process.env);
      const request: ControlRun = { v: CONTROL_VERSION, type: 'run', line, json, cwd, ...(color ? { color } : {}) };
      sendText(request);
    },
    subscribe: () => sendText({ v: CONTROL_VERSION, type: 'subscribe' }),
    async next() {
      while (items.length === 0 && !ended) await new Promise<void>((resolve) => (wake = resolve));
      wake = null;
      const item = items.shift() ?? null;
      backlog();
      return item;
    },
    pause: () => ws.pause(),
    resume: () => ws.resume(),
    cancel: async () => {
      await files.close();
      if (!ws.isOpen) return;
      await new Promise<void>((done) => {
        ws.send(cancelMessage, () => done());
        setTimeout(done, 1000);
      });
    },
    interrupt: () => {
      if (ws.isOpen) ws.send(cancelMessage);
    },
    close: async () => {
      await files.close();
      ws.close();
    },
  };
}

/** Resolves once the socket is connected (for TLS: its certificate checked), or with the error that stopped it. */
function connected(socket: net.Socket, event: 'connect' | 'secureConnect', timeoutMs: number): Promise<NodeJS.ErrnoException | null> {
  return new Promise((done) => {
    const timer = setTimeout(() => {
      socket.destroy();
      done(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' }));
    }, timeoutMs);
    socket.once(event, () => {
      clearTimeout(timer);
      socket.off('error', onError);
      done(null);
    });
    const onError = (err: NodeJS.ErrnoException): void => {
      clearTimeout(timer);
      done(err);
    };
    socket.once('error', onError);
  });
}

/** How long a master elsewhere has to accept the connection and answer the upgrade. */
const HANDSHAKE_MS = 10_000;

/** The master on this machine: its control socket in the state dir (no token: the socket is 0600). */
export async function connectLocal(stateDir: string): Promise<Transport | ConnectFailure> {
  const file = socketPath(stateDir);
  const unreachable = (code: string): ConnectFailure => {
    const why = code === 'ENOENT' || code === 'ECONNREFUSED' ? 'is it running?' : `(${code})`;
    return {
      code: ErrorCode.MASTER_UNREACHABLE,
      message: `cannot reach the master at ${file}: ${why} Start it with: master --state-dir ${stateDir}`,
      exitCode: 2,
    };
  };
  const socket = net.connect(file);
  const err = await connected(socket, 'connect', HANDSHAKE_MS);
  if (err) return unreachable(err.code ?? err.message);
  const up = await upgrade({ socket, host: 'localhost', path: '/operator', maxPayload: MAX_FRAME_BYTES, timeoutMs: HANDSHAKE_MS });
  if (up.ok) return overWebSocket(up.ws);
  if (up.kind === 'error') return unreachable(up.code);
  return { code: ErrorCode.MASTER_UNREACHABLE, message: `the master at ${file} answered ${up.status}`, exitCode: 2 };
}

/**
 * The trust node gives a TLS client by default, with NODE_EXTRA_CA_CERTS's certificates loaded
 * here: the bins' sh line hands that variable on as DROVER_NODE_EXTRA_CA_CERTS, so that node does
 * not parse the file at every start (see scripts/bundle.mjs). The certificates are added to
 * node's default store (bundled or the system's, whichever this node uses), as node itself adds
 * them; a file that cannot be read or parsed is passed over with a warning, as node does.
 */
function withExtraCas(): { secureContext?: SecureContext } {
  const file = process.env.DROVER_NODE_EXTRA_CA_CERTS;
  if (!file) return {};
  const tls = process.getBuiltinModule('node:tls');
  const secureContext = tls.createSecureContext();
  try {
    const pem = process.getBuiltinModule('node:fs').readFileSync(file, 'utf8');
    // The native context's addCACert, as node's own `ca` option uses it: every certificate in
    // the PEM, on a copy of the default store owned by this context.
    (secureContext.context as { addCACert(pem: string): void }).addCACert(pem);
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    process.stderr.write(`drover: warning: ignoring extra certs from ${file} (NODE_EXTRA_CA_CERTS): ${why}\n`);
  }
  return { secureContext };
}

/**
 * The operator API's URL for what a user gives as the master: `HOST:PORT` (wss), `wss://` or
 * `ws://`, and the dashboard's own `https://` or `http://` address, with or without a path of
 * `/` or `/operator`. Null for anything else.
 */
export function operatorUrl(text: string): string | null {
  const m = /^(?:(wss?|https?):\/\/)?((?:\[[0-9A-Fa-f:.]+\]|[^/?#\s:@[\]]+)(?::\d+)?)\/*(?:operator\/*)?$/.exec(text.trim());
  if (!m) return null;
  const scheme = m[1] === 'ws' || m[1] === 'http' ? 'ws' : 'wss';
  try {
    return new URL(`${scheme}://${m[2]}/operator`).href;
  } catch {
    return null;
  }
}

/**
 * A master elsewhere: its operator API over wss (ws only where it runs --insecure-operator-api),
 * with an operator token. With a fingerprint, the master's public key is pinned (checked before
 * the token is sent); without, its certificate must be trusted (its CA, or `ca`).
 */
export async function connectRemote(opts: { url: string; token: string; fingerprint?: string; ca?: Buffer }): Promise<Transport | ConnectFailure> {
  const url = operatorUrl(opts.url);
  if (url === null) {
    return { code: ErrorCode.BAD_ARGUMENTS, message: `not a master address: ${opts.url} (wss://HOST:PORT, or ws:// for a master without TLS)`, exitCode: 2 };
  }
  const u = new URL(url);
  const secure = u.protocol === 'wss:';
  if (opts.fingerprint && !secure) return { code: ErrorCode.BAD_ARGUMENTS, message: '--fingerprint is for a master with TLS (wss://)', exitCode: 2 };
  const host = u.hostname.replace(/^\[|\]$/g, '');
  const port = Number(u.port || (secure ? 443 : 80));
  const unreachable = (code: string): ConnectFailure => ({
    code: ErrorCode.MASTER_UNREACHABLE,
    message: `cannot reach the master at ${url}: ${code}${
      /CERT|SELF_SIGNED/.test(code)
        ? ' (pass --fingerprint from its join line, or --ca)'
        : secure && /ECONNRESET|EPROTO|WRONG_VERSION/.test(code)
          ? ` (if the master runs without TLS: ws://${u.host})`
          : ''
    }`,
    exitCode: 2,
  });
  // The token goes in the upgrade request, on a connection whose TLS is checked first: its key
  // pinned (with a fingerprint) or its certificate trusted. node:tls loads here, for a wss://
  // master only: a client on the control socket never needs it.
  const socket: net.Socket = secure
    ? process.getBuiltinModule('node:tls').connect({
        host,
        port,
        ...(net.isIP(host) ? {} : { servername: host }),
        ...(opts.fingerprint ? pinnedTls() : opts.ca ? { ca: opts.ca } : withExtraCas()),
      })
    : net.connect({ host, port });
  const err = await connected(socket, secure ? 'secureConnect' : 'connect', HANDSHAKE_MS);
  if (err) return unreachable(err.code ?? err.message);
  if (opts.fingerprint) {
    const cert = (socket as TLSSocket).getPeerX509Certificate();
    const got = cert ? publicKeyPin(cert).fingerprint : 'none';
    if (got !== opts.fingerprint) {
      socket.destroy();
      return {
        code: ErrorCode.UNAUTHORIZED,
        message: `the master at ${opts.url} presents ${got}, not the fingerprint given; the token was not sent`,
        exitCode: 3,
      };
    }
  }
  const up = await upgrade({
    socket,
    host: u.host,
    path: '/operator',
    headers: { Authorization: `Bearer ${opts.token}` },
    maxPayload: MAX_FRAME_BYTES,
    timeoutMs: HANDSHAKE_MS,
  });
  if (up.ok) return overWebSocket(up.ws);
  if (up.kind === 'error') return unreachable(up.code);
  const text = up.body.trim();
  if (up.status === 401) return { code: ErrorCode.UNAUTHORIZED, message: `the master refused this token (${text.replace(/^refused: /, '')})`, exitCode: 3 };
  return { code: ErrorCode.MASTER_UNREACHABLE, message: `the master answered ${up.status}: ${text}`, exitCode: 2 };
}
