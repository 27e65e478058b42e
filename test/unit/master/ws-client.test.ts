import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import { afterEach, describe, expect, test } from 'vitest';
import { WebSocketServer, type WebSocket } from 'ws';
import { frameHead, readFrameHead, sha1, upgrade, type Upgrade, type WsClient } from '../../../packages/master/src/ws-client.js';

const MAX = 1024 * 1024;
const closers: (() => void)[] = [];
afterEach(() => {
  for (const c of closers.splice(0)) c();
});

/** A real ws server on loopback; `onConnection` gets each socket and the request's headers. */
async function wsServer(onConnection: (ws: WebSocket, headers: Record<string, string | string[] | undefined>) => void): Promise<number> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
  wss.on('connection', (ws, req) => onConnection(ws, req.headers));
  await once(wss, 'listening');
  closers.push(() => {
    for (const c of wss.clients) c.terminate();
    wss.close();
  });
  return (wss.address() as net.AddressInfo).port;
}

/** A raw TCP server that answers every connection with `answer` (bytes as given). */
async function rawServer(answer: (socket: net.Socket, request: string) => void): Promise<number> {
  const server = net.createServer((socket) => {
    let got = '';
    socket.on('data', (d: Buffer) => {
      got += d.toString('latin1');
      if (got.includes('\r\n\r\n')) answer(socket, got);
    });
    socket.on('error', () => undefined);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  closers.push(() => server.close());
  return (server.address() as net.AddressInfo).port;
}

async function connect(port: number, headers?: Record<string, string>): Promise<Upgrade> {
  const socket = net.connect(port, '127.0.0.1');
  await once(socket, 'connect');
  return upgrade({ socket, host: `127.0.0.1:${port}`, path: '/operator', maxPayload: MAX, timeoutMs: 5000, ...(headers ? { headers } : {}) });
}

/** Collects what a started client hears, and resolves `closed` when it has closed. */
function listen(ws: WsClient): { messages: { data: Buffer; binary: boolean }[]; closed: Promise<void> } {
  const messages: { data: Buffer; binary: boolean }[] = [];
  let onClosed: () => void = () => undefined;
  const closed = new Promise<void>((resolve) => (onClosed = resolve));
  ws.start({ onMessage: (data, binary) => messages.push({ data: Buffer.from(data), binary }), onClose: () => onClosed() });
  return { messages, closed };
}

const opened = (up: Upgrade): WsClient => {
  if (!up.ok) throw new Error(`no upgrade: ${JSON.stringify(up)}`);
  return up.ws;
};

test('sha1 agrees with node:crypto at every length around its block edges', () => {
  for (const n of [0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 128, 1000]) {
    const data = randomBytes(n);
    expect(sha1(data).toString('hex')).toBe(createHash('sha1').update(data).digest('hex'));
  }
});

describe('frames', () => {
  test('a header is read whole or not at all, at every length form', () => {
    for (const length of [0, 125, 126, 65535, 65536, MAX]) {
      const head = frameHead(0x2, length);
      // Ours are masked (client to server); the reader is for the server's, so unmask the copy.
      head[1] = head[1]! & 0x7f;
      const unmasked = head.subarray(0, head.length - 4);
      for (let cut = 0; cut < unmasked.length; cut++) expect(readFrameHead(unmasked.subarray(0, cut), MAX)).toBeNull();
      expect(readFrameHead(unmasked, MAX)).toEqual({ fin: true, opcode: 2, length, size: unmasked.length });
    }
  });

  test('what breaks the protocol is named with its close code', () => {
    const bad: [number[], number, RegExp][] = [
      [[0xc2, 0x00], 1002, /reserved bits/],
      [[0x82, 0x80], 1002, /masked/],
      [[0x83, 0x00], 1002, /opcode 3/],
      [[0x08, 0x00], 1002, /fragmented control/],
      [[0x89, 0x7e, 0x00, 0x80], 1002, /over 125/],
      [[0x82, 0x7f, 0, 0, 0, 0, 0, 0x10, 0, 1], 1009, /at most/],
      [[0x82, 0x7f, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0], 1009, /2\^53/],
    ];
    for (const [bytes, close, reason] of bad) {
      const r = readFrameHead(Buffer.from(bytes), MAX);
      expect(r && 'close' in r ? r.close : null).toBe(close);
      expect(r && 'close' in r ? r.reason : '').toMatch(reason);
    }
  });
});

describe('against a ws server', () => {
  test('text and binary both ways, a frame split across reads, headers sent', async () => {
    let auth: unknown;
    const port = await wsServer((ws, headers) => {
      auth = headers.authorization;
      ws.on('message', (data, binary) => ws.send(data, { binary }));
    });
    const ws = opened(await connect(port, { Authorization: 'Bearer abc' }));
    const heard = listen(ws);
    const big = randomBytes(3 * 64 * 1024 + 17);
    ws.send('{"hello":"wörld"}');
    await new Promise<void>((resolve, reject) => ws.send(big, (err) => (err ? reject(err) : resolve())));
    ws.send(Buffer.alloc(0));
    await expect.poll(() => heard.messages.length).toBe(3);
    expect(auth).toBe('Bearer abc');
    expect(heard.messages[0]).toEqual({ data: Buffer.from('{"hello":"wörld"}'), binary: false });
    expect(heard.messages[1]!.binary).toBe(true);
    expect(heard.messages[1]!.data.equals(big)).toBe(true);
    expect(heard.messages[2]!.data.length).toBe(0);
    ws.close();
    await heard.closed;
    expect(ws.isOpen).toBe(false);
  });

  test('a fragmented message arrives whole; pings are answered; frames behind the 101 are not lost', async () => {
    let pong = false;
    const port = await wsServer((ws) => {
      ws.on('pong', () => (pong = true));
      // Right behind the upgrade: these may share a read with the 101.
      ws.send('first');
      ws.send('frag-', { fin: false });
      ws.ping();
      ws.send('ment', { fin: true });
    });
    const ws = opened(await connect(port));
    const heard = listen(ws);
    await expect.poll(() => heard.messages.map((m) => m.data.toString())).toEqual(['first', 'frag-ment']);
    await expect.poll(() => pong).toBe(true);
    ws.close();
    await heard.closed;
  });

  test('the server closing is answered, and heard once', async () => {
    let code = 0;
    const port = await wsServer((ws) => {
      ws.on('close', (c) => (code = c));
      ws.close(4001, 'going');
    });
    const ws = opened(await connect(port));
    let closes = 0;
    ws.start({ onMessage: () => undefined, onClose: () => closes++ });
    await expect.poll(() => closes).toBe(1);
    await expect.poll(() => code).toBe(4001);
    expect(ws.isOpen).toBe(false);
    // Sending after the close fails through the callback, never a throw.
    await expect(new Promise((resolve, reject) => ws.send('late', (err) => (err ? reject(err) : resolve(null))))).rejects.toThrow(/not open/);
  });

  test('a message over the limit closes the connection with 1009', async () => {
    let code = 0;
    const port = await wsServer((ws) => {
      ws.on('close', (c) => (code = c));
      ws.send(Buffer.alloc(MAX + 1));
    });
    const ws = opened(await connect(port));
    const heard = listen(ws);
    await heard.closed;
    expect(heard.messages).toEqual([]);
    await expect.poll(() => code).toBe(1009);
  });

  test('text that is not UTF-8 closes the connection with 1007', async () => {
    const port = await rawServer((socket, request) => {
      const key = /Sec-WebSocket-Key: (\S+)/.exec(request)![1]!;
      const accept = createAccept(key);
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
      socket.write(Buffer.from([0x81, 0x02, 0xc3, 0x28]));
      socket.once('data', (d: Buffer) => {
        // The client's close frame: masked (zero key), code 1007.
        expect(d[0]).toBe(0x88);
        expect(d.readUInt16BE(6)).toBe(1007);
        socket.end();
      });
    });
    const ws = opened(await connect(port));
    const heard = listen(ws);
    await heard.closed;
    expect(heard.messages).toEqual([]);
  });
});

describe('upgrades that fail', () => {
  test('an answer other than 101 comes back with its status and body', async () => {
    const port = await rawServer((socket) =>
      socket.end('HTTP/1.1 401 Unauthorized\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\nrefused: unknown\n'),
    );
    expect(await connect(port)).toEqual({ ok: false, kind: 'response', status: 401, body: 'refused: unknown\n' });
  });

  test('a 101 with the wrong accept key is refused', async () => {
    const port = await rawServer((socket) =>
      socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: AAAA\r\n\r\n'),
    );
    expect(await connect(port)).toMatchObject({ ok: false, kind: 'error', code: 'EPROTO', message: expect.stringMatching(/Sec-WebSocket-Accept/) });
  });

  test('not HTTP, a closed connection, an endless header and silence each give a one-line reason', async () => {
    const garbage = await rawServer((socket) => socket.end('SSH-2.0-OpenSSH_9.2\r\n\r\n'));
    expect(await connect(garbage)).toMatchObject({ ok: false, kind: 'error', code: 'EPROTO', message: expect.stringMatching(/not an HTTP answer/) });
    const hangup = await rawServer((socket) => socket.destroy());
    expect(await connect(hangup)).toMatchObject({ ok: false, kind: 'error' });
    const endless = await rawServer((socket) => socket.write(`HTTP/1.1 200 OK\r\nx: ${'y'.repeat(20_000)}`));
    expect(await connect(endless)).toMatchObject({ ok: false, kind: 'error', message: expect.stringMatching(/oversized header/) });
    const silent = await rawServer(() => undefined);
    const socket = net.connect(silent, '127.0.0.1');
    await once(socket, 'connect');
    expect(await upgrade({ socket, host: 'x', path: '/', maxPayload: MAX, timeoutMs: 200 })).toMatchObject({ ok: false, code: 'ETIMEDOUT' });
    expect(socket.destroyed).toBe(true);
  });
});

function createAccept(key: string): string {
  return createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
}
