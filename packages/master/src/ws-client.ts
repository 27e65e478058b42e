import { isUtf8 } from 'node:buffer';
import type { Socket } from 'node:net';

/**
 * The client end of a WebSocket (RFC 6455), over a socket the caller connected: what drover and
 * `master exec` speak to the master's operator API. `ws` does this too, but a client starts for
 * every command a script runs, and `ws` brings node:http with it (its request machinery, its
 * parser, its agent): ~10 ms of a ~50 ms start, for one request and one response. This is the
 * part of the protocol a client needs: the upgrade, frames both ways (fragmented messages,
 * pings, the close handshake) and no extensions (the master offers none).
 *
 * No node:crypto on the control socket (loading it is ~4 ms of the start): the key is a nonce,
 * not a secret (RFC 6455 4.1: it keeps caches from answering), and the answer's check is one
 * SHA-1 of 60 bytes, done here. A wss:// master loads crypto with TLS anyway.
 *
 * Frames out are masked with a zero key: the mask only guards proxies that cache, a client's
 * frames carry file data, and XOR in JavaScript costs several times the throughput (ws's
 * generateMask hook did the same).
 */

/** What ends a connection from this side: RFC 6455's close codes. */
const Close = { NORMAL: 1000, PROTOCOL: 1002, BAD_DATA: 1007, TOO_BIG: 1009 } as const;

const Op = { CONTINUATION: 0x0, TEXT: 0x1, BINARY: 0x2, CLOSE: 0x8, PING: 0x9, PONG: 0xa } as const;

/** How much of an answer other than 101 is kept to tell the user (its status line and body). */
const MAX_RESPONSE_BYTES = 16 * 1024;

const ACCEPT_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

/** What came of the upgrade: a WebSocket, or why not. */
export type Upgrade =
  { ok: true; ws: WsClient } | { ok: false; kind: 'error'; code: string; message: string } | { ok: false; kind: 'response'; status: number; body: string };

export interface UpgradeOptions {
  /** Connected (for TLS: securely) and not yet read from. */
  socket: Socket;
  /** The Host header: host[:port]. */
  host: string;
  path: string;
  headers?: Record<string, string>;
  /** The largest message accepted; a bigger one closes the connection (1009). */
  maxPayload: number;
  /** Gives up on an answer after this long (the socket is destroyed). */
  timeoutMs?: number;
}

/** Sends the upgrade request on the socket and resolves with what the server answered. */
export function upgrade(opts: UpgradeOptions): Promise<Upgrade> {
  const { socket } = opts;
  const nonce = Buffer.alloc(16);
  for (let i = 0; i < 16; i++) nonce[i] = Math.floor(Math.random() * 256);
  const key = nonce.toString('base64');
  const expected = sha1(Buffer.from(key + ACCEPT_GUID, 'latin1')).toString('base64');
  const extra = Object.entries(opts.headers ?? {})
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('');
  return new Promise((resolve) => {
    let head: Buffer = Buffer.alloc(0);
    let settled = false;
    let response: { status: number; body: Buffer[]; size: number; length: number } | null = null;
    const timer = opts.timeoutMs ? setTimeout(() => fail('ETIMEDOUT', 'no answer to the upgrade in time'), opts.timeoutMs) : null;
    const finish = (result: Upgrade): void => {
      if (settled) return;
      settled = true;
      if (timer) clearTimeout(timer);
      socket.off('data', onData);
      socket.off('error', onError);
      socket.off('close', onClose);
      if (!result.ok) socket.destroy();
      resolve(result);
    };
    const fail = (code: string, message: string): void => finish({ ok: false, kind: 'error', code, message });
    const answered = (): void => {
      if (!response) return;
      const body = Buffer.concat(response.body).toString('utf8', 0, Math.min(response.size, MAX_RESPONSE_BYTES));
      finish({ ok: false, kind: 'response', status: response.status, body });
    };
    const onError = (err: NodeJS.ErrnoException): void => fail(err.code ?? 'ERROR', err.message);
    const onClose = (): void => (response ? answered() : fail('ECONNRESET', 'the connection closed before an answer'));
    const onData = (data: Buffer): void => {
      if (response) {
        response.body.push(data);
        response.size += data.length;
        if (response.size >= Math.min(response.length, MAX_RESPONSE_BYTES)) answered();
        return;
      }
      head = head.length ? Buffer.concat([head, data]) : data;
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) {
        if (head.length > MAX_RESPONSE_BYTES) fail('EPROTO', 'an answer with an oversized header');
        return;
      }
      const lines = head.toString('latin1', 0, end).split('\r\n');
      const status = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '');
      if (!status) return fail('EPROTO', `not an HTTP answer: ${JSON.stringify((lines[0] ?? '').slice(0, 80))}`);
      const headers = new Map<string, string>();
      for (const line of lines.slice(1)) {
        const colon = line.indexOf(':');
        if (colon > 0) headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
      }
      const rest = head.subarray(end + 4);
      const code = Number(status[1]);
      if (code !== 101) {
        const length = Number(headers.get('content-length') ?? Infinity);
        response = { status: code, body: [rest], size: rest.length, length: Number.isFinite(length) ? length : Infinity };
        if (response.size >= Math.min(response.length, MAX_RESPONSE_BYTES)) answered();
        return;
      }
      if (headers.get('upgrade')?.toLowerCase() !== 'websocket') return fail('EPROTO', 'the server answered 101 without upgrading to websocket');
      if (headers.get('sec-websocket-accept') !== expected) return fail('EPROTO', 'the server answered the upgrade with a wrong Sec-WebSocket-Accept');
      if (headers.has('sec-websocket-extensions')) return fail('EPROTO', 'the server chose an extension this client did not offer');
      // Frames the server sent right behind its answer wait, with the rest, for start().
      finish({ ok: true, ws: new WsClient(socket, opts.maxPayload, rest) });
    };
    socket.on('data', onData);
    socket.on('error', onError);
    socket.on('close', onClose);
    socket.write(
      `GET ${opts.path} HTTP/1.1\r\nHost: ${opts.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n${extra}\r\n`,
    );
  });
}

