import { readFileSync } from 'node:fs';
import path from 'node:path';
import { pino } from 'pino';
import { expect, test } from 'vitest';
import { MAX_DEAD_RECORDS, ProcessTable, type ProcessRecord } from '../../../packages/worker/src/process-table.js';
import { tempDir } from '../../helpers/cluster.js';

function record(pid: number, dead: boolean): ProcessRecord {
  return {
    pid,
    app: 'a',
    executable: 'a',
    args: [],
    startedAt: new Date(pid).toISOString(),
    startedAtMs: pid,
    startTicks: pid,
    logPath: `/logs/a.${pid}.log`,
    exit: dead
      ? { code: 0, signal: null, reason: 'exited with code 0', signalledBy: null, forced: false, coreDumped: false, endedAt: new Date(pid).toISOString() }
      : null,
    adopted: false,
    coreLimit: 0,
    signalled: null,
    usage: { cpuUserSeconds: 0, cpuSystemSeconds: 0, cpuPercent: 0, rssBytes: 0, maxRssBytes: 0, sampledAt: null },
  };
}

test('the process table forgets the oldest dead launches beyond its limit, never a live one, and persists atomically', async () => {
  const dir = tempDir();
  const table = new ProcessTable(dir, pino({ level: 'silent' }));
  table.add(record(1, false));
  const dropped: ProcessRecord[] = [];
  for (let pid = 2; pid <= MAX_DEAD_RECORDS + 5; pid++) dropped.push(...table.add(record(pid, true)));
  expect(dropped.map((r) => r.pid)).toEqual([2, 3, 4, 5]);
  expect(table.get(1)?.exit).toBeNull();
  expect(table.all()).toHaveLength(MAX_DEAD_RECORDS + 1);
  await table.flush();
  const saved = JSON.parse(readFileSync(path.join(dir, 'processes.json'), 'utf8')) as ProcessRecord[];
  expect(saved.map((r) => r.pid)).toEqual(table.all().map((r) => r.pid));

  // A table read back after a restart is the same table.
  const again = new ProcessTable(dir, pino({ level: 'silent' }));
  await again.load();
  expect(again.all()).toEqual(table.all());
});
