import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect, test } from 'vitest';
import { removeLogs } from '../../../packages/worker/src/log-pump.js';

test('removeLogs takes a forgotten process its log, its rotated files and its pipe, nothing of anyone else', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'remove-logs-'));
  const names = [
    'web.100.log',
    'web.100.log.1',
    'web.100.log.2',
    'web.100.log.3',
    'web.100.pipe',
    // Another process of the same app whose pid starts alike, another app, a spare.
    'web.1000.log',
    'web.1000.log.1',
    'web.10.log',
    'db.100.log',
    '.spare-0a1b2c.log',
  ];
  for (const n of names) writeFileSync(path.join(dir, n), 'x');
  await removeLogs(path.join(dir, 'web.100.log'));
  expect(readdirSync(dir).sort()).toEqual(['.spare-0a1b2c.log', 'db.100.log', 'web.10.log', 'web.1000.log', 'web.1000.log.1']);
  // A gap in the chain (a rotated file removed by hand) leaves nothing behind; no pipe is no error.
  writeFileSync(path.join(dir, 'web.1000.log.3'), 'x');
  await removeLogs(path.join(dir, 'web.1000.log'));
  expect(readdirSync(dir).sort()).toEqual(['.spare-0a1b2c.log', 'db.100.log', 'web.10.log']);
  // Gone already: no error.
  await removeLogs(path.join(dir, 'web.1000.log'));
});
