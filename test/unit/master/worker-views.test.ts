import { describe, expect, test } from 'vitest';
import { workersCommand } from '../../../packages/master/src/commands/workers.js';
import { HISTORY_POINTS, HISTORY_STEP_MS, LoadHistory, decodeMemory, encodeMemory } from '../../../packages/master/src/load-history.js';
import { sparkline } from '../../../packages/master/src/format.js';

const load = (
  cpuPercent: number,
  memoryUsedBytes = 1000,
): { cpuPercent: number; memoryUsedBytes: number; memoryTotalBytes: number; loadAverage: number; processes: number } => ({
  cpuPercent,
  memoryUsedBytes,
  memoryTotalBytes: 4000,
  loadAverage: 0,
  processes: 0,
});

describe('LoadHistory', () => {
  test('keeps the first heartbeat of each 10 s step, oldest first', () => {
    const h = new LoadHistory();
    const t0 = 1_000_000 * HISTORY_STEP_MS;
    h.record('w1', t0, load(10));
    h.record('w1', t0 + 1000, load(99)); // same step: ignored
    h.record('w1', t0 + HISTORY_STEP_MS, load(20, 2000));
    expect(h.series('w1', t0 + HISTORY_STEP_MS)).toEqual({
      stepMs: HISTORY_STEP_MS,
      t: [t0, t0 + HISTORY_STEP_MS],
      cpuPercent: [10, 20],
      memoryUsedBytes: [1000, 2000],
    });
    expect(h.series('w2', t0).t).toEqual([]);
  });

  test('holds 15 minutes: the ring overwrites the oldest, and points older than 15 minutes are not answered', () => {
    const h = new LoadHistory();
    const t0 = 1_000_000 * HISTORY_STEP_MS;
    for (let i = 0; i < HISTORY_POINTS + 10; i++) h.record('w1', t0 + i * HISTORY_STEP_MS, load(i));
    const now = t0 + (HISTORY_POINTS + 9) * HISTORY_STEP_MS;
    const s = h.series('w1', now);
    expect(s.cpuPercent).toHaveLength(HISTORY_POINTS);
    expect(s.cpuPercent[0]).toBe(10);
    expect(s.cpuPercent.at(-1)).toBe(HISTORY_POINTS + 9);
    // A worker silent for 10 minutes: only what is younger than 15 minutes is left.
    expect(h.series('w1', now + 10 * 60_000).t.length).toBe(30);
    h.forget('w1');
    expect(h.series('w1', now).t).toEqual([]);
  });
});

