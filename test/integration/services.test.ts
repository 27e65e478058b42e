import { chmodSync, copyFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { startMaster, startWorker, tempDir, waitFor, waitForAvailable, type Master } from '../helpers/cluster.js';

interface InstanceView {
  id: string;
  worker: string | null;
  pid: number | null;
  state: string;
  restarts: number;
  lastExit: { reason: string; code: number | null } | null;
}
interface ServiceView {
  name: string;
  programs: { name: string; desired: number; running: number; instances: InstanceView[]; pending: { id: string; reason: string }[] }[];
}
interface PsRow {
  worker: string;
  pid: number;
  app: string;
  state: string;
  startedAt: string;
  exit: { reason: string; endedAt: string } | null;
  instance?: { id: string; restarts: number };
}

function script(dir: string, name: string, body: string): string {
  const file = path.join(dir, name);
  writeFileSync(file, `#!/bin/sh\n${body}\n`);
  chmodSync(file, 0o755);
  return file;
}

const status = async (master: Master, name: string): Promise<ServiceView> => (await master.execJson<ServiceView[]>(`status ${name}`))[0]!;
const program = (s: ServiceView, name: string) => s.programs.find((p) => p.name === name)!;
const running = async (master: Master): Promise<PsRow[]> => (await master.execJson<PsRow[]>('ps all')).filter((r) => r.exit === null);

describe('services', () => {
  test('apply places replicas as predicted, status matches ps, re-applying does nothing, and all or nothing keeps the old version', async () => {
    const master = await startMaster();
    startWorker(master, { name: 'w1', args: ['--cpus', '4'] });
    startWorker(master, { name: 'w2', args: ['--cpus', '2'] });
    startWorker(master, { name: 'w3', args: ['--cpus', '2'] });
    await waitForAvailable(master, 3);
    const dir = tempDir();
    copyFileSync('/bin/sleep', path.join(dir, 'sleeper'));
    chmodSync(path.join(dir, 'sleeper'), 0o755);
    script(dir, 'broken', 'echo "encoder: cannot open /dev/snd" >&2\nexit 1');
    const file = path.join(dir, 'media.yaml');
    const write = (encoder: string): void =>
      writeFileSync(
        file,
        [
          'name: media',
          'programs:',
          '  - name: mixer',
          '    path: ./sleeper',
          '    args: [600]',
          '    replicas: 2',
          '    resources: { cpus: 1 }',
          '    healthy: { after: 300ms }',
          '  - name: encoder',
          `    path: ${encoder}`,
          '    args: ["601"]',
          '    resources: { cpus: 2 }',
          '    healthy: { after: 300ms }',
          '',
        ].join('\n'),
      );
    write('./sleeper');

    const dry = await master.exec(`apply ${file} --dry-run`);
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout).toMatch(/plan for service media:\n {2}\+ mixer +add +2 to start/);
    expect(dry.stdout).toContain('(dry run: nothing was changed)');
    expect(await running(master)).toEqual([]);

    const applied = await master.exec(`apply ${file}`);
    expect(applied.code, applied.stderr).toBe(0);
    expect(applied.stdout).toContain('service media is running as described');
    // Spread first (mixer's two replicas on two workers), then the most room (w1 offers 4 CPUs).
    const s = await status(master, 'media');
    expect(program(s, 'mixer').instances.map((i) => [i.worker, i.state])).toEqual([
      ['w1', 'running'],
      ['w2', 'running'],
    ]);
    expect(program(s, 'encoder').instances.map((i) => [i.worker, i.state])).toEqual([['w1', 'running']]);
    const ps = await running(master);
    const byInstance = new Map(ps.map((r) => [r.instance?.id, r]));
    for (const p of s.programs)
      for (const i of p.instances) {
        expect(byInstance.get(i.id)).toMatchObject({ worker: i.worker, pid: i.pid });
      }
    expect(ps).toHaveLength(3);

    const again = await master.exec(`apply ${file}`);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain('service media is unchanged; nothing to do');

    // A new encoder that exits at once: the apply fails naming it, and the old version runs on with the same pids.
    write('./broken');
    const failed = await master.exec(`apply ${file}`);
    expect(failed.code).toBe(1);
    expect(failed.stderr).toMatch(
      /^error: media\/encoder on w\d ended: exited with code 1\n {2}last lines of its log:\n {4}encoder: cannot open \/dev\/snd\nnothing of this apply is left running; the previous version runs on untouched\n$/,
    );
    const after = await running(master);
    expect(after.map((r) => r.pid).sort()).toEqual(ps.map((r) => r.pid).sort());
    expect((await status(master, 'media')).programs.map((p) => p.instances.map((i) => i.pid))).toEqual(s.programs.map((p) => p.instances.map((i) => i.pid)));

    // A changed file rolls out: new instances healthy first, then the old ones stop.
    write('./sleeper');
    writeFileSync(file, `${(await import('node:fs')).readFileSync(file, 'utf8').replace('args: [600]', 'args: [700]')}`);
    const rolled = await master.execJson<{ started: unknown[]; stopped: unknown[]; plan: { program: string; action: string }[] }>(`apply ${file}`);
    expect(rolled.plan.map((p) => [p.program, p.action])).toEqual([
      ['mixer', 'update'],
      ['encoder', 'unchanged'],
    ]);
    expect(rolled.started).toHaveLength(2);
    expect(rolled.stopped).toHaveLength(2);
    const now = await running(master);
    expect(now).toHaveLength(3);
    expect(now.filter((r) => r.app.startsWith('media.mixer.')).every((r) => !ps.some((old) => old.pid === r.pid))).toBe(true);

    const down = await master.exec('teardown media');
    expect(down.code, down.stderr).toBe(0);
    expect(await running(master)).toEqual([]);
    expect((await master.exec('status')).stdout).toContain('no services');
  });

  test('a bad service file gets one line per problem, with its line, and changes nothing', async () => {
    const master = await startMaster();
    const dir = tempDir();
    const file = path.join(dir, 'bad.yaml');
    writeFileSync(
      file,
      [
        'name: media',
        'programs:',
        '  - name: mixer',
        '    path: ./x',
        '    replcas: 2',
        '    restart: { policy: sometimes, window: forever }',
        '  - name: enc',
        '',
      ].join('\n'),
    );
    const r = await master.exec(`apply ${file}`);
    expect(r.code).toBe(1);
    expect(r.stderr.split('\n').filter(Boolean).sort()).toEqual(
      [
        `error: ${file}:6: programs.0.restart.policy: Invalid option: expected one of "always"|"on-failure"|"never"`,
        `${file}:6: programs.0.restart.window: expected a duration such as 500ms, 10s, 5m or 1h, got "forever"`,
        `${file}:5: programs.0.replcas: unknown field`,
        `${file}:7: programs.1.path: missing (it is required)`,
      ].sort(),
    );
    expect((await master.execJson<unknown[]>('status')).length).toBe(0);
  });

  test('restart policies run on the worker: growing back-off then failed; always restarts an exit 0; never does not; an agent restart keeps them', async () => {
    const master = await startMaster();
    const w1 = startWorker(master, { name: 'w1' });
    await waitForAvailable(master, 1);
    const dir = tempDir();
    script(dir, 'crash', 'sleep 0.2\nexit 3');
    script(dir, 'finish', 'sleep 0.2\nexit 0');
    const file = path.join(dir, 'policies.yaml');
    writeFileSync(
      file,
      JSON.stringify({
        name: 'policies',
        programs: [
          { name: 'crash', path: './crash', restart: { policy: 'on-failure', maxRestarts: 4, window: '1m', backoff: ['200ms', '5s'] }, healthy: { after: 0 } },
          {
            name: 'again',
            path: './finish',
            restart: { policy: 'always', maxRestarts: 1000, window: '1m', backoff: ['100ms', '100ms'] },
            healthy: { after: 0 },
          },
          { name: 'once', path: './finish', restart: { policy: 'never' }, healthy: { after: 0 } },
        ],
      }),
    );
    const r = await master.exec(`apply ${file}`);
    expect(r.code, r.stderr).toBe(0);

    const failed = await waitFor(
      async () => {
        const i = program(await status(master, 'policies'), 'crash').instances[0]!;
        return i.state === 'failed' ? i : null;
      },
      'the crashing program to be marked failed',
      20_000,
      100,
    );
    expect(failed.restarts).toBe(4);
    expect(failed.lastExit?.reason).toBe('exited with code 3');
    // One launch and four restarts, each after a longer wait than the one before (200, 400, 800,
    // 1600 ms), from the agent's record of one run's end to its record of the next one's start.
    // Held to those as floors, less 20 ms: node's timers count from the loop's cached time, which
    // can be a few ms behind the clock the end was read from. A busy machine only adds to a wait,
    // and a back-off that did not grow fails by far. (Start to start was once short by 35 ms: a
    // start is recorded when the spawn is answered, late by as much as the machine is busy.)
    const crashes = (await master.execJson<PsRow[]>('ps all'))
      .filter((p) => p.app.startsWith('policies.crash.'))
      .sort((a, b) => Date.parse(a.startedAt) - Date.parse(b.startedAt));
    expect(crashes).toHaveLength(5);
    const waits = crashes.slice(1).map((p, i) => Date.parse(p.startedAt) - Date.parse(crashes[i]!.exit!.endedAt));
    waits.forEach((wait, i) => expect(wait, `waits ${waits.join(', ')}`).toBeGreaterThanOrEqual(200 * 2 ** i - 20));

    const once = program(await status(master, 'policies'), 'once').instances[0]!;
    await waitFor(async () => program(await status(master, 'policies'), 'once').instances[0]!.state === 'exited', 'never to leave it exited');
    expect(once.restarts).toBe(0);
    const before = await waitFor(async () => {
      const n = program(await status(master, 'policies'), 'again').instances[0]!.restarts;
      return n >= 3 ? n : null;
    }, 'always to restart an exit 0');

    // The agent goes away and comes back: the instance keeps its count and its policy.
    await w1.kill('SIGKILL');
    startWorker(master, { name: 'w1', stateDir: w1.stateDir });
    await waitFor(async () => {
      const i = program(await status(master, 'policies'), 'again').instances[0];
      return i && i.restarts > before + 2;
    }, 'restarts to go on after the agent restarted');
    expect((await master.exec('teardown policies')).code).toBe(0);
  });

  test('queue: an instance without room waits with its reason, and starts when a worker with room joins', async () => {
    const master = await startMaster();
    startWorker(master, { name: 'w1', args: ['--cpus', '2'] });
    startWorker(master, { name: 'w2', args: ['--cpus', '2'] });
    await waitForAvailable(master, 2);
    const dir = tempDir();
    copyFileSync('/bin/sleep', path.join(dir, 'sleeper'));
    const file = path.join(dir, 'big.yaml');
    writeFileSync(
      file,
      'name: big\nprograms:\n  - name: solver\n    path: ./sleeper\n    args: ["600"]\n    replicas: 3\n    resources: { cpus: 2 }\n    healthy: { after: 0s }\n',
    );
    const r = await master.exec(`apply ${file}`);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain('service big applied; 1 instance(s) wait in the queue');
    expect(r.stderr).toMatch(/^pending big\.solver\.[0-9a-f]{8}\.2: needs 2 CPUs; the roomiest available worker \(w[12]\) has 0 CPUs and [\d.]+ GiB free\n$/);
    const queue = await master.execJson<{ id: string; reason: string }[]>('queue');
    expect(queue).toHaveLength(1);
    expect(queue[0]!.reason).toMatch(/^needs 2 CPUs/);
    expect(program(await status(master, 'big'), 'solver').running).toBe(2);

    startWorker(master, { name: 'w3', args: ['--cpus', '2'] });
    const started = await waitFor(
      async () => {
        const p = program(await status(master, 'big'), 'solver');
        return p.running === 3 ? p : null;
      },
      'the queued instance to start on the new worker',
      15_000,
    );
    expect(started.instances.map((i) => i.worker).sort()).toEqual(['w1', 'w2', 'w3']);
    expect(await master.execJson<unknown[]>('queue')).toEqual([]);

    // scale down stops the extra ones; restart replaces each instance, one at a time.
    const scaled = await master.execJson<ServiceView>('scale big/solver 1');
    expect(program(scaled, 'solver')).toMatchObject({ desired: 1, running: 1 });
    expect((await running(master)).length).toBe(1);
    const pid = program(scaled, 'solver').instances[0]!.pid;
    const restarted = await master.execJson<ServiceView>('restart big/solver');
    expect(program(restarted, 'solver').instances[0]!.pid).not.toBe(pid);
    expect(program(restarted, 'solver').running).toBe(1);
    expect((await master.exec('scale big/nothing 2')).stderr).toBe('error: service big has no program "nothing" (programs: solver)\n');
  });

  test('launch any places a direct launch on the worker with room, holding it until the process ends', async () => {
    const master = await startMaster();
    startWorker(master, { name: 'w1', args: ['--cpus', '2'] });
    startWorker(master, { name: 'w2', args: ['--cpus', '4'] });
    await waitForAvailable(master, 2);
    expect((await master.exec('launch any sleep --cpus 1')).stderr).toBe(
      'error: no available worker has app "sleep"; copy it first (copy all PATH --as sleep)\n',
    );
    await master.execJson('copy all /bin/sleep');
    const first = await master.execFirst<{ worker: string; pid: number }>('launch any sleep --cpus 3 -- 60');
    expect(first.worker).toBe('w2');
    const full = await master.exec('launch any sleep --cpus 3 -- 60');
    expect(full.code).toBe(1);
    expect(full.stderr).toMatch(/^error: no worker has room to launch sleep: needs 3 CPUs; the roomiest of w1, w2 \(w1\) has 2 CPUs and .* free\n$/);
    await master.execFirst(`kill w2 ${first.pid}`);
    await waitFor(async () => (await master.exec('launch any sleep --cpus 3 -- 60')).code === 0, 'the room to be free again once the process ended');
  });

  test('on: all runs one instance on every available worker; re-applying it changes nothing; a worker that joins later gets one', async () => {
    const master = await startMaster();
    startWorker(master, { name: 'w1' });
    startWorker(master, { name: 'w2' });
    await waitForAvailable(master, 2);
    const dir = tempDir();
    copyFileSync('/bin/sleep', path.join(dir, 'sleeper'));
    const file = path.join(dir, 'agent.yaml');
    writeFileSync(file, 'name: agent\nprograms:\n  - { name: probe, path: ./sleeper, args: ["600"], on: all, healthy: { after: 0s } }\n');
    const first = await master.exec(`apply ${file}`);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toMatch(/\+ probe +add +2 to start/);
    const once = program(await status(master, 'agent'), 'probe').instances;
    expect(once.map((i) => i.worker).sort()).toEqual(['w1', 'w2']);
    const again = await master.exec(`apply ${file}`);
    expect(again.stdout).toContain('service agent is unchanged; nothing to do');
    expect(program(await status(master, 'agent'), 'probe').instances.map((i) => i.pid)).toEqual(once.map((i) => i.pid));

    // Joining starts a pass that looks at the new worker (not only the once-a-second sweep).
    startWorker(master, { name: 'w3' });
    const three = await waitFor(async () => {
      const p = program(await status(master, 'agent'), 'probe');
      return p.instances.length === 3 && p.instances.every((i) => i.state === 'running') ? p.instances : null;
    }, 'an instance on the worker that joined');
    expect(three.map((i) => i.worker).sort()).toEqual(['w1', 'w2', 'w3']);
    expect(three.filter((i) => i.worker !== 'w3').map((i) => i.pid)).toEqual(once.map((i) => i.pid));
  });

  test('the master killed with SIGKILL and started again re-adopts every instance (same pids); one killed meanwhile was restarted by its worker', async () => {
    const stateDir = tempDir();
    const master = await startMaster({ stateDir });
    startWorker(master, { name: 'w1' });
    startWorker(master, { name: 'w2' });
    await waitForAvailable(master, 2);
    const dir = tempDir();
    copyFileSync('/bin/sleep', path.join(dir, 'sleeper'));
    const file = path.join(dir, 'api.yaml');
    writeFileSync(
      file,
      'name: api\nprograms:\n  - name: web\n    path: ./sleeper\n    args: ["600"]\n    replicas: 2\n    restart: { backoff: [100ms, 1s] }\n    healthy: { after: 0s }\n',
    );
    expect((await master.exec(`apply ${file}`)).code).toBe(0);
    const before = program(await status(master, 'api'), 'web').instances;

    await master.kill('SIGKILL');
    process.kill(before[0]!.pid!, 'SIGKILL');
    const again = await startMaster({ stateDir, port: master.port });
    await waitForAvailable(again, 2);
    const after = await waitFor(async () => {
      const p = program(await status(again, 'api'), 'web');
      return p.instances.every((i) => i.state === 'running') ? p.instances : null;
    }, 'both instances running');
    expect(after[1]!.pid).toBe(before[1]!.pid);
    expect(after[0]!.pid).not.toBe(before[0]!.pid);
    expect(after[0]!.restarts).toBe(1);
    // Nothing runs twice: exactly the two instances.
    expect((await running(again)).map((r) => r.instance?.id).sort()).toEqual(before.map((i) => i.id).sort());

    // Killed mid-way through an update (new instances started, not yet healthy): after the restart the
    // update is rolled back — the old instances run on, the new ones are stopped.
    writeFileSync(file, 'name: api\nprograms:\n  - name: web\n    path: ./sleeper\n    args: ["700"]\n    replicas: 2\n    healthy: { after: 5s }\n');
    const applying = again.exec(`apply ${file}`);
    await waitFor(async () => (await running(again)).length === 4, 'the new instances to start');
    await again.kill('SIGKILL');
    await applying;
    const third = await startMaster({ stateDir, port: master.port });
    await waitForAvailable(third, 2);
    await waitFor(async () => (await running(third)).length === 2, 'the half-done update to be rolled back', 15_000);
    expect((await running(third)).map((r) => r.pid).sort()).toEqual(after.map((i) => i.pid).sort());
  });
});
