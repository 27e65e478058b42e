import { spawn } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, test } from 'vitest';
import type { ProcessInfo, UsageInfo } from '@drover/protocol';
import {
  pidAlive,
  type Master,
  MASTER_CLI,
  mountTmpfs,
  tempDir,
  startCluster,
  startMaster,
  startProcess,
  startWorker,
  waitFor,
  waitForAvailable,
  CAN_MOUNT,
} from '../helpers/cluster.js';
import { buildFixtures, fileSha256 as sha, haveGcc, writeBigFile, type Fixtures } from '../helpers/fixtures.js';
import { startScriptedMaster } from '../helpers/scripted-master.js';

const gcc = haveGcc();
if (!gcc) console.warn('lifecycle tests SKIPPED: gcc is not installed, so the C fixture programs cannot be built');

/** Rows of ps --json and usage --json: the wire shapes, with the worker each came from. */
type Proc = ProcessInfo & { worker: string };
type Usage = UsageInfo & { worker: string };
type CopyResult = {
  worker: string;
  ok: boolean;
  files: { path: string; dest: string; bytes: number; sha256: string; sent: boolean }[];
  error: { code: string } | null;
  warnings: string[];
}[];

async function psOf(master: Master, pid: number): Promise<Proc> {
  const rows = await master.execJson<Proc[]>('ps');
  const p = rows.find((r) => r.pid === pid);
  if (!p) throw new Error(`pid ${pid} not in ps`);
  return p;
}

function vmHwm(pid: number): number {
  return Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024;
}

