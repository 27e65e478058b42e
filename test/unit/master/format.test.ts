import { expect, test } from 'vitest';
import { formatBytes } from '@drover/protocol';
import { escapeControl, formatDuration, table } from '../../../packages/master/src/format.js';

test('tables align text left and numbers right under a left-aligned header', () => {
  expect(
    table(
      ['NAME', 'CPUS', 'MEMORY'],
      [
        ['w1', 2, '1.5 GiB'],
        ['worker-10', 16, '64 GiB'],
      ],
    ),
  ).toBe(['NAME       CPUS  MEMORY', 'w1            2  1.5 GiB', 'worker-10    16   64 GiB'].join('\n'));
});

test('durations and byte counts read as people write them', () => {
  expect([400, 12_000, 185_000, 7_260_000, 273_600_000].map(formatDuration)).toEqual(['0.4 s', '12 s', '3m05s', '2h01m', '3d04h']);
  expect([17, 1536, 5 * 1024 ** 2, 123 * 1024 ** 3].map(formatBytes)).toEqual(['17 B', '1.5 KiB', '5.0 MiB', '123 GiB']);
});

test('control characters are escaped; newlines, tabs and Unicode text stay', () => {
  expect(escapeControl('a\tb\nc')).toBe('a\tb\nc');
  expect(escapeControl('\x1b[31mred\x1b[0m')).toBe('\\x1b[31mred\\x1b[0m');
  expect(escapeControl('bell\x07 del\x7f c1\x9b')).toBe('bell\\x07 del\\x7f c1\\x9b');
  expect(escapeControl('Zürich ✓')).toBe('Zürich ✓');
});
