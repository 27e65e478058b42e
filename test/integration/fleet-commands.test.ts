import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, test } from 'vitest';
import type { ProcessInfo } from '@drover/protocol';
import { MASTER_CLI, TOKEN, pidAlive, startCluster, startMaster, startWorker, tempDir, waitFor, waitForAvailable, type Master } from '../helpers/cluster.js';
import { joinRawWorker } from '../helpers/raw-worker.js';
import { buildFixtures, haveGcc, type Fixtures } from '../helpers/fixtures.js';

const gcc = haveGcc();
type Row = ProcessInfo & { worker: string; ok: true; error: null };
type Entry = { worker: string; ok: boolean; error: { code: string; message: string } | null; pid?: number };

async function live(master: Master, app: string): Promise<Row[]> {
  return (await master.execJson<Row[]>('ps')).filter((r) => r.app === app && r.exit === null);
}

describe.skipIf(!gcc)('commands on many workers (needs gcc for the fixture programs)', () => {
  let fx: Fixtures;
  beforeAll(() => {
    fx = buildFixtures(tempDir('drover-fixtures-', 'file'));
  });

  test('worker lists everywhere a worker is taken; stop and kill by app name; one entry shape for one worker and for all', async () => {
    const { master } = await startCluster(3);
    const copied = await master.execJson<{ worker: string }[]>(`copy w1,w3 ${fx.ticker}`);
    expect(copied.map((c) => c.worker)).toEqual(['w1', 'w3']);
    const one = await master.execJson<Entry[]>('launch w1 ticker -- 1000');
    expect(one).toEqual([expect.objectContaining({ worker: 'w1', ok: true, error: null, app: 'ticker', pid: expect.any(Number) })]);
    const two = await master.execJson<Entry[]>('launch w1,w3 ticker -- 1000');
    expect(two.map((e) => [e.worker, e.ok])).toEqual([
      ['w1', true],
      ['w3', true],
    ]);
    const rows = await master.execJson<Row[]>('ps w1,w3');
    expect(new Set(rows.map((r) => r.worker))).toEqual(new Set(['w1', 'w3']));
    expect(rows.every((r) => r.ok === true && r.error === null)).toBe(true);
    expect(await live(master, 'ticker')).toHaveLength(3);

    const stopped = await master.execJson<Entry[]>('stop all ticker');
    expect(stopped).toHaveLength(3);
    expect(stopped.every((e) => e.ok)).toBe(true);
    for (const e of stopped) expect(pidAlive(e.pid!)).toBe(false);
    const none = await master.exec('stop all ticker');
    expect(none.code).toBe(1);
    expect(none.stderr).toBe('error: no running process of app "ticker" on any worker\n');

    await master.execJson('launch w3 ticker -- 1000');
    const killed = await master.execJson<(Entry & { exit: { signal: string } })[]>('kill w3 ticker');
    expect(killed).toEqual([expect.objectContaining({ worker: 'w3', ok: true, exit: expect.objectContaining({ signal: 'SIGKILL' }) })]);
  });

  test('an unavailable worker under all is named, never skipped: an error entry, a line on stderr, exit status 1', async () => {
    // Longer heartbeats than the default 200 ms: on a loaded CI machine w1 itself could go
    // 400 ms unscheduled, and this test is about w2 alone being unavailable.
    const { master, workers } = await startCluster(2, { heartbeatMs: 600 });
    await master.execJson(`copy all ${fx.ticker}`);
    process.kill(workers[1]!.pid, 'SIGSTOP');
    try {
      await waitFor(
        async () => (await master.execJson<{ name: string; status: string }[]>('workers')).some((w) => w.status === 'unavailable'),
        'w2 unavailable',
      );
      const human = await master.exec('launch all ticker -- 1000');
      expect(human.code).toBe(1);
      expect(human.stdout, human.stderr).toMatch(/^w1: ticker launched, pid \d+/);
      expect(human.stderr).toMatch(/^error on w2: worker w2 is unavailable \(missed heartbeats; last one [\d.]+ s ago\)\n$/);
      const json = await master.exec('copy all /bin/true --json');
      expect(json.code).toBe(1);
      const entries = JSON.parse(json.stdout) as Entry[];
      expect(entries.map((e) => [e.worker, e.ok, e.error?.code ?? null])).toEqual([
        ['w1', true, null],
        ['w2', false, 'WORKER_UNAVAILABLE'],
      ]);
    } finally {
      process.kill(workers[1]!.pid, 'SIGCONT');
    }
  });

  test('a stop whose request is cancelled still escalates to SIGKILL on the worker', async () => {
    const { master, workers } = await startCluster(1);
    await master.execJson(`copy w1 ${fx.ignoreSigint}`);
    const { pid } = await master.execFirst<{ pid: number }>('launch w1 ignore-sigint');
    await waitFor(async () => (await master.exec(`logs w1 ${pid}`)).stdout.includes('ready'), 'ready');
    // The client goes away once the worker has sent SIGINT (a stop with a 1.5 s timeout): the master cancels the request.
    const client = spawn(process.execPath, [MASTER_CLI, 'exec', `stop w1 ${pid} --timeout 1.5`, '--state-dir', master.stateDir], { stdio: 'ignore' });
    // The worker journals the record it changed (processes.journal) before the table is written whole.
    const journal = path.join(workers[0]!.stateDir, 'processes.journal');
    const recorded = (): string => (existsSync(journal) ? readFileSync(journal, 'utf8') : '');
    await waitFor(() => recorded().includes('"signalled":{"by":"stop","signal":"SIGINT"'), 'the worker to send SIGINT', 10_000, 5);
    client.kill('SIGKILL');
    expect(pidAlive(pid)).toBe(true);
    await waitFor(() => !pidAlive(pid), 'SIGKILL after the stop timeout', 8000);
    const row = (await master.execJson<Row[]>('ps')).find((r) => r.pid === pid)!;
    expect(row.exit).toMatchObject({ signal: 'SIGKILL', signalledBy: 'stop', forced: true });
  });
});

