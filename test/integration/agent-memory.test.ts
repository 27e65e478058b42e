import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { MASTER_CLI, ROOT, startCluster, startMaster, startProcess, startWorker, tempDir, waitFor, waitForAvailable } from '../helpers/cluster.js';

const ADDON = path.join(ROOT, 'packages/worker/dist/drover-trim.node');

describe('the malloc addon, in the agent and the master', () => {
  // skipped: no C compiler built the malloc addon (packages/worker/dist/drover-trim.node)
  test.skipIf(!existsSync(ADDON))(
    'tunes malloc at its start and gives the heap pages the copy freed back to the system, through the addon it carries and loads from its state dir',
    async () => {
      const master = await startMaster();
      const w = startWorker(master, { name: 'w1', args: ['--log-level', 'debug'] });
      await waitForAvailable(master, 1);
      // Before any transfer: chunk buffers reused from the heap (drover-trim.c's tune()).
      expect(w.stdout()).toContain('malloc tuned for transfers');
      const file = path.join(tempDir(), 'big');
      // Big enough to go through the hashing thread (4 MiB and up), in 1 MiB chunks.
      writeFileSync(file, randomBytes(24 * 1024 * 1024));
      await master.execJson(`copy w1 ${file}`);
      const said = (): { gaveBackBytes: number; released: boolean }[] =>
        (w.stdout() + w.stderr())
          .split('\n')
          .filter((l) => l.includes('gave freed heap pages back to the system'))
          .map((l) => JSON.parse(l) as { gaveBackBytes: number; released: boolean });
      // Once the copy and its hashing thread (ended after 5 s idle) have settled: one collection
      // and trim for both, ~7 s after the thread's end (memory.ts, releaseMemorySoon).
      const lines = await waitFor(() => (said().length >= 1 ? said() : null), 'a trim after the copy', 25_000);
      for (const l of lines) expect(typeof l.released).toBe('boolean');
      const maps = readFileSync(`/proc/${w.child.pid}/maps`, 'utf8');
      expect(maps).toMatch(new RegExp(`${w.stateDir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/drover-trim-[0-9a-f]{12}\\.node`));
    },
  );

  // skipped: no C compiler built the malloc addon (packages/worker/dist/drover-trim.node)
  test.skipIf(!existsSync(ADDON))('the master tunes its malloc with the same addon, from beside the worker bundle', async () => {
    const master = await startMaster({ args: ['--log-level', 'debug'] });
    expect(master.stdout()).toContain('malloc tuned for transfers');
    expect(readFileSync(`/proc/${master.child.pid}/maps`, 'utf8')).toContain(ADDON);
    // Where there is none, a debug line says so and the master runs on; where it cannot load, an info line.
    const none = tempDir();
    const without = await startMaster({ args: ['--log-level', 'debug'], env: { DROVER_WORKER_BUNDLE: path.join(none, 'worker.mjs') } });
    expect(without.stdout()).toContain('malloc left as glibc sets it: no addon beside the worker bundle');
    const broken = tempDir();
    writeFileSync(path.join(broken, 'drover-trim.node'), 'not an ELF file');
    const unloadable = await startMaster({ env: { DROVER_WORKER_BUNDLE: path.join(broken, 'worker.mjs') } });
    expect(unloadable.stdout()).toContain('malloc left as glibc sets it: the addon cannot be loaded here');
    expect((await unloadable.execJson<unknown[]>('workers')).length).toBe(0);
  });

  // skipped: no C compiler built the malloc addon (packages/worker/dist/drover-trim.node)
  test.skipIf(!existsSync(ADDON))('a client loads it once file data comes its way (logs --out), and not for a command that moves none', async () => {
    const { master } = await startCluster(1);
    await master.execJson('copy w1 /bin/sh');
    await master.execJson(`launch w1 sh -- -c 'while :; do echo line; sleep 0.05; done'`);
    const DROVER = MASTER_CLI.replace(/cli\.js$/, 'drover.js');
    const out = path.join(tempDir(), 'log.txt');
    const follower = startProcess(process.execPath, [DROVER, '--state-dir', master.stateDir, 'logs', 'w1', 'sh', '--follow', '--out', out]);
    const mapped = (pid: number): boolean => {
      try {
        return readFileSync(`/proc/${pid}/maps`, 'utf8').includes(ADDON);
      } catch {
        return false;
      }
    };
    await waitFor(() => mapped(follower.child.pid!), 'the client following into a file to load the addon');
    await follower.kill();
    // A command that moves no file: still running, it has not loaded it (a slow pipe keeps it open).
    const reader = startProcess(process.execPath, [DROVER, '--state-dir', master.stateDir, 'logs', 'w1', 'sh', '--follow']);
    await waitFor(() => reader.stdout().includes('line'), 'lines on stdout');
    expect(mapped(reader.child.pid!)).toBe(false);
    await reader.kill();
  });
});