describe.skipIf(!gcc)('app lifecycle', () => {
  let fx: Fixtures;
  beforeAll(() => {
    fx = buildFixtures(tempDir('drover-fixtures-', 'file'));
  });

  test('copy ships the non-system library, skips what is present, and the worker loads it', async () => {
    const { master, workers } = await startCluster(2);
    const first = await master.execJson<CopyResult>(`copy all ${fx.usesLib} --as greeter`);
    expect(first.map((r) => r.worker)).toEqual(['w1', 'w2']);
    for (const r of first) {
      expect(r.ok).toBe(true);
      expect(r.files.map((f) => [f.dest, f.sent])).toEqual([
        ['uses-lib', true],
        ['lib/libgreet.so.1', true],
      ]);
      expect(r.files.every((f) => !/libc\.so|ld-linux/.test(f.dest))).toBe(true);
      expect(r.files[1]!.sha256).toBe(sha(path.join(fx.libDir, 'libgreet.so.1')));
    }
    const appDir = path.join(workers[0]!.stateDir, 'apps/greeter/current');
    expect(statSync(path.join(appDir, 'uses-lib')).mode & 0o111).not.toBe(0);
    expect(sha(path.join(appDir, 'lib/libgreet.so.1'))).toBe(sha(path.join(fx.libDir, 'libgreet.so.1')));

    const again = await master.exec(`copy w1 ${fx.usesLib} --as greeter`);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain('w1: greeter already present');
    expect(again.stdout.match(/already present/g)).toHaveLength(3);

    // Take the library away from where the rpath points: the app must now load the worker's copy.
    renameSync(fx.libDir, `${fx.libDir}.away`);
    try {
      const launched = await master.execFirst<{ worker: string; app: string; pid: number; state: string }>('launch w1 greeter');
      expect(launched).toMatchObject({ worker: 'w1', app: 'greeter', state: 'running' });
      await waitFor(async () => (await master.exec(`logs w1 ${launched.pid}`)).stdout.includes('greet=42'), 'the app to print what the library returns');
      expect((await psOf(master, launched.pid)).state).toMatch(/running|sleeping/);
      await master.execFirst(`kill w1 ${launched.pid}`);
    } finally {
      renameSync(`${fx.libDir}.away`, fx.libDir);
    }
  });

  test('a library missing on the worker is a clear launch error naming it and the worker', async () => {
    const { master, workers } = await startCluster(1);
    await master.execJson(`copy w1 ${fx.usesLib} --as greeter`);
    // Simulate a worker that lacks the library (and no rpath to fall back on).
    renameSync(fx.libDir, `${fx.libDir}.away`);
    try {
      writeFileSync(path.join(workers[0]!.stateDir, 'apps/greeter/current/lib/libgreet.so.1'), 'not a library');
      const r = await master.exec('launch w1 greeter');
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/^error on w1: libgreet\.so\.1 cannot be loaded on w1 \(file too short\): copy it with --lib\n$/);
      // and when it is not there at all
      rmSync(path.join(workers[0]!.stateDir, 'apps/greeter/current/lib/libgreet.so.1'));
      const gone = await master.exec('launch w1 greeter');
      expect(gone.stderr).toMatch(/^error on w1: libgreet\.so\.1 not found on w1: copy it with --lib\n$/);
      const j = await master.exec('launch w1 greeter --json');
      expect(j.code).toBe(1);
      expect(JSON.parse(j.stdout)).toEqual([
        { worker: 'w1', ok: false, error: { code: 'LIBRARY_MISSING', message: expect.stringContaining('libgreet.so.1') } },
      ]);
    } finally {
      renameSync(`${fx.libDir}.away`, fx.libDir);
    }
  });

  test('stop --timeout escalates to SIGKILL for a program that ignores SIGINT; plain stop and kill report how', async () => {
    const { master } = await startCluster(1);
    await master.execJson(`copy w1 ${fx.ignoreSigint}; copy w1 ${fx.ticker}`.split(';')[0]!);
    await master.execJson(`copy w1 ${fx.ticker}`);
    const stubborn = await master.execFirst<{ pid: number }>('launch w1 ignore-sigint');
    await waitFor(async () => (await master.exec(`logs w1 ${stubborn.pid}`)).stdout.includes('ready'), 'ready');

    const soft = await master.exec(`stop w1 ${stubborn.pid} --timeout 1`);
    expect(soft.code).toBe(0);
    expect(soft.stdout).toContain('killed by drover (SIGKILL after the stop timeout)');
    const p = await psOf(master, stubborn.pid);
    expect(p.state).toBe('dead');
    expect(p.exit).toMatchObject({ signal: 'SIGKILL', signalledBy: 'stop', forced: true });
    expect(pidAlive(stubborn.pid)).toBe(false);

    const polite = await master.execFirst<{ pid: number }>('launch w1 ticker -- 1000');
    await waitFor(async () => (await master.exec(`logs w1 ${polite.pid}`)).stdout.includes('tick 1'), 'ticking');
    const stopped = await master.execFirst<{ exit: Proc['exit'] }>(`stop w1 ${polite.pid}`);
    expect(stopped.exit).toMatchObject({
      code: 0,
      signal: null,
      signalledBy: 'stop',
      forced: false,
      reason: "exited with code 0 after drover's SIGINT (stop)",
    });
    expect((await master.exec(`logs w1 ${polite.pid} --tail 1`)).stdout).toBe('interrupted\n');

    const victim = await master.execFirst<{ pid: number }>('launch w1 ticker -- 1000');
    const killed = await master.execFirst<{ exit: Proc['exit'] }>(`kill w1 ${victim.pid}`);
    expect(killed.exit).toMatchObject({ signal: 'SIGKILL', signalledBy: 'kill', reason: 'killed by drover (SIGKILL)' });
    const twice = await master.exec(`kill w1 ${victim.pid}`);
    expect(twice.stdout).toContain('had already ended');

    expect((await master.exec('stop w1 999999')).stderr).toMatch(/^error on w1: no process 999999 was launched by drover on w1/);
    expect((await master.exec('stop w1 0')).stderr).toMatch(/PID must be a positive whole number/);
  });

  test('usage reports CPU time and a peak RSS of at least what the program touched', async () => {
    const { master } = await startCluster(1);
    await master.execJson(`copy w1 ${fx.alloc}`);
    const { pid } = await master.execFirst<{ pid: number }>('launch w1 alloc -- 96 1');
    await waitFor(async () => (await master.exec(`logs w1 ${pid}`)).stdout.includes('touched 96 MiB'), 'allocation');
    await waitFor(async () => (await psOf(master, pid)).state === 'dead', 'the program to end');
    const rows = await master.execJson<Usage[]>('usage w1');
    const u = rows.find((r) => r.pid === pid)!;
    expect(u.maxRssBytes).toBeGreaterThanOrEqual(96 * 1024 * 1024);
    expect(u.cpuUserSeconds + u.cpuSystemSeconds).toBeGreaterThan(0);
    expect(Object.keys(u)).toEqual(
      expect.arrayContaining(['worker', 'pid', 'app', 'cpuUserSeconds', 'cpuSystemSeconds', 'cpuPercent', 'rssBytes', 'maxRssBytes']),
    );
    const human = await master.exec('usage');
    expect(human.stdout).toMatch(/total \(1\)/);
  });

  test('usage --live lists only what still runs, and the agent answers only that when asked for it', async () => {
    const { master, workers } = await startCluster(1);
    await master.execJson(`copy w1 ${fx.ticker}`);
    await master.execJson('copy w1 /bin/true');
    const ended: number[] = [];
    for (let i = 0; i < 3; i++) ended.push((await master.execFirst<{ pid: number }>('launch w1 true')).pid);
    const { pid } = await master.execFirst<{ pid: number }>('launch w1 ticker -- 1000');
    for (const p of ended) await waitFor(async () => (await psOf(master, p)).state === 'dead', 'true to end');
    expect((await master.execJson<Usage[]>('usage w1')).map((u) => u.pid).sort()).toEqual([...ended, pid].sort());
    expect((await master.execJson<Usage[]>('usage w1 --live')).map((u) => u.pid)).toEqual([pid]);
    expect((await master.exec('usage w1 --live')).stdout).toMatch(/total \(1\)/);

    // The agent's own answer (the master drops the dead too, for agents from before --live): the
    // same agent, restarted against a master the test drives, re-adopts the ticker.
    await workers[0]!.kill();
    const scripted = await startScriptedMaster();
    startWorker(scripted, { name: 'w1', stateDir: workers[0]!.stateDir });
    await scripted.next((m): m is Extract<typeof m, { type: 'heartbeat' }> => m.type === 'heartbeat', 'a heartbeat');
    scripted.send({ v: 1, type: 'usage', id: 7, live: true });
    scripted.send({ v: 1, type: 'usage', id: 8 });
    const pids = async (id: number): Promise<number[]> => {
      const r = await scripted.result(id);
      if (!r.ok) throw new Error(r.error.message);
      return (r.data as { processes: UsageInfo[] }).processes.map((u) => u.pid).sort();
    };
    expect(await pids(7)).toEqual([pid]);
    expect(await pids(8)).toEqual([...ended, pid].sort());
    process.kill(-pid, 'SIGKILL');
  });

  test('usage --live with nothing running says so', async () => {
    const { master } = await startCluster(1);
    expect((await master.exec('usage w1 --live')).stdout).toBe('no processes running\n');
    expect((await master.exec('usage w1')).stdout).toBe('no processes launched yet\n');
  });

  test('a segfault is reported with the signal by name', async () => {
    const { master } = await startCluster(1);
    await master.execJson(`copy w1 ${fx.segfault}`);
    const { pid } = await master.execFirst<{ pid: number }>('launch w1 segfault');
    const p = await waitFor(async () => {
      const r = await psOf(master, pid);
      return r.state === 'dead' ? r : null;
    }, 'the crash');
    expect(p.exit).toMatchObject({ code: null, signal: 'SIGSEGV', signalledBy: null });
    expect(p.exit!.reason).toMatch(/^killed by SIGSEGV \(segmentation fault\)/);
    expect((await master.exec('ps w1')).stdout).toContain('SIGSEGV');
  });

  test('logs: whole, --tail, --follow until the process ends, and --out to a file', async () => {
    const { master } = await startCluster(1);
    await master.execJson(`copy w1 ${fx.ticker}`);
    const { pid } = await master.execFirst<{ pid: number }>('launch w1 ticker -- 8');
    // --follow started early streams every line as it comes and returns when the process ends.
    const followed = await master.exec(`logs w1 ticker --follow`);
    expect(followed.code).toBe(0);
    expect(followed.stdout).toBe(`${Array.from({ length: 8 }, (_, i) => `tick ${i}`).join('\n')}\ndone\n`);
    expect((await master.exec(`logs w1 ${pid} --tail 2`)).stdout).toBe('tick 7\ndone\n');
    const outDir = tempDir();
    const saved = await master.exec(`logs w1 ${pid} --out ticker.log`.replace('ticker.log', path.join(outDir, 'ticker.log')));
    expect(saved.stdout).toMatch(/^saved .* of the log of ticker pid \d+ on w1 to /);
    expect(readFileSync(path.join(outDir, 'ticker.log'), 'utf8')).toBe(followed.stdout);
    expect(readdirSync(outDir)).toEqual(['ticker.log']);
    const asJson = await master.execJson<{ text: string; bytes: number }>(`logs w1 ${pid} --tail 1`);
    expect(asJson).toMatchObject({ text: 'done\n', bytes: 5 });
    expect((await master.exec('logs w1 nosuchapp')).stderr).toMatch(/never launched on w1/);

    // Ctrl-C ends a --follow of a process that does not end, keeping what arrived.
    const long = await master.execFirst<{ pid: number }>('launch w1 ticker -- 100000');
    const follower = startProcess(process.execPath, [MASTER_CLI, 'exec', `logs w1 ${long.pid} --follow`, '--state-dir', master.stateDir]);
    await waitFor(() => follower.stdout().includes('tick 2\n'), 'followed lines', 10_000, 10);
    follower.child.kill('SIGINT');
    expect((await follower.exited).code).toBe(130);
    expect(follower.stdout()).toMatch(/^tick 0\ntick 1\ntick 2\n/);
    expect((await psOf(master, long.pid)).state).toMatch(/running|sleeping/);
  });

  test('logs to a slow reader pace the worker: neither the master nor master exec buffer the log', async () => {
    const { master } = await startCluster(1);
    const text = path.join(tempDir(), 'lines.txt');
    const line = 'a line of log text, as an app would write it, 64 bytes long....\n';
    writeFileSync(text, line.repeat(128 * 16384)); // 128 MiB
    await master.execJson('copy w1 /bin/dd');
    const { pid } = await master.execFirst<{ pid: number }>(`launch w1 dd -- if=${text} bs=1M status=none`);
    await waitFor(async () => (await psOf(master, pid)).state === 'dead', 'a 128 MiB log to be written');
    const reader = spawn(process.execPath, [MASTER_CLI, 'exec', `logs w1 ${pid}`, '--state-dir', master.stateDir], { stdio: ['ignore', 'pipe', 'pipe'] });
    reader.stdout.pause();
    const masterBefore = vmHwm(master.pid);
    // Read nothing for a while: the pipe fills, and everything upstream should wait for it.
    await new Promise((r) => setTimeout(r, 1500));
    const grew = { master: vmHwm(master.pid) - masterBefore, client: vmHwm(reader.pid!) };
    let bytes = 0;
    reader.stdout.on('data', (d: Buffer) => (bytes += d.length));
    reader.stdout.resume();
    const code = await new Promise<number | null>((resolve) => reader.on('close', resolve));
    expect(code).toBe(0);
    expect(bytes).toBe(128 * 1024 * 1024);
    // Unpaced, one side or the other would hold most of the 128 MiB after 1.5 s of not reading.
    expect(grew.master).toBeLessThan(48 * 1024 * 1024);
    expect(grew.client).toBeLessThan(96 * 1024 * 1024);
  });

  test('a copy of a file over 100 MiB keeps the worker and master memory flat', async () => {
    const { master, workers } = await startCluster(1);
    const dir = tempDir();
    const small = path.join(dir, 'small.bin');
    const big = path.join(dir, 'big.bin');
    writeBigFile(small, 64);
    writeBigFile(big, 320);
    const worker = workers[0]!;
    const peak0 = { worker: vmHwm(worker.pid), master: vmHwm(master.pid) };
    await master.execJson(`copy w1 ${small} --as small`);
    const peak1 = { worker: vmHwm(worker.pid), master: vmHwm(master.pid) };
    const r = await master.execJson<CopyResult>(`copy w1 ${big} --as big`);
    const peak2 = { worker: vmHwm(worker.pid), master: vmHwm(master.pid) };
    const want = sha(big);
    expect(r[0]!.files[0]).toMatchObject({ bytes: 320 * 1024 * 1024, sent: true, sha256: want });
    expect(sha(path.join(worker.stateDir, 'apps/big/current/big.bin'))).toBe(want);
    const MiB = 1024 * 1024;
    for (const side of ['worker', 'master'] as const) {
      // Flat: memory that scaled with the file would rise by the 256 MiB the big file adds.
      // The peak moves with GC timing (~50 MiB), never with size: it stays well under that.
      expect(peak2[side] - peak1[side], `${side} peak growth from 64 to 320 MiB`).toBeLessThan(96 * MiB);
      expect(peak2[side] - peak0[side], `${side} peak growth overall`).toBeLessThan(176 * MiB);
    }
  });

  test.skipIf(!CAN_MOUNT)(
    'copy all: a worker whose disk fills gets an error entry and keeps its old version; the others get the new one (needs root for tmpfs)',
    async () => {
      const small = mountTmpfs(24)!;
      const { master, workers } = await startCluster(1);
      startWorker(master, { name: 'tiny', stateDir: small });
      await waitForAvailable(master, 2);
      const dir = tempDir();
      const app = path.join(dir, 'payload');
      writeBigFile(app, 2, 1);
      const v1 = sha(app);
      await master.execJson(`copy all ${app}`);
      writeBigFile(app, 40, 2);
      const r = await master.exec(`copy all ${app} --json`);
      expect(r.code).toBe(1);
      const results = JSON.parse(r.stdout) as CopyResult;
      expect(results.find((x) => x.worker === 'w1')).toMatchObject({ ok: true, error: null });
      expect(results.find((x) => x.worker === 'tiny')).toMatchObject({
        ok: false,
        error: { code: 'NO_SPACE', message: 'tiny ran out of disk space receiving payload; the previous version is kept' },
      });
      expect(sha(path.join(workers[0]!.stateDir, 'apps/payload/current/payload'))).toBe(sha(app));
      expect(sha(path.join(small, 'apps/payload/current/payload'))).toBe(v1);
      await waitFor(() => readdirSync(path.join(small, 'staging')).length === 0, 'the partial file on tiny to be removed');
      const human = await master.exec(`copy all ${app}`);
      expect(human.stdout).toContain('w1: payload already present');
      expect(human.code).toBe(1);
      expect(human.stderr).toContain('error on tiny: tiny ran out of disk space receiving payload');
    },
  );

  test('a worker that dies mid-copy fails that copy with its name, and the master carries on', async () => {
    const { master, workers } = await startCluster(1);
    const app = path.join(tempDir(), 'payload');
    writeBigFile(app, 400, 3);
    const copying = master.exec(`copy w1 ${app}`);
    const staging = path.join(workers[0]!.stateDir, 'staging');
    await waitFor(() => readdirSync(staging).some((f) => statSync(path.join(staging, f)).size > 0), 'the copy to be under way', 20_000, 5);
    await workers[0]!.kill('SIGKILL');
    const r = await copying;
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error on w1: worker w1 disconnected/);
    expect((await master.execJson<unknown[]>('workers')).length).toBe(1);
  });

  test('an interrupted copy keeps the previous version intact', async () => {
    const stateDir = tempDir();
    const master = await startMaster({ stateDir });
    const worker = startWorker(master, { name: 'w1' });
    await waitForAvailable(master, 1);
    const dir = tempDir();
    const app = path.join(dir, 'payload');
    writeBigFile(app, 2, 1);
    const v1 = sha(app);
    await master.execJson(`copy w1 ${app}`);
    writeBigFile(app, 400, 2);
    const copying = master.exec(`copy w1 ${app}`);
    const staging = path.join(worker.stateDir, 'staging');
    await waitFor(() => readdirSync(staging).some((f) => statSync(path.join(staging, f)).size > 8 * 1024 * 1024), 'the new version to be half-sent', 20_000, 5);
    await master.kill('SIGKILL');
    const r = await copying;
    expect(r.code).not.toBe(0);
    await waitFor(() => readdirSync(staging).length === 0, 'the partial file to be removed');
    const installed = path.join(worker.stateDir, 'apps/payload/current/payload');
    expect(sha(installed)).toBe(v1);
    const manifest = JSON.parse(readFileSync(path.join(worker.stateDir, 'apps/payload/current/.manifest.json'), 'utf8')) as { files: { sha256: string }[] };
    expect(manifest.files[0]!.sha256).toBe(v1);
    // The worker rejoins a new master and the new version then copies whole.
    const again = await startMaster({ stateDir, port: master.port });
    await waitForAvailable(again, 1);
    const done = await again.execJson<CopyResult>(`copy w1 ${app}`);
    expect(done[0]!.files[0]!.sent).toBe(true);
    expect(sha(installed)).toBe(sha(app));
  });

  test('delete refuses while the app runs, --force stops it first, and never leaves the app folder', async () => {
    const { master, workers } = await startCluster(1);
    await master.execJson(`copy w1 ${fx.usesLib} --as greeter`);
    const { pid } = await master.execFirst<{ pid: number }>('launch w1 greeter');
    const refused = await master.exec('delete w1 greeter');
    expect(refused.code).toBe(1);
    expect(refused.stderr).toBe(`error on w1: app "greeter" has running processes on w1: pid ${pid}; stop them first or use --force\n`);
    expect(existsSync(path.join(workers[0]!.stateDir, 'apps/greeter/current/uses-lib'))).toBe(true);
    const forced = await master.execJson<object[]>('delete w1 greeter --force');
    expect(forced).toEqual([{ worker: 'w1', ok: true, error: null, app: 'greeter', removed: ['uses-lib', 'lib/libgreet.so.1'], stopped: [pid] }]);
    expect(existsSync(path.join(workers[0]!.stateDir, 'apps/greeter'))).toBe(false);
    expect(existsSync(path.join(workers[0]!.stateDir, 'apps'))).toBe(true);
    expect(pidAlive(pid)).toBe(false);
    expect((await master.exec('delete w1 greeter')).stderr).toMatch(/app "greeter" is not on w1/);

    // Processes that ignore SIGINT are escalated together: one 5 s grace period, not one each.
    await master.execJson(`copy w1 ${fx.ignoreSigint}`);
    const a = await master.execFirst<{ pid: number }>('launch w1 ignore-sigint');
    const b = await master.execFirst<{ pid: number }>('launch w1 ignore-sigint');
    const started = Date.now();
    const both = await master.execJson<{ stopped: number[] }[]>('delete w1 ignore-sigint --force');
    expect(both[0]!.stopped.sort()).toEqual([a.pid, b.pid].sort());
    expect(Date.now() - started).toBeLessThan(9000);
    expect(pidAlive(a.pid) || pidAlive(b.pid)).toBe(false);
  });

  test('restarting the worker agent re-adopts a running app and remembers one that ended meanwhile', async () => {
    const master = await startMaster();
    const stateDir = tempDir();
    const first = startWorker(master, { name: 'w1', stateDir });
    await waitForAvailable(master, 1);
    await master.execJson(`copy w1 ${fx.ticker}`);
    const long = await master.execFirst<{ pid: number }>('launch w1 ticker -- 100000');
    const short = await master.execFirst<{ pid: number }>('launch w1 ticker -- 5');
    await first.kill('SIGKILL');
    expect(pidAlive(long.pid)).toBe(true);
    await waitFor(() => !pidAlive(short.pid), 'the short one to end while the agent is down');
    startWorker(master, { name: 'w1', stateDir });
    await waitFor(async () => ((await master.execJson<{ lastHeartbeatMs: number }[]>('workers'))[0]?.lastHeartbeatMs ?? Infinity) < 300, 'w1 back');
    const adopted = await psOf(master, long.pid);
    expect(adopted).toMatchObject({ state: expect.stringMatching(/running|sleeping/), adopted: true, exit: null });
    const ended = await psOf(master, short.pid);
    expect(ended.exit?.reason).toBe('ended while the agent was down; exit status unknown');
    const stop = await master.execFirst<{ exit: Proc['exit'] }>(`stop w1 ${long.pid}`);
    expect(stop.exit?.reason).toMatch(/ended after drover's SIGINT \(stop\)/);
    expect(pidAlive(long.pid)).toBe(false);
  });

  test('bad names, paths and files are refused with one line and change nothing', async () => {
    const { master, workers } = await startCluster(1);
    const cases: [string, RegExp][] = [
      [`copy w1 ${fx.ticker} --as ../x`, /^error: invalid app name "\.\.\/x"/],
      ['launch w1 ../x', /^error: invalid app name "\.\.\/x"/],
      ['logs w1 ../x', /^error: invalid app name/],
      ['delete w1 a/b', /^error: invalid app name/],
      ['copy w1 /no/such/file', /^error: no file at \/no\/such\/file \(ENOENT\)/],
      [`copy w1 ${fx.dir}`, /is not a regular file/],
      ['launch w1 nothing-here', /^error on w1: app "nothing-here" is not on w1: copy it first/],
      ['copy w7 /bin/true', /^error: unknown worker "w7" \(known workers: w1\)/],
    ];
    for (const [line, expected] of cases) {
      const r = await master.exec(line);
      expect(r.code, line).toBe(1);
      expect(r.stderr, line).toMatch(expected);
      expect(r.stderr.trim().split('\n'), line).toHaveLength(1);
    }
    const script = path.join(tempDir(), 'not-a-program');
    writeFileSync(script, 'just text\n', { mode: 0o755 });
    await master.execJson(`copy w1 ${script}`);
    expect((await master.exec('launch w1 not-a-program')).stderr).toMatch(/exec format error: not-a-program is neither an ELF binary nor a #! script/);
    expect(readdirSync(path.join(workers[0]!.stateDir, 'apps'))).toEqual(['not-a-program']);
  });
});
