import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { pino } from 'pino';
import { expect, test } from 'vitest';
import { LineSink } from '@drover/protocol';
import { LogLimiter } from '../../../packages/master/src/log-limiter.js';
import { createLogger } from '../../../packages/master/src/logger.js';
import { readOpenFileLimit } from '../../../packages/master/src/open-files.js';
import { tempDir } from '../../helpers/cluster.js';

test('a line that cannot be written is dropped and counted, never thrown; the next good write says how many', () => {
  const out: string[] = [];
  let full = true;
  const sink = new LineSink((line) => {
    if (full) throw Object.assign(new Error('no space'), { code: 'ENOSPC' });
    out.push(line);
  }, 'test');
  sink.write('a\n');
  sink.write('b\n');
  expect(sink.droppedLines).toBe(2);
  full = false;
  sink.write('c\n');
  expect(out).toHaveLength(2);
  expect(JSON.parse(out[0]!)).toMatchObject({ level: 40, dropped: 2, reason: 'ENOSPC', msg: 'dropped 2 log lines (ENOSPC)' });
  expect(out[1]).toBe('c\n');
});

test('master.log rotates by size while the master runs, keeping one generation, mode 0600', () => {
  const file = path.join(tempDir(), 'master.log');
  const logger = createLogger('info', file, 4096);
  for (let i = 0; i < 200; i++) logger.info({ i, pad: 'x'.repeat(40) }, 'line');
  expect(existsSync(`${file}.1`)).toBe(true);
  expect(statSync(file).size).toBeLessThan(4096 + 200);
  expect(statSync(file).mode & 0o777).toBe(0o600);
  const last = readFileSync(file, 'utf8').trim().split('\n').at(-1)!;
  expect(JSON.parse(last)).toMatchObject({ i: 199 });
});

test('the limiter logs 20 lines per source and kind per window, then one summary of the rest', () => {
  const lines: { msg: string; source?: string; suppressed?: number }[] = [];
  const logger = pino({ level: 'debug' }, { write: (l: string) => void lines.push(JSON.parse(l) as { msg: string }) });
  const limiter = new LogLimiter(logger);
  for (let i = 0; i < 1000; i++) limiter.log('warn', '198.18.0.9', { i }, 'refused a worker');
  limiter.log('warn', '198.18.0.10', {}, 'refused a worker');
  limiter.close();
  expect(lines.filter((l) => l.msg === 'refused a worker')).toHaveLength(21);
  expect(lines.filter((l) => l.suppressed)).toEqual([expect.objectContaining({ source: '198.18.0.9', suppressed: 980 })]);
});

test('the open-file limit is read from /proc/self/limits', () => {
  const text =
    'Max cpu time              unlimited            unlimited            seconds\nMax open files            1024                 524288               files\n';
  expect(readOpenFileLimit(text)).toEqual({ soft: 1024, hard: 524288 });
  expect(readOpenFileLimit('Max open files  unlimited  unlimited  files')).toEqual({ soft: Infinity, hard: Infinity });
  expect(readOpenFileLimit('nothing')).toBeNull();
});
