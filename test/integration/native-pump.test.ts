import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { ROOT, onCleanup, tempDir, waitFor } from '../helpers/cluster.js';

const NATIVE = process.env.DROVER_TEST_NATIVE_HELPER ?? path.join(ROOT, 'packages/worker/dist/drover-spawn');

/** A pump frame of the native helper (native/drover-spawn.c): FIFO, log, cap and files kept. */
function frame(pid: number, flags: number, strings: string[] = []): Buffer {
  const body = Buffer.concat(strings.map((s) => Buffer.from(`${s}\0`)));
  const head = Buffer.alloc(20);
  head.writeUInt32LE(16 + body.length, 0);
  head.writeUInt32LE(pid, 4);
  head.writeUInt32LE(flags, 8);
  return Buffer.concat([head, body]);
}

/** A native helper pumping `fifo` into `log`: it answers rotations at once, as the agent does. */
function helper(pid: number, fifo: string, log: string, max: number, keep: number): { proc: ChildProcess; said: string[] } {
  const proc = spawn(NATIVE, [], { stdio: ['pipe', 'pipe', 'inherit'] });
  // It ends with its stdin (as with its agent); a failed test leaves none behind.
  onCleanup(() => void proc.kill('SIGKILL'));
  const said: string[] = [];
  let pending = '';
  proc.stdout.setEncoding('utf8');
  proc.stdout.on('data', (text: string) => {
    const lines = (pending + text).split('\n');
    pending = lines.pop()!;
    for (const line of lines) {
      said.push(line);
      if (line === `{"pump":${pid},"rotate":1}`) proc.stdin.write(frame(pid, 0x200));
    }
  });
  proc.stdin.on('error', () => undefined);
  proc.stdin.write(frame(pid, 0x100, [fifo, log, String(max), String(keep)]));
  return { proc, said };
}

/** The log's files, oldest first, read whole. */
function chain(log: string): string {
  const dir = path.dirname(log);
  const base = path.basename(log);
  const rotated = readdirSync(dir)
    .filter((n) => n.startsWith(`${base}.`))
    .map((n) => Number(n.slice(base.length + 1)))
    .sort((a, b) => b - a);
  return [...rotated.map((n) => `${log}.${n}`), log].map((f) => readFileSync(f, 'utf8')).join('');
}

describe('the native helper pumps logs in the kernel', () => {
  // skipped: the native helper was not built (no C compiler)
  test.skipIf(!existsSync(NATIVE))(
    'killed (SIGKILL) 80 times while a process floods its FIFO, and started again each time: the log has every byte once, in order, cut at line ends',
    async () => {
      const dir = tempDir();
      const fifo = path.join(dir, 'app.pipe');
      const log = path.join(dir, 'app.log');
      expect(spawnSync('mkfifo', [fifo]).status).toBe(0);
      // The app holds its FIFO read-write (as a launch's does): its bytes wait there while no pump
      // runs. It ends once told (a FIFO's bytes go with its last holder: the pump must be there).
      const LINES = 3_000_000;
      const done = path.join(dir, 'done');
      const app = spawn('sh', ['-c', `exec 1<>${fifo}; seq 1 ${LINES}; while [ ! -e ${done} ]; do sleep 0.02; done`], {
        stdio: ['ignore', 'inherit', 'inherit'],
      });
      const pid = app.pid!;
      const appExit = new Promise((r) => app.once('exit', r));
      const KILLS = 80;
      let h = helper(pid, fifo, log, 256 * 1024, 1000);
      for (let i = 0; i < KILLS; i++) {
        await new Promise((r) => setTimeout(r, 2 + (i % 5) * 2));
        h.proc.kill('SIGKILL');
        await new Promise((r) => h.proc.once('exit', r));
        h = helper(pid, fifo, log, 256 * 1024, 1000);
      }
      writeFileSync(done, '');
      await appExit;
      const last = h;
      await waitFor(() => last.said.includes(`{"pump":${pid},"end":1}`), 'the pump to end');
      expect(existsSync(fifo)).toBe(false);
      // Its stdin closed, the helper ends.
      last.proc.stdin!.end();
      await new Promise((r) => last.proc.once('exit', r));
      const text = chain(log);
      let expected = 1;
      let wrong = '';
      for (const line of text.split('\n').slice(0, -1)) {
        if (Number(line) !== expected && !wrong) wrong = `line ${expected} is "${line}"`;
        expected++;
      }
      expect(wrong).toBe('');
      expect(expected - 1).toBe(LINES);
      expect(text.endsWith('\n')).toBe(true);
      // Rotated at line ends, each file within its cap (a line under way at the cap finished in it).
      const rotated = readdirSync(dir).filter((f) => f.startsWith('app.log.'));
      expect(rotated.length).toBeGreaterThan(60);
      for (const n of rotated) {
        const file = readFileSync(path.join(dir, n), 'utf8');
        expect(file.endsWith('\n')).toBe(true);
        expect(file.length).toBeLessThanOrEqual(256 * 1024 + 16 * 1024);
      }
    },
  );
});
