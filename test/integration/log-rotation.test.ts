import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync, statfsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { CAN_MOUNT, MASTER_CLI, mountTmpfs, pidAlive, startMaster, startWorker, tempDir, waitFor, waitForAvailable } from '../helpers/cluster.js';

const MiB = 1024 * 1024;
const NATIVE_HELPER = path.join(import.meta.dirname, '../../packages/worker/dist/drover-spawn');

/** Where a symbolic link (a /proc fd) points, or '' once it is gone. */
function readlinkOr(link: string): string {
  try {
    return readlinkSync(link);
  } catch {
    return '';
  }
}

/** The native spawn helper an agent runs, or null. */
function helperOf(agentPid: number): number | null {
  const out = spawnSync('pgrep', ['-P', String(agentPid), '-f', 'drover-spawn'], { encoding: 'utf8' }).stdout.trim();
  return out ? Number(out.split('\n')[0]) : null;
}

/** A program that prints `lines` numbered lines of 100 bytes each, as fast as it can, then exits. */
function counter(dir: string, lines: number): string {
  const file = path.join(dir, 'counter');
  // "ready", then (once `go` exists, when the test's follower is there) "line 0000000001 ....": 100 bytes with its newline.
  writeFileSync(
    file,
    `#!/bin/sh\necho ready\nwhile [ ! -e ${path.join(dir, 'go')} ]; do sleep 0.05; done\nexec seq -f 'line %010.0f ${'.'.repeat(83)}' 1 ${lines}\n`,
    { mode: 0o755 },
  );
  return file;
}

/** The files of one process's log in a worker's logs folder. */
const logFiles = (stateDir: string, app: string, pid: number): string[] =>
  readdirSync(path.join(stateDir, 'logs')).filter((n) => n === `${app}.${pid}.log` || n.startsWith(`${app}.${pid}.log.`));

/**
 * `logs PID --follow` of the counter on w1, checked as it streams: each line number must be the
 * one after the last. `onReady` runs when the counter's "ready" comes through.
 */
function follow(master: { stateDir: string }, pid: number, onReady: () => void) {
  const child = spawn(process.execPath, [MASTER_CLI, 'exec', `logs w1 ${pid} --follow`, '--state-dir', master.stateDir], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const seen = { child, expected: 1, wrong: 0, firstWrong: '' };
  let partial = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (text: string) => {
    const lines = (partial + text).split('\n');
    partial = lines.pop() ?? '';
    for (const l of lines) {
      if (l === 'ready') {
        onReady();
        continue;
      }
      const n = Number(l.slice(5, 15));
      if (n !== seen.expected) {
        seen.wrong++;
        seen.firstWrong ||= `expected line ${seen.expected}, got "${l.slice(0, 20)}"`;
      }
      seen.expected = n + 1;
    }
  });
  return seen;
}

