import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import WebSocket from 'ws';
import { AGENT_VERSION, PROTOCOL_VERSION, type Hello } from '@drover/protocol';
import { startScriptedMaster, type ScriptedMaster } from '../helpers/scripted-master.js';
import { ROOT, TOKEN, exec, pidAlive, startCluster, startMaster, startWorker, tempDir, waitFor, waitForAvailable, type WorkerRow } from '../helpers/cluster.js';

const H = 200;

const heartbeatsOf = (m: ScriptedMaster): number => m.received.filter((x) => x.type === 'heartbeat').length;

/** The heartbeats a scripted master received, and the pings the worker sent it, over the next `ms`. */
async function countOver(m: ScriptedMaster, ms: number): Promise<{ beats: number; pings: number }> {
  const b0 = heartbeatsOf(m);
  const p0 = m.pings.length;
  await new Promise((r) => setTimeout(r, ms));
  return { beats: heartbeatsOf(m) - b0, pings: m.pings.length - p0 };
}

function hello(name: string, token = TOKEN): Hello {
  return {
    v: 1,
    type: 'hello',
    token,
    protocolVersion: PROTOCOL_VERSION,
    workerId: `raw-${name}-0001`,
    name,
    hostname: 'raw',
    os: { platform: 'linux', release: 'x', arch: 'x64' },
    cpus: 1,
    memoryBytes: 1,
    gpus: [],
    agentVersion: 'test',
  };
}

/** A hand-driven worker connection: sends what the test says, records what comes back. */
async function rawClient(address: string) {
  const ws = new WebSocket(`ws://${address}/worker`);
  const messages: unknown[] = [];
  let closed: { code: number; reason: string } | null = null;
  ws.on('message', (d: Buffer, isBinary) => messages.push(isBinary ? d : JSON.parse(d.toString())));
  ws.on('close', (code, reason) => (closed = { code, reason: reason.toString() }));
  ws.on('error', () => undefined);
  await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
  return { ws, messages, closed: () => closed };
}

