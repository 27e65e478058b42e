import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { afterEach, expect, test } from 'vitest';
import { CLK_TCK, clockTicksFromAuxv, readStatSync } from '../../../packages/worker/src/proc.js';
import type { ProcessRecord } from '../../../packages/worker/src/process-table.js';
import { UsageSampler, cpuPercent } from '../../../packages/worker/src/usage-sampler.js';

test("clock ticks come from the process's auxiliary vector, as getconf reads them", () => {
  const fromAuxv = clockTicksFromAuxv(readFileSync('/proc/self/auxv'));
  expect(fromAuxv).toBe(Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()));
  expect(CLK_TCK).toBe(fromAuxv);
  // AT_NULL ends the vector; a vector without AT_CLKTCK has no answer.
  const vector = Buffer.alloc(48);
  vector.writeBigUInt64LE(6n, 0); // AT_PAGESZ
  vector.writeBigUInt64LE(4096n, 8);
  vector.writeBigUInt64LE(17n, 32); // after AT_NULL: not read
  vector.writeBigUInt64LE(100n, 40);
  expect(clockTicksFromAuxv(vector)).toBeNull();
});

test('CPU % is the ticks used over the time between two samples, or over the life so far at the first', () => {
  // One second of CPU in one second: a core. Half a second of CPU in 250 ms: two cores.
  expect(cpuPercent({ ticks: 0, atMs: 0 }, { ticks: CLK_TCK, atMs: 1000 }, { startTicks: 0, uptimeTicks: 0 })).toBeCloseTo(100);
  expect(cpuPercent({ ticks: 100, atMs: 1000 }, { ticks: 100 + CLK_TCK / 2, atMs: 1250 }, { startTicks: 0, uptimeTicks: 0 })).toBeCloseTo(200);
  expect(cpuPercent({ ticks: 5, atMs: 1000 }, { ticks: 5, atMs: 2000 }, { startTicks: 0, uptimeTicks: 0 })).toBe(0);
  // No time between the two: no rate.
  expect(cpuPercent({ ticks: 5, atMs: 1000 }, { ticks: 9, atMs: 1000 }, { startTicks: 0, uptimeTicks: 0 })).toBe(0);
  // First sample: 30 ticks used of the 120 since it started (boot + 1000 ticks, now 1120).
  expect(cpuPercent(undefined, { ticks: 30, atMs: 5 }, { startTicks: 1000, uptimeTicks: 1120 })).toBeCloseTo(25);
  expect(cpuPercent(undefined, { ticks: 30, atMs: 5 }, { startTicks: 1000, uptimeTicks: null })).toBe(0);
});

const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) c.kill('SIGKILL');
});

function started(command: string): ProcessRecord {
  const child = spawn('sh', ['-c', command], { stdio: 'ignore' });
  children.push(child);
  const pid = child.pid!;
  return {
    pid,
    app: 'a',
    executable: 'sh',
    args: [],
    startedAt: new Date().toISOString(),
    startedAtMs: Date.now(),
    startTicks: readStatSync(pid)?.startTicks ?? null,
    logPath: `/logs/a.${pid}.log`,
    exit: null,
    adopted: false,
    coreLimit: 0,
    signalled: null,
    usage: { cpuUserSeconds: 0, cpuSystemSeconds: 0, cpuPercent: 0, rssBytes: 0, maxRssBytes: 0, sampledAt: null },
  };
}

const pause = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

test('the sampler reads live processes from /proc: a busy one near a core, an idle one near none, memory and its peak, the state ps shows; a gone one is reported', async () => {
  const busy = started('while :; do :; done');
  const idle = started('sleep 30');
  const gone: ProcessRecord[] = [];
  const sampler = new UsageSampler(
    () => [busy, idle],
    (r) => gone.push(r),
  );
  await sampler.sample();
  await pause(600);
  await sampler.sample();
  expect(busy.usage.cpuPercent).toBeGreaterThan(40);
  expect(busy.usage.cpuUserSeconds + busy.usage.cpuSystemSeconds).toBeGreaterThan(0.2);
  expect(idle.usage.cpuPercent).toBeLessThan(10);
  for (const r of [busy, idle]) {
    expect(r.usage.rssBytes).toBeGreaterThan(0);
    expect(r.usage.maxRssBytes).toBeGreaterThanOrEqual(r.usage.rssBytes);
    expect(r.usage.sampledAt).not.toBeNull();
  }
  expect(gone).toEqual([]);
  // What ps reads, through the same kept file.
  expect(sampler.stat(idle)?.state).toBe('sleeping');
  expect(sampler.stat(idle)?.startTicks).toBe(idle.startTicks);
  // Killed and reaped: its next sample finds it gone, and its last figures stay.
  const child = children[0]!;
  const reaped = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await reaped;
  const last = busy.usage;
  await sampler.sample();
  expect(gone).toEqual([busy]);
  expect(busy.usage).toBe(last);
  expect(sampler.stat(busy)).toBeNull();
});

test('concurrent samples share one reading; sampleOne reads just the process it is given', async () => {
  const a = started('sleep 30');
  const b = started('sleep 30');
  let asked = 0;
  const sampler = new UsageSampler(
    () => (asked++, [a, b]),
    () => undefined,
  );
  await Promise.all([sampler.sample(), sampler.sample(), sampler.sample()]);
  expect(asked).toBe(1);
  expect(a.usage.sampledAt).not.toBeNull();
  const c = started('sleep 30');
  sampler.sampleOne(c);
  expect(c.usage.sampledAt).not.toBeNull();
  expect(c.usage.rssBytes).toBeGreaterThan(0);
  expect(asked).toBe(1);
});
