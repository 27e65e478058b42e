import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import WebSocket from 'ws';
import { MASTER_CLI, TOKEN, WORKER_CLI, startMaster, startWorker, tempDir, waitFor, waitForAvailable } from '../helpers/cluster.js';
import { joinRawWorker } from '../helpers/raw-worker.js';

const mode = (p: string): number => statSync(p).mode & 0o777;

describe('secrets and file modes', () => {
  test('the worker takes its token from a file or the environment: never in its command line, environment or log', async () => {
    const master = await startMaster();
    const tokenFile = path.join(tempDir(), 'token');
    writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
    const fromFile = startWorker(master, { name: 'w1', token: null, args: ['--token-file', tokenFile] });
    const fromEnv = startWorker(master, { name: 'w2', token: null, env: { DROVER_TOKEN: TOKEN } });
    await waitForAvailable(master, 2);
    for (const w of [fromFile, fromEnv]) {
      expect(readFileSync(`/proc/${w.pid}/cmdline`, 'utf8')).not.toContain(TOKEN);
      expect(w.stdout()).not.toContain(TOKEN);
    }
    expect(fromFile.stdout()).toContain(`"tokenFrom":"--token-file ${tokenFile}"`);
    expect(fromEnv.stdout()).toContain('"tokenFrom":"DROVER_TOKEN"');
    // Under --no-shell the master's stdout (the journal, under systemd) has the join lines but not the token.
    expect(master.stdout()).toContain('DROVER_TOKEN=… worker --master');
    expect(master.stdout()).not.toContain(TOKEN);
    // The join command, asked for on purpose, prints the whole line.
    expect((await master.exec('join')).stdout).toContain(`DROVER_TOKEN=${TOKEN} worker --master 127.0.0.1:${master.port}`);
  });

  test('state dirs are made 0700 even when they exist with looser modes; master.log is 0600', async () => {
    const mstate = tempDir();
    chmodSync(mstate, 0o755);
    const master = await startMaster({ stateDir: mstate, stdin: 'pipe' });
    const wstate = path.join(tempDir(), 'w');
    mkdirSync(wstate, { mode: 0o755 });
    chmodSync(wstate, 0o755);
    startWorker(master, { name: 'w1', stateDir: wstate });
    await waitForAvailable(master, 1);
    expect(mode(mstate)).toBe(0o700);
    expect(mode(wstate)).toBe(0o700);
    await waitFor(() => statSync(path.join(mstate, 'master.log')).size > 0, 'master.log');
    expect(mode(path.join(mstate, 'master.log'))).toBe(0o600);
  });
});

