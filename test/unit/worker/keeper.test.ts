import { describe, expect, test } from 'vitest';
import type { ExitInfo, InstanceSpec } from '@drover/protocol';
import { nextAfterExit } from '../../../packages/worker/src/keeper.js';

const spec = (restart: Partial<InstanceSpec['restart']> = {}, healthyAfterMs = 0): InstanceSpec => ({
  id: 's.p.v.0',
  restart: { policy: 'on-failure', maxRestarts: 3, windowMs: 60_000, backoffMs: [100, 1000], ...restart },
  stop: { signal: 'SIGINT', timeoutMs: 1000 },
  healthyAfterMs,
});
const exit = (code: number | null, signal: string | null = null, signalledBy: ExitInfo['signalledBy'] = null): ExitInfo => ({
  code,
  signal,
  reason: 'x',
  signalledBy,
  forced: false,
  coreDumped: false,
  endedAt: '',
});

describe('nextAfterExit', () => {
  test('policies: on-failure restarts failures only, always restarts an exit 0, never nothing, a stop is never restarted', () => {
    const r = { spec: spec(), restartTimes: [], failures: 0, startedAtMs: 0 };
    expect(nextAfterExit(r, exit(0), 10).state).toBe('exited');
    expect(nextAfterExit(r, exit(1), 10).state).toBe('backoff');
    expect(nextAfterExit(r, exit(null, 'SIGSEGV'), 10).state).toBe('backoff');
    expect(nextAfterExit({ ...r, spec: spec({ policy: 'always' }) }, exit(0), 10).state).toBe('backoff');
    expect(nextAfterExit({ ...r, spec: spec({ policy: 'never' }) }, exit(1), 10).state).toBe('exited');
    expect(nextAfterExit({ ...r, spec: spec({ policy: 'always' }) }, exit(null, 'SIGINT', 'stop'), 10).state).toBe('exited');
  });

  test('the back-off doubles up to its most, and starts afresh after a long enough run', () => {
    let r = { spec: spec(), restartTimes: [] as number[], failures: 0, startedAtMs: 0 };
    const delays: number[] = [];
    for (let i = 0; i < 6; i++) {
      const n = nextAfterExit({ ...r, spec: spec({ maxRestarts: 100 }) }, exit(1), 10);
      if (n.state !== 'backoff') throw new Error(n.state);
      delays.push(n.delayMs);
      r = { ...r, failures: n.failures };
    }
    expect(delays).toEqual([100, 200, 400, 800, 1000, 1000]);
    const fresh = nextAfterExit({ ...r, spec: spec({ maxRestarts: 100 }), startedAtMs: 0 }, exit(1), 5000);
    expect(fresh).toMatchObject({ state: 'backoff', delayMs: 100 });
  });

  test('maxRestarts within the window: failed; restarts older than the window do not count', () => {
    const now = 100_000;
    expect(nextAfterExit({ spec: spec(), restartTimes: [now - 3000, now - 2000, now - 1000], failures: 3, startedAtMs: now - 10 }, exit(1), now)).toMatchObject(
      {
        state: 'failed',
      },
    );
    expect(
      nextAfterExit({ spec: spec(), restartTimes: [now - 90_000, now - 2000, now - 1000], failures: 3, startedAtMs: now - 10 }, exit(1), now),
    ).toMatchObject({
      state: 'backoff',
      restartTimes: [now - 2000, now - 1000],
    });
  });
});
