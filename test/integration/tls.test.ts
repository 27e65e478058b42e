import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { MASTER_CLI, TOKEN, startMaster, startProcess, startWorker, tempDir, waitFor, waitForAvailable, type WorkerRow } from '../helpers/cluster.js';

const haveOpenssl = spawnSync('sh', ['-c', 'command -v openssl']).status === 0;
if (!haveOpenssl) console.warn('TLS tests SKIPPED: openssl is not installed to make a test certificate');

/** A self-signed certificate for 127.0.0.1: its own CA, as a private fleet would have. */
function makeCertificate(): { cert: string; key: string } {
  const dir = tempDir('drover-tls-');
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      key,
      '-out',
      cert,
      '-days',
      '1',
      '-subj',
      '/CN=drover-test',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
    ],
    { stdio: 'ignore' },
  );
  return { cert, key };
}

describe.skipIf(!haveOpenssl)('TLS between master and workers', () => {
  test('workers that trust the CA join over wss; others are refused with a clear reason', async () => {
    const { cert, key } = makeCertificate();
    const master = await startMaster({ args: ['--tls-cert', cert, '--tls-key', key] });
    expect(master.stdout()).toContain('with TLS');
    expect(master.stdout()).toContain(`curl -fsSL https://127.0.0.1:${master.port}/install.sh`);
    expect(master.stdout()).toContain(`DROVER_TOKEN=… worker --master wss://127.0.0.1:${master.port}`);

    startWorker({ address: `wss://127.0.0.1:${master.port}` }, { name: 'trusting', args: ['--ca', cert] });
    const untrusting = startWorker({ address: `wss://127.0.0.1:${master.port}` }, { name: 'untrusting' });
    const plain = startWorker({ address: `127.0.0.1:${master.port}` }, { name: 'plain' });
    await waitForAvailable(master, 1);
    await waitFor(() => untrusting.stdout().includes("TLS: the master's certificate is not trusted"), 'the TLS refusal in the log');
    await new Promise((r) => setTimeout(r, 500));
    const rows = await master.execJson<WorkerRow[]>('workers');
    expect(rows.map((r) => r.name)).toEqual(['trusting']);
    expect(plain.child.exitCode).toBeNull(); // keeps retrying; nothing crashed
    expect(master.child.exitCode).toBeNull();
  });

  test('the installer runs over https with --ca and the worker joins over wss', async () => {
    const { cert, key } = makeCertificate();
    const master = await startMaster({ args: ['--tls-cert', cert, '--tls-key', key] });
    const prefix = path.join(tempDir(), 'drover');
    const tokenFile = path.join(tempDir(), 'token');
    writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
    const r = spawnSync(
      'sh',
      [
        '-c',
        `curl -fsSL --cacert ${cert} https://127.0.0.1:${master.port}/install.sh | sh -s -- --token-file ${tokenFile} --ca ${cert} --prefix ${prefix} --no-systemd --name tlsvm`,
      ],
      { encoding: 'utf8' },
    );
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain(`joining the master at https://127.0.0.1:${master.port}`);
    const rows = await waitForAvailable(master, 1);
    expect(rows[0]!.name).toBe('tlsvm');
    const un = spawnSync('sh', [path.join(prefix, 'bin/worker'), '--version'], { encoding: 'utf8' });
    expect(un.stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
    const gone = spawnSync('sh', ['-c', `curl -fsSL --cacert ${cert} https://127.0.0.1:${master.port}/install.sh | sh -s -- --prefix ${prefix} --uninstall`], {
      encoding: 'utf8',
    });
    expect(gone.status, gone.stderr).toBe(0);
    expect(existsSync(prefix) ? readdirSync(prefix) : []).toEqual([]);
  });

  test('an unusable certificate or key is one line, and the master does not start', async () => {
    const dir = tempDir();
    writeFileSync(path.join(dir, 'bad.pem'), 'not a certificate\n');
    const p = startProcess(process.execPath, [
      MASTER_CLI,
      '--no-shell',
      '--port',
      '0',
      '--state-dir',
      dir,
      '--tls-cert',
      path.join(dir, 'bad.pem'),
      '--tls-key',
      path.join(dir, 'bad.pem'),
    ]);
    expect((await p.exited).code).toBe(1);
    expect(p.stderr()).toMatch(/^master: --tls-cert\/--tls-key are not a usable PEM certificate and key: .*\n$/);
    const q = startProcess(process.execPath, [MASTER_CLI, '--no-shell', '--port', '0', '--state-dir', dir, '--tls-cert', path.join(dir, 'none.pem')]);
    expect((await q.exited).code).toBe(1);
    expect(q.stderr()).toBe('master: --tls-cert and --tls-key go together\n');
  });
});