describe('fleet-wide reads', () => {
  test('a worker that heartbeats but never answers is a TIMEOUT entry; the others are printed at once', async () => {
    const { master } = await startCluster(1);
    // A hand-made worker: it joins and heartbeats, and answers nothing.
    await joinRawWorker(master.address, { name: 'mute' });
    {
      await waitForAvailable(master, 2);
      const started = performance.now();
      const r = await master.exec('ps --timeout 1 --json');
      const took = performance.now() - started;
      expect(r.code).toBe(1);
      const entries = JSON.parse(r.stdout) as Entry[];
      expect(entries).toEqual([
        { worker: 'mute', ok: false, error: { code: 'TIMEOUT', message: 'worker mute did not answer within 1 s (use --timeout to wait longer)' } },
      ]);
      expect(took).toBeLessThan(10_000); // not the 60 s of a request's own timeout
      const human = await master.exec('usage --timeout 0.5');
      expect(human.stderr).toContain('error on mute: worker mute did not answer within 0.5 s');
    }
  });
});

describe('fleet-wide reads at scale', () => {
  test('ps over a dozen workers that never answer: one TIMEOUT entry each at the one deadline, and no listener warning on the master', async () => {
    const master = await startMaster();
    const names = Array.from({ length: 12 }, (_, i) => `mute${i + 1}`);
    for (const name of names) await joinRawWorker(master.address, { name });
    await waitForAvailable(master, names.length);
    const r = await master.exec('ps all --timeout 0.5 --json');
    expect(r.code).toBe(1);
    const entries = JSON.parse(r.stdout) as Entry[];
    expect(entries.map((e) => [e.worker, e.ok, e.error?.code])).toEqual(names.map((n) => [n, false, 'TIMEOUT']));
    // Twelve requests on one command's signal once hung twelve listeners on it (Node warns past 10).
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(master.stderr()).not.toContain('MaxListenersExceededWarning');
  });
});

describe('big answers', () => {
  test('ps over workers whose answers together pass a frame: every row arrives, in JSON and as a table', async () => {
    const { master } = await startCluster(2);
    await master.execJson('copy all /bin/true');
    // Each launch remembers its 6,000-character argument: ~0.6 MiB of rows a worker, over 1 MiB together.
    const arg = 'a'.repeat(6000);
    for (const w of ['w1', 'w2']) {
      const r = await master.exec(null, { input: `launch ${w} true -- ${arg}\n`.repeat(100), json: true });
      expect(r.code, r.stderr).toBe(0);
    }
    const json = await master.exec('ps', { json: true });
    expect(json.code, json.stderr).toBe(0);
    const rows = JSON.parse(json.stdout) as Row[];
    expect(rows.length).toBe(200);
    expect(rows.every((r) => r.ok && r.args[0] === arg)).toBe(true);
    const human = await master.exec('ps');
    expect(human.code, human.stderr).toBe(0);
    expect(human.stdout.split('\n').filter((l) => l.includes(arg)).length).toBe(200);
    // And both workers are still there: no answer broke a connection.
    expect((await master.execJson<{ status: string }[]>('workers')).map((w) => w.status)).toEqual(['available', 'available']);
  });
});

describe('an answer past a frame', () => {
  test('comes in parts: every row is printed, and both workers stay connected', async () => {
    const { master } = await startCluster(2);
    await master.execJson('copy all /bin/true');
    // 150 launches that each remember 10,000 characters of arguments: 1.5 MB of ps rows on w1.
    const r = await master.exec(null, { input: `launch w1 true -- ${'b'.repeat(10_000)}\n`.repeat(150), json: true });
    expect(r.code, r.stderr).toBe(0);
    await master.execJson('launch w2 true');
    const entries = await master.execJson<(Entry & { args?: string[] })[]>('ps');
    const w1 = entries.filter((e) => e.worker === 'w1');
    expect(w1).toHaveLength(150);
    expect(w1.every((e) => e.ok && e.args?.[0]?.length === 10_000)).toBe(true);
    expect(entries.filter((e) => e.worker === 'w2' && e.ok)).toHaveLength(1);
    expect((await master.execJson<{ status: string }[]>('workers')).map((w) => w.status)).toEqual(['available', 'available']);
  });
});

describe('the app environment', () => {
  test("an app sees its own --env and drover's variables, never the agent's token", async () => {
    const { master } = await startCluster(0);
    const stateDir = tempDir('drover-envw-');
    startWorker(master, { name: 'w1', token: null, stateDir, env: { DROVER_TOKEN: TOKEN, AGENT_SECRET: 'hush' } });
    await waitForAvailable(master, 1);
    await master.execJson('copy w1 /usr/bin/env --as printenv');
    const { pid } = await master.execFirst<{ pid: number }>('launch w1 printenv --env GREETING=hello');
    await waitFor(async () => (await master.exec(`logs w1 ${pid}`)).stdout.includes('DROVER_APP='), 'the environment in the log');
    const env = (await master.exec(`logs w1 ${pid}`)).stdout;
    expect(env).toContain('GREETING=hello\n');
    expect(env).toContain('DROVER_APP=printenv\n');
    expect(env).toContain('DROVER_WORKER=w1\n');
    expect(env).toContain(`LD_LIBRARY_PATH=${path.join(stateDir, 'apps/printenv/')}`);
    expect(env).not.toContain(TOKEN);
    expect(env).not.toContain('AGENT_SECRET');
  });
});
