import { appendFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { pino } from 'pino';
import { expect, onTestFinished, test } from 'vitest';
import { MAX_DEAD_ARG_CHARS, MAX_DEAD_RECORDS, ProcessTable, type ProcessRecord } from '../../../packages/worker/src/process-table.js';
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

test('a snapshot written by an older agent (one JSON array on one line) reads back, and is rewritten one record a line', async () => {
  const dir = tempDir();
  writeFileSync(path.join(dir, 'processes.json'), JSON.stringify([record(1, false), record(2, true)]));
  const table = tableIn(dir);
  await table.load();
  expect(table.all().map((r) => r.pid)).toEqual([1, 2]);
  table.save();
  await table.flush();
  const text = readFileSync(path.join(dir, 'processes.json'), 'utf8');
  expect(text.split('\n')).toEqual(['[', `${JSON.stringify(record(1, false))},`, JSON.stringify(record(2, true)), ']', '']);
  expect((await reread(dir)).map((r) => r.pid)).toEqual([1, 2]);
});

test('dead launches with long command lines are forgotten by their size too; a live one never is', async () => {
  const dir = tempDir();
  const table = tableIn(dir);
  const long = (pid: number, dead: boolean): ProcessRecord => ({ ...record(pid, dead), args: ['x'.repeat(1024 * 1024)] });
  table.add(long(1, false));
  for (let pid = 2; pid <= 100; pid++) table.add(long(pid, true));
  const kept = table.all();
  // The live one, and as many dead ones as fit in MAX_DEAD_ARG_CHARS, the newest.
  expect(kept[0]!.pid).toBe(1);
  const dead = kept.filter((r) => r.exit !== null);
  expect(dead.length).toBe(Math.floor(MAX_DEAD_ARG_CHARS / (1024 * 1024 + 1)));
  expect(dead.at(-1)!.pid).toBe(100);
  await table.flush();
  expect((await reread(dir)).map((r) => r.pid)).toEqual(kept.map((r) => r.pid));
});

test('a journal of long lines is folded by its bytes, and a big snapshot is written in slices the event loop runs between', async () => {
  const dir = tempDir();
  const table = tableIn(dir);
  const long = (pid: number): ProcessRecord => ({ ...record(pid, false), args: ['x'.repeat(1024 * 1024)] });
  // 80 live launches of 1 MiB each: 80 journal lines, far under the line limit, past 64 MiB.
  for (let pid = 1; pid <= 80; pid++) {
    table.add(long(pid));
    if (pid % 10 === 0) await table.flush();
  }
  await table.flush();
  expect(existsSync(path.join(dir, 'processes.json'))).toBe(true);
  expect(journalOf(dir).length).toBeLessThan(80);

  // Serializing the whole table in one go, as the snapshot once was, holds the loop this long.
  const start = performance.now();
  JSON.stringify(table.all());
  const whole = performance.now() - start;
  // The snapshot written now: the loop's longest wait between two turns is a fraction of that.
  let longest = 0;
  let last = performance.now();
  let turning = true;
  const turn = (): void => {
    const now = performance.now();
    longest = Math.max(longest, now - last);
    last = now;
    if (turning) setImmediate(turn);
  };
  setImmediate(turn);
  table.save();
  await table.flush();
  turning = false;
  expect(longest, `longest turn ${longest.toFixed(1)} ms, whole stringify ${whole.toFixed(1)} ms`).toBeLessThan(whole / 2);
  expect((await reread(dir)).map((r) => r.pid)).toEqual(table.all().map((r) => r.pid));
});
