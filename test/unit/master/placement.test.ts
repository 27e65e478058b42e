import { describe, expect, test } from 'vitest';
import { place, type Candidate } from '../../../packages/master/src/services/placement.js';

const GiB = 1024 ** 3;
const worker = (name: string, over: Partial<Candidate> = {}): Candidate => ({
  name,
  available: true,
  labels: {},
  cpus: 4,
  memoryBytes: 16 * GiB,
  memoryUsedBytes: 2 * GiB,
  reservedCpus: 0,
  reservedMemoryBytes: 0,
  sameProgram: 0,
  instances: 0,
  ...over,
});

describe('place', () => {
  test('spreads replicas of a program first, then picks the most room, then the fewest instances, then the name', () => {
    const req = { on: 'any' as const, cpus: 1, memoryBytes: 0 };
    expect(place(req, [worker('b'), worker('a')])).toEqual({ ok: true, worker: 'a' });
    expect(place(req, [worker('a', { sameProgram: 1 }), worker('b', { reservedCpus: 3 })])).toEqual({ ok: true, worker: 'b' });
    expect(place(req, [worker('a', { reservedCpus: 2 }), worker('b')])).toEqual({ ok: true, worker: 'b' });
    expect(place(req, [worker('a', { instances: 3 }), worker('b', { instances: 1 })])).toEqual({ ok: true, worker: 'b' });
    // Heartbeats move used memory by a little: within 1% counts as the same room.
    expect(place(req, [worker('b', { memoryUsedBytes: 2 * GiB - 1e6 }), worker('a')])).toEqual({ ok: true, worker: 'a' });
  });

  test('memory counts the larger of what is reserved and what the heartbeat says is used', () => {
    const req = { on: 'any' as const, cpus: 0, memoryBytes: 6 * GiB };
    expect(place(req, [worker('a', { reservedMemoryBytes: 12 * GiB }), worker('b', { memoryUsedBytes: 11 * GiB })])).toEqual({
      ok: false,
      reason: 'needs 6.0 GiB; the roomiest available worker (b) has 4 CPUs and 5.0 GiB free',
    });
    expect(place(req, [worker('a', { reservedMemoryBytes: 12 * GiB }), worker('b', { memoryUsedBytes: 9 * GiB })])).toEqual({ ok: true, worker: 'b' });
  });

  test('only available, undrained workers that match on', () => {
    const gone = worker('a', { available: false });
    const drained = worker('b', { draining: true });
    const zoneB = worker('c', { labels: { zone: 'b' } });
    const zoneA = worker('d', { labels: { zone: 'a' } });
    expect(place({ on: 'any', cpus: 0, memoryBytes: 0 }, [gone, drained, zoneB])).toEqual({ ok: true, worker: 'c' });
    expect(place({ on: { labels: { zone: 'a' } }, cpus: 0, memoryBytes: 0 }, [gone, drained, zoneB, zoneA])).toEqual({ ok: true, worker: 'd' });
    expect(place({ on: { workers: ['a', 'c'] }, cpus: 0, memoryBytes: 0 }, [gone, drained, zoneB, zoneA])).toEqual({ ok: true, worker: 'c' });
    expect(place({ on: { labels: { zone: 'z' } }, cpus: 0, memoryBytes: 0 }, [zoneA])).toEqual({ ok: false, reason: 'no worker with zone=z is available' });
  });

  test('says why nothing fits, naming the roomiest worker', () => {
    const r = place({ on: 'any', cpus: 2, memoryBytes: 4 * GiB }, [
      worker('a', { reservedCpus: 3, memoryUsedBytes: 10 * GiB }),
      worker('b', { reservedCpus: 4 }),
    ]);
    // Roomiest by the shares of CPUs and memory left together.
    expect(r).toEqual({ ok: false, reason: 'needs 2 CPUs and 4.0 GiB; the roomiest available worker (b) has 0 CPUs and 14.0 GiB free' });
  });
});
