import type http from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer } from 'ws';
import { CloseCode, MAX_FRAME_BYTES, noteReceived, type ControlReply } from '@drover/protocol';
import { subprotocolToken } from './dashboard.js';
import type { LogLimiter } from './log-limiter.js';
import type { Logger } from './logger.js';
import { LOCAL_CALLER, type Caller, type TokenStore } from './operator-tokens.js';
import { operatorSession, type BaseContext } from './operator-session.js';

/**
 * The operator API: a WebSocket at /operator. On the master's port it is authenticated at the
 * upgrade with `Authorization: Bearer TOKEN` (an operator token, never the join token), so a
 * peer without one never gets a WebSocket, and offered only over TLS unless the master was told
 * --insecure-operator-api. On the control socket (0600, in the state dir) whoever connects is
 * the master's own user: `local`, admin, no token.
 */
export function operatorEndpoint(opts: {
  base: BaseContext;
  tokens: TokenStore;
  logger: Logger;
  peerLog: LogLimiter;
  tls: boolean;
  insecure: boolean;
  onExit(): void;
}): {
  handle(req: http.IncomingMessage, socket: Duplex, head: Buffer): void;
  handleLocal(req: http.IncomingMessage, socket: Duplex, head: Buffer): void;
  close(): void;
} {
  const wss = new WebSocketServer({
    noServer: true,
    perMessageDeflate: false,
    maxPayload: MAX_FRAME_BYTES,
    // The dashboard offers `drover` and its token as subprotocols: answer with `drover`, never the token.
    handleProtocols: (protocols) => (protocols.has('drover') ? 'drover' : false),
  });
  const refuse = (socket: Duplex, status: string, why: string): void => {
    socket.end(`HTTP/1.1 ${status}\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\n${why}\n`);
    setTimeout(() => socket.destroy(), 1000).unref();
  };
  const accept = (req: http.IncomingMessage, socket: Duplex, head: Buffer, who: Caller, remote: boolean, peer: string): void => {
    wss.handleUpgrade(req, socket, head, (ws) => {
      ws.on('error', () => undefined);
      const send = (reply: ControlReply): Promise<void> =>
        new Promise((resolve) => {
          if (ws.readyState !== ws.OPEN) return resolve();
          // Resolves once written out: a slow client slows its command, not the master's memory.
          ws.send(JSON.stringify(reply), () => resolve());
        });
      // Resolves once the socket is done with the frame's memory (its sender may free it then).
      // File data is paced by its own window, so this waits for the kernel, not for the client.
      const sendBinary = (frame: Buffer): Promise<void> =>
        new Promise((resolve) => {
          if (ws.readyState !== ws.OPEN) return resolve();
          ws.send(frame, { binary: true }, () => resolve());
        });
      const session = operatorSession({
        base: opts.base,
        caller: who,
        remote,
        logger: opts.logger,
        send,
        sendBinary,
        onExit: () => {
          ws.close(1000, 'master stopping');
          opts.onExit();
        },
      });
      if (remote) opts.logger.info({ token: who.name, role: who.role, peer }, 'operator connected');
      ws.on('message', (data: Buffer, isBinary: boolean) => {
        if (!isBinary) return session.receive(data.toString('utf8'));
        // A file the client sends: the socket reads it came in die young (the shared read frees
        // each frame itself once its workers took it, FRESH_JOIN_BYTES).
        noteReceived(data.length);
        const violation = session.receiveBinary(data);
        if (violation) {
          opts.logger.warn({ token: who.name, peer, violation }, 'operator client broke the protocol; disconnecting it');
          ws.close(CloseCode.PROTOCOL_VIOLATION, violation.slice(0, 120));
          setTimeout(() => ws.terminate(), 1000).unref();
        }
      });
      ws.on('close', () => session.close());
    });
  };
  return {
    handle(req, socket, head) {
      const peer = req.socket.remoteAddress ?? 'unknown';
      if (!opts.tls && !opts.insecure) {
        return refuse(socket, '403 Forbidden', 'the master offers its operator API over TLS only (or with --insecure-operator-api)');
      }
      // A header from drover and scripts; a subprotocol from a browser (the dashboard).
      const secret = /^Bearer (\S{1,512})$/.exec(req.headers.authorization ?? '')?.[1] ?? subprotocolToken(req.headers['sec-websocket-protocol']);
      const who = secret ? opts.tokens.verify(secret) : ({ refused: 'missing' } as const);
      if ('refused' in who) {
        opts.peerLog.log('warn', peer, { peer, refused: who.refused }, 'refused an operator token');
        return refuse(socket, '401 Unauthorized', `refused: ${who.refused}`);
      }
      accept(req, socket, head, who, true, peer);
    },
    handleLocal(req, socket, head) {
      accept(req, socket, head, LOCAL_CALLER, false, 'control socket');
    },
    close() {
      for (const ws of wss.clients) ws.terminate();
      wss.close();
    },
  };
}
