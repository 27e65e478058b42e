import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { WebSocketServer } from 'ws';
import type { Fleet } from './fleet.js';
import { PRE_HELLO_MAX_PAYLOAD } from './gate.js';
import type { Logger } from './logger.js';

export interface Server {
  port: number;
  close(): Promise<void>;
}

/** HTTP + WebSocket on one port: workers upgrade at /worker; plain GETs get a short answer. */
export async function startServer(opts: {
  host: string;
  port: number;
  fleet: Fleet;
  logger: Logger;
  routes?: (req: http.IncomingMessage, res: http.ServerResponse) => boolean;
  /** PEM certificate chain and key: serve https and wss instead of http and ws. */
  tls?: { cert: Buffer; key: Buffer };
  /** A client spoke plain text (ws://, http://) to this TLS port. */
  onPlainText?: (peer: string) => void;
  /** Upgrades at /operator: the operator API. */
  operator?: (req: http.IncomingMessage, socket: Duplex, head: Buffer) => void;
}): Promise<Server> {
  const { fleet, logger } = opts;
  const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    if (opts.routes?.(req, res)) return;
    res.writeHead(req.url === '/' ? 200 : 404, { 'content-type': 'text/plain' });
    res.end(req.url === '/' ? 'drover master\n' : 'not found\n');
  };
  // Idle and slow (slowloris) connections are closed in seconds: a peer that has not sent its
  // request headers within 5 s, or a whole request within 10 s, is dropped.
  const timeouts = { headersTimeout: 5_000, requestTimeout: 10_000, keepAliveTimeout: 5_000, connectionsCheckingInterval: 1_000 };
  const httpServer = opts.tls ? https.createServer({ cert: opts.tls.cert, key: opts.tls.key, ...timeouts }, handler) : http.createServer(timeouts, handler);
  // Until its hello a connection may send frames of a few KiB only; the fleet raises the limit once it is admitted.
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: PRE_HELLO_MAX_PAYLOAD });
  // What stays on a worker's socket for its whole life (the no-op error listener, the gate's
  // `leave`) is made outside this handler: a closure made in it would keep its context, and with
  // it the upgrade request, for as long as the connection lasts.
  httpServer.on('upgrade', (req, socket, head) => {
    socket.on('error', ignore);
    const path = (req.url ?? '').split('?')[0];
    if (path === '/operator' && opts.operator) return opts.operator(req, socket, head);
    if (path !== '/worker') {
      socket.end('HTTP/1.1 404 Not Found\r\nconnection: close\r\n\r\n');
      return;
    }
    const source = req.socket.remoteAddress ?? 'unknown';
    if (!fleet.gate.enter(source)) {
      // No grace: whatever the peer sends next is never read into memory.
      socket.end('HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\nconnection: close\r\n\r\n');
      socket.destroy();
      return;
    }
    const leave = leaveOnce(fleet.gate, source, socket);
    socket.on('close', leave);
    wss.handleUpgrade(req, socket, head, (ws) => fleet.accept(ws, req, leave));
  });
  httpServer.on('clientError', (_err, socket) => socket.destroy());
  wss.on('error', (err) => logger.error({ err }, 'websocket server error'));

  // A plain-text client (ws://, http://) at a TLS master fails its handshake: say so, once per source and window.
  httpServer.on('tlsClientError', (err: NodeJS.ErrnoException, socket: TLSSocket) => {
    if (!/HTTP_REQUEST|WRONG_VERSION/.test(err.code ?? '')) return;
    const peer = socket.remoteAddress ?? 'unknown';
    opts.onPlainText?.(peer);
  });
  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => reject(err);
    httpServer.once('error', onError);
    httpServer.listen(opts.port, opts.host, () => {
      httpServer.off('error', onError);
      resolve();
    });
  });
  httpServer.on('error', (err) => logger.error({ err }, 'http server error'));
  const port = (httpServer.address() as AddressInfo).port;
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const ws of wss.clients) ws.terminate();
        wss.close();
        httpServer.closeAllConnections();
        httpServer.close(() => resolve());
      }),
  };
}

const ignore = (): void => undefined;

/**
 * Gives `source`'s admission slot back once, however many times it is called, and takes itself
 * off the socket then: an admitted worker's connection keeps no listener, closure or context of
 * its admission (with `once`, its wrapper and state stayed: ~270 bytes a worker).
 */
function leaveOnce(gate: Fleet['gate'], source: string, socket: Duplex): () => void {
  let entered = true;
  const leave = (): void => {
    if (entered) gate.leave(source);
    entered = false;
    socket.off('close', leave);
  };
  return leave;
}