describe('bad input from people and peers', () => {
  test('heartbeat intervals out of bounds and reserved worker names are one-line refusals', () => {
    for (const [cli, args, expected] of [
      [
        MASTER_CLI,
        ['--heartbeat-ms', '3000000000', '--state-dir', tempDir()],
        /--heartbeat-ms must be a whole number of milliseconds from 100 to 60000, got 3000000000/,
      ],
      [MASTER_CLI, ['--heartbeat-ms', '5', '--state-dir', tempDir()], /from 100 to 60000, got 5/],
      [WORKER_CLI, ['--master', '127.0.0.1:1', '--token', TOKEN, '--heartbeat-ms', '3000000000'], /from 100 to 60000/],
      [WORKER_CLI, ['--master', '127.0.0.1:1', '--token', TOKEN, '--name', 'all'], /worker name "all" is reserved/],
      [WORKER_CLI, ['--master', '127.0.0.1:1', '--name', 'x'], /no join token: pass --token-file FILE or set DROVER_TOKEN/],
    ] as const) {
      const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', env: { PATH: process.env.PATH! }, timeout: 10_000 });
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stderr.trim().split('\n'), args.join(' ')).toHaveLength(1);
      expect(r.stderr).toMatch(expected);
    }
  });

  test('terminal escapes a worker sends (host name, OS) are printed escaped; JSON keeps them exact', async () => {
    const master = await startMaster();
    const evil = '\x1b]52;c;cm0gLXJmIH4=\x07\x1b[2J';
    await joinRawWorker(master.address, { name: 'evil', hostname: `host${evil}`, os: { platform: 'linux', release: `6${evil}`, arch: 'x64' } });
    await waitForAvailable(master, 1);
    const human = await master.exec('workers');
    expect(human.stdout).not.toContain('\x1b');
    expect(human.stdout).not.toContain('\x07');
    expect(human.stdout).toContain('host\\x1b]52;c;cm0gLXJmIH4=\\x07\\x1b[2J');
    const json = await master.execJson<{ hostname: string }[]>('workers');
    expect(json[0]!.hostname).toBe(`host${evil}`);
  });

  test('a worker that streams past the flow-control window it was granted is disconnected; the master stays small', async () => {
    const master = await startMaster();
    const ws = await joinRawWorker(master.address, { name: 'flood' });
    let closed: { code: number; reason: string } | null = null;
    ws.on('close', (code, reason) => (closed = { code, reason: reason.toString() }));
    // Answer a logs request with 300 MiB of chunks at once, acknowledged or not.
    ws.on('message', (data: Buffer, isBinary) => {
      if (isBinary) return;
      const m = JSON.parse(data.toString()) as { type: string; id?: number };
      if (m.type !== 'logs' || m.id === undefined) return;
      const header = Buffer.alloc(8);
      header.writeUInt8(0xd7, 0);
      header.writeUInt8(1, 1);
      header.writeUInt32BE(m.id, 4);
      const frame = Buffer.concat([header, Buffer.alloc(256 * 1024, 0x61)]);
      for (let i = 0; i < 1200 && ws.readyState === WebSocket.OPEN; i++) ws.send(frame);
    });
    await waitForAvailable(master, 1);
    const rssBefore = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${master.pid}/status`, 'utf8'))![1]) * 1024;
    const r = await master.exec('logs flood 1');
    await waitFor(() => closed, 'the master to disconnect the flooding worker', 20_000);
    // The close frame may not get through the flooded socket before the reset: the master's log says why.
    expect([4007, 1006]).toContain(closed!.code);
    expect(master.stdout()).toContain('worker ignored flow control; disconnecting it');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/sent past the \d+-byte window it was granted|disconnected/);
    const rssAfter = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${master.pid}/status`, 'utf8'))![1]) * 1024;
    expect(rssAfter - rssBefore).toBeLessThan(128 * 1024 * 1024);
    expect((await master.exec('workers')).code).toBe(0);
  });

  test('logs --out never replaces a device, a folder or a symlink, and replaces a file only with --force', async () => {
    const master = await startMaster();
    startWorker(master, { name: 'w1' });
    await waitForAvailable(master, 1);
    await master.execJson('copy w1 /bin/echo');
    const { pid } = await master.execFirst<{ pid: number }>('launch w1 echo -- hello');
    const dir = tempDir();
    const existing = path.join(dir, 'old.log');
    writeFileSync(existing, 'keep me');
    expect((await master.exec(`logs w1 ${pid} --out /dev/null`)).stderr).toMatch(/^error: --out \/dev\/null is not a regular file/);
    expect((await master.exec(`logs w1 ${pid} --out ${dir}`)).stderr).toMatch(/is a folder/);
    expect((await master.exec(`logs w1 ${pid} --out ${existing}`)).stderr).toMatch(/exists; add --force to replace it/);
    expect(readFileSync(existing, 'utf8')).toBe('keep me');
    expect(statSync('/dev/null').isCharacterDevice()).toBe(true);
    await waitFor(async () => (await master.exec(`logs w1 ${pid}`)).stdout === 'hello\n', 'the output');
    expect((await master.exec(`logs w1 ${pid} --out ${existing} --force`)).code).toBe(0);
    expect(readFileSync(existing, 'utf8')).toBe('hello\n');
  });
});
