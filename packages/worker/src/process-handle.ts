import type { ProcessRecord } from './process-table.js';
import type { Child } from './spawn-helper.js';

/**
 * The handle of one launched process, as Nomad's task handle: send it signals (to its whole
 * process group), wait for its end, and escalate a stop to SIGKILL. The escalation is armed
 * here, not in the request that asked for it, so it fires even when that request is cancelled
 * or the link to the master drops.
 */
export class ProcessHandle {
  private readonly waiters = new Set<() => void>();
  private escalation: NodeJS.Timeout | null = null;

  constructor(
    readonly record: ProcessRecord,
    /** Our child, or null for a process re-adopted after an agent restart. */
    readonly child: Child | null,
  ) {}

  get pid(): number {
    return this.record.pid;
  }

  get ended(): boolean {
    return this.record.exit !== null;
  }

  /** Sends `signal` to the process group (to the process alone when the group is gone). */
  send(signal: NodeJS.Signals): void {
    sendToGroup(this.pid, signal);
  }

  /** Unless the process ends first, runs `escalate` after `ms`, whoever is still waiting. */
  escalateAfter(ms: number, escalate: () => void): void {
    if (this.escalation || this.ended) return;
    this.escalation = setTimeout(() => {
      this.escalation = null;
      if (!this.ended) escalate();
    }, ms);
    this.escalation.unref();
  }

  /** Resolves true when the process has ended, false after `ms` or on abort. */
  waitForExit(ms: number, abort?: AbortSignal): Promise<boolean> {
    if (this.ended) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = (value: boolean): void => {
        clearTimeout(timer);
        this.waiters.delete(wake);
        abort?.removeEventListener('abort', onAbort);
        resolve(value);
      };
      const wake = (): void => done(true);
      const onAbort = (): void => done(false);
      const timer = setTimeout(() => done(false), ms);
      this.waiters.add(wake);
      abort?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** The process has ended (its record has its exit): wake every waiter, disarm escalation. */
  markEnded(): void {
    if (this.escalation) clearTimeout(this.escalation);
    this.escalation = null;
    for (const wake of [...this.waiters]) wake();
  }
}

/** Signals the process group `pid` leads; when there is no such group, the process alone. */
export function sendToGroup(pid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(-pid, signal);
    return true;
  } catch {
    try {
      process.kill(pid, signal);
      return true;
    } catch {
      return false; // already gone; its exit is on its way
    }
  }
}