/** SHA-1 (FIPS 180-4) of a few bytes: what the upgrade's Sec-WebSocket-Accept is made of. */
export function sha1(data: Buffer): Buffer {
  const bits = data.length * 8;
  const blocks = Math.ceil((data.length + 9) / 64);
  const m = Buffer.alloc(blocks * 64);
  data.copy(m);
  m[data.length] = 0x80;
  m.writeUInt32BE(Math.floor(bits / 2 ** 32), m.length - 8);
  m.writeUInt32BE(bits >>> 0, m.length - 4);
  const h = [0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0];
  const w = new Uint32Array(80);
  for (let b = 0; b < m.length; b += 64) {
    for (let i = 0; i < 16; i++) w[i] = m.readUInt32BE(b + i * 4);
    for (let i = 16; i < 80; i++) {
      const x = w[i - 3]! ^ w[i - 8]! ^ w[i - 14]! ^ w[i - 16]!;
      w[i] = (x << 1) | (x >>> 31);
    }
    let [a, bb, c, d, e] = h as [number, number, number, number, number];
    for (let i = 0; i < 80; i++) {
      const f = i < 20 ? (bb & c) | (~bb & d) : i < 40 ? bb ^ c ^ d : i < 60 ? (bb & c) | (bb & d) | (c & d) : bb ^ c ^ d;
      const k = i < 20 ? 0x5a827999 : i < 40 ? 0x6ed9eba1 : i < 60 ? 0x8f1bbcdc : 0xca62c1d6;
      const t = (((a << 5) | (a >>> 27)) + f + e + k + w[i]!) >>> 0;
      e = d;
      d = c;
      c = (bb << 30) | (bb >>> 2);
      bb = a;
      a = t;
    }
    h[0] = (h[0]! + a) >>> 0;
    h[1] = (h[1]! + bb) >>> 0;
    h[2] = (h[2]! + c) >>> 0;
    h[3] = (h[3]! + d) >>> 0;
    h[4] = (h[4]! + e) >>> 0;
  }
  const out = Buffer.alloc(20);
  h.forEach((v, i) => out.writeUInt32BE(v, i * 4));
  return out;
}

/** A frame's header, as read off the wire. */
interface FrameHead {
  fin: boolean;
  opcode: number;
  length: number;
  /** Bytes the header took. */
  size: number;
}

/**
 * Reads a frame header from the first bytes of `b`: the header, null while more bytes are
 * needed, or why the frame breaks the protocol (with the close code that says so).
 */
