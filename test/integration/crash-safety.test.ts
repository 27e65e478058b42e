import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, readlinkSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import type { ProcessInfo } from '@drover/protocol';
import { CAN_MOUNT, MASTER_CLI, mountTmpfs, pidAlive, startCluster, startMaster, startWorker, tempDir, waitFor, waitForAvailable } from '../helpers/cluster.js';

type Row = ProcessInfo & { worker: string };

function script(dir: string, name: string, body: string): string {
  const file = path.join(dir, name);
  writeFileSync(file, `#!/bin/sh\n${body}\n`, { mode: 0o755 });
  return file;
}

describe('nothing reported is forgotten', () => {
  test('every pid ever reported is in ps after the agent is killed mid-launches, even those its table never recorded', async () => {
    // Heartbeats every 500 ms: a restarted agent re-adopting 60 launches on a loaded CI machine
    // must not read as unavailable for a late heartbeat (that is not what this test is about).
    const { master, workers } = await startCluster(1, { heartbeatMs: 500 });
    const stateDir = workers[0]!.stateDir;
    await master.execJson('copy w1 /bin/sleep');
    // 10 clients launching in parallel; the agent is killed with SIGKILL while they run.
    const reported: number[] = [];
    const clients = Array.from(
      { length: 10 },
      () =>
        new Promise<void>((resolve) => {
          const c = spawn(process.execPath, [MASTER_CLI, 'exec', '--json', '--state-dir', master.stateDir], { stdio: ['pipe', 'pipe', 'ignore'] });
          // Each answer as it comes (one JSON line per launch), so the kill can wait for some.
          let out = '';
          c.stdout.on('data', (d: Buffer) => {
            out += d.toString();
            const lines = out.split('\n');
            out = lines.pop()!;
            for (const line of lines.filter(Boolean)) {
              const entries = JSON.parse(line) as { ok: boolean; pid?: number }[];
              if (Array.isArray(entries)) for (const e of entries) if (e.ok && e.pid) reported.push(e.pid);
            }
          });
          c.on('close', () => resolve());
          c.stdin.end('launch w1 sleep -- 300\n'.repeat(6));
        }),
    );
    // Launches leave their logs (and pipes) named by pid; spare pipes made ahead do not count.
    const launched = (): number => readdirSync(path.join(stateDir, 'logs')).filter((n) => /^sleep\./.test(n)).length;
    await waitFor(() => reported.length >= 5 && launched() >= 30, 'launches under way', 20_000, 5);
    await workers[0]!.kill('SIGKILL');
    await Promise.all(clients);
    expect(reported.length).toBeGreaterThan(0);
    // Make the crash as bad as it gets: the table (its snapshot and journal) lost the newest half of its records.
    const journalFile = path.join(stateDir, 'processes.journal');
    // (It may hold nothing yet: its first append can still be on its way to the disk.)
    const journal = existsSync(journalFile) ? readFileSync(journalFile, 'utf8').split('\n').filter(Boolean) : [];
    writeFileSync(journalFile, journal.slice(0, Math.floor(journal.length / 2)).join('\n') + '\n');
    const tableFile = path.join(stateDir, 'processes.json');
    if (existsSync(tableFile)) {
      const table = JSON.parse(readFileSync(tableFile, 'utf8')) as { pid: number }[];
      writeFileSync(tableFile, JSON.stringify(table.slice(0, Math.floor(table.length / 2))));
    }

    startWorker(master, { name: 'w1', stateDir, heartbeatMs: 500 });
    await waitForAvailable(master, 1);
    const rows = await master.execJson<Row[]>('ps');
    const listed = new Set(rows.map((r) => r.pid));
    for (const pid of reported) expect(listed.has(pid), `pid ${pid} in ps`).toBe(true);
    for (const r of rows) expect(r.state === 'dead' ? !pidAlive(r.pid) : pidAlive(r.pid)).toBe(true);
    // And they are drover's to stop.
    const stopped = await master.execJson<{ ok: boolean; pid: number }[]>('kill w1 sleep');
    expect(stopped.filter((e) => e.ok).length).toBe(rows.filter((r) => r.exit === null).length);
    for (const pid of reported) expect(pidAlive(pid)).toBe(false);
  });

  test('children an app leaves in its process group are shown in ps, and stop, kill and delete --force reach them', async () => {
    const { master } = await startCluster(1);
    const dir = tempDir();
    await master.execJson(`copy w1 ${script(dir, 'spawner', 'sleep 300 &\necho "child $!"')}`);
    const { pid } = await master.execFirst<{ pid: number }>('launch w1 spawner');
    const log = await waitFor(async () => /child (\d+)/.exec((await master.exec(`logs w1 ${pid}`)).stdout), 'the child pid');
    const child = Number(log[1]);
    const row = await waitFor(async () => (await master.execJson<Row[]>('ps')).find((r) => r.pid === pid && r.leftovers?.length), 'the leftover in ps');
    expect(row.state).toBe('dead');
    expect(row.leftovers).toEqual([child]);
    expect((await master.exec('ps')).stdout).toMatch(/dead \(\+1 left in its group\)/);
    const killed = await master.execFirst<{ alreadyEnded: boolean; leftovers: number[] }>(`kill w1 ${pid}`);
    expect(killed).toMatchObject({ alreadyEnded: true, leftovers: [] });
    expect(pidAlive(child)).toBe(false);

    const second = await master.execFirst<{ pid: number }>('launch w1 spawner');
    const child2 = Number((await waitFor(async () => /child (\d+)/.exec((await master.exec(`logs w1 ${second.pid}`)).stdout), 'the second child'))[1]);
    await waitFor(async () => (await master.execJson<Row[]>('ps')).find((r) => r.pid === second.pid && r.leftovers?.length), 'the second leftover');
    expect((await master.exec('delete w1 spawner --force')).code).toBe(0);
    expect(pidAlive(child2)).toBe(false);
  });
});

