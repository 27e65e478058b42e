import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { createSelfSigned } from '../../../packages/master/src/self-signed.js';
import { pinnedTls } from '../../../packages/protocol/src/pin.js';
import { tempDir } from '../../helpers/cluster.js';

describe('pinnedTls', () => {
  test("a pinned connection does not load node's CA store: a peer the store trusts is not authorized by it", () => {
    const { cert, key } = createSelfSigned('pinned-peer');
    const dir = tempDir();
    const certFile = path.join(dir, 'cert.pem');
    writeFileSync(certFile, cert);
    writeFileSync(path.join(dir, 'key.pem'), key);
    // A node whose store trusts the peer's certificate (NODE_EXTRA_CA_CERTS adds it to the
    // store), connecting with the store's default and then with pinnedTls().
    const script = `
      const tls = require('node:tls');
      const fs = require('node:fs');
      (async () => {
        const server = tls.createServer({ cert: fs.readFileSync(${JSON.stringify(certFile)}), key: fs.readFileSync(${JSON.stringify(path.join(dir, 'key.pem'))}) }, (s) => s.end());
        await new Promise((r) => server.listen(0, '127.0.0.1', r));
        const authorized = (opts) => new Promise((resolve) => {
          const s = tls.connect({ host: '127.0.0.1', port: server.address().port, rejectUnauthorized: false, checkServerIdentity: () => undefined, ...opts }, () => { resolve(s.authorized || s.authorizationError); s.destroy(); });
        });
        console.log(JSON.stringify({ store: await authorized({}), pinned: await authorized(${JSON.stringify(pinnedTls())}) }));
        server.close();
      })();`;
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', env: { ...process.env, NODE_EXTRA_CA_CERTS: certFile } });
    expect(r.stderr).toBe('');
    // The chain's verdict alone (no host name check): trusted by the store; not looked up when pinned.
    expect(JSON.parse(r.stdout)).toEqual({ store: true, pinned: 'DEPTH_ZERO_SELF_SIGNED_CERT' });
  });
});
