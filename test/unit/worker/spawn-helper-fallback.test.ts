import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, test } from 'vitest';
import { SpawnHelper, encodeNativeRequest, type SpawnRequest } from '../../../packages/worker/src/spawn-helper.js';
import { parentOf, tempDir } from '../../helpers/cluster.js';

const helpers: SpawnHelper[] = [];
afterEach(() => {
  for (const h of helpers.splice(0)) h.close();
});

function helperWith(native: string): { helper: SpawnHelper; dir: string; lines: string[] } {
  const dir = tempDir('drover-spawn-fallback-');
  const lines: string[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(line) });
  const helper = new SpawnHelper(dir, logger, native);
  helpers.push(helper);
  return { helper, dir, lines };
}

function request(dir: string): SpawnRequest {
  return { exe: '/bin/sleep', args: ['0.5'], cwd: dir, env: { PATH: '/usr/bin:/bin' }, out: path.join(dir, 'out.log'), pipe: false };
}

function parentCommand(pid: number): string {
  return readFileSync(`/proc/${parentOf(pid)}/cmdline`, 'utf8');
}

describe('the native spawn helper, where it cannot run', () => {
  test.each([
    ['is not there', (_dir: string) => '/nonexistent/drover-spawn'],
    [
      'is not a program of this machine (ENOEXEC)',
      (dir: string) => {
        const file = path.join(dir, 'drover-spawn');
        writeFileSync(file, Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0xb7, 0]));
        chmodSync(file, 0o755);
        return file;
      },
    ],
    [
      'runs but ends before it is ready (an older glibc, no signalfd)',
      (dir: string) => {
        const file = path.join(dir, 'drover-spawn');
        writeFileSync(file, '#!/bin/sh\necho "version GLIBC_2.99 not found" >&2\nexit 1\n');
        chmodSync(file, 0o755);
        return file;
      },
    ],
  ])('it %s: launches go through the Node helper', async (_why, make) => {
    const dir = tempDir('drover-native-');
    const { helper, dir: stateDir, lines } = helperWith(make(dir));
    // The first launch may find out while it waits (then the agent forks it: null).
    let result = await helper.spawn(request(stateDir));
    if (result === null) result = await helper.spawn(request(stateDir));
    expect(result?.ok).toBe(true);
    if (!result?.ok) return;
    expect(helper.running).toBe('node');
    expect(parentCommand(result.child.pid)).toContain('spawn-helper.cjs');
    const exit = await new Promise<number | null>((resolve) => result.child.onExit((code) => resolve(code)));
    expect(exit).toBe(0);
    if (!_why.startsWith('is not there')) expect(lines.join('')).toContain('the native spawn helper cannot run here');
  });
});

describe('the native helper request', () => {
  test('length, id, flags, counts, then NUL-terminated exe, cwd, out, arguments and NAME=VALUE', () => {
    const frame = encodeNativeRequest(7, { exe: '/x', args: ['a', 'é'], cwd: '/c', env: { A: '1', B: undefined }, out: '/o', pipe: true });
    if (!Buffer.isBuffer(frame)) throw new Error(frame.message);
    expect(frame.readUInt32LE(0)).toBe(frame.length - 4);
    expect([frame.readUInt32LE(4), frame.readUInt32LE(8), frame.readUInt32LE(12), frame.readUInt32LE(16)]).toEqual([7, 1, 2, 1]);
    expect(frame.subarray(20).toString('utf8').split('\0')).toEqual(['/x', '/c', '/o', 'a', 'é', 'A=1', '']);
    // A NUL would end its string early and shift every string after it: refused, as Node refuses it.
    expect(encodeNativeRequest(1, { exe: '/x', args: ['a\0b'], cwd: '/c', env: {}, out: '/o', pipe: false })).toMatchObject({ code: 'ERR_INVALID_ARG_VALUE' });
    expect(encodeNativeRequest(1, { exe: '/x', args: [], cwd: '/c', env: { A: 'x\0B=1' }, out: '/o', pipe: false })).toMatchObject({
      code: 'ERR_INVALID_ARG_VALUE',
    });
  });
});
