import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { expect, test } from 'vitest';
import { tailOffset } from '../../../packages/worker/src/log-stream.js';
import { tempDir } from '../../helpers/cluster.js';

test('tailOffset finds where the last N lines start, across block boundaries and without a final newline', async () => {
  const dir = tempDir();
  const file = (name: string, text: string): string => {
    const p = path.join(dir, name);
    writeFileSync(p, text);
    return p;
  };
  const three = file('three', 'one\ntwo\nthree\n');
  expect(await tailOffset(three, 1)).toBe(8);
  expect(await tailOffset(three, 2)).toBe(4);
  expect(await tailOffset(three, 3)).toBe(0);
  expect(await tailOffset(three, 10)).toBe(0);
  expect(await tailOffset(three, 0)).toBe(14);
  expect(await tailOffset(file('open', 'a\nb'), 1)).toBe(2);
  expect(await tailOffset(file('empty', ''), 5)).toBe(0);
  const long = `${'x'.repeat(100_000)}\n${'y'.repeat(70_000)}\nlast\n`;
  expect(await tailOffset(file('long', long), 2)).toBe(100_001);
});
