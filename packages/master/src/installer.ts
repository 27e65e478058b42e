import { readFileSync } from 'node:fs';
import type http from 'node:http';
import type { PublicKeyPin } from '@drover/protocol';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { workerBundlePath } from './worker-bundle.js';

/**
 * What the master serves so a VM can join with one line: the install script (with this
 * master's address filled in), the self-contained worker bundle and its sha256, the native spawn
 * helper and its sha256 (where the build made one), and the systemd unit. Files are found in this checkout; $DROVER_DEPLOY_DIR and $DROVER_WORKER_BUNDLE
 * point elsewhere.
 */
export interface Installer {
  /** Why the installer cannot be served, or null when it can. */
  missing: string | null;
  handle: (req: http.IncomingMessage, res: http.ServerResponse) => boolean;
}

const here = path.dirname(fileURLToPath(import.meta.url));

/** `pin`: the public-key pin of a self-signed master, written into the script so its downloads are pinned too. */
export function loadInstaller(scheme: 'http' | 'https', pin?: PublicKeyPin): Installer {
  const deployDir = process.env.DROVER_DEPLOY_DIR ?? path.resolve(here, '../../../deploy');
  const bundlePath = workerBundlePath();
  let script: string;
  let unit: Buffer;
  let bundle: Buffer;
  let sha: Buffer;
  try {
    script = readFileSync(path.join(deployDir, 'install.sh'), 'utf8');
    unit = readFileSync(path.join(deployDir, 'systemd/drover-worker.service'));
    bundle = readFileSync(bundlePath);
    sha = readFileSync(`${bundlePath}.sha256`);
  } catch (err) {
    const missing = `installer files not found (${(err as NodeJS.ErrnoException).path ?? String(err)}); run npm run build`;
    return { missing, handle: () => false };
  }
  // The native spawn helper, where the build made one (a C compiler was there): optional, the
  // script installs it when its architecture is the VM's.
  let spawnHelper: Buffer | null = null;
  let spawnSha: Buffer | null = null;
  try {
    const helperPath = path.join(path.dirname(bundlePath), 'drover-spawn');
    spawnHelper = readFileSync(helperPath);
    spawnSha = readFileSync(`${helperPath}.sha256`);
  } catch {
    spawnHelper = null;
    spawnSha = null;
  }
  const send = (res: http.ServerResponse, type: string, body: string | Buffer): void => {
    res.writeHead(200, { 'content-type': type, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
    res.end(body);
  };
  return {
    missing: null,
    handle: (req, res) => {
      if (req.method !== 'GET' && req.method !== 'HEAD') return false;
      switch ((req.url ?? '').split('?')[0]) {
        case '/install.sh': {
          // The script learns the master's address from where it was fetched.
          const host = req.headers.host ?? '';
          const master = /^[A-Za-z0-9.\-:[\]]{1,300}$/.test(host) ? host : '__DROVER_MASTER__';
          let body = script.replace('"__DROVER_MASTER__"', `"${master}"`).replace('"__DROVER_SCHEME__"', `"${scheme}"`);
          if (pin) body = body.replace('"__DROVER_PIN__"', `"${pin.curl}"`).replace('"__DROVER_FINGERPRINT__"', `"${pin.fingerprint}"`);
          send(res, 'text/x-shellscript; charset=utf-8', body);
          return true;
        }
        case '/worker.mjs':
          send(res, 'text/javascript; charset=utf-8', bundle);
          return true;
        case '/worker.mjs.sha256':
          send(res, 'text/plain; charset=utf-8', sha);
          return true;
        case '/drover-spawn':
          if (!spawnHelper) return false;
          send(res, 'application/octet-stream', spawnHelper);
          return true;
        case '/drover-spawn.sha256':
          if (!spawnSha) return false;
          send(res, 'text/plain; charset=utf-8', spawnSha);
          return true;
        case '/drover-worker.service':
          send(res, 'text/plain; charset=utf-8', unit);
          return true;
        default:
          return false;
      }
    },
  };
}
