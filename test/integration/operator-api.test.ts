import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import WebSocket from 'ws';
import { fileSha256 as sha, haveGcc, writeBigFile } from '../helpers/fixtures.js';
import { CAN_MOUNT, ROOT, TOKEN, startMaster, startProcess, startWorker, tempDir, waitFor, waitForAvailable, type Master } from '../helpers/cluster.js';

const DROVER = path.join(ROOT, 'packages/master/dist/drover.js');

/** Runs drover as its own process. Async: a test blocked in spawnSync could not read the master's log pipe. */
function drover(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return run(process.execPath, [DROVER, ...args], env);
}

function run(command: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(command, args, {
      env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

function remote(master: Master): { url: string; fingerprint: string; admin: string } {
  const fingerprint = /certificate (sha256:[0-9a-f]{64})/.exec(master.stdout())![1]!;
  return { url: `wss://127.0.0.1:${master.port}`, fingerprint, admin: readFileSync(path.join(master.stateDir, 'admin-token'), 'utf8').trim() };
}

describe('the operator API: drover from another machine', () => {
  test('admin and read-only tokens over pinned wss; revoked, unknown and join tokens are refused with one line, exit 3', async () => {
    const master = await startMaster({ tls: true });
    const r = remote(master);
    expect(statSync(path.join(master.stateDir, 'admin-token')).mode & 0o777).toBe(0o600);
    startWorker({ address: r.url }, { name: 'w1', args: ['--fingerprint', r.fingerprint] });
    await waitForAvailable(master, 1);
    const as = (token: string, ...command: string[]) => drover(['--master', r.url, '--fingerprint', r.fingerprint, ...command], { DROVER_ADMIN_TOKEN: token });

    const workers = await as(r.admin, 'workers', '--json');
    expect(workers.status, workers.stderr).toBe(0);
    expect((JSON.parse(workers.stdout) as { name: string }[]).map((w) => w.name)).toEqual(['w1']);

    // Files travel with the command: copy sends the client's file over wss, logs --out writes here.
    const here = tempDir();
    const exe = path.join(here, 'say');
    writeFileSync(exe, '#!/bin/sh\necho "said $1"\n', { mode: 0o755 });
    const copied = await as(r.admin, 'copy', 'w1', exe, '--json');
    expect(copied.status, copied.stderr).toBe(0);
    expect(JSON.parse(copied.stdout)).toMatchObject([{ worker: 'w1', ok: true, files: [{ path: exe, dest: 'say', sent: true }] }]);
    const launched = JSON.parse((await as(r.admin, 'launch', 'w1', 'say', '--json', '--', 'hello')).stdout) as { pid: number }[];
    const saved = path.join(here, 'said.log');
    await waitFor(async () => (await as(r.admin, 'logs', 'w1', String(launched[0]!.pid))).stdout === 'said hello\n', 'the output');
    const logs = await as(r.admin, 'logs', 'w1', String(launched[0]!.pid), '--out', saved);
    expect(logs.status, logs.stderr).toBe(0);
    expect(logs.stdout).toBe(`saved 11 B of the log of say pid ${launched[0]!.pid} on w1 to ${saved}\n`);
    expect(readFileSync(saved, 'utf8')).toBe('said hello\n');
    expect(readdirSync(here).sort()).toEqual(['said.log', 'say']);
    const made = JSON.parse((await as(r.admin, 'token', 'create', '--role', 'read-only', '--name', 'viewer', '--json')).stdout) as { token: string };
    expect(made.token).toMatch(/^drv_/);

    expect((await as(made.token, 'ps', 'w1')).status).toBe(0);
    const stop = await as(made.token, 'stop', 'w1', '123');
    expect(stop.status).toBe(1);
    expect(stop.stderr).toBe(
      'error: stop needs an admin token; viewer is read-only (it may run help, workers, ps, usage, logs, status, services, queue, events)\n',
    );
    const list = await as(r.admin, 'token', 'list', '--json');
    expect(list.stdout).not.toContain(made.token);
    expect(list.stdout).not.toContain(r.admin);

    expect((await as(r.admin, 'token', 'revoke', 'viewer')).status).toBe(0);
    for (const [token, why] of [
      [made.token, 'revoked'],
      ['drv_not-a-token', 'unknown'],
      [TOKEN, 'unknown'], // the join token only joins
    ] as const) {
      const refused = await as(token, 'workers');
      expect(refused.status).toBe(3);
      expect(refused.stderr).toBe(`drover: the master refused this token (${why})\n`);
    }
    // Every command is audited with its token's name, never a secret.
    const log = master.stdout();
    expect(
      log,
      log
        .split('\n')
        .filter((l) => l.includes('exec'))
        .join('\n'),
    ).toMatch(/"token":"viewer","role":"read-only","remote":true,"line":"stop w1 123","msg":"exec"/);
    for (const secret of [r.admin, made.token]) expect(log).not.toContain(secret);
  });

  test('the fingerprint is checked before the token is sent; ws only with --insecure-operator-api', async () => {
    const master = await startMaster({ tls: true });
    const r = remote(master);
    const wrong = await drover(['--master', r.url, '--fingerprint', `sha256:${'0'.repeat(64)}`, 'workers'], { DROVER_ADMIN_TOKEN: r.admin });
    expect(wrong.status).toBe(3);
    expect(wrong.stderr).toMatch(/presents sha256:[0-9a-f]{64}, not the fingerprint given; the token was not sent/);
    expect(master.stdout()).not.toContain('operator');
    const noPin = await drover(['--master', r.url, 'workers'], { DROVER_ADMIN_TOKEN: r.admin });
    expect(noPin.status).toBe(2);
    expect(noPin.stderr).toMatch(/pass --fingerprint from its join line, or --ca/);

    const plain = await startMaster();
    const admin = readFileSync(path.join(plain.stateDir, 'admin-token'), 'utf8').trim();
    const refused = await drover(['--master', `ws://127.0.0.1:${plain.port}`, 'workers'], { DROVER_ADMIN_TOKEN: admin });
    expect(refused.status).toBe(2);
    expect(refused.stderr).toContain('the master offers its operator API over TLS only (or with --insecure-operator-api)');
    const lab = await startMaster({ args: ['--insecure-operator-api'] });
    const labAdmin = readFileSync(path.join(lab.stateDir, 'admin-token'), 'utf8').trim();
    expect((await drover(['--master', `ws://127.0.0.1:${lab.port}`, 'workers'], { DROVER_ADMIN_TOKEN: labAdmin })).status).toBe(0);
    // The dashboard's address, as the banner prints it, is the same master.
    expect((await drover(['--master', `http://127.0.0.1:${lab.port}/`, 'workers'], { DROVER_ADMIN_TOKEN: labAdmin })).status).toBe(0);
    // TLS (the default for HOST:PORT) against a plain master: the address to use instead.
    const tlsAtPlain = await drover(['--master', `127.0.0.1:${lab.port}`, 'workers'], { DROVER_ADMIN_TOKEN: labAdmin });
    expect(tlsAtPlain.status).toBe(2);
    expect(tlsAtPlain.stderr).toMatch(new RegExp(`: (ECONNRESET|EPROTO)\\S* \\(if the master runs without TLS: ws://127\\.0\\.0\\.1:${lab.port}\\)\\n$`));
    const notAnAddress = await drover(['--master', 'ftp://127.0.0.1:1', 'workers']);
    expect(notAnAddress).toMatchObject({
      status: 2,
      stderr: 'drover: not a master address: ftp://127.0.0.1:1 (wss://HOST:PORT, or ws:// for a master without TLS)\n',
    });
    expect(lab.stdout()).toContain('the operator API is offered without TLS (--insecure-operator-api)');
  });

  test('drover login remembers a master and token (0600) after checking them; logout forgets them', async () => {
    const master = await startMaster({ tls: true });
    const r = remote(master);
    const config = tempDir();
    const env = { XDG_CONFIG_HOME: config };
    const bad = await drover(['login', r.url, '--token', 'drv_nope', '--fingerprint', r.fingerprint], env);
    expect(bad.status, bad.stderr).toBe(3);
    const ok = await drover(['login', r.url, '--token', r.admin, '--fingerprint', r.fingerprint], env);
    expect(ok.status, ok.stderr).toBe(0);
    const file = path.join(config, 'drover/context.json');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const w = await drover(['workers', '--json'], env);
    expect(w.status, w.stderr).toBe(0);
    expect(JSON.parse(w.stdout)).toEqual([]);
    expect((await drover(['logout'], env)).status).toBe(0);
    expect((await drover(['workers'], { ...env, DROVER_STATE_DIR: tempDir() })).stderr).toMatch(/cannot reach the master at .*master\.sock/);
  });

  test('Ctrl-C in a remote drover cancels the command on the master', async () => {
    const master = await startMaster({ tls: true });
    const r = remote(master);
    const child = spawn(process.execPath, [DROVER, '--master', r.url, '--fingerprint', r.fingerprint, 'wait', '5', '--timeout', '60'], {
      env: { PATH: process.env.PATH, HOME: process.env.HOME, DROVER_ADMIN_TOKEN: r.admin },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    await waitFor(() => master.stdout().includes('"line":"wait 5 --timeout 60"'), 'the wait to run on the master');
    child.kill('SIGINT');
    expect(await exited).toBe(130);
    expect(stderr).toBe('cancelled\n');
    // The master is free at once: the cancelled wait no longer holds anything.
    expect((await drover(['--master', r.url, '--fingerprint', r.fingerprint, 'workers'], { DROVER_ADMIN_TOKEN: r.admin })).status).toBe(0);
  });

  test('one connection: requests are answered in order, and a cancel stops only the command it reaches', async () => {
    const master = await startMaster({ tls: true });
    const r = remote(master);
    const ws = new WebSocket(`${r.url}/operator`, { headers: { authorization: `Bearer ${r.admin}` }, rejectUnauthorized: false });
    const replies: { type: string; ok?: boolean; results?: { output: string }[]; error?: { code: string } }[] = [];
    ws.on('message', (d: Buffer) => replies.push(JSON.parse(d.toString()) as (typeof replies)[number]));
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    const run = (line: string): void => ws.send(JSON.stringify({ v: 1, type: 'run', line, json: true, cwd: '/' }));
    // No worker joins: each wait runs until it is cancelled.
    run('wait 1 --timeout 60');
    run('workers');
    ws.send('not json');
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(replies).toEqual([]);
    ws.send(JSON.stringify({ v: 1, type: 'cancel' }));
    await waitFor(() => replies.length === 3, 'three answers');
    expect(replies.map((m) => m.type)).toEqual(['done', 'done', 'error']);
    expect(JSON.parse(replies[0]!.results![0]!.output)).toEqual({ error: expect.objectContaining({ code: 'CANCELLED' }) });
    expect(replies[1]).toMatchObject({ ok: true, results: [{ output: '[]' }] });
    expect(replies[2]!.error!.code).toBe('BAD_REQUEST');
    // The next command has a signal of its own, not the one the cancel aborted.
    run('wait 1 --timeout 60');
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(replies).toHaveLength(3);
    ws.send(JSON.stringify({ v: 1, type: 'cancel' }));
    await waitFor(() => replies.length === 4, 'the second wait to end');
    expect(JSON.parse(replies[3]!.results![0]!.output)).toEqual({ error: expect.objectContaining({ code: 'CANCELLED' }) });
    ws.close();
  });

  test('200 clients at once are all answered', async () => {
    const master = await startMaster({ tls: true });
    const r = remote(master);
    const one = (): Promise<boolean> =>
      new Promise((resolve) => {
        const ws = new WebSocket(`${r.url}/operator`, { headers: { authorization: `Bearer ${r.admin}` }, rejectUnauthorized: false });
        ws.on('error', () => resolve(false));
        ws.on('open', () => ws.send(JSON.stringify({ v: 1, type: 'run', line: 'workers', json: true, cwd: '/' })));
        ws.on('message', (d: Buffer) => {
          const reply = JSON.parse(d.toString()) as { type: string; ok?: boolean };
          if (reply.type !== 'done') return;
          ws.close();
          resolve(reply.ok === true);
        });
        setTimeout(() => resolve(false), 30_000).unref();
      });
    const answers = await Promise.all(Array.from({ length: 200 }, one));
    expect(answers.filter(Boolean)).toHaveLength(200);
  });
});

describe('drover with no command, in a terminal', () => {
  test('opens the master> prompt remotely: completion, notices, Ctrl-C, history, Ctrl-D', async () => {
    const master = await startMaster({ tls: true });
    const r = remote(master);
    const config = tempDir();
    const cmd = `${process.execPath} ${DROVER} --master ${r.url} --fingerprint ${r.fingerprint}`;
    // script(1) gives drover a real pseudo-terminal; what we write to its stdin is typed.
    const term = startProcess('script', ['-qfec', cmd, '/dev/null'], {
      stdin: 'pipe',
      env: { TERM: 'xterm', COLUMNS: '120', DROVER_ADMIN_TOKEN: r.admin, XDG_CONFIG_HOME: config },
    });
    const type = (s: string): boolean => term.child.stdin!.write(s);
    await waitFor(() => term.stdout().includes('master> '), 'the prompt');
    startWorker({ address: r.url }, { name: 'w1', args: ['--fingerprint', r.fingerprint] });
    await waitFor(() => term.stdout().includes('[w1 joined from 127.0.0.1]'), 'a join notice from the master');

    type('wor\t');
    await waitFor(() => term.stdout().includes('workers '), 'completion of a command');
    type('\r');
    // In a terminal the status is coloured (green: available).
    await waitFor(() => /w1\s+127\.0\.0\.1\s+\x1b\[32mavailable\x1b\[0m/.test(term.stdout()), 'the workers table, its status in green');
    type('ps w\t');
    await waitFor(() => term.stdout().includes('ps w1 '), 'completion of a worker name');
    type('\x15'); // Ctrl-U: clear the line
    type('wait 5 --timeout 30\r');
    await waitFor(() => master.stdout().includes('"line":"wait 5 --timeout 30"'), 'the wait on the master');
    type('\x03'); // Ctrl-C cancels the command on the master, and the prompt stays
    await waitFor(() => term.stdout().includes('error: cancelled'), 'the cancelled wait');
    type('bogus\r');
    await waitFor(() => term.stdout().includes('error: unknown command "bogus"'), 'an unknown command');
    type('\x04'); // Ctrl-D leaves
    expect((await term.exited).code).toBe(0);
    const history = readFileSync(path.join(config, 'drover/history'), 'utf8');
    expect(history).toContain('workers');
    expect(history).toContain('bogus');
  });
});

describe('files are read and written where the client runs', () => {
  const gcc = haveGcc();

  test.skipIf(!gcc || !CAN_MOUNT)(
    'a file only the client sees (its own mount namespace) is copied, with a library found through the client LD_LIBRARY_PATH; logs --out lands there (needs gcc and root)',
    async () => {
      const master = await startMaster();
      startWorker(master, { name: 'w1' });
      await waitForAvailable(master, 1);
      // The program has no rpath: the loader finds libgreet only through LD_LIBRARY_PATH.
      const staged = tempDir();
      const fixtures = path.join(ROOT, 'test/fixtures');
      execFileSync('gcc', ['-shared', '-fPIC', '-Wl,-soname,libgreet.so.1', '-o', path.join(staged, 'libgreet.so.1'), path.join(fixtures, 'libgreet.c')]);
      execFileSync('gcc', ['-o', path.join(staged, 'app'), path.join(fixtures, 'uses-lib.c'), `-L${staged}`, '-l:libgreet.so.1']);
      // Empty out here; in the client's namespace, a tmpfs with the program and its library.
      const hidden = tempDir();
      const cache = tempDir();
      const inClientNamespace = (commands: string): Promise<{ status: number | null; stdout: string; stderr: string }> =>
        run(
          'unshare',
          [
            '-m',
            '--propagation',
            'private',
            'sh',
            '-ec',
            `mount -t tmpfs -o size=16m tmpfs "$HIDDEN"; cp "$STAGED/app" "$STAGED/libgreet.so.1" "$HIDDEN/"; cd "$HIDDEN"; ${commands}`,
          ],
          { HIDDEN: hidden, STAGED: staged, DROVER, STATE: master.stateDir, XDG_CACHE_HOME: cache },
        );

      const copy = await inClientNamespace('LD_LIBRARY_PATH="$HIDDEN" node "$DROVER" --state-dir "$STATE" copy w1 ./app --json');
      expect(copy.status, copy.stderr).toBe(0);
      expect(JSON.parse(copy.stdout)).toMatchObject([
        {
          worker: 'w1',
          ok: true,
          files: [
            { path: path.join(hidden, 'app'), dest: 'app', sent: true },
            { path: path.join(hidden, 'libgreet.so.1'), dest: 'lib/libgreet.so.1', kind: 'lib', sent: true },
          ],
        },
      ]);
      // The client keeps the hashes it made (0600), so an unchanged file is not hashed again.
      const hashes = path.join(cache, 'drover', 'hashes.json');
      expect(statSync(hashes).mode & 0o777).toBe(0o600);
      expect(Object.keys(JSON.parse(readFileSync(hashes, 'utf8')) as object)).toEqual([path.join(hidden, 'app'), path.join(hidden, 'libgreet.so.1')]);
      // Outside that namespace the file does not exist: the master never read it.
      expect(existsSync(path.join(hidden, 'app'))).toBe(false);
      expect((await master.exec(`copy w1 ${path.join(hidden, 'app')}`)).stderr).toBe(`error: no file at ${path.join(hidden, 'app')} (ENOENT)\n`);

      const { pid } = await master.execFirst<{ pid: number }>('launch w1 app');
      await waitFor(async () => (await master.exec(`logs w1 ${pid}`)).stdout === 'greet=42\n', 'the program to greet');
      const saved = await inClientNamespace(`node "$DROVER" --state-dir "$STATE" logs w1 ${pid} --out ./greet.log && cat greet.log && ls -A`);
      expect(saved.status, saved.stderr).toBe(0);
      expect(saved.stdout).toBe(`saved 9 B of the log of app pid ${pid} on w1 to ${path.join(hidden, 'greet.log')}\ngreet=42\napp\ngreet.log\nlibgreet.so.1\n`);
      expect(readdirSync(hidden)).toEqual([]);
      await master.exec(`kill w1 ${pid}`);
    },
  );
});

describe('a copy streamed through drover', () => {
  const vmHwm = (pid: number): number => Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024;

  test('keeps the master flat whatever the size, and drover killed mid-copy leaves the previous version whole', async () => {
    // Over the port every byte comes from drover (the master cannot tell the file is its own).
    const master = await startMaster({ args: ['--insecure-operator-api'] });
    const worker = startWorker(master, { name: 'w1' });
    await waitForAvailable(master, 1);
    const env = { DROVER_ADMIN_TOKEN: readFileSync(path.join(master.stateDir, 'admin-token'), 'utf8').trim(), XDG_CACHE_HOME: tempDir() };
    const url = `ws://127.0.0.1:${master.port}`;
    const dir = tempDir();
    const small = path.join(dir, 'small.bin');
    const big = path.join(dir, 'big.bin');
    writeBigFile(small, 64);
    writeBigFile(big, 320);
    const copy = async (file: string): Promise<void> => {
      const r = await drover(['--master', url, 'copy', 'w1', file, '--as', 'payload'], env);
      expect(r.status, r.stderr).toBe(0);
    };
    await copy(small);
    const before = vmHwm(master.pid);
    await copy(big);
    const installed = path.join(worker.stateDir, 'apps/payload/current/big.bin');
    const v1 = sha(big);
    expect(sha(installed)).toBe(v1);
    // Memory that scaled with the file would rise by the 256 MiB the big file adds.
    expect(vmHwm(master.pid) - before).toBeLessThan(96 * 1024 * 1024);

    writeBigFile(big, 320, 9);
    const child = spawn(process.execPath, [DROVER, '--master', url, 'copy', 'w1', big, '--as', 'payload'], {
      env: { PATH: process.env.PATH, ...env },
      stdio: 'ignore',
    });
    const staging = path.join(worker.stateDir, 'staging');
    await waitFor(() => readdirSync(staging).some((f) => statSync(path.join(staging, f)).size > 8 * 1024 * 1024), 'the new version to be half-sent', 20_000, 5);
    child.kill('SIGKILL');
    await waitFor(() => readdirSync(staging).length === 0, 'the partial file to be removed');
    // The previous version, whole.
    expect(sha(installed)).toBe(v1);
    expect((await master.exec('workers')).code).toBe(0);
  });

  test('a log of many frames reaches drover --out whole, through a master that frees each frame once it is sent on', async () => {
    const master = await startMaster({ args: ['--insecure-operator-api'] });
    startWorker(master, { name: 'w1' });
    await waitForAvailable(master, 1);
    const env = { DROVER_ADMIN_TOKEN: readFileSync(path.join(master.stateDir, 'admin-token'), 'utf8').trim(), XDG_CACHE_HOME: tempDir() };
    const url = `ws://127.0.0.1:${master.port}`;
    const dir = tempDir();
    // The log is a 40 MiB file written out by `head`: ~40 frames of 1 MiB, and a ragged end.
    const source = path.join(dir, 'source.bin');
    writeBigFile(source, 41);
    const bytes = 40 * 1024 * 1024 + 12_345;
    const logger = path.join(dir, 'logger');
    execFileSync('cp', ['/usr/bin/head', logger]);
    expect((await master.exec(`copy w1 ${logger}`)).code).toBe(0);
    const { pid } = await master.execFirst<{ pid: number }>(`launch w1 logger -- -c ${bytes} ${source}`);
    const ended = async (): Promise<boolean> =>
      (JSON.parse((await master.exec('ps w1 --json')).stdout) as { pid: number; exit: unknown }[]).some((p) => p.pid === pid && p.exit);
    await waitFor(ended, 'head to finish');
    const expected = createHash('sha256').update(readFileSync(source).subarray(0, bytes)).digest('hex');
    // Twice: the second reuses what the first freed.
    for (const name of ['one.log', 'two.log']) {
      const saved = path.join(dir, name);
      const r = await drover(['--master', url, 'logs', 'w1', String(pid), '--out', saved], env);
      expect(r.status, r.stderr).toBe(0);
      expect(statSync(saved).size).toBe(bytes);
      expect(sha(saved)).toBe(expected);
    }
    // And at the master's own socket, as master exec does.
    const local = path.join(dir, 'local.log');
    expect((await master.exec(`logs w1 ${pid} --out ${local}`)).code).toBe(0);
    expect(sha(local)).toBe(expected);
  });
});
