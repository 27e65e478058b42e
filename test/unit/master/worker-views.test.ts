import { describe, expect, test } from 'vitest';
import { workersCommand } from '../../../packages/master/src/commands/workers.js';
import { HISTORY_POINTS, HISTORY_STEP_MS, LoadHistory } from '../../../packages/master/src/load-history.js';
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
  test('points stay exact across 2^16 steps (7.6 days of them), the step counter wrapping inside a ring', () => {
    const h = new LoadHistory();
    const first = 65_530; // steps are kept modulo 2^16: this ring wraps after 6 points
    for (let i = 0; i < 12; i++) h.record('w1', (first + i) * HISTORY_STEP_MS, load(i + 0.25));
    const s = h.series('w1', (first + 11) * HISTORY_STEP_MS);
    expect(s.t).toEqual(Array.from({ length: 12 }, (_, i) => (first + i) * HISTORY_STEP_MS));
    expect(s.cpuPercent).toEqual(Array.from({ length: 12 }, (_, i) => Math.round((i + 0.25) * 10) / 10));
    // 2^16 steps later (the same step modulo 2^16): a new ring, never the old points.
    const later = (first + 11 + 65_536) * HISTORY_STEP_MS;
    h.record('w1', later, load(50));
    expect(h.series('w1', later)).toMatchObject({ t: [later], cpuPercent: [50] });
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
