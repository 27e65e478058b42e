import net from 'node:net';
import tls, { type TLSSocket } from 'node:tls';
import WebSocket from 'ws';
import { CONTROL_VERSION, ErrorCode, MAX_FRAME_BYTES, publicKeyPin, type ErrorCode as Code } from '@drover/protocol';
import { socketPath } from './control.js';

/** One connection to a master's operator API, whatever carries it: requests out, replies in. */
export interface Transport {
  send(text: string): void;
  /** The next reply (one JSON text); null once the master has closed. */
  next(): Promise<string | null>;
  /** Holds replies while our stdout is full, so back-pressure reaches the master. */
  pause(): void;
  resume(): void;
  /** Ctrl-C: stops the command that runs on the master; resolves once that is sent. */
  cancel(): Promise<void>;
  /** Stops the running command but keeps the connection (an interactive session). */
  interrupt(): void;
  close(): void;
}

/** Why a connection could not be made: a code, one line, and the exit status it means. */
export interface ConnectFailure {
  code: Code;
  message: string;
  exitCode: number;
}

/** A queue of replies fed by the connection; the reader takes them one at a time. */
function replyQueue(onBacklog: (full: boolean) => void): { push(s: string): void; end(): void; next(): Promise<string | null> } {
  const items: string[] = [];
  let ended = false;
  let wake: (() => void) | null = null;
  return {
    push(s) {
      items.push(s);
      if (items.length > 16) onBacklog(true);
      wake?.();
    },
    end() {
      ended = true;
      wake?.();
    },
    async next() {
      while (items.length === 0 && !ended) await new Promise<void>((resolve) => (wake = resolve));
      wake = null;
      const item = items.shift() ?? null;
      if (items.length <= 16) onBacklog(false);
      return item;
    },
  };
}

/** The master on this machine: its control socket in the state dir (no token: the socket is 0600). */
export async function connectLocal(stateDir: string): Promise<Transport | ConnectFailure> {
  const file = socketPath(stateDir);
  const socket = net.connect(file);
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' || code === 'ECONNREFUSED' ? 'is it running?' : `(${code})`;
    return {
      code: ErrorCode.MASTER_UNREACHABLE,
      message: `cannot reach the master at ${file}: ${why} Start it with: master --state-dir ${stateDir}`,
      exitCode: 2,
    };
  }
  const queue = replyQueue((full) => (full ? socket.pause() : socket.isPaused() && socket.resume()));
  let buffered = '';
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => {
    buffered += chunk;
    let nl: number;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      queue.push(buffered.slice(0, nl));
      buffered = buffered.slice(nl + 1);
    }
  });
  socket.on('end', () => queue.end());
  socket.on('error', () => queue.end());
  return {
    send: (text) => void socket.write(`${text}\n`),
    next: () => queue.next(),
    pause: () => socket.pause(),
    resume: () => socket.resume(),
    // Closing the socket cancels at once, whatever the master is doing.
    cancel: async () => void socket.destroy(),
    interrupt: () => void socket.write(`${JSON.stringify({ v: CONTROL_VERSION, type: 'cancel' })}\n`),
    close: () => socket.end(),
  };
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
    const socket = tls.connect({ host, port: Number(u.port || 443), rejectUnauthorized: false, ...(net.isIP(host) ? {} : { servername: host }) });
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
    const queue = replyQueue((full) => (full ? ws.pause() : ws.isPaused && ws.resume()));
    ws.on('message', (data: Buffer, isBinary: boolean) => !isBinary && queue.push(data.toString('utf8')));
    ws.on('close', () => queue.end());
    ws.once('open', () => {
      if (settled) return;
      settled = true;
      resolve({
        send: (text) => ws.send(text),
        next: () => queue.next(),
        pause: () => ws.pause(),
        resume: () => ws.resume(),
        cancel: () =>
          new Promise<void>((done) => {
            if (ws.readyState !== WebSocket.OPEN) return done();
            ws.send(JSON.stringify({ v: CONTROL_VERSION, type: 'cancel' }), () => done());
            setTimeout(done, 1000);
          }),
        interrupt: () => ws.readyState === WebSocket.OPEN && ws.send(JSON.stringify({ v: CONTROL_VERSION, type: 'cancel' })),
        close: () => ws.close(1000),
      });
    });
  });
}
