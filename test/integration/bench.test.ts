import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import {
  CAN_MOUNT,
  MASTER_CLI,
  mountTmpfs,
  onCleanup,
  startCluster,
  startProcess,
  startWorker,
  waitFor,
  waitForAvailable,
  tempDir,
} from '../helpers/cluster.js';

interface Entry {
  worker: string;
  ok: boolean;
  error: { code: string; message: string } | null;
  creationTimeMs: number;
  copyTimeMs: number;
  deletionTimeMs: number;
  sizeBytes: number;
  fsync: boolean;
  runs: { creationTimeMs: number; copyTimeMs: number; deletionTimeMs: number }[];
}

const leftovers = (dir: string): string[] => readdirSync(dir).filter((f) => f.startsWith('.drover-bench-'));

describe('bench', () => {
  test('runs on every worker at once and reports medians, every run, and MiB/s', async () => {
    const { master, workers } = await startCluster(2);
    const entries = await master.execJson<Entry[]>('bench all --size 4MiB --runs 3 --block 256KiB');
    expect(entries.map((e) => e.worker)).toEqual(['w1', 'w2']);
    for (const e of entries) {
      expect(e).toMatchObject({ ok: true, error: null, sizeBytes: 4 * 1024 * 1024, fsync: true });
      expect(e.runs).toHaveLength(3);
      for (const key of ['creationTimeMs', 'copyTimeMs', 'deletionTimeMs'] as const) {
        const sorted = e.runs.map((r) => r[key]).sort((a, b) => a - b);
        expect(e[key]).toBe(sorted[1]);
        expect(e[key]).toBeGreaterThan(0);
      }
    }
    for (const w of workers) expect(leftovers(path.join(w.stateDir, 'bench'))).toEqual([]);

    const human = await master.exec('bench w1 w2 --size 2MiB --runs 2 --no-fsync');
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(
      /^w1 \(.+\)  2\.0 MiB x 2 runs, no fsync\n  creation .* ms   \(min .*, max .*\) .* MiB\/s\n  copy .* MiB\/s\n  deletion .* ms/m,
    );
    expect(human.stdout).toMatch(/^fastest \/ slowest: creation w\d [\d.]+ \/ w\d [\d.]+ ms; copy .*; deletion .* ms$/m);
  });

  test.skipIf(!CAN_MOUNT)(
    'a worker without room gets an error entry while the other finishes; an unknown one fails it all (needs root for tmpfs)',
    async () => {
      const small = mountTmpfs(24)!;
      const { master } = await startCluster(1);
      startWorker(master, { name: 'tiny', stateDir: small });
      await waitForAvailable(master, 2);
      const unknown = await master.exec('bench w1 tiny ghost --size 8MiB --runs 1 --json');
      expect(unknown.code).toBe(1);
      expect(JSON.parse(unknown.stdout)).toMatchObject({ error: { code: 'UNKNOWN_WORKER', message: expect.stringContaining('"ghost"') } });
      const r = await master.exec('bench w1 tiny --size 8MiB --runs 1 --json');
      expect(r.code).toBe(1);
      const entries = JSON.parse(r.stdout) as Entry[];
      expect(entries.find((e) => e.worker === 'w1')).toMatchObject({ ok: true });
      expect(entries.find((e) => e.worker === 'tiny')).toMatchObject({
        ok: false,
        error: { code: 'NO_SPACE', message: expect.stringMatching(/free; the benchmark needs 2 x 8.0 MiB \+ 32.0 MiB/) },
      });
      expect(leftovers(path.join(small, 'bench'))).toEqual([]);
    },
  );

  test.skipIf(!CAN_MOUNT)('a failure midway (the disk runs out of inodes) is an error entry, and the files are gone (needs root for tmpfs)', async () => {
    // Room enough for the size check, but inodes for only one file: the copy fails midway.
    const dir = tempDir('drover-inodes-');
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=96m,nr_inodes=2', 'tmpfs', dir], { stdio: 'pipe' });
    onCleanup(() => void execFileSync('umount', ['-l', dir], { stdio: 'ignore' }));
    const { master } = await startCluster(2);
    const r = await master.exec(`bench w1 w2 --size 4MiB --runs 1 --dir ${dir} --json`);
    expect(r.code).toBe(1);
    const entries = JSON.parse(r.stdout) as Entry[];
    for (const e of entries) {
      expect(e.ok).toBe(false);
      expect(e.error).toMatchObject({ code: 'NO_SPACE', message: expect.stringContaining('filled up during the benchmark') });
    }
    expect(readdirSync(dir)).toEqual([]);
    // the workers are free again
    const ok = await master.execJson<Entry[]>('bench w1 --size 1MiB --runs 1');
    expect(ok[0]!.ok).toBe(true);
  });

  test('a second benchmark on a busy worker is refused, and bad options are one-line errors', async () => {
    const { master, workers } = await startCluster(1);
    const benchDir = path.join(workers[0]!.stateDir, 'bench');
    // Long enough to be running still when the second arrives; cancelled after, not waited for.
    const first = startProcess(process.execPath, [MASTER_CLI, 'exec', 'bench w1 --size 256MiB --runs 20', '--state-dir', master.stateDir]);
    await waitFor(() => existsSync(benchDir) && leftovers(benchDir).length > 0, 'the first benchmark to be running', 10_000, 5);
    const second = await master
      .execJson<Entry[]>('bench w1 --size 1MiB --runs 1')
      .catch((e: Error) => JSON.parse(e.message.slice(e.message.indexOf('['))) as Entry[]);
    expect(second[0]).toMatchObject({ ok: false, error: { code: 'BUSY', message: 'w1 is already running a benchmark; try again when it ends' } });
    // The refusal left the first one running.
    expect(first.child.exitCode).toBeNull();
    expect(leftovers(benchDir).length).toBeGreaterThan(0);
    first.child.kill('SIGINT');
    expect((await first.exited).code).toBe(130);
    for (const [line, msg] of [
      ['bench --size 12parsecs', /--size must be a size like 100MiB, 4KiB or 1GiB, got "12parsecs"/],
      ['bench --runs 0', /--runs must be a whole number from 1 to 1000/],
      ['bench --dir relative/path', /--dir must be an absolute path/],
      ['bench --dir /no/such/dir --size 1MiB --runs 1', /--dir \/no\/such\/dir does not exist on w1/],
    ] as const) {
      const r = await master.exec(line);
      expect(r.code, line).toBe(1);
      expect(r.stdout + r.stderr, line).toMatch(msg);
    }
  });

  test('files are removed when the benchmark is cancelled (Ctrl-C) or the master goes away', async () => {
    const { master, workers } = await startCluster(1);
    const dir = tempDir();
    const benchDir = path.join(workers[0]!.stateDir, 'bench');
    // Ctrl-C on master exec: the client goes away, the master cancels, the worker cleans up.
    const client = startProcess(process.execPath, [MASTER_CLI, 'exec', `bench w1 --size 2GiB --runs 5 --dir ${dir}`, '--state-dir', master.stateDir]);
    await waitFor(() => leftovers(dir).length > 0, 'the benchmark file to appear', 10_000, 5);
    client.child.kill('SIGINT');
    expect((await client.exited).code).toBe(130);
    await waitFor(() => leftovers(dir).length === 0, 'the files to be removed after cancel');

    // The worker accepts a new benchmark at once: the cancelled one released it.
    const again = await master.execJson<Entry[]>(`bench w1 --size 1MiB --runs 1 --dir ${dir}`);
    expect(again[0]!.ok).toBe(true);

    // The master dies mid-run: the worker notices the link drop and cleans up.
    void master.exec('bench w1 --size 2GiB --runs 5');
    await waitFor(() => readdirSync(benchDir).length > 0, 'the default-dir benchmark file', 10_000, 5);
    await master.kill('SIGKILL');
    await waitFor(() => leftovers(benchDir).length === 0, 'the files to be removed after the master died');
  });
});