export function readFrameHead(b: Buffer, maxPayload: number): FrameHead | null | { close: number; reason: string } {
  if (b.length < 2) return null;
  const b0 = b[0]!;
  const b1 = b[1]!;
  const fin = (b0 & 0x80) !== 0;
  const opcode = b0 & 0x0f;
  if (b0 & 0x70) return { close: Close.PROTOCOL, reason: 'reserved bits set' };
  if (b1 & 0x80) return { close: Close.PROTOCOL, reason: 'a masked frame from the server' };
  let length = b1 & 0x7f;
  let size = 2;
  if (length === 126) {
    if (b.length < 4) return null;
    length = b.readUInt16BE(2);
    size = 4;
  } else if (length === 127) {
    if (b.length < 10) return null;
    const high = b.readUInt32BE(2);
    if (high > 0x1fffff) return { close: Close.TOO_BIG, reason: 'a frame longer than 2^53 bytes' };
    length = high * 2 ** 32 + b.readUInt32BE(6);
    size = 10;
  }
  if (opcode >= 0x8) {
    if (opcode !== Op.CLOSE && opcode !== Op.PING && opcode !== Op.PONG) return { close: Close.PROTOCOL, reason: `unknown opcode ${opcode}` };
    if (!fin) return { close: Close.PROTOCOL, reason: 'a fragmented control frame' };
    if (length > 125) return { close: Close.PROTOCOL, reason: 'a control frame over 125 bytes' };
  } else if (opcode !== Op.CONTINUATION && opcode !== Op.TEXT && opcode !== Op.BINARY) {
    return { close: Close.PROTOCOL, reason: `unknown opcode ${opcode}` };
  }
  if (length > maxPayload) return { close: Close.TOO_BIG, reason: `a frame of ${length} bytes (at most ${maxPayload})` };
  return { fin, opcode, length, size };
}

/** A client frame's header: FIN, the opcode, the length, and a zero mask (the payload goes as it is). */
export function frameHead(opcode: number, length: number): Buffer {
  const size = length < 126 ? 6 : length < 65536 ? 8 : 14;
  const h = Buffer.alloc(size);
  h[0] = 0x80 | opcode;
  if (length < 126) h[1] = 0x80 | length;
  else if (length < 65536) {
    h[1] = 0x80 | 126;
    h.writeUInt16BE(length, 2);
  } else {
    h[1] = 0x80 | 127;
    h.writeUInt32BE(Math.floor(length / 2 ** 32), 2);
    h.writeUInt32BE(length >>> 0, 6);
  }
  return h;
}

/** What a WebSocket's user hears: each message, and its end (once, when the socket has closed). */
export interface WsHandlers {
  onMessage(data: Buffer, isBinary: boolean): void;
  onClose(): void;
}

/** An open WebSocket: messages in through the handlers given to start(), out through send. */
export class WsClient {
  private handlers: WsHandlers | null = null;
  /** Bytes read and not yet part of a whole frame. */
  private readonly pending: Buffer[] = [];
  private pendingBytes = 0;
  /** A message arriving in fragments: its opcode and the parts so far. */
  private fragments: { opcode: number; parts: Buffer[]; size: number } | null = null;
  /** The header of the frame whose payload is still arriving. */
  private head: FrameHead | null = null;
  private closeSent = false;
  /** A close frame came, or the server broke the protocol: nothing more is read. */
  private stopped = false;
  private closed = false;

