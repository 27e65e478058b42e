import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { WebSocketServer } from 'ws';
import { CHUNK_BYTES, CHUNK_HEADER_BYTES, MAX_FRAME_BYTES } from '@drover/protocol';
import type { Fleet } from './fleet.js';
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
}): Promise<Server> {
  const { fleet, logger } = opts;
  const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    if (opts.routes?.(req, res)) return;
    res.writeHead(req.url === '/' ? 200 : 404, { 'content-type': 'text/plain' });
    res.end(req.url === '/' ? 'drover master\n' : 'not found\n');
  };
  const httpServer = opts.tls ? https.createServer({ cert: opts.tls.cert, key: opts.tls.key }, handler) : http.createServer(handler);
  const wss = new WebSocketServer({
    noServer: true,
    perMessageDeflate: false,
    maxPayload: MAX_FRAME_BYTES + CHUNK_HEADER_BYTES + CHUNK_BYTES,
  });
  httpServer.on('upgrade', (req, socket, head) => {
    socket.on('error', () => undefined);
    const path = (req.url ?? '').split('?')[0];
    if (path !== '/worker') {
      socket.end('HTTP/1.1 404 Not Found\r\nconnection: close\r\n\r\n');
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => fleet.accept(ws, req));
  });
  httpServer.on('clientError', (_err, socket) => socket.destroy());
  wss.on('error', (err) => logger.error({ err }, 'websocket server error'));

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
