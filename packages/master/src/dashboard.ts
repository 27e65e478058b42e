import { readFileSync } from 'node:fs';
import type http from 'node:http';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { createHash } from 'node:crypto';
import type { LogLimiter } from './log-limiter.js';
import type { TokenStore } from './operator-tokens.js';

interface Asset {
  type: string;
  body: Buffer;
  gzip: Buffer;
  etag: string;
}

/** What a browser may load: the bundle built by scripts/bundle.mjs into dist/dashboard. */
const FILES: Record<string, { file: string; type: string }> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/index.html': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/app.css': { file: 'app.css', type: 'text/css; charset=utf-8' },
};

const HEADERS = {
  // Only this page's own script and styles, and WebSockets back to this master.
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
};

/**
 * The web dashboard at / on the master's port: a static page (preact + htm, bundled by esbuild,
 * gzipped once at start) that logs in with a token and then speaks the operator protocol over a
 * WebSocket at /operator, the token offered as a subprotocol (a browser cannot set headers on a
 * WebSocket). What it may do is the token's role: read-only by default, write actions (stop,
 * kill, restart) only with an admin token (--dashboard-admin). Offered where the operator API is:
 * over TLS, or without it only with --insecure-operator-api.
 */
export function dashboardRoutes(opts: {
  tokens: TokenStore;
  offered: boolean;
  peerLog: LogLimiter;
  /** The folder of the built page (tests may point elsewhere). */
  dir?: URL;
}): { handle(req: http.IncomingMessage, res: http.ServerResponse): boolean; built: boolean } {
  const dir = opts.dir ?? new URL('./dashboard/', import.meta.url);
  const assets = new Map<string, Asset>();
  for (const [route, { file, type }] of Object.entries(FILES)) {
    try {
      const body = readFileSync(fileURLToPath(new URL(file, dir)));
      assets.set(route, { type, body, gzip: gzipSync(body, { level: 9 }), etag: `"${createHash('sha256').update(body).digest('hex').slice(0, 16)}"` });
    } catch {
      // Not built: answered below.
    }
  }
  const built = assets.has('/') && assets.has('/app.js');
  const json = (res: http.ServerResponse, status: number, body: unknown): void => {
    res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', ...HEADERS });
    res.end(JSON.stringify(body));
  };
  return {
    built,
    handle(req, res) {
      const route = (req.url ?? '').split('?')[0]!;
      if (route === '/api/whoami') {
        if (!opts.offered) {
          json(res, 403, { error: 'this master offers its dashboard over TLS only: start it without --no-tls (or with --insecure-operator-api)' });
          return true;
        }
        const m = /^Bearer (\S{1,512})$/.exec(req.headers.authorization ?? '');
        const who = m ? opts.tokens.verify(m[1]!) : ({ refused: 'missing' } as const);
        if ('refused' in who) {
          const peer = req.socket.remoteAddress ?? 'unknown';
          opts.peerLog.log('warn', peer, { peer, refused: who.refused }, 'refused a dashboard token');
          json(res, 401, { error: who.refused === 'revoked' ? 'this token was revoked' : 'not a token of this master' });
          return true;
        }
        json(res, 200, who);
        return true;
      }
      if (!(route in FILES)) return false;
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' });
        res.end('method not allowed\n');
        return true;
      }
      const asset = assets.get(route);
      if (!asset) {
        res.writeHead(route === '/' ? 200 : 404, { 'content-type': 'text/plain' });
        res.end(route === '/' ? 'drover master (the dashboard is not built here: npm run build)\n' : 'not found\n');
        return true;
      }
      const headers: http.OutgoingHttpHeaders = {
        'content-type': asset.type,
        etag: asset.etag,
        'cache-control': 'no-cache',
        vary: 'accept-encoding',
        ...HEADERS,
      };
      if (req.headers['if-none-match'] === asset.etag) {
        res.writeHead(304, headers);
        res.end();
        return true;
      }
      const gzip = /\bgzip\b/.test(String(req.headers['accept-encoding'] ?? ''));
      const body = gzip ? asset.gzip : asset.body;
      res.writeHead(200, { ...headers, 'content-length': body.length, ...(gzip ? { 'content-encoding': 'gzip' } : {}) });
      res.end(req.method === 'HEAD' ? undefined : body);
      return true;
    },
  };
}

/** The secret a browser offers as a WebSocket subprotocol (`drover`, `drover-token.SECRET`). */
export function subprotocolToken(header: string | undefined): string | null {
  for (const p of (header ?? '').split(',')) {
    const m = /^drover-token\.(\S{1,512})$/.exec(p.trim());
    if (m) return m[1]!;
  }
  return null;
}