describe('a copy becomes current whole, or not at all', () => {
  test('leftovers of an interrupted switch are removed at start; the old version stays current; the old layout is migrated', async () => {
    const master = await startMaster();
    const stateDir = tempDir();
    const w = startWorker(master, { name: 'w1', stateDir });
    await waitForAvailable(master, 1);
    const dir = tempDir();
    await master.execJson(`copy w1 ${script(dir, 'app', 'echo v1')}`);
    const appDir = path.join(stateDir, 'apps/app');
    const v1 = readlinkSync(path.join(appDir, 'current'));
    await w.kill('SIGKILL');
    // A crash mid-commit: a half-built version and the link about to replace `current`.
    mkdirSync(path.join(appDir, 'v-half/lib'), { recursive: true });
    writeFileSync(path.join(appDir, 'v-half/app'), '#!/bin/sh\necho v2\n', { mode: 0o755 });
    symlinkSync('v-half', path.join(appDir, '.current-1234'));
    // A first copy that never got as far as a version, and an app in the layout before versions.
    mkdirSync(path.join(stateDir, 'apps/unfinished/v-x'), { recursive: true });
    const legacy = path.join(stateDir, 'apps/legacy');
    mkdirSync(path.join(legacy, 'lib'), { recursive: true });
    writeFileSync(path.join(legacy, 'legacy'), '#!/bin/sh\necho from-legacy\n', { mode: 0o755 });
    const sha = 'a'.repeat(64);
    writeFileSync(
      path.join(legacy, 'manifest.json'),
      JSON.stringify({
        app: 'legacy',
        executable: 'legacy',
        files: [{ kind: 'exe', name: 'legacy', size: 1, sha256: sha }],
        updatedAt: new Date().toISOString(),
      }),
    );

    startWorker(master, { name: 'w1', stateDir });
    await waitForAvailable(master, 1);
    expect(readdirSync(appDir).sort()).toEqual(['current', v1].sort());
    expect(existsSync(path.join(stateDir, 'apps/unfinished'))).toBe(false);
    const { pid } = await master.execFirst<{ pid: number }>('launch w1 app');
    await waitFor(async () => (await master.exec(`logs w1 ${pid}`)).stdout === 'v1\n', 'the old version to run');
    const old = await master.execFirst<{ pid: number }>('launch w1 legacy');
    await waitFor(async () => (await master.exec(`logs w1 ${old.pid}`)).stdout === 'from-legacy\n', 'the migrated app to run');
    expect(readlinkSync(path.join(legacy, 'current'))).toBe('v-migrated');
  });

  test('an executable may be called manifest.json: drover keeps its own files out of the app namespace', async () => {
    const { master } = await startCluster(1);
    const dir = tempDir();
    await master.execJson(`copy w1 ${script(dir, 'manifest.json', 'echo i-am-the-app')}`);
    await master.execJson(`copy w1 ${script(dir, 'manifest.json', 'echo i-am-the-app')}`);
    const { pid } = await master.execFirst<{ pid: number }>('launch w1 manifest.json');
    await waitFor(async () => (await master.exec(`logs w1 ${pid}`)).stdout === 'i-am-the-app\n', 'the app named manifest.json to run');
  });
});

describe.skipIf(!CAN_MOUNT)('a full state disk (needs root for tmpfs)', () => {
  test('a launch that could not be recorded is refused with NO_SPACE before anything starts', async () => {
    const master = await startMaster();
    const stateDir = mountTmpfs(8)!;
    startWorker(master, { name: 'w1', stateDir });
    await waitForAvailable(master, 1);
    await master.execJson(`copy w1 ${script(tempDir(), 'app', 'sleep 300')}`);
    try {
      writeFileSync(path.join(stateDir, 'filler'), Buffer.alloc(16 * 1024 * 1024));
    } catch {
      // full now
    }
    const r = await master.exec('launch w1 app --json');
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout)).toEqual([
      {
        worker: 'w1',
        ok: false,
        error: { code: 'NO_SPACE', message: expect.stringMatching(/^the state disk of w1 is full \(.* free\); nothing was started$/) },
      },
    ]);
    expect(await master.execJson<Row[]>('ps')).toEqual([]);
  });
});
