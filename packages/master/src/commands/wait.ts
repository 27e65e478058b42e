import { waitForWorkers } from '../wait-for-workers.js';
import { seconds, wholeNumber } from './options.js';
import { badArgs } from '../run-line.js';
import { defineCommand } from './types.js';

export const waitCommand = defineCommand<{ available: number; wanted: number; waitedMs: number }>({
  name: 'wait',
  usage: 'wait N [--timeout S] [--json]',
  summary: 'wait until N workers are available (for scripts); default timeout 60 s',
  options: { timeout: { type: 'string', parse: seconds({ allowZero: true }) } },
  minArgs: 1,
  maxArgs: 1,
  async run(args, ctx) {
    let wanted: number;
    try {
      wanted = wholeNumber(0, 1_000_000)(args.positionals[0]!);
    } catch {
      throw badArgs(this, `N must be a whole number, got "${args.positionals[0]}"`);
    }
    const timeoutMs = (args.values.timeout as number | undefined) ?? 60_000;
    const started = performance.now();
    try {
      await waitForWorkers(ctx.fleet, wanted, {
        timeoutMs,
        signal: ctx.signal,
        onChange: (n) => ctx.interactive && ctx.out.progress(`waiting for ${wanted} workers: ${n} available`),
      });
    } finally {
      ctx.out.progress(null);
    }
    return { available: ctx.fleet.availableCount(), wanted, waitedMs: Math.round(performance.now() - started) };
  },
  format(d) {
    return `${d.available} workers available (waited ${(d.waitedMs / 1000).toFixed(1)} s)`;
  },
});
