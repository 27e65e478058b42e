import os from 'node:os';
import net from 'node:net';
import path from 'node:path';
import type { TLSSocket } from 'node:tls';
import WebSocket from 'ws';
import {
  CONTROL_VERSION,
  ErrorCode,
  MAX_FRAME_BYTES,
  parseControlReply,
  publicKeyPin,
  type ControlParsed,
  type ControlReply,
  type ControlRun,
  type ErrorCode as Code,
  noteReceived,
} from '@drover/protocol';
import { socketPath } from './control.js';
import { FileServer } from './file-server.js';

/** What the master says about a command (its file asks are served inside the transport). */
export type CommandReply = Exclude<ControlReply, { type: 'file' | 'file-ack' }>;

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
 * Client frames must be masked, but a zero mask lets ws skip the XOR: the client sends the bulk
 * of a copy, and masking in JavaScript costs several times the throughput (as on the worker link).
 */
const zeroMask = (mask: Buffer): void => void mask.fill(0);

/**
 * The session over an open WebSocket: replies queued for the reader (paused while it lags, so
 * back-pressure reaches the master), the master's file asks served here, by a FileServer.
 */
function overWebSocket(ws: WebSocket): Transport {
  const items: ControlParsed<CommandReply>[] = [];
  let ended = false;
  let wake: (() => void) | null = null;
  const backlog = (): void => {
    if (items.length > 16) ws.pause();
    else if (ws.isPaused) ws.resume();
  };
  const sendText = (message: unknown): void => {
    if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(message));
  };
  const files = new FileServer(
    sendText,
    (frame) =>
      new Promise((resolve, reject) => {
        if (ws.readyState !== WebSocket.OPEN) return reject(new Error('the master closed the connection'));
        // The callback runs once the frame is written out (or the socket failed): its memory is free again.
        ws.send(frame, { binary: true }, () => resolve());
      }),
    { hashCache: hashCacheFile() },
  );
  ws.on('message', (data: Buffer, isBinary: boolean) => {
    if (isBinary) {
      noteReceived(data.length);
      return files.chunk(data);
    }
    const parsed = parseControlReply(data.toString('utf8'));
    if (parsed.ok && parsed.message.type === 'file') return files.ask(parsed.message);
    if (parsed.ok && parsed.message.type === 'file-ack') return files.ack(parsed.message);
    items.push(parsed as ControlParsed<CommandReply>);
    backlog();
    wake?.();
  });
  ws.on('close', () => {
    ended = true;
    void files.close();
    wake?.();
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
      if (ws.readyState !== WebSocket.OPEN) return;
      await new Promise<void>((done) => {
        ws.send(cancelMessage, () => done());
        setTimeout(done, 1000);
      });
    },
    interrupt: () => {
      if (ws.readyState === WebSocket.OPEN) ws.send(cancelMessage);
    },
    close: async () => {
      await files.close();
      ws.close(1000);
    },
  };
}

/** The master on this machine: its control socket in the state dir (no token: the socket is 0600). */
export async function connectLocal(stateDir: string): Promise<Transport | ConnectFailure> {
  const file = socketPath(stateDir);
  return new Promise((resolve) => {
    const ws = new WebSocket(`ws+unix://${file}:/operator`, { perMessageDeflate: false, maxPayload: MAX_FRAME_BYTES, generateMask: zeroMask });
    ws.on('error', (err: NodeJS.ErrnoException) => {
      const why = err.code === 'ENOENT' || err.code === 'ECONNREFUSED' ? 'is it running?' : `(${err.code ?? err.message})`;
      resolve({
        code: ErrorCode.MASTER_UNREACHABLE,
        message: `cannot reach the master at ${file}: ${why} Start it with: master --state-dir ${stateDir}`,
        exitCode: 2,
      });
    });
    ws.on('unexpected-response', (_req, res) => {
      ws.terminate();
      resolve({ code: ErrorCode.MASTER_UNREACHABLE, message: `the master at ${file} answered ${res.statusCode}`, exitCode: 2 });
    });
    ws.once('open', () => resolve(overWebSocket(ws)));
  });
}

