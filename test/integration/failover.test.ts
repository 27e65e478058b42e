import { copyFileSync, readFileSync, readdirSync, readlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import {
  TOKEN,
  WORKER_CLI,
  exec,
  killAppsUnder,
  onCleanup,
  startMaster,
  startProcess,
  startWorker,
  tempDir,
  waitFor,
  waitForAvailable,
} from '../helpers/cluster.js';
import { canMakeNamespaces, makeHosts, startMasterIn } from '../helpers/netns.js';

interface InstanceView {
  id: string;
  worker: string | null;
  pid: number | null;
  state: string;
  movedFrom: { worker: string; why: string } | null;
}
interface ServiceView {
  programs: { name: string; running: number; instances: InstanceView[] }[];
}
interface DroverEvent {
  at: string;
  kind: string;
  worker?: string;
  instance?: string;
  text: string;
}

/** The pids of service apps running out of these worker state dirs, read from /proc. */
function copies(stateDirs: string[]): number[] {
  const pids: number[] = [];
  for (const p of readdirSync('/proc').filter((x) => /^\d+$/.test(x))) {
    try {
      const exe = readlinkSync(`/proc/${p}/exe`);
      if (stateDirs.some((d) => exe.startsWith(`${d}/apps/`))) pids.push(Number(p));
    } catch {
      // gone, or not ours
    }
  }
  return pids;
}

/** Samples how many copies run every 100 ms until stopped; keeps every sample with its time. */
function sampler(stateDirs: string[]): { samples: { at: number; n: number }[]; stop(): void } {
  const samples: { at: number; n: number }[] = [];
  const timer = setInterval(() => samples.push({ at: Date.now(), n: copies(stateDirs).length }), 100);
  onCleanup(() => clearInterval(timer));
  return { samples, stop: () => clearInterval(timer) };
}

function serviceFile(dir: string, name: string, program: Record<string, unknown>): string {
  copyFileSync('/bin/sleep', path.join(dir, 'sleeper'));
  const file = path.join(dir, `${name}.json`);
  writeFileSync(file, JSON.stringify({ name, programs: [{ name: 'app', path: './sleeper', args: ['600'], healthy: { after: '300ms' }, ...program }] }));
  return file;
}

const instance = async (stateDir: string, service: string): Promise<InstanceView> =>
  (JSON.parse((await exec(stateDir, `status ${service}`, { json: true })).stdout) as ServiceView[])[0]!.programs[0]!.instances[0]!;
const events = async (stateDir: string): Promise<DroverEvent[]> => JSON.parse((await exec(stateDir, 'events', { json: true })).stdout) as DroverEvent[];

describe('failover', () => {
  test('SIGKILL of a whole worker (agent and apps): its instance runs elsewhere within lostAfter + 2 s, and events tell the story', async () => {
    const master = await startMaster({ args: ['--lost-after', '3s', '--stop-after', '2s'] });
    const workers = { w1: startWorker(master, { name: 'w1' }), w2: startWorker(master, { name: 'w2' }) };
    await waitForAvailable(master, 2);
    const file = serviceFile(tempDir(), 'single', {});
    expect((await master.exec(`apply ${file}`)).code).toBe(0);
    // Placement weighs free memory, read by both workers from this one machine: either may get it.
    const from = (await instance(master.stateDir, 'single')).worker;
    expect(['w1', 'w2']).toContain(from);
    const [lost, to] = from === 'w1' ? (['w1', 'w2'] as const) : (['w2', 'w1'] as const);

    const killedAt = Date.now();
    await workers[lost].kill('SIGKILL');
    killAppsUnder(workers[lost].stateDir);
    const moved = await waitFor(
      async () => {
        const i = await instance(master.stateDir, 'single');
        return i.worker === to && i.state === 'running' ? i : null;
      },
      `the instance running on ${to}`,
      10_000,
      100,
    );
    expect(moved.movedFrom).toMatchObject({ worker: lost, why: 'lost' });
    // When the master started it on the other worker (its event's time), not when this test's polling saw it.
    const started = (await events(master.stateDir)).find((e) => e.kind === 'started' && e.worker === to)!;
    expect(Date.parse(started.at) - killedAt).toBeLessThan(3000 + 2000);
    expect((await master.exec('status single')).stdout).toMatch(new RegExp(`running \\(rescheduled from ${lost}, lost \\d+ s ago\\)`));
    const kinds = (await events(master.stateDir)).filter((e) => e.worker === 'w1' || e.worker === 'w2').map((e) => `${e.kind} ${e.worker}`);
    expect(kinds).toEqual(expect.arrayContaining([`worker-lost ${lost}`, `rescheduled ${lost}`, `placed ${to}`, `started ${to}`]));
    expect(kinds.indexOf(`worker-lost ${lost}`)).toBeLessThan(kinds.lastIndexOf(`started ${to}`));
  });

  test('drain moves 3 instances off a worker with never fewer than 3 running; undrain takes placements again', async () => {
    const master = await startMaster();
    const w1 = startWorker(master, { name: 'w1' });
    const w2 = startWorker(master, { name: 'w2' });
    await waitForAvailable(master, 2);
    const file = serviceFile(tempDir(), 'trio', { replicas: 3, on: ['w1'] });
    expect((await master.exec(`apply ${file}`)).code).toBe(0);
    // Placed on w1 only; now let them go anywhere (same version: the instances stay).
    writeFileSync(file, readFileSync(file, 'utf8').replace('"on":["w1"]', '"on":"any"'));
    const retuned = await master.exec(`apply ${file}`);
    expect(retuned.stdout).toMatch(/~ app +settings +placement settings kept/);
    expect(copies([w1.stateDir])).toHaveLength(3);
    const sample = sampler([w1.stateDir, w2.stateDir]);
    const drained = await master.exec('drain w1 --json');
    sample.stop();
    expect(drained.code, drained.stderr).toBe(0);
    expect((JSON.parse(drained.stdout) as { moved: unknown[] }).moved).toHaveLength(3);
    expect(Math.min(...sample.samples.map((s) => s.n))).toBeGreaterThanOrEqual(3);
    expect(copies([w1.stateDir])).toEqual([]);
    expect(copies([w2.stateDir])).toHaveLength(3);
    const rows = await master.execJson<{ name: string; drain: string | null }[]>('workers');
    expect(rows.find((r) => r.name === 'w1')!.drain).toBe('drained');
    expect((await master.exec('workers')).stdout).toMatch(/w1 +127\.0\.0\.1 +available \(drained\)/);
    expect((await master.exec('undrain w1')).stdout).toBe('w1 takes new placements again\n');
    expect((await events(master.stateDir)).map((e) => e.kind)).toEqual(expect.arrayContaining(['drain-started', 'drain-done', 'undrained']));
  });
});

describe('partitions (network namespaces, 198.18.0.0/15)', () => {
  const allowed = canMakeNamespaces();
  if (!allowed) console.warn('partition tests SKIPPED: cannot create network namespaces here (needs root)');

  /** A master in its namespace, workers a and b in theirs, joined by a bridge whose ports the test takes down. */
  async function partitionCluster(args: string[]): Promise<{ stateDir: string; a: string; b: string; hosts: ReturnType<typeof makeHosts> }> {
    const hosts = makeHosts();
    const stateDir = tempDir();
    await startMasterIn(hosts, stateDir, ['--no-tls', ...args]);
    const dirs = { a: tempDir(), b: tempDir() };
    for (const name of ['a', 'b'] as const) {
      onCleanup(() => killAppsUnder(dirs[name]));
      startProcess('ip', [
        'netns',
        'exec',
        hosts[name],
        process.execPath,
        WORKER_CLI,
        '--master',
        '198.18.0.1:7070',
        '--name',
        name,
        '--token',
        TOKEN,
        '--state-dir',
        dirs[name],
        '--heartbeat-ms',
        '200',
      ]);
    }
    await waitFor(async () => {
      const rows = JSON.parse((await exec(stateDir, 'workers', { json: true })).stdout) as { status: string }[];
      return rows.filter((r) => r.status === 'available').length === 2;
    }, 'both workers');
    return { stateDir, a: dirs.a, b: dirs.b, hosts };
  }

  /**
   * The worker an instance was placed on and the other one. Placement weighs free memory, which
   * both workers read from this one busy machine, so either may get it: the test cuts the one it is on.
   */
  function sides(c: { a: string; b: string }, worker: string | null): Record<'home' | 'other', { name: 'a' | 'b'; dir: string }> {
    expect(['a', 'b']).toContain(worker);
    const a = { name: 'a' as const, dir: c.a };
    const b = { name: 'b' as const, dir: c.b };
    return worker === 'a' ? { home: a, other: b } : { home: b, other: a };
  }

  test.skipIf(!allowed)(
    'a singleton on a cut-off worker is fenced there, then runs on the other; after the heal exactly one copy runs, never two',
    async () => {
      const c = await partitionCluster(['--lost-after', '4s', '--stop-after', '2500ms']);
      const file = serviceFile(tempDir(), 'single', {});
      expect((await exec(c.stateDir, `apply ${file}`)).code).toBe(0);
      const { home, other } = sides(c, (await instance(c.stateDir, 'single')).worker);
      const sample = sampler([c.a, c.b]);

      const cutAt = Date.now();
      c.hosts.link(home.name, false);
      // Fenced on its worker within stopAfter plus a heartbeat or so; running on the other within lostAfter + 2 s.
      await waitFor(() => copies([home.dir]).length === 0, `${home.name} to stop its copy`, 6000, 50);
      const fencedAt = Date.now();
      expect(fencedAt - cutAt).toBeLessThan(2500 + 1500);
      await waitFor(() => copies([other.dir]).length === 1, `the copy on ${other.name}`, 10_000, 50);
      expect(Date.now() - cutAt).toBeLessThan(4000 + 2000);

      c.hosts.link(home.name, true);
      await waitFor(async () => (await instance(c.stateDir, 'single')).state === 'running', 'the service running after the heal');
      await new Promise((resolve) => setTimeout(resolve, 3000));
      sample.stop();
      expect(copies([c.a, c.b])).toHaveLength(1);
      expect(copies([other.dir])).toHaveLength(1);
      expect(Math.max(...sample.samples.map((s) => s.n)), 'never two copies at once').toBe(1);
      const kinds = (await events(c.stateDir)).map((e) => `${e.kind}${e.worker ? ` ${e.worker}` : ''}`);
      expect(kinds).toEqual(expect.arrayContaining([`worker-lost ${home.name}`, `rescheduled ${home.name}`, `started ${other.name}`, `fenced ${home.name}`]));
    },
  );

  test.skipIf(!allowed)(
    'replace: false keeps running through a partition longer than lostAfter, nothing starts elsewhere, and its log has every line',
    async () => {
      const c = await partitionCluster(['--lost-after', '2s', '--stop-after', '1500ms']);
      const dir = tempDir();
      const ticker = path.join(dir, 'ticker');
      writeFileSync(ticker, '#!/bin/sh\ni=0\nwhile true; do echo "line $i"; i=$((i+1)); sleep 0.1; done\n', { mode: 0o755 });
      const file = path.join(dir, 'steady.json');
      writeFileSync(
        file,
        JSON.stringify({ name: 'steady', programs: [{ name: 'app', path: './ticker', healthy: { after: '300ms' }, disconnect: { replace: false } }] }),
      );
      expect((await exec(c.stateDir, `apply ${file}`)).code).toBe(0);
      const before = await instance(c.stateDir, 'steady');
      const { home, other } = sides(c, before.worker);

      c.hosts.link(home.name, false);
      await new Promise((resolve) => setTimeout(resolve, 6000));
      expect(readdirSync(path.join(other.dir, 'apps')).length === 0 || copies([other.dir]).length === 0).toBe(true);
      c.hosts.link(home.name, true);
      const after = await waitFor(async () => {
        const i = await instance(c.stateDir, 'steady');
        return i.state === 'running' ? i : null;
      }, 'the instance seen again');
      expect(after.pid).toBe(before.pid);
      expect(after.worker).toBe(home.name);
      const log = (await exec(c.stateDir, `logs ${home.name} ${after.pid}`)).stdout.trim().split('\n');
      expect(log.length).toBeGreaterThan(50);
      log.forEach((line, i) => expect(line).toBe(`line ${i}`));
    },
  );

  test.skipIf(!allowed)('a flapping link (down 1 s, up 1 s, five times) moves nothing and stops nothing', async () => {
    const c = await partitionCluster(['--lost-after', '5s', '--stop-after', '4s']);
    const file = serviceFile(tempDir(), 'single', {});
    expect((await exec(c.stateDir, `apply ${file}`)).code).toBe(0);
    const before = await instance(c.stateDir, 'single');
    const { home, other } = sides(c, before.worker);
    for (let i = 0; i < 5; i++) {
      c.hosts.link(home.name, false);
      await new Promise((resolve) => setTimeout(resolve, 1000));
      c.hosts.link(home.name, true);
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
    const after = await waitFor(async () => {
      const i = await instance(c.stateDir, 'single');
      return i.state === 'running' ? i : null;
    }, 'the instance running');
    expect(after).toMatchObject({ worker: home.name, pid: before.pid });
    expect(copies([other.dir])).toEqual([]);
    expect((await events(c.stateDir)).map((e) => e.kind)).not.toEqual(expect.arrayContaining(['worker-lost']));
  });
});