describe('foundation', () => {
  test('workers join, are listed with their facts, and master exec reports them', async () => {
    const { master } = await startCluster(2, { heartbeatMs: H });
    const rows = await master.execJson<WorkerRow[]>('workers');
    expect(rows.map((r) => r.name)).toEqual(['w1', 'w2']);
    for (const r of rows) {
      expect(r.status).toBe('available');
      expect(r.address).toBe('127.0.0.1');
      expect(r.cpus).toBeGreaterThan(0);
      expect(r.memoryBytes).toBeGreaterThan(0);
      expect(r.lastHeartbeatMs).toBeLessThan(2 * H + H);
    }
    const human = await master.exec('workers; help');
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(/w1\s+127\.0\.0\.1\s+available/);
    expect(human.stdout).toContain('2 of 2 available');
    expect(human.stdout).toContain('wait');

    // commands from stdin, one per line, and --json errors in the documented shape
    const piped = await exec(master.stateDir, null, { input: 'workers --json\nfrobnicate --json\n' });
    expect(piped.code).toBe(1);
    const [first, second] = piped.stdout.trim().split('\n');
    expect(JSON.parse(first!)).toHaveLength(2);
    expect(JSON.parse(second!)).toEqual({ error: { code: 'UNKNOWN_COMMAND', message: expect.stringContaining('frobnicate') } });

    const waited = await master.execJson<{ available: number }>('wait 2 --timeout 1');
    expect(waited.available).toBe(2);
    const short = await master.exec('wait 3 --timeout 0.3');
    expect(short.code).toBe(1);
    expect(short.stderr).toMatch(/^error: only 2 of 3 workers available after 0.3 s\n$/);
  });

  test('a stopped worker becomes unavailable after 2 missed heartbeats, and available when it resumes', async () => {
    const { master, workers } = await startCluster(2, { heartbeatMs: H });
    const w1 = workers[0]!;
    process.kill(w1.pid, 'SIGSTOP');
    try {
      await waitFor(
        async () => (await master.execJson<WorkerRow[]>('workers')).find((r) => r.name === 'w1')?.status === 'unavailable',
        'w1 unavailable',
        5000,
        10,
      );
      // The master's own record of the moment it decided: silent for more than 2 intervals,
      // and no more than H/4 of sweep slack past that (plus timer jitter on a loaded machine).
      const line = master
        .stdout()
        .split('\n')
        .find((l) => l.includes('missed 2 heartbeats'));
      const silentMs = (JSON.parse(line!) as { silentMs: number }).silentMs;
      expect(silentMs).toBeGreaterThan(2 * H);
      expect(silentMs).toBeLessThanOrEqual(2 * H + H / 4 + 100);
      const rows = await master.execJson<WorkerRow[]>('workers');
      expect(rows.find((r) => r.name === 'w2')?.status).toBe('available');
      expect(rows.find((r) => r.name === 'w1')!.lastHeartbeatMs).toBeGreaterThan(2 * H);
    } finally {
      process.kill(w1.pid, 'SIGCONT');
    }
    await waitFor(async () => (await master.execJson<WorkerRow[]>('workers')).find((r) => r.name === 'w1')?.status === 'available', 'w1 available again');
  });

  test('workers reconnect by themselves after the master restarts', async () => {
    const stateDir = tempDir();
    const first = await startMaster({ heartbeatMs: H, stateDir });
    const w = [startWorker(first, { name: 'w1' }), startWorker(first, { name: 'w2' })];
    await waitForAvailable(first, 2);
    await first.kill('SIGTERM');
    expect((await first.exited).code).toBe(0);
    const second = await startMaster({ heartbeatMs: H, stateDir, port: first.port });
    const rows = await waitForAvailable(second, 2);
    expect(rows.map((r) => r.name).sort()).toEqual(['w1', 'w2']);
    expect(w.every((p) => p.child.exitCode === null)).toBe(true);
  });

  test('a worker with a wrong token is refused with a clear message on both sides', async () => {
    const master = await startMaster({ heartbeatMs: H });
    const bad = startWorker(master, { name: 'intruder', token: 'wrong-token-0123456789' });
    const { code } = await bad.exited;
    expect(code).toBe(3);
    expect(bad.stderr()).toMatch(/^worker: the master refused this worker \(4001\): bad token\n$/m);
    expect(await master.execJson<WorkerRow[]>('workers')).toEqual([]);
    const log = await import('node:fs').then((fs) => fs.readFileSync(`${master.stateDir}/master.log`, 'utf8').toString()).catch(() => '');
    expect(log + master.stdout()).toContain('bad token');
  });

  test('malformed frames get an error or a close, and both processes stay up', async () => {
    const { master, workers } = await startCluster(1, { heartbeatMs: H });

    // Before hello: anything else closes with 4000 and a reason.
    const pre = await rawClient(master.address);
    pre.ws.send('not json');
    await waitFor(() => pre.closed(), 'close before hello');
    expect(pre.closed()).toMatchObject({ code: 4000, reason: expect.stringContaining('not JSON') });

    const raw = await rawClient(master.address);
    raw.ws.send(JSON.stringify(hello('raw1')));
    await waitFor(() => raw.messages.find((m) => (m as { type: string }).type === 'welcome'), 'welcome');
    const bad = [
      'not json',
      '[1,2]',
      JSON.stringify({ v: 1, type: 'heartbeat', seq: 'x' }),
      JSON.stringify({ v: 1, type: 'teleport' }),
      JSON.stringify({ v: 99, type: 'heartbeat' }),
    ];
    for (const frame of bad) raw.ws.send(frame);
    raw.ws.send(Buffer.from([1, 2, 3]));
    await waitFor(
      () => raw.messages.filter((m) => (m as { type: string }).type === 'protocol-error').length === bad.length + 1,
      'a protocol-error per bad frame',
    );
    const errors = raw.messages.filter((m) => (m as { type: string }).type === 'protocol-error') as { error: { code: string; message: string } }[];
    expect(errors.every((e) => e.error.code === 'PROTOCOL_ERROR')).toBe(true);
    expect(errors[0]!.error.message).toContain('not JSON');
    expect(errors[3]!.error.message).toContain('teleport');
    expect(raw.closed()).toBeNull();

    // Oversized: the socket is closed (1009), the master carries on.
    raw.ws.send('x'.repeat(2 * 1024 * 1024));
    await waitFor(() => raw.closed(), 'close after an oversized frame');
    expect(raw.closed()!.code).toBe(1009);

    const rows = await master.execJson<WorkerRow[]>('workers');
    expect(rows.find((r) => r.name === 'w1')?.status).toBe('available');
    expect(master.child.exitCode).toBeNull();
    expect(workers[0]!.child.exitCode).toBeNull();
  });

  test('a worker answers garbage from its master with errors and stays connected', async () => {
    const { WebSocketServer } = await import('ws');
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    await new Promise((r) => wss.once('listening', r));
    const port = (wss.address() as { port: number }).port;
    const seen: { type: string; id?: number; ok?: boolean; error?: { code: string } }[] = [];
    let sock: WebSocket | null = null;
    wss.on('connection', (ws) => {
      sock = ws;
      ws.on('message', (d: Buffer) => seen.push(JSON.parse(d.toString())));
    });
    const worker = startWorker({ address: `127.0.0.1:${port}` }, { name: 'victim' });
    try {
      await waitFor(() => seen.find((m) => m.type === 'hello'), 'hello from the worker');
      sock!.send(JSON.stringify({ v: 1, type: 'welcome', name: 'victim', heartbeatMs: 100, masterVersion: 't' }));
      await waitFor(() => seen.find((m) => m.type === 'heartbeat'), 'heartbeat');
      sock!.send('{{{');
      sock!.send(JSON.stringify({ v: 1, type: 'launch', id: 7, app: '../etc', args: [] }));
      sock!.send(JSON.stringify({ v: 1, type: 'self-destruct', id: 8 }));
      sock!.send(Buffer.from('garbage'));
      await waitFor(() => seen.filter((m) => m.type === 'result' || m.type === 'protocol-error').length >= 4, 'replies to the bad frames');
      expect(seen.find((m) => m.type === 'result' && m.id === 7)).toMatchObject({ ok: false, error: { code: 'PROTOCOL_ERROR' } });
      expect(seen.find((m) => m.type === 'result' && m.id === 8)).toMatchObject({ ok: false, error: { code: 'PROTOCOL_ERROR' } });
      const before = seen.filter((m) => m.type === 'heartbeat').length;
      await waitFor(() => seen.filter((m) => m.type === 'heartbeat').length > before + 1, 'heartbeats continue');
      expect(worker.child.exitCode).toBeNull();
    } finally {
      await worker.kill();
      wss.close();
    }
  });

  test('a worker pings a quiet master every other heartbeat and not while the master talks', async () => {
    const m = await startScriptedMaster({ heartbeatMs: H });
    const worker = startWorker({ address: m.address }, { name: 'pinger' });
    await waitFor(() => heartbeatsOf(m) >= 2, 'heartbeats');
    // An idle master says nothing but pongs: a ping on every other heartbeat, not on each.
    const idle = await countOver(m, 12 * H);
    expect(idle.beats).toBeGreaterThanOrEqual(8);
    expect(idle.pings).toBeGreaterThanOrEqual(Math.floor(idle.beats / 2) - 1);
    expect(idle.pings).toBeLessThanOrEqual(Math.ceil(idle.beats / 2) + 1);
    // A master that pings (as it does to measure round trips) is heard: no pings back.
    const talking = setInterval(() => m.ping(), H / 2);
    await new Promise((r) => setTimeout(r, 3 * H));
    const heard = await countOver(m, 8 * H);
    clearInterval(talking);
    expect(heard.beats).toBeGreaterThanOrEqual(5);
    expect(heard.pings).toBe(0);
    expect(worker.child.exitCode).toBeNull();
    await worker.kill();
  });

  test("a worker pings a quiet master as seldom as the master's welcome says, and as a pace message says later", async () => {
    // A master of a large fleet says: ping me after 6 intervals of quiet (each pong is a write it makes).
    const m = await startScriptedMaster({ heartbeatMs: H, quietMs: 6 * H });
    const worker = startWorker({ address: m.address }, { name: 'paced' });
    await waitFor(() => heartbeatsOf(m) >= 2, 'heartbeats');
    const slow = await countOver(m, 18 * H);
    expect(slow.beats).toBeGreaterThanOrEqual(12);
    // Every 6th heartbeat or so (a ping on each second one would be 9).
    expect(slow.pings).toBeGreaterThanOrEqual(2);
    expect(slow.pings).toBeLessThanOrEqual(4);
    // The fleet shrank: back to a ping on every other heartbeat.
    m.send({ v: 1, type: 'pace', quietMs: 2 * H });
    await new Promise((r) => setTimeout(r, 2 * H));
    const paced = await countOver(m, 12 * H);
    expect(paced.pings).toBeGreaterThanOrEqual(Math.floor(paced.beats / 2) - 1);
    // Nothing stopped: the worker kept its connection throughout (its pings were answered).
    expect(m.connections()).toBe(1);
    expect(worker.child.exitCode).toBeNull();
    await worker.kill();
  });

  test('a worker whose master stops answering its pings redials it', async () => {
    const m = await startScriptedMaster({ heartbeatMs: H, autoPong: false });
    const worker = startWorker({ address: m.address }, { name: 'redialer' });
    await waitFor(() => m.received.some((x) => x.type === 'heartbeat'), 'a heartbeat');
    // Nothing comes back: after 5 s of silence (at least 4 heartbeats) it gives up on the connection and dials again.
    await waitFor(() => m.connections() >= 2, 'a second connection', 12_000, 100);
    expect(m.pings.length).toBeGreaterThanOrEqual(2);
    expect(worker.stdout()).toContain('the master stopped answering; reconnecting');
    await worker.kill();
  });

  test('a different worker claiming a live name is refused; the same worker reconnecting replaces its session', async () => {
    const { master, workers } = await startCluster(1, { heartbeatMs: H });
    const impostor = startWorker(master, { name: 'w1' });
    await waitFor(() => impostor.stdout().includes('name w1 belongs to another worker that is connected from 127.0.0.1'), 'the refusal in the impostor log');
    expect(impostor.child.exitCode).toBeNull(); // it keeps trying: the name may free up
    const rows = await master.execJson<WorkerRow[]>('workers');
    expect(rows).toHaveLength(1);
    await impostor.kill();

    // The real w1 restarted with its state dir (same worker id) takes its name back at once.
    await workers[0]!.kill('SIGKILL');
    const again = startWorker(master, { name: 'w1', stateDir: workers[0]!.stateDir });
    await waitFor(() => again.stdout().includes('joined the master'), 'w1 back');
    expect((await master.execJson<WorkerRow[]>('workers'))[0]).toMatchObject({ name: 'w1', status: 'available', connected: true });
  });

  test('two agents on one state dir: the second refuses; a lock left by a killed agent is taken over', async () => {
    const { master, workers } = await startCluster(1, { heartbeatMs: H });
    const first = workers[0]!;
    const second = startWorker(master, { name: 'w1b', stateDir: first.stateDir });
    expect((await second.exited).code).toBe(2);
    expect(second.stderr()).toBe(
      `worker: could not start: another worker agent (pid ${first.pid}) is using state dir ${first.stateDir}; stop it or pick another --state-dir\n`,
    );
    expect(first.child.exitCode).toBeNull();
    await first.kill('SIGKILL');
    const third = startWorker(master, { name: 'w1', stateDir: first.stateDir });
    await waitFor(() => third.stdout().includes('joined the master'), 'the agent that took the stale lock over');
  });

  test('forget drops disconnected workers, never a connected one', async () => {
    const { master, workers } = await startCluster(2, { heartbeatMs: H });
    await workers[1]!.kill('SIGTERM');
    await waitFor(async () => (await master.execJson<WorkerRow[]>('workers')).find((r) => r.name === 'w2')?.status === 'unavailable', 'w2 gone');
    expect((await master.exec('forget w1')).stderr).toBe('error: worker w1 is connected; only disconnected workers can be forgotten\n');
    expect((await master.exec('forget nobody')).stderr).toBe('error: unknown worker "nobody" (known workers: w1, w2)\n');
    expect(await master.execJson('forget gone')).toEqual({ forgotten: ['w2'] });
    expect((await master.execJson<WorkerRow[]>('workers')).map((r) => r.name)).toEqual(['w1']);
    expect((await master.exec('forget gone')).stdout).toBe('no disconnected workers to forget\n');
  });

  test('shutdown: master exec exit stops the master; SIGTERM stops a worker; both exit 0', async () => {
    const { master, workers } = await startCluster(1, { heartbeatMs: H });
    const w = workers[0]!;
    const started = Date.now();
    await w.kill('SIGTERM');
    expect(await w.exited).toEqual({ code: 0, signal: null });
    expect(Date.now() - started).toBeLessThan(3000);
    const r = await master.exec('exit');
    expect(r.code).toBe(0);
    expect(await master.exited).toEqual({ code: 0, signal: null });
    const { existsSync } = await import('node:fs');
    expect(existsSync(`${master.stateDir}/master.sock`)).toBe(false);
  });

  test('master --dev N (what npm start runs) starts N local workers and takes them down on exit', async () => {
    const master = await startMaster({ heartbeatMs: H, tls: true, args: ['--dev', '2'] });
    expect(master.stdout()).toMatch(/listening on 127\.0\.0\.1:\d+ with TLS \(certificate sha256:[0-9a-f]{64}\)/);
    const rows = await waitForAvailable(master, 2);
    expect(rows.map((r) => r.name)).toEqual(['w1', 'w2']);
    expect(master.stdout()).toMatch(/started 2 local workers \(w1, w2\); their logs are in .*\/dev/);
    // The master's own children: a worker's fork (its spawn helper, a mkfifo) carries the
    // worker's command line until it execs, and is not a dev worker.
    const pids = spawnSync('pgrep', ['-P', String(master.child.pid), '-f', `${master.stateDir}/dev/w`], { encoding: 'utf8' })
      .stdout.split('\n')
      .filter(Boolean)
      .map(Number);
    expect(pids).toHaveLength(2);
    expect((await master.exec('exit')).code).toBe(0);
    expect((await master.exited).code).toBe(0);
    await waitFor(() => pids.every((pid) => !pidAlive(pid)), 'the dev workers to exit with the master');

    // Even a master killed outright leaves no dev worker behind: their stdin closes.
    const killed = await startMaster({ heartbeatMs: H, args: ['--dev', '1'] });
    await waitForAvailable(killed, 1);
    const orphan = Number(spawnSync('pgrep', ['-P', String(killed.child.pid), '-f', `${killed.stateDir}/dev/w1`], { encoding: 'utf8' }).stdout.trim());
    await killed.kill('SIGKILL');
    await waitFor(() => !pidAlive(orphan), 'the dev worker of a killed master to exit');
  });

  test('master exec without a running master fails with one line', async () => {
    const r = await exec(tempDir(), 'workers');
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/cannot reach the master .* is it running\?/);
  });

  test('bad master flags give one line and no stack trace', async () => {
    const { startProcess, MASTER_CLI } = await import('../helpers/cluster.js');
    const p = startProcess(process.execPath, [MASTER_CLI, '--port', 'banana', '--state-dir', tempDir()]);
    const { code } = await p.exited;
    expect(code).not.toBe(0);
    expect(p.stderr()).not.toMatch(/\s+at .*\.js:\d+/);
    const w = startProcess(process.execPath, [(await import('../helpers/cluster.js')).WORKER_CLI, '--master', 'nope', '--token', TOKEN]);
    expect((await w.exited).code).toBe(2);
    expect(w.stderr()).toMatch(/^worker: invalid --master "nope": expected HOST:PORT/);
  });

  test('master exec and drover (small clients) take --state-dir D, --state-dir=D and --json, refuse what they do not know in one line, and --help is the full help', async () => {
    const { startProcess, MASTER_CLI } = await import('../helpers/cluster.js');
    const master = await startMaster();
    const run = async (args: string[]): Promise<{ code: number | null; out: string; err: string }> => {
      const p = startProcess(process.execPath, [MASTER_CLI, 'exec', ...args]);
      const { code } = await p.exited;
      return { code, out: p.stdout(), err: p.stderr() };
    };
    expect((await run(['workers', `--state-dir=${master.stateDir}`, '--json'])).out.trim()).toBe('[]');
    expect((await run(['--state-dir', master.stateDir, 'workers'])).out).toContain('no workers have joined yet');
    const bogus = await run(['workers', '--bogus', '--state-dir', master.stateDir]);
    expect(bogus).toMatchObject({ code: 2, err: 'master: Unknown argument: bogus\n' });
    const two = await run(['workers', 'ps', '--state-dir', master.stateDir]);
    expect(two.code).toBe(2);
    expect(two.err).toContain('quote the commands: master exec "workers; ps all"');
    const missing = await run(['workers', '--state-dir']);
    expect(missing).toMatchObject({ code: 2, err: 'master: Not enough arguments following: state-dir\n' });
    const help = await run(['--help']);
    expect(help.code).toBe(0);
    expect(help.out).toContain('--state-dir');
    // drover's own flags, parsed by hand up to the command, the same way.
    const DROVER = MASTER_CLI.replace(/cli\.js$/, 'drover.js');
    const drover = async (args: string[]): Promise<{ code: number | null; out: string; err: string }> => {
      const p = startProcess(process.execPath, [DROVER, ...args]);
      const { code } = await p.exited;
      return { code, out: p.stdout(), err: p.stderr() };
    };
    expect((await drover([`--state-dir=${master.stateDir}`, '--json', 'workers'])).out.trim()).toBe('[]');
    // After the command, flags are the command's: --json goes to workers.
    expect((await drover(['--state-dir', master.stateDir, 'workers', '--json'])).out.trim()).toBe('[]');
    expect(await drover(['--state-dir'])).toMatchObject({ code: 2, err: 'drover: Not enough arguments following: state-dir\n' });
    const droverHelp = await drover(['--help']);
    expect(droverHelp.code).toBe(0);
    expect(droverHelp.out).toContain('drover login URL --token T');
    // yargs is not in the bundle: --help loads it from node_modules; --version needs none of it.
    expect(await drover(['--version'])).toMatchObject({ code: 0, out: `${AGENT_VERSION}\n` });
    expect(await drover(['--json', '--version'])).toMatchObject({ code: 0, out: `${AGENT_VERSION}\n` });
    expect(readFileSync(path.join(ROOT, 'packages/master/dist/drover.cjs'), 'utf8')).not.toContain('yargs-parser');
  });
});
