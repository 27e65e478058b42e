import { lstatSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { SparePool, takeFifo } from '../../../packages/worker/src/log-pump.js';

const spares = (dir: string, kind: string): string[] => readdirSync(dir).filter((n) => n.startsWith('.spare-') && n.endsWith(`.${kind}`));

async function until(check: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !check(); i++) await new Promise((r) => setTimeout(r, 10));
  expect(check()).toBe(true);
}

describe('SparePool: files a launch renames into place instead of making', () => {
  test('log files: made ahead in the background, moved to a launch log, refilled below half', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'spares-'));
    const pool = new SparePool(dir, 'log', 4);
    await until(() => pool.available === 4 && spares(dir, 'log').length === 4);
    const target = path.join(dir, 'app.123.log');
    expect(pool.takeInto(target)).toBe(true);
    expect(lstatSync(target).isFile()).toBe(true);
    expect(lstatSync(target).size).toBe(0);
    expect(lstatSync(target).mode & 0o777).toBe(0o640);
    expect(spares(dir, 'log')).toHaveLength(3);
    // Down to half: as many as are missing then are made again, in the background.
    expect(pool.takeInto(path.join(dir, 'app.124.log'))).toBe(true);
    expect(pool.available).toBe(2);
    await until(() => pool.available === 4 && spares(dir, 'log').length === 4);
  });

  test('never replaces what is there: the log of an earlier process with the same pid is kept', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'spares-'));
    const pool = new SparePool(dir, 'log', 4);
    await until(() => pool.available === 4 && spares(dir, 'log').length === 4);
    const target = path.join(dir, 'app.7.log');
    writeFileSync(target, 'earlier output\n');
    expect(pool.takeInto(target)).toBe(false);
    expect(readFileSync(target, 'utf8')).toBe('earlier output\n');
    expect(spares(dir, 'log')).toHaveLength(4);
  });

  test('pipes: FIFOs, taken from what an earlier agent left; without spares one is made on the spot', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'spares-'));
    const first = new SparePool(dir, 'pipe', 4);
    await until(() => first.available === 4);
    // A new agent finds them and uses them before making any.
    const second = new SparePool(dir, 'pipe', 4, false);
    takeFifo(second, path.join(dir, 'app.1.pipe'));
    expect(lstatSync(path.join(dir, 'app.1.pipe')).isFIFO()).toBe(true);
    expect(spares(dir, 'pipe')).toHaveLength(3);
    const empty = new SparePool(mkdtempSync(path.join(os.tmpdir(), 'spares-')), 'pipe', 0, false);
    const made = path.join(dir, 'app.2.pipe');
    takeFifo(empty, made);
    expect(lstatSync(made).isFIFO()).toBe(true);
  });
});