describe('LoadHistory steps', () => {
  test('a point keeps its step from its place in the ring: steps a worker was silent in have no point, across many laps of the ring', () => {
    const h = new LoadHistory();
    const first = 65_530;
    const skipped = new Set([3, 4, 5, 9]);
    for (let i = 0; i < 12; i++) if (!skipped.has(i)) h.record('w1', (first + i) * HISTORY_STEP_MS + 1234, load(i + 0.25));
    const s = h.series('w1', (first + 11) * HISTORY_STEP_MS);
    const kept = Array.from({ length: 12 }, (_, i) => i).filter((i) => !skipped.has(i));
    expect(s.t).toEqual(kept.map((i) => (first + i) * HISTORY_STEP_MS));
    expect(s.cpuPercent).toEqual(kept.map((i) => Math.round((i + 0.25) * 10) / 10));
    // Ten laps of the ring later, point by point: only the last 90 steps are answered, each once.
    const t1 = (first + 11) * HISTORY_STEP_MS;
    for (let i = 1; i <= 10 * HISTORY_POINTS; i++) h.record('w1', t1 + i * HISTORY_STEP_MS, load(i % 100));
    const late = h.series('w1', t1 + 10 * HISTORY_POINTS * HISTORY_STEP_MS);
    expect(late.t).toEqual(Array.from({ length: HISTORY_POINTS }, (_, k) => t1 + (9 * HISTORY_POINTS + 1 + k) * HISTORY_STEP_MS));
    // Long after (the same cell of the ring): a new ring, never the old points.
    const later = t1 + 10 * HISTORY_POINTS * HISTORY_STEP_MS + 65_536 * HISTORY_STEP_MS;
    h.record('w1', later, load(50));
    expect(h.series('w1', later)).toMatchObject({ t: [later], cpuPercent: [50] });
  });

  test('memory is packed in 20 bits: exact below 32 KiB, within 1/16,384 above, up to 64 TiB; CPU is kept in tenths up to 409.4%', () => {
    for (const b of [0, 1, 1000, 32_767]) expect(decodeMemory(encodeMemory(b))).toBe(b);
    let previous = -1;
    for (let b = 32_768; b < 2 ** 46; b = Math.ceil(b * 1.37) + 1) {
      const back = decodeMemory(encodeMemory(b));
      expect(Math.abs(back - b) / b).toBeLessThanOrEqual(2 ** -15);
      expect(back).toBeGreaterThanOrEqual(previous);
      expect(encodeMemory(b)).toBeLessThan(2 ** 20);
      previous = back;
    }
    for (const b of [2 ** 20, 24 * 2 ** 30, 2 ** 45]) expect(decodeMemory(encodeMemory(b))).toBe(b);
    expect(decodeMemory(encodeMemory(2 ** 50))).toBe((2 ** 15 - 1) * 2 ** 31);
    const h = new LoadHistory();
    h.record('w1', 0, load(123.44, 24 * 2 ** 30 + 12_345));
    h.record('w1', HISTORY_STEP_MS, load(5000));
    const s = h.series('w1', HISTORY_STEP_MS);
    expect(s.cpuPercent).toEqual([123.4, 409.4]);
    expect(Math.abs(s.memoryUsedBytes[0]! - (24 * 2 ** 30 + 12_345))).toBeLessThanOrEqual((24 * 2 ** 30) / 2 ** 15);
  });

  test('a gap of 15 minutes or a clock set back starts the ring afresh', () => {
    const h = new LoadHistory();
    const t0 = 1_000_000 * HISTORY_STEP_MS;
    h.record('w1', t0, load(1));
    h.record('w1', t0 + HISTORY_STEP_MS, load(2));
    h.record('w1', t0 + (HISTORY_POINTS + 1) * HISTORY_STEP_MS, load(3));
    expect(h.series('w1', t0 + (HISTORY_POINTS + 1) * HISTORY_STEP_MS).cpuPercent).toEqual([3]);
    h.record('w1', t0 - 5 * HISTORY_STEP_MS, load(4));
    expect(h.series('w1', t0 - 5 * HISTORY_STEP_MS)).toMatchObject({ t: [t0 - 5 * HISTORY_STEP_MS], cpuPercent: [4] });
  });
});

describe('LoadHistory slots', () => {
  test("300 workers share two chunks of arrays; a forgotten worker's slot is reused, clean", () => {
    const h = new LoadHistory();
    const t0 = 1_000_000 * HISTORY_STEP_MS;
    for (let w = 0; w < 300; w++) for (let i = 0; i < 3; i++) h.record(`w${w}`, t0 + i * HISTORY_STEP_MS, load(w + i, (w + 1) * 2 ** 30));
    expect(h.series('w299', t0 + 2 * HISTORY_STEP_MS)).toEqual({
      stepMs: HISTORY_STEP_MS,
      t: [t0, t0 + HISTORY_STEP_MS, t0 + 2 * HISTORY_STEP_MS],
      cpuPercent: [299, 300, 301],
      memoryUsedBytes: [300 * 2 ** 30, 300 * 2 ** 30, 300 * 2 ** 30],
    });
    h.forget('w0');
    h.record('new', t0 + 2 * HISTORY_STEP_MS, load(7));
    expect(h.series('new', t0 + 2 * HISTORY_STEP_MS).cpuPercent).toEqual([7]);
    expect(h.series('w1', t0 + 2 * HISTORY_STEP_MS).cpuPercent).toEqual([1, 2, 3]);
  });
});

describe('sparkline', () => {
  test('scales to the maximum given, or to the largest value', () => {
    expect(sparkline([0, 50, 100], 100)).toBe('▁▅█');
    expect(sparkline([1, 2], 0)).toBe('▅█');
    expect(sparkline([], 100)).toBe('-');
  });
});

describe('workers in a terminal', () => {
  test('colours the status words only: suspect yellow, UNAVAILABLE red, available green', () => {
    const text = ['NAME  STATUS       HOST', 'w1    available    vm', 'w2    suspect      vm', 'w3    UNAVAILABLE  vm', '1 of 3 available'].join('\n');
    expect(workersCommand.colorize!(text).split('\n')).toEqual([
      'NAME  STATUS       HOST',
      'w1    \x1b[32mavailable\x1b[0m    vm',
      'w2    \x1b[33msuspect\x1b[0m      vm',
      'w3    \x1b[31mUNAVAILABLE\x1b[0m  vm',
      '1 of 3 available',
    ]);
  });
});
