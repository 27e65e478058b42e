import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, test } from 'vitest';
import { EventLog } from '../../../packages/master/src/services/events.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('EventLog', () => {
  test('records in order, durably, reads back by time, and skips a torn last line', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'drover-events-'));
    dirs.push(dir);
    const log = new EventLog(dir, pino({ level: 'silent' }));
    const seen: string[] = [];
    log.on('event', (e) => seen.push(e.kind));
    log.record('worker-joined', { worker: 'w1' }, 'w1 joined');
    log.record('placed', { worker: 'w1', instance: 'a.b.c.0' }, 'a.b.c.0 placed on w1');
    await log.flush();
    expect(seen).toEqual(['worker-joined', 'placed']);
    expect(statSync(path.join(dir, 'events.log')).mode & 0o777).toBe(0o600);
    writeFileSync(path.join(dir, 'events.log'), `${readFileSync(path.join(dir, 'events.log'), 'utf8')}{"at":"2026-`, { flag: 'w' });
    const all = await log.read();
    expect(all.map((e) => e.text)).toEqual(['w1 joined', 'a.b.c.0 placed on w1']);
    expect(await log.read(Date.now() + 60_000)).toEqual([]);
    await log.close();
  });
});
