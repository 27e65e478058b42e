import { appendFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { pino } from 'pino';
import { expect, onTestFinished, test } from 'vitest';
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

const silent = pino({ level: 'silent' });
/** A table on `dir`, closed (its journal file let go) when the test ends. */
function tableIn(dir: string): ProcessTable {
  const table = new ProcessTable(dir, silent);
  onTestFinished(() => table.close());
  return table;
}
/** The table a restarted agent would read back from `dir`. */
async function reread(dir: string): Promise<ProcessRecord[]> {
  const table = tableIn(dir);
  await table.load();
  return table.all();
}

const journalOf = (dir: string): string[] => {
  try {
    return readFileSync(path.join(dir, 'processes.journal'), 'utf8').split('\n').filter(Boolean);
  } catch {
    return [];
  }
};

test('the process table forgets the oldest dead launches beyond its limit, never a live one, and reads back the same', async () => {
  const dir = tempDir();
  const table = tableIn(dir);
  table.add(record(1, false));
  const dropped: ProcessRecord[] = [];
  for (let pid = 2; pid <= MAX_DEAD_RECORDS + 5; pid++) dropped.push(...table.add(record(pid, true)));
  expect(dropped.map((r) => r.pid)).toEqual([2, 3, 4, 5]);
  expect(table.get(1)?.exit).toBeNull();
  expect(table.all()).toHaveLength(MAX_DEAD_RECORDS + 1);
  await table.flush();

  // A table read back after a restart is the same table.
  expect(await reread(dir)).toEqual(table.all());
});

test('a change appends one journal line (not the whole table); a long journal is folded into processes.json', async () => {
  const dir = tempDir();
  const table = tableIn(dir);
  const live = record(1, false);
  table.add(live);
  await table.flush();
  expect(existsSync(path.join(dir, 'processes.json'))).toBe(false);
  expect(journalOf(dir).map((l) => (JSON.parse(l) as ProcessRecord).pid)).toEqual([1]);
  live.signalled = { by: 'stop', signal: 'SIGINT', forced: false };
  table.save(live);
  table.add(record(2, true));
  await table.flush();
  expect(journalOf(dir)).toHaveLength(3);
  expect(JSON.parse(journalOf(dir)[1]!)).toMatchObject({ pid: 1, signalled: { by: 'stop' } });

  // Twice as many lines as records (1,001 kept): the table is written whole and the journal starts afresh.
  for (let pid = 3; pid <= 2100; pid++) {
    table.add(record(pid, true));
    if (pid % 100 === 0) await table.flush();
  }
  await table.flush();
  const saved = JSON.parse(readFileSync(path.join(dir, 'processes.json'), 'utf8')) as ProcessRecord[];
  expect(saved.length).toBe(MAX_DEAD_RECORDS + 1);
  expect(journalOf(dir).length).toBeLessThan(2 * (MAX_DEAD_RECORDS + 1));
  expect(await reread(dir)).toEqual(table.all());
});

test('a torn last journal line (a crash mid-append) is skipped and cut off; the next line stands on its own', async () => {
  const dir = tempDir();
  const table = tableIn(dir);
  table.add(record(1, false));
  table.add(record(2, true));
  await table.flush();
  appendFileSync(path.join(dir, 'processes.journal'), '{"pid":3,"app":"a","exe');
  const again = tableIn(dir);
  await again.load();
  expect(again.all().map((r) => r.pid)).toEqual([1, 2]);
  again.add(record(4, false));
  await again.flush();
  expect((await reread(dir)).map((r) => r.pid)).toEqual([1, 2, 4]);
});

test('forgotten records stay forgotten, and a crash between writing processes.json and emptying the journal reads back the same', async () => {
  const dir = tempDir();
  const table = tableIn(dir);
  for (let pid = 1; pid <= MAX_DEAD_RECORDS + 3; pid++) table.add(record(pid, true));
  await table.flush();
  const expected = table.all();
  expect(expected[0]!.pid).toBe(4);
  expect((await reread(dir)).map((r) => r.pid)).toEqual(expected.map((r) => r.pid));
  // The journal's lines were appended before the snapshot was written: both at once read back the same.
  const journal = readFileSync(path.join(dir, 'processes.journal'), 'utf8');
  table.save();
  await table.flush();
  expect(journalOf(dir)).toEqual([]);
  writeFileSync(path.join(dir, 'processes.journal'), journal);
  expect((await reread(dir)).map((r) => r.pid)).toEqual(expected.map((r) => r.pid));
});
