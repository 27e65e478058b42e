import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { expect, test } from 'vitest';
import { commands } from '../../../packages/master/src/commands/index.js';
import { complete } from '../../../packages/master/src/shell.js';
import { tempDir } from '../../helpers/cluster.js';

const fleet = { names: () => ['w1', 'w2', 'web'] };

test('Tab completes commands, flags, worker names, and local paths where a command takes one', () => {
  const dir = tempDir();
  mkdirSync(path.join(dir, 'build'));
  writeFileSync(path.join(dir, 'build', 'server'), '');
  writeFileSync(path.join(dir, 'build', 'libfoo.so.1'), '');
  writeFileSync(path.join(dir, '.hidden'), '');
  const c = (line: string): string[] => complete(line, commands, fleet, dir)[0];

  expect(c('wo')).toEqual(['workers ']);
  expect(c('')).toContain('copy ');
  expect(c('launch w')).toEqual(['w1 ', 'w2 ', 'web ']);
  expect(c('copy a')).toEqual(['all ']);
  expect(c('copy w1 bu')).toEqual(['build/']);
  expect(c('copy w1 build/s')).toEqual(['build/server ']);
  expect(c('copy w1 build/server --lib build/li')).toEqual(['build/libfoo.so.1 ']);
  expect(c('copy w1 ')).toEqual(['build/']); // dot files only when asked for
  expect(c('copy w1 .h')).toEqual(['.hidden ']);
  expect(c('stop w1 --ti')).toEqual(['--timeout']);
  expect(c('workers; ps w')).toEqual(['w1 ', 'w2 ', 'web ']);
  expect(c('help co')).toEqual(['copy ']);
  expect(c('nosuch x')).toEqual([]);
});
