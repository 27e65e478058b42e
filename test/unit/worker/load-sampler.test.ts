import os from 'node:os';
import { expect, test } from 'vitest';
import { LoadSampler, cpuTicks, memoryBytes } from '../../../packages/worker/src/facts.js';
import { CLK_TCK } from '../../../packages/worker/src/proc.js';

test("the machine's CPU ticks are os.cpus()'s times summed (user, nice, system, idle, irq), idle apart", () => {
  const sum = (): { total: number; idle: number } =>
    os.cpus().reduce((a, c) => ({ total: a.total + c.times.user + c.times.nice + c.times.sys + c.times.idle + c.times.irq, idle: a.idle + c.times.idle }), {
      total: 0,
      idle: 0,
    });
  const before = sum();
  const ticks = cpuTicks();
  const after = sum();
  // os.cpus() counts milliseconds: ticks times 1000 / CLK_TCK. Read between two of its readings.
  // The kernel rounds each field of the "cpu" line from the sum of the CPUs' times, and os.cpus()
  // gets each CPU's field rounded: up to a tick apart per field and CPU (five fields summed).
  const ms = 1000 / CLK_TCK;
  expect(ticks.total * ms).toBeGreaterThanOrEqual(before.total - 5 * ms * os.cpus().length);
  expect(ticks.total * ms).toBeLessThanOrEqual(after.total + 5 * ms * os.cpus().length);
  expect(ticks.idle * ms).toBeGreaterThanOrEqual(before.idle - ms * os.cpus().length);
  expect(ticks.idle * ms).toBeLessThanOrEqual(after.idle + ms * os.cpus().length);
  expect(ticks.idle).toBeLessThan(ticks.total);
});

test('memory is /proc/meminfo read once: the total os.totalmem() gives, the available os.freemem() gives', () => {
  const m = memoryBytes();
  expect(m.total).toBe(os.totalmem());
  // MemAvailable moves between two reads; within 2% of the machine here.
  expect(Math.abs(m.available - os.freemem())).toBeLessThan(m.total * 0.02);
  expect(m.available).toBeLessThanOrEqual(m.total);
});

test('a core kept busy shows in the CPU share of the next sample', () => {
  const sampler = new LoadSampler();
  const until = Date.now() + 300;
  while (Date.now() < until); // one core busy for 300 ms
  const load = sampler.sample(3);
  // At least most of one core's share of the machine (more if others were busy too).
  expect(load.cpuPercent).toBeGreaterThanOrEqual((0.6 * 100) / os.availableParallelism());
  expect(load.cpuPercent).toBeLessThanOrEqual(100);
  expect(load.processes).toBe(3);
  expect(load.memoryTotalBytes).toBe(os.totalmem());
  expect(load.memoryUsedBytes).toBeGreaterThan(0);
});
