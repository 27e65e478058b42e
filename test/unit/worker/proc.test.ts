import { expect, test } from 'vitest';
import { parseStat } from '../../../packages/worker/src/proc.js';

test('/proc/PID/stat parses even when the command name holds spaces and parentheses', () => {
  // Fields after the name: state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime ... starttime (22nd)
  const tail = 'S 1 4242 4242 0 -1 4194560 100 0 0 0 37 12 0 0 20 0 1 0 987654 1000 200';
  expect(parseStat(`4242 (my (weird) app) ${tail}`)).toEqual({ state: 'sleeping', pgrp: 4242, utimeTicks: 37, stimeTicks: 12, startTicks: 987654 });
  expect(parseStat(`7 (z) ${tail.replace(/^S/, 'Z')}`)?.state).toBe('zombie');
  expect(parseStat(`7 (d) ${tail.replace(/^S/, 'D')}`)?.state).toBe('disk-sleep');
  expect(parseStat(`7 (t) ${tail.replace(/^S/, 't')}`)?.state).toBe('stopped');
  expect(parseStat('garbage')).toBeNull();
});