  /** Holds the socket (paused, `rest` kept) until start(): nothing is read before someone listens. */
  constructor(
    private readonly socket: Socket,
    private readonly maxPayload: number,
    rest: Buffer,
  ) {
    socket.pause();
    socket.setNoDelay(true);
    if (rest.length) {
      this.pending.push(rest);
      this.pendingBytes = rest.length;
    }
    // An error is followed by 'close', which is what the user of this class hears of.
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.closed = true;
      this.handlers?.onClose();
    });
  }

  /** Starts reading: messages (those already here first) go to the handlers. */
  start(handlers: WsHandlers): void {
    if (this.handlers) throw new Error('a WebSocket starts once');
    this.handlers = handlers;
    this.socket.on('data', (data: Buffer) => this.receive(data));
    if (this.pendingBytes) this.receive(Buffer.alloc(0));
    if (this.closed) process.nextTick(() => handlers.onClose());
    else this.socket.resume();
  }

  /** True while messages can still be sent (no close sent, the socket open). */
  get isOpen(): boolean {
    return !this.closeSent && !this.closed && !this.socket.destroyed;
  }

  get isPaused(): boolean {
    return this.socket.isPaused();
  }

  /** Stops reading: the server's writes back up behind this client's socket. */
  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    this.socket.resume();
  }

  /** Sends a message (text for a string); `done` runs once the socket has it all (its memory is free again) or has failed. */
  send(data: string | Buffer, done?: (err?: Error | null) => void): void {
    const binary = typeof data !== 'string';
    const payload = binary ? data : Buffer.from(data, 'utf8');
    if (!this.isOpen) {
      if (done) process.nextTick(done, new Error('the WebSocket is not open'));
      return;
    }
    this.writeFrame(binary ? Op.BINARY : Op.TEXT, payload, done);
  }

  /** Starts the close handshake: a close frame, then this side's end of the socket; the server closes its side. */
  close(code: number = Close.NORMAL, reason = ''): void {
    if (this.closeSent || this.closed) return;
    const body = Buffer.alloc(2 + Buffer.byteLength(reason));
    body.writeUInt16BE(code, 0);
    body.write(reason, 2);
    this.writeFrame(Op.CLOSE, body.subarray(0, 125));
    this.closeSent = true;
    this.socket.end();
    // A server that never closes its side does not hold this process.
    setTimeout(() => this.socket.destroy(), 2000).unref();
  }

  /** Drops the connection without the handshake. */
  terminate(): void {
    this.socket.destroy();
  }

  private writeFrame(opcode: number, payload: Buffer, done?: (err?: Error | null) => void): void {
    const head = frameHead(opcode, payload.length);
    if (payload.length < 1024) {
      this.socket.write(Buffer.concat([head, payload]), done);
      return;
    }
    // Header and payload in one writev, the payload not copied.
    this.socket.cork();
    this.socket.write(head);
    this.socket.write(payload, done);
    this.socket.uncork();
  }

  /** Bytes off the socket: every whole frame in them is handled now. */
  private receive(data: Buffer): void {
    if (this.stopped) return;
    if (data.length) {
      this.pending.push(data);
      this.pendingBytes += data.length;
    }
    while (!this.stopped) {
      if (!this.head) {
        if (this.pendingBytes < 2) return;
        const head = readFrameHead(this.peek(Math.min(14, this.pendingBytes)), this.maxPayload);
        if (head === null) return;
        if ('close' in head) return this.fail(head.close, head.reason);
        this.take(head.size);
        this.head = head;
      }
      if (this.pendingBytes < this.head.length) return;
      const head = this.head;
      this.head = null;
      this.frame(head, this.take(head.length));
    }
  }

  /** At least the first n buffered bytes, as one buffer (still buffered). */
  private peek(n: number): Buffer {
    const first = this.pending[0]!;
    if (first.length >= n) return first;
    const parts: Buffer[] = [];
    let size = 0;
    for (const b of this.pending) {
      if (size >= n) break;
      parts.push(b);
      size += b.length;
    }
    return Buffer.concat(parts, size);
  }

  /** Removes and returns the first n buffered bytes: a view of one read where it holds them all, else one copy. */
  private take(n: number): Buffer {
    this.pendingBytes -= n;
    const first = this.pending[0];
    if (first && first.length >= n) {
      if (first.length === n) this.pending.shift();
      else this.pending[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    const out = Buffer.allocUnsafe(n);
    let at = 0;
    while (at < n) {
      const b = this.pending[0]!;
      const part = Math.min(b.length, n - at);
      b.copy(out, at, 0, part);
      at += part;
      if (part === b.length) this.pending.shift();
      else this.pending[0] = b.subarray(part);
    }
    return out;
  }

  private frame(head: FrameHead, payload: Buffer): void {
    switch (head.opcode) {
      case Op.PING:
        if (this.isOpen) this.writeFrame(Op.PONG, payload);
        return;
      case Op.PONG:
        return;
      case Op.CLOSE: {
        if (payload.length === 1) return this.fail(Close.PROTOCOL, 'a close frame of 1 byte');
        this.stop();
        // The usual answer (RFC 6455 5.5.1): its code echoed, where it is one that may be sent.
        const code = payload.length >= 2 ? payload.readUInt16BE(0) : Close.NORMAL;
        const sendable = (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
        if (!this.closeSent) this.close(sendable ? code : Close.NORMAL);
        return;
      }
      case Op.TEXT:
      case Op.BINARY:
        if (this.fragments) return this.fail(Close.PROTOCOL, 'a new message inside a fragmented one');
        if (head.fin) return this.message(head.opcode, payload);
        this.fragments = { opcode: head.opcode, parts: [payload], size: payload.length };
        return;
      case Op.CONTINUATION: {
        const f = this.fragments;
        if (!f) return this.fail(Close.PROTOCOL, 'a continuation without a message');
        f.parts.push(payload);
        f.size += payload.length;
        if (f.size > this.maxPayload) return this.fail(Close.TOO_BIG, `a message of over ${this.maxPayload} bytes`);
        if (!head.fin) return;
        this.fragments = null;
        return this.message(f.opcode, Buffer.concat(f.parts, f.size));
      }
      default:
        return this.fail(Close.PROTOCOL, `unknown opcode ${head.opcode}`);
    }
  }

  private message(opcode: number, payload: Buffer): void {
    if (opcode === Op.TEXT && !isUtf8(payload)) return this.fail(Close.BAD_DATA, 'a text message that is not UTF-8');
    this.handlers?.onMessage(payload, opcode === Op.BINARY);
  }

  /** The server broke the protocol: say why in a close frame and drop the connection. */
  private fail(code: number, reason: string): void {
    this.stop();
    this.close(code, reason.slice(0, 120));
  }

  private stop(): void {
    this.stopped = true;
    this.pending.length = 0;
    this.pendingBytes = 0;
    this.fragments = null;
  }
}
