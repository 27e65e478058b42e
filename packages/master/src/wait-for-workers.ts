import { DroverError, ErrorCode } from '@drover/protocol';
import type { Fleet } from './fleet.js';

/**
 * Resolves once `n` workers are available; rejects with TIMEOUT after `timeoutMs` (or resolves,
 * with `quiet`), and with CANCELLED on abort. `onChange` sees each count while it waits.
 */
export function waitForWorkers(
  fleet: Fleet,
  n: number,
  opts: { timeoutMs: number; signal?: AbortSignal; quiet?: boolean; onChange?: (available: number) => void },
): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const check = (): void => {
      if (fleet.availableCount() >= n) return finish();
      opts.onChange?.(fleet.availableCount());
    };
    const finish = (err?: Error): void => {
      clearTimeout(timer);
      fleet.off('joined', check).off('available', check).off('unavailable', check).off('left', check);
      opts.signal?.removeEventListener('abort', onAbort);
      if (err) reject(err);
      else resolve();
    };
    const onAbort = (): void => finish(new DroverError(ErrorCode.CANCELLED, 'cancelled'));
    const timer = setTimeout(() => {
      if (opts.quiet) return finish();
      finish(new DroverError(ErrorCode.TIMEOUT, `only ${fleet.availableCount()} of ${n} workers available after ${opts.timeoutMs / 1000} s`));
    }, opts.timeoutMs);
    fleet.on('joined', check).on('available', check).on('unavailable', check).on('left', check);
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    check();
  });
}