describe('log rotation', () => {
  test('a follower stopped while the log rotates past every kept file still gets every line once, in order', async () => {
    // 40 MiB through 1 MiB files keeping 2: far more rotations than files kept while the
    // follower's client is stopped (SIGSTOP) and its sends wait on it.
    const LINES = 420_000;
    const master = await startMaster();
    const w = startWorker(master, { name: 'w1', args: ['--log-max', '1MiB', '--log-keep', '2'] });
    await waitForAvailable(master, 1);
    const dir = tempDir();
    await master.execJson(`copy w1 ${counter(dir, LINES)}`);
    const { pid } = await master.execFirst<{ pid: number }>('launch w1 counter');
    let ready = false;
    const follower = follow(master, pid, () => (ready = true));
    await waitFor(() => ready, 'the follower to see the counter start');
    follower.child.kill('SIGSTOP');
    writeFileSync(path.join(dir, 'go'), '');
    await waitFor(() => !pidAlive(pid), 'the counter to end', 30_000);
    // It rotated well past what is kept while the follower stood still.
    expect(logFiles(w.stateDir, 'counter', pid).length).toBeLessThanOrEqual(3);
    follower.child.kill('SIGCONT');
    expect(await new Promise<number | null>((resolve) => follower.child.once('close', resolve))).toBe(0);
    expect(follower.firstWrong).toBe('');
    expect(follower.expected - 1).toBe(LINES);
  });

  test('200 MiB of output with a 16 MiB cap: at most 6 files, logs --tail 5 is the last 5 lines, a follower sees every line exactly once', async () => {
    const LINES = 2_100_000; // 200 MiB
    const master = await startMaster();
    const w = startWorker(master, { name: 'w1', args: ['--log-max', '16MiB', '--log-keep', '5'] });
    await waitForAvailable(master, 1);
    const dir = tempDir();
    await master.execJson(`copy w1 ${counter(dir, LINES)}`);

    const { pid } = await master.execFirst<{ pid: number }>('launch w1 counter');
    // Followed from the start.
    const follower = follow(master, pid, () => writeFileSync(path.join(dir, 'go'), ''));
    const code = await new Promise<number | null>((resolve) => follower.child.once('close', resolve));
    expect(code).toBe(0);
    expect(follower.firstWrong).toBe('');
    expect(follower.wrong).toBe(0);
    expect(follower.expected - 1).toBe(LINES);
    await waitFor(() => !pidAlive(pid), 'the counter to end');

    // Bounded on disk: the live log and 5 rotated ones, none much past the cap.
    const files = logFiles(w.stateDir, 'counter', pid);
    expect(files.length).toBeLessThanOrEqual(6);
    expect(files).toContain(`counter.${pid}.log.5`);
    // Each ends at a line end: at most one line (100 bytes here) past the cap.
    for (const f of files) expect(statSync(path.join(w.stateDir, 'logs', f)).size).toBeLessThanOrEqual(16 * MiB + 100);
    // No pipe left once the process and its output are done.
    expect(readdirSync(path.join(w.stateDir, 'logs')).filter((n) => n.endsWith('.pipe') && !n.startsWith('.spare-'))).toEqual([]);

    const tail = await master.exec(`logs w1 ${pid} --tail 5`);
    expect(tail.code).toBe(0);
    expect(
      tail.stdout
        .trim()
        .split('\n')
        .map((l) => Number(l.slice(5, 15))),
    ).toEqual([LINES - 4, LINES - 3, LINES - 2, LINES - 1, LINES]);
  });

  test.skipIf(!CAN_MOUNT)(
    'a full disk stops the log with an event, the app and the agent run on, and logging resumes with a note of what was lost (needs root for a tmpfs)',
    async () => {
      const disk = mountTmpfs(16)!;
      const master = await startMaster();
      const w = startWorker(master, { name: 'w1', stateDir: path.join(disk, 'w1') });
      await waitForAvailable(master, 1);
      const dir = tempDir();
      // About 600 KB/s, numbered, until stopped.
      writeFileSync(
        path.join(dir, 'chatter'),
        `#!/bin/sh\ni=1\nwhile :; do seq -f 'line %010.0f ${'.'.repeat(20)}' $i $((i+999)); i=$((i+1000)); sleep 0.05; done\n`,
        { mode: 0o755 },
      );
      await master.execJson(`copy w1 ${path.join(dir, 'chatter')}`);
      // All but 1 MiB of the disk taken.
      const free = (): number => {
        const s = statfsSync(disk);
        return s.bavail * s.bsize;
      };
      const filler = path.join(disk, 'filler');
      writeFileSync(filler, Buffer.alloc(Math.max(0, free() - 1024 * 1024)));
      const { pid } = await master.execFirst<{ pid: number }>('launch w1 chatter');
      const events = async (): Promise<{ kind: string; text: string }[]> => master.execJson('events');
      const full = await waitFor(async () => (await events()).find((e) => e.kind === 'log-full'), 'a log-full event', 20_000);
      expect(full.text).toContain(`chatter pid ${pid}`);
      // The agent answers, the app runs on (it is not blocked on its output).
      expect(pidAlive(pid)).toBe(true);
      const rows = await master.execJson<{ pid: number }[]>('ps w1');
      expect(rows.map((r) => r.pid)).toContain(pid);
      expect(w.child.exitCode).toBe(null);

      rmSync(filler);
      const resumed = await waitFor(async () => (await events()).find((e) => e.kind === 'log-resumed'), 'a log-resumed event', 20_000);
      expect(resumed.text).toMatch(/of its output were lost to the full disk/);
      // Stopped now: the whole log, note included, stays small enough to read at once.
      await master.exec(`kill w1 ${pid}`);
      const log = await waitFor(async () => {
        const r = await master.exec(`logs w1 ${pid}`);
        return /\[drover\] \d+ bytes of output were not logged: the disk was full/.test(r.stdout) ? r.stdout : null;
      }, 'the note in the log');
      // After the note the numbering goes on: the app kept writing all along.
      const after = log
        .slice(log.indexOf('[drover]'))
        .split('\n')
        .slice(1)
        .filter((l) => l.startsWith('line '));
      expect(after.length).toBeGreaterThan(0);
    },
  );

  // The native spawn helper pumps logs in the kernel (splice): no kill loses a byte. The Node
  // pump (where the native helper cannot run) reads a chunk and then writes it: a SIGKILL between
  // the two loses that chunk, one pipe read (64 KiB) at most (README, Log rotation).
  for (const { kind, env, lossPerKill, skip } of [
    { kind: 'native', env: {}, lossPerKill: 0, skip: !existsSync(NATIVE_HELPER) },
    { kind: 'node', env: { DROVER_SPAWN_HELPER: 'node' }, lossPerKill: 64 * 1024, skip: false },
  ]) {
    // skipped: the native helper was not built (no C compiler)
    test.skipIf(skip)(
      `output waits in its pipe while the agent is down (SIGKILL) and the next agent carries it on: ${kind} pump, no line repeated or out of order, none lost but what its kind allows`,
      async () => {
        const master = await startMaster();
        const stateDir = tempDir('drover-w1-');
        const args = ['--log-max', '1MiB', '--log-keep', '50'];
        let w = startWorker(master, { name: 'w1', stateDir, args, env });
        await waitForAvailable(master, 1);
        const dir = tempDir();
        writeFileSync(
          path.join(dir, 'chatter'),
          `#!/bin/sh\ni=1\nwhile [ $i -le 400000 ]; do seq -f 'line %010.0f' $i $((i+999)); i=$((i+1000)); sleep 0.02; done\n`,
          { mode: 0o755 },
        );
        await master.execJson(`copy w1 ${path.join(dir, 'chatter')}`);
        const { pid } = await master.execFirst<{ pid: number }>('launch w1 chatter');
        // Three kills of the agent while the chatter writes, each down for a moment (the app fills
        // its pipe and waits on it, alive). With the native helper, then a kill of the helper: the
        // agent's own pump carries on from the FIFO.
        const KILLS = 3;
        for (let k = 0; k < KILLS; k++) {
          await new Promise((r) => setTimeout(r, 400));
          w.child.kill('SIGKILL');
          await new Promise((resolve) => w.child.once('exit', resolve));
          await new Promise((r) => setTimeout(r, 500));
          expect(pidAlive(pid)).toBe(true);
          w = startWorker(master, { name: 'w1', stateDir, args, env });
          await waitForAvailable(master, 1);
        }
        if (kind === 'native') {
          // The helper killed: the agent pumps until a new helper is up, then hands the pump back
          // to it, which a last SIGKILL of the agent must not cost a byte either.
          const pipe = path.join(stateDir, 'logs', `chatter.${pid}.pipe`);
          const holding = (p: number): boolean => {
            try {
              return readdirSync(`/proc/${p}/fd`).some((fd) => readlinkOr(`/proc/${p}/fd/${fd}`) === pipe);
            } catch {
              return false; // gone
            }
          };
          const first = await waitFor(() => helperOf(w.child.pid!), 'the agent to pump through its helper');
          await waitFor(() => holding(first), 'the helper to hold the pipe');
          process.kill(first, 'SIGKILL');
          const second = await waitFor(() => {
            const h = helperOf(w.child.pid!);
            return h !== null && h !== first && holding(h) && !holding(w.child.pid!) ? h : null;
          }, 'a new helper to take the pump back');
          expect(second).not.toBe(first);
          expect(pidAlive(pid)).toBe(true);
          w.child.kill('SIGKILL');
          await new Promise((resolve) => w.child.once('exit', resolve));
          w = startWorker(master, { name: 'w1', stateDir, args, env });
          await waitForAvailable(master, 1);
        }
        await waitFor(() => !pidAlive(pid), 'the chatter to finish', 60_000);
        const r = await master.exec(`logs w1 ${pid}`);
        expect(r.code).toBe(0);
        const numbers = r.stdout
          .split('\n')
          .filter(Boolean)
          .map((l) => Number(l.slice(5)));
        const gaps: [number, number][] = [];
        const backwards: number[] = [];
        let expected = 1;
        for (const n of numbers) {
          if (n < expected) backwards.push(n);
          else if (n > expected) gaps.push([expected, n - 1]);
          expected = n + 1;
        }
        expect(backwards).toEqual([]);
        expect(expected).toBe(400_001);
        expect(gaps.length).toBeLessThanOrEqual(lossPerKill === 0 ? 0 : KILLS);
        const lostBytes = gaps.reduce((sum, [a, b]) => sum + (b - a + 1) * 'line 0000000001\n'.length, 0);
        expect(lostBytes).toBeLessThanOrEqual(KILLS * lossPerKill);
        expect(logFiles(stateDir, 'chatter', pid).length).toBeGreaterThan(3);
      },
    );
  }

  test('a follower whose reader leaves (| head) ends quietly with status 0 and stops following', async () => {
    const master = await startMaster();
    startWorker(master, { name: 'w1' });
    await waitForAvailable(master, 1);
    await master.execJson('copy w1 /usr/bin/yes');
    const { pid } = await master.execFirst<{ pid: number }>('launch w1 yes');
    const follower = spawn(process.execPath, [MASTER_CLI, 'exec', `logs w1 ${pid} --follow`, '--state-dir', master.stateDir], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    follower.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    await new Promise((resolve) => follower.stdout.once('data', resolve));
    follower.stdout.destroy();
    const code = await new Promise<number | null>((resolve) => follower.once('close', resolve));
    expect({ code, stderr }).toEqual({ code: 0, stderr: '' });
    await master.exec(`kill w1 ${pid}`);
  });

  test("a service program's log: {max, keep} overrides the worker's: 2 MiB of output with max 256KiB, keep 2 leaves 3 files", async () => {
    const master = await startMaster();
    const w = startWorker(master, { name: 'w1' });
    await waitForAvailable(master, 1);
    const dir = tempDir();
    // 20,000 lines of 100 bytes, then it waits (a service instance that exits would be restarted).
    writeFileSync(path.join(dir, 'burst'), `#!/bin/sh\nseq -f 'line %010.0f ${'.'.repeat(83)}' 1 20000\nexec sleep 300\n`, { mode: 0o755 });
    writeFileSync(path.join(dir, 'svc.yaml'), 'name: svc\nprograms:\n  - { name: burst, path: ./burst, log: { max: 256KiB, keep: 2 } }\n');
    const r = await master.exec(`apply ${path.join(dir, 'svc.yaml')}`);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const [row] = await master.execJson<{ pid: number; app: string }[]>('ps w1');
    await waitFor(async () => {
      const tail = await master.exec(`logs w1 ${row!.pid} --tail 1`);
      return tail.stdout.startsWith('line 0000020000') || null;
    }, 'the last line in the log');
    const files = logFiles(w.stateDir, row!.app, row!.pid).sort();
    expect(files).toEqual([`${row!.app}.${row!.pid}.log`, `${row!.app}.${row!.pid}.log.1`, `${row!.app}.${row!.pid}.log.2`]);
    for (const f of files) expect(statSync(path.join(w.stateDir, 'logs', f)).size).toBeLessThanOrEqual(256 * 1024 + 100);
    await master.exec('teardown svc');
  });

  test('three processes writing at once: each log holds exactly its own lines, in order (the pumps share one read buffer)', async () => {
    const master = await startMaster();
    const w = startWorker(master, { name: 'w1' });
    await waitForAvailable(master, 1);
    const dir = tempDir();
    const LINES = 60_000;
    // Each waits for `go`, so that all three write at the same moment: "X 0000000001 ....", 100 bytes a line.
    for (const tag of ['a', 'b', 'c']) {
      writeFileSync(
        path.join(dir, `talk-${tag}`),
        `#!/bin/sh\nwhile [ ! -e ${path.join(dir, 'go')} ]; do sleep 0.02; done\nexec seq -f '${tag} %010.0f ${'.'.repeat(86)}' 1 ${LINES}\n`,
        { mode: 0o755 },
      );
      await master.execJson(`copy w1 ${path.join(dir, `talk-${tag}`)}`);
    }
    const pids: Record<string, number> = {};
    for (const tag of ['a', 'b', 'c']) pids[tag] = (await master.execFirst<{ pid: number }>(`launch w1 talk-${tag}`)).pid;
    writeFileSync(path.join(dir, 'go'), '');
    await waitFor(async () => {
      const rows = await master.execJson<{ pid: number; exit?: unknown }[]>('ps w1');
      return rows.every((r) => r.exit) || null;
    }, 'all three to finish');
    for (const tag of ['a', 'b', 'c']) {
      const pid = pids[tag]!;
      await waitFor(async () => statSync(path.join(w.stateDir, 'logs', `talk-${tag}.${pid}.log`)).size === LINES * 100 || null, `talk-${tag}'s whole log`);
      const lines = readFileSync(path.join(w.stateDir, 'logs', `talk-${tag}.${pid}.log`), 'utf8').split('\n');
      expect(lines.pop()).toBe('');
      expect(lines).toHaveLength(LINES);
      let wrong = 0;
      lines.forEach((l, i) => {
        if (l[0] !== tag || Number(l.slice(2, 12)) !== i + 1) wrong++;
      });
      expect(wrong, `lines of talk-${tag} out of place`).toBe(0);
    }
  });
});
