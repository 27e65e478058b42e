import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { FILE_CHUNK_BYTES, publicKeyPin } from '@drover/protocol';
import {
  MASTER_CLI,
  ROOT,
  TOKEN,
  parentOf,
  startMaster,
  startProcess,
  startWorker,
  tempDir,
  waitFor,
  waitForAvailable,
  type WorkerRow,
} from '../helpers/cluster.js';

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
    const master = await startMaster({ tls: true, args: ['--tls-cert', cert, '--tls-key', key] });
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

    // drover, run as a user runs it, trusts the CA that NODE_EXTRA_CA_CERTS names (here in a
    // bundle of two), though its bin keeps node from loading that file at its start.
    const admin = readFileSync(path.join(master.stateDir, 'admin-token'), 'utf8').trim();
    const other = readFileSync(makeCertificate().cert, 'utf8');
    const bundle = path.join(tempDir(), 'bundle.pem');
    writeFileSync(bundle, other + readFileSync(cert, 'utf8'));
    const alone = path.join(tempDir(), 'other.pem');
    writeFileSync(alone, other);
    const drover = (caFile: string) =>
      spawnSync(path.join(ROOT, 'packages/master/dist/bin/drover.cjs'), ['--master', `wss://127.0.0.1:${master.port}`, '--json', 'workers'], {
        encoding: 'utf8',
        env: { ...process.env, DROVER_ADMIN_TOKEN: admin, NODE_EXTRA_CA_CERTS: caFile },
      });
    const trusted = drover(bundle);
    expect(trusted.status, trusted.stderr).toBe(0);
    expect((JSON.parse(trusted.stdout) as WorkerRow[]).map((r) => r.name)).toEqual(['trusting']);
    const untrusted = drover(alone);
    expect(untrusted.status).toBe(2);
    const refusal = {
      error: { code: 'MASTER_UNREACHABLE', message: expect.stringMatching(/SELF_SIGNED.*\(pass --fingerprint from its join line, or --ca\)$/) },
    };
    expect(JSON.parse(untrusted.stdout)).toEqual(refusal);
    const missing = drover(path.join(tempDir(), 'none.pem'));
    expect(missing.status).toBe(2);
    expect(JSON.parse(missing.stdout)).toEqual(refusal);
    expect(missing.stderr).toMatch(/^drover: warning: ignoring extra certs from \S*none\.pem \(NODE_EXTRA_CA_CERTS\): ENOENT\n$/);
  });

  test('the installer runs over https with --ca and the worker joins over wss', async () => {
    const { cert, key } = makeCertificate();
    const master = await startMaster({ tls: true, args: ['--tls-cert', cert, '--tls-key', key] });
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

/** The join line's pin (curl form) and fingerprint (drover form) from a master's banner. */
function pinsOf(banner: string): { pin: string; fingerprint: string } {
  const m = /curl -fsSLk --pinnedpubkey (sha256\/\/\S+) .* --fingerprint (sha256:[0-9a-f]{64})/.exec(banner);
  if (!m) throw new Error(`no pinned join line in: ${banner}`);
  return { pin: m[1]!, fingerprint: m[2]! };
}

describe('TLS by default, pinned', () => {
  test('a master with no TLS flags makes a self-signed certificate, keeps it, and workers join only with its fingerprint', async () => {
    const stateDir = tempDir();
    const master = await startMaster({ tls: true, stateDir });
    expect(master.stdout()).toMatch(/with TLS \(certificate sha256:[0-9a-f]{64}\)/);
    const { fingerprint } = pinsOf(master.stdout());
    expect(statSync(path.join(stateDir, 'tls/key.pem')).mode & 0o777).toBe(0o600);
    expect(publicKeyPin(readFileSync(path.join(stateDir, 'tls/cert.pem'))).fingerprint).toBe(fingerprint);
    const join = (await master.exec('join')).stdout;
    expect(join).toContain(`DROVER_TOKEN=${TOKEN} worker --master wss://127.0.0.1:${master.port} --fingerprint ${fingerprint}`);

    const wss = { address: `wss://127.0.0.1:${master.port}` };
    startWorker(wss, { name: 'pinned', args: ['--fingerprint', fingerprint] });
    const wrong = startWorker(wss, { name: 'wrongpin', args: ['--fingerprint', `sha256:${'0'.repeat(64)}`] });
    const plain = startWorker(master, { name: 'plain' });
    await waitForAvailable(master, 1);
    await waitFor(() => wrong.stdout().includes("the master's certificate does not match --fingerprint"), 'the pin refusal');
    await waitFor(() => plain.stdout().includes('if it uses TLS (the default), join with --master wss://HOST:PORT --fingerprint'), 'the plain-text hint');
    await waitFor(() => master.stdout().includes('a client spoke plain text to this TLS port'), "the master's note");
    expect((await master.execJson<WorkerRow[]>('workers')).map((r) => r.name)).toEqual(['pinned']);
    // The wrong-pin worker never said hello: nothing of it reached the master's log.
    expect(master.stdout()).not.toContain('wrongpin');

    // The same certificate after a restart: joined workers and printed join lines stay valid.
    await master.kill();
    const again = await startMaster({ tls: true, stateDir, port: master.port });
    expect(pinsOf(again.stdout()).fingerprint).toBe(fingerprint);
    await waitForAvailable(again, 1);
  });

  test('copies over wss arrive whole, to two workers at once: 1 MiB frames, and last frames of the two shorter WebSocket length forms', async () => {
    const master = await startMaster({ tls: true });
    const { fingerprint } = pinsOf(master.stdout());
    const wss = { address: `wss://127.0.0.1:${master.port}` };
    const workers = ['t1', 't2'].map((name) => startWorker(wss, { name, args: ['--fingerprint', fingerprint] }));
    await waitForAvailable(master, 2);
    // The master writes a chunk it read itself as one buffer over TLS, the WebSocket header in
    // front of it (ws-frame.ts): 10 bytes for a whole chunk's frame, 2 for the last of the
    // first file (under 126 bytes), 4 for the last of the second.
    const dir = tempDir();
    for (const [name, size] of [
      ['tail58', 2 * FILE_CHUNK_BYTES + 50],
      ['tail1008', 3 * FILE_CHUNK_BYTES + 1000],
    ] as const) {
      const file = path.join(dir, name);
      writeFileSync(file, randomBytes(size), { mode: 0o755 });
      expect(await master.execJson<{ worker: string; ok: boolean }[]>(`copy all ${file}`)).toEqual([
        expect.objectContaining({ worker: 't1', ok: true }),
        expect.objectContaining({ worker: 't2', ok: true }),
      ]);
      for (const w of workers) expect(readFileSync(path.join(w.stateDir, 'apps', name, 'current', name)).equals(readFileSync(file))).toBe(true);
    }
  });

  test('install.sh over https pins the master: the printed line installs; another fingerprint installs nothing', async () => {
    const master = await startMaster({ tls: true });
    const { pin, fingerprint } = pinsOf(master.stdout());
    const url = `https://127.0.0.1:${master.port}/install.sh`;
    const prefix = path.join(tempDir(), 'drover');
    const run = (cmd: string) => spawnSync('sh', ['-c', cmd], { encoding: 'utf8', env: { ...process.env, DROVER_TOKEN: TOKEN } });
    const bad = run(`curl -fsSLk --pinnedpubkey '${pin}' ${url} | sh -s -- --fingerprint sha256:${'1'.repeat(64)} --prefix ${prefix} --no-systemd`);
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toContain(`presents ${fingerprint}, not --fingerprint`);
    expect(existsSync(path.join(prefix, 'bin'))).toBe(false);
    const otherKey = run(`curl -fsSLk --pinnedpubkey 'sha256//${Buffer.alloc(32).toString('base64')}' ${url}`);
    expect(otherKey.status).not.toBe(0);

    const ok = run(`curl -fsSLk --pinnedpubkey '${pin}' ${url} | sh -s -- --fingerprint ${fingerprint} --prefix ${prefix} --no-systemd --name pinvm`);
    expect(ok.status, ok.stderr).toBe(0);
    expect((await waitForAvailable(master, 1))[0]!.name).toBe('pinvm');
    expect(readFileSync(path.join(prefix, 'etc/worker.env'), 'utf8')).toContain(`DROVER_FINGERPRINT='${fingerprint}'`);
    // The native spawn helper came along (where the build made one), and launches go through it.
    const native = path.join(ROOT, 'packages/worker/dist/drover-spawn');
    expect(existsSync(path.join(prefix, 'lib/drover-spawn'))).toBe(existsSync(native));
    await master.execJson('copy pinvm /bin/sleep --as s');
    const { pid } = await master.execFirst<{ pid: number }>('launch pinvm s -- 30');
    if (existsSync(native)) {
      expect(readFileSync(path.join(prefix, 'lib/drover-spawn')).equals(readFileSync(native))).toBe(true);
      expect(readFileSync(`/proc/${parentOf(pid)}/cmdline`, 'utf8')).toBe(`${path.join(prefix, 'lib/drover-spawn')}\0`);
    }
    // The agent (the spawn helper's parent) runs with one malloc arena, as its wrapper sets; the app does not inherit it.
    const environ = (p: number): string[] => readFileSync(`/proc/${p}/environ`, 'utf8').split('\0');
    const agent = parentOf(parentOf(pid));
    expect(readFileSync(`/proc/${agent}/cmdline`, 'utf8')).toContain(path.join(prefix, 'lib/worker.mjs'));
    expect(environ(agent)).toContain('MALLOC_ARENA_MAX=1');
    expect(environ(pid).filter((e) => e.startsWith('MALLOC_'))).toEqual([]);
    process.kill(pid, 'SIGKILL');
    const gone = run(`curl -fsSLk --pinnedpubkey '${pin}' ${url} | sh -s -- --prefix ${prefix} --uninstall`);
    expect(gone.status, gone.stderr).toBe(0);
    expect(existsSync(path.join(prefix, 'lib/drover-spawn'))).toBe(false);
  });

  test('--no-tls is said loudly, and contradicts --tls-cert; a worker that tries TLS there is told so', async () => {
    const master = await startMaster({ stdin: 'pipe' });
    expect(master.stdout()).toContain('WITHOUT TLS');
    const tlsWorker = startWorker({ address: `wss://127.0.0.1:${master.port}` }, { name: 'tls' });
    await waitFor(() => tlsWorker.stdout().includes('if it runs with --no-tls, join with --master HOST:PORT (ws://)'), 'the hint in the log');
    // The reconnect line follows once the connection's close is seen.
    await waitFor(() => /"why":"(ECONNRESET|EPROTO)[^"]*","msg":"reconnecting to the master"/.test(tlsWorker.stdout()), 'the reconnect line with its reason');
    await waitFor(() => readFileSync(path.join(master.stateDir, 'master.log'), 'utf8').includes('TLS is off (--no-tls)'), 'the warning in master.log');
    const both = spawnSync(process.execPath, [MASTER_CLI, '--no-tls', '--tls-cert', 'a', '--tls-key', 'b', '--state-dir', tempDir()], { encoding: 'utf8' });
    expect(both.status).toBe(1);
    expect(both.stderr).toBe('master: --no-tls and --tls-cert/--tls-key contradict each other\n');
  });
});
