import { DroverError, ErrorCode } from '@drover/protocol';
import { badArgs } from '../run-line.js';
import { defineCommand } from './types.js';

export const waitCommand = defineCommand<{ available: number; wanted: number; waitedMs: number }>({
  name: 'wait',
  usage: 'wait N [--timeout S] [--json]',
  summary: 'wait until N workers are available (for scripts); default timeout 60 s',
  options: { timeout: { type: 'string' } },
  minArgs: 1,
  maxArgs: 1,
  async run(args, ctx) {
    const wanted = Number(args.positionals[0]);
    if (!Number.isInteger(wanted) || wanted < 0) throw badArgs(this, `N must be a whole number, got "${args.positionals[0]}"`);
    const timeoutS = args.values.timeout === undefined ? 60 : Number(args.values.timeout);
    if (!Number.isFinite(timeoutS) || timeoutS < 0) throw badArgs(this, `--timeout must be seconds >= 0, got "${String(args.values.timeout)}"`);
    const started = Date.now();
    const { fleet, signal } = ctx;
    await new Promise<void>((resolve, reject) => {
      const check = (): void => {
        if (fleet.availableCount() >= wanted) return finish();
        if (ctx.interactive) ctx.out.progress(`waiting for ${wanted} workers: ${fleet.availableCount()} available`);
      };
      const finish = (err?: Error): void => {
        clearTimeout(timer);
        fleet.off('joined', check).off('available', check).off('unavailable', check).off('left', check);
        signal.removeEventListener('abort', onAbort);
        ctx.out.progress(null);
        if (err) reject(err);
        else resolve();
      };
      const onAbort = (): void => finish(new DroverError(ErrorCode.CANCELLED, 'cancelled'));
      const timer = setTimeout(
        () => finish(new DroverError(ErrorCode.TIMEOUT, `only ${fleet.availableCount()} of ${wanted} workers available after ${timeoutS} s`)),
        timeoutS * 1000,
      );
      fleet.on('joined', check).on('available', check).on('unavailable', check).on('left', check);
      signal.addEventListener('abort', onAbort, { once: true });
      check();
    });
    return { available: ctx.fleet.availableCount(), wanted, waitedMs: Date.now() - started };
  },
  format(d) {
    return `${d.available} workers available (waited ${(d.waitedMs / 1000).toFixed(1)} s)`;
  },
});