/**
 * A master elsewhere: its operator API over wss (ws only where it runs --insecure-operator-api),
 * with an operator token. With a fingerprint, the master's public key is pinned (checked before
 * the token is sent); without, its certificate must be trusted (its CA, or `ca`).
 */
export async function connectRemote(opts: { url: string; token: string; fingerprint?: string; ca?: Buffer }): Promise<Transport | ConnectFailure> {
  const base = /^wss?:\/\//.test(opts.url) ? opts.url : `wss://${opts.url}`;
  const url = `${base.replace(/\/+$/, '')}/operator`;
  // With a pin, the TLS connection is made and its key checked before the request (and the
  // token in it) exists; ws then runs over that connection.
  let pinned: TLSSocket | null = null;
  if (opts.fingerprint) {
    const u = new URL(url);
    if (u.protocol !== 'wss:') return { code: ErrorCode.BAD_ARGUMENTS, message: '--fingerprint is for a master with TLS (wss://)', exitCode: 2 };
    const host = u.hostname.replace(/^\[|\]$/g, '');
    // node:tls loads here, for a wss:// master only: a client on the control socket never needs it.
    const socket = process
      .getBuiltinModule('node:tls')
      .connect({ host, port: Number(u.port || 443), rejectUnauthorized: false, ...(net.isIP(host) ? {} : { servername: host }) });
    const ready = await new Promise<ConnectFailure | null>((done) => {
      socket.once('secureConnect', () => {
        const cert = socket.getPeerX509Certificate();
        const got = cert ? publicKeyPin(cert).fingerprint : 'none';
        done(
          got === opts.fingerprint
            ? null
            : {
                code: ErrorCode.UNAUTHORIZED,
                message: `the master at ${opts.url} presents ${got}, not the fingerprint given; the token was not sent`,
                exitCode: 3,
              },
        );
      });
      socket.once('error', (err: NodeJS.ErrnoException) =>
        done({ code: ErrorCode.MASTER_UNREACHABLE, message: `cannot reach the master at ${url}: ${err.code ?? err.message}`, exitCode: 2 }),
      );
    });
    if (ready) {
      socket.destroy();
      return ready;
    }
    pinned = socket;
  }
  return new Promise((resolve) => {
    let settled = false;
    const fail = (f: ConnectFailure): void => {
      if (settled) return;
      settled = true;
      ws.terminate();
      resolve(f);
    };
    const ws = new WebSocket(url, {
      perMessageDeflate: false,
      maxPayload: MAX_FRAME_BYTES,
      handshakeTimeout: 10_000,
      // The token goes in the upgrade request: pinned (or CA-checked) TLS comes first.
      headers: { authorization: `Bearer ${opts.token}` },
      generateMask: zeroMask,
      ...(pinned ? { createConnection: () => pinned } : {}),
      ...(opts.ca ? { ca: opts.ca } : {}),
    });
    ws.on('unexpected-response', (_req, res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c.slice(0, 512)));
      res.on('end', () => {
        const text = body.trim();
        if (res.statusCode === 401)
          fail({ code: ErrorCode.UNAUTHORIZED, message: `the master refused this token (${text.replace(/^refused: /, '')})`, exitCode: 3 });
        else fail({ code: ErrorCode.MASTER_UNREACHABLE, message: `the master answered ${res.statusCode}: ${text}`, exitCode: 2 });
      });
    });
    ws.on('error', (err: NodeJS.ErrnoException) =>
      fail({
        code: ErrorCode.MASTER_UNREACHABLE,
        message: `cannot reach the master at ${url}: ${err.code ?? err.message}${/CERT|SELF_SIGNED/.test(err.code ?? '') ? ' (pass --fingerprint from its join line, or --ca)' : ''}`,
        exitCode: 2,
      }),
    );
    ws.once('open', () => {
      if (settled) return;
      settled = true;
      resolve(overWebSocket(ws));
    });
  });
}
