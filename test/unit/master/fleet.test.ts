import { EventEmitter } from 'node:events';
import type { IncomingMessage } from 'node:http';
import type WebSocket from 'ws';
import { pino } from 'pino';
import { describe, expect, test } from 'vitest';
import { PROTOCOL_VERSION, QUIET_MAX_MS, quietMsFor, type Hello } from '@drover/protocol';
import { parseTargets, selectWorkers } from '../../../packages/master/src/commands/fan-out.js';
import { toWorkerRow } from '../../../packages/master/src/commands/workers.js';
import { Fleet } from '../../../packages/master/src/fleet.js';

const TOKEN = 'unit-token-0123456789';
const H = 1000;

/** Just enough of a ws socket for the fleet: records what is sent and how it was closed. */
class FakeSocket extends EventEmitter {
  readyState = 1;
  sent: unknown[] = [];
  closed: { code: number; reason: string } | null = null;
  send(data: string): void {
    this.sent.push(JSON.parse(data));
  }
  close(code: number, reason: string): void {
    this.closed = { code, reason };
    this.readyState = 3;
    this.emit('close', code, Buffer.from(reason));
  }
  terminate(): void {}
  pings = 0;
  ping(): void {
    this.pings++;
  }
}

function hello(name: string, workerId = `id-of-${name}`): Hello {
  return {
    v: 1,
    type: 'hello',
    token: TOKEN,
    protocolVersion: PROTOCOL_VERSION,
    workerId,
    name,
    hostname: name,
    os: { platform: 'linux', release: '6', arch: 'x64' },
    cpus: 2,
    memoryBytes: 1,
    gpus: [],
    agentVersion: '0',
  };
}

function setup(nameHoldMs = 600_000): { fleet: Fleet; clock: { now: number }; join: (h: Hello) => FakeSocket; events: string[] } {
  const clock = { now: 1_000_000 };
  const fleet = new Fleet({ token: TOKEN, heartbeatMs: H, logger: pino({ level: 'silent' }), clock: () => clock.now, sweepTimer: false, nameHoldMs });
  const events: string[] = [];
  for (const e of ['joined', 'available', 'unavailable', 'left'] as const) fleet.on(e, (s: { name: string }) => events.push(`${e} ${s.name}`));
  const join = (h: Hello): FakeSocket => {
    const ws = new FakeSocket();
    fleet.accept(ws as unknown as WebSocket, { socket: { remoteAddress: '198.18.0.2' } } as IncomingMessage);
    ws.emit('message', Buffer.from(JSON.stringify(h)), false);
    return ws;
  };
  return { fleet, clock, join, events };
}

const beat = (ws: FakeSocket): boolean =>
  ws.emit(
    'message',
    Buffer.from(
      JSON.stringify({ v: 1, type: 'heartbeat', seq: 1, load: { cpuPercent: 0, memoryUsedBytes: 0, memoryTotalBytes: 1, loadAverage: 0, processes: 0 } }),
    ),
    false,
  );

describe('Fleet liveness (fake monotonic clock)', () => {
  test('explainable: suspect once a heartbeat is half an interval overdue, unavailable (since when) after two; the heartbeat ping measures the round trip', () => {
    const { fleet, clock, join } = setup();
    const ws = join(hello('w1'));
    beat(ws);
    expect(ws.pings).toBe(1);
    clock.now += 12.5;
    ws.emit('pong');
    const row = (): ReturnType<typeof toWorkerRow> => toWorkerRow(fleet.find('w1'), clock.now, H);
    expect(row()).toMatchObject({ liveness: 'ok', rttMs: 12.5, missedHeartbeats: 0, unavailableSince: null });
    // Due, or a little late: not yet missed.
    clock.now += H;
    fleet.sweep();
    expect(row()).toMatchObject({ status: 'available', liveness: 'ok', missedHeartbeats: 1 });
    // Half an interval overdue: missed, suspect, still available.
    clock.now += H / 2;
    fleet.sweep();
    expect(row()).toMatchObject({ status: 'available', liveness: 'suspect', missedHeartbeats: 1 });
    clock.now += H / 2 + 1;
    fleet.sweep();
    const down = row();
    expect(down).toMatchObject({ status: 'unavailable', liveness: 'unavailable', missedHeartbeats: 2 });
    expect(Math.abs(Date.parse(down.unavailableSince!) - Date.now())).toBeLessThan(1000);
    beat(ws);
    expect(row()).toMatchObject({ liveness: 'ok', unavailableSince: null });
    expect(ws.pings).toBe(2);
  });

  test('pings stay within 250 a second: a fleet of 2,500 at 1 s heartbeats pings each worker every 10th heartbeat (the first at once)', () => {
    const { join, clock } = setup();
    const sockets = Array.from({ length: 2500 }, (_, i) => join(hello(`w${i + 1}`)));
    const ws = sockets[0]!;
    beat(ws);
    expect(ws.pings).toBe(1);
    ws.emit('pong');
    for (let i = 0; i < 9; i++) {
      clock.now += H;
      beat(ws);
    }
    expect(ws.pings).toBe(1);
    clock.now += H;
    beat(ws);
    expect(ws.pings).toBe(2);
  });

  test('agents are told how long the master may be quiet: two heartbeats in a small fleet, a ms per worker past 2,000; told again only when that doubles or halves', () => {
    expect(quietMsFor(1, 1000)).toBe(2000);
    expect(quietMsFor(2000, 1000)).toBe(2000);
    expect(quietMsFor(5000, 1000)).toBe(5000);
    expect(quietMsFor(19_500, 1000)).toBe(19_500);
    expect(quietMsFor(100, 200)).toBe(400);
    expect(quietMsFor(10_000_000, 1000)).toBe(QUIET_MAX_MS);
    const { fleet, join } = setup();
    const first = join(hello('w0'));
    expect(first.sent[0]).toMatchObject({ type: 'welcome', quietMs: 2 * H });
    const paces = (ws: FakeSocket): unknown[] => ws.sent.filter((m) => (m as { type: string }).type === 'pace');
    const others = Array.from({ length: 4000 }, (_, i) => join(hello(`w${i + 1}`)));
    expect(others.at(-1)!.sent[0]).toMatchObject({ type: 'welcome', quietMs: 4001 });
    beat(first);
    expect(paces(first)).toEqual([{ v: 1, type: 'pace', quietMs: 4001 }]);
    beat(first);
    beat(others.at(-1)!);
    expect(paces(first)).toHaveLength(1);
    expect(paces(others.at(-1)!)).toEqual([]);
    // The fleet halves: told again, once.
    for (let i = 1; i <= 2100; i++) {
      others[i - 1]!.close(1000, 'bye');
      fleet.forget(`w${i}`);
    }
    beat(first);
    beat(first);
    expect(paces(first)).toEqual([
      { v: 1, type: 'pace', quietMs: 4001 },
      { v: 1, type: 'pace', quietMs: 2000 },
    ]);
  });

  test('a worker is unavailable only after more than 2 silent intervals, and available at its next heartbeat', () => {
    const { fleet, clock, join, events } = setup();
    const ws = join(hello('w1'));
    expect(ws.sent[0]).toMatchObject({ type: 'welcome', name: 'w1', heartbeatMs: H });
    clock.now += 2 * H;
    fleet.sweep();
    expect(fleet.get('w1').status).toBe('available');
    clock.now += 1;
    fleet.sweep();
    expect(fleet.find('w1').status).toBe('unavailable');
    expect(() => fleet.get('w1')).toThrow(/worker w1 is unavailable \(missed heartbeats; last one 2\.0 s ago\)/);
    beat(ws);
    expect(fleet.get('w1').status).toBe('available');
    expect(events).toEqual(['joined w1', 'unavailable w1', 'available w1']);
  });

  test('only the monotonic clock counts: a worker that keeps beating stays available whatever the wall clock does', () => {
    const { fleet, clock, join } = setup();
    const ws = join(hello('w1'));
    const realNow = Date.now;
    try {
      for (let i = 0; i < 10; i++) {
        Date.now = () => realNow() + (i % 2 ? 3_600_000 : -3_600_000);
        clock.now += H;
        beat(ws);
        fleet.sweep();
        expect(fleet.get('w1').status).toBe('available');
      }
    } finally {
      Date.now = realNow;
    }
  });

  test('a name belongs to its worker id while its owner was seen within --name-hold', () => {
    const { fleet, clock, join } = setup(60_000);
    const owner = join(hello('w1', 'owner'));
    const impostor = join(hello('w1', 'other'));
    expect(impostor.closed).toMatchObject({ code: 4003, reason: expect.stringContaining('belongs to another worker that is connected') });
    owner.close(1006, '');
    clock.now += 30_000;
    const again = join(hello('w1', 'other'));
    expect(again.closed).toMatchObject({ code: 4003, reason: expect.stringContaining('was seen 30 s ago') });
    // The owner itself takes its name back at once.
    const back = join(hello('w1', 'owner'));
    expect(back.closed).toBeNull();
    back.close(1006, '');
    clock.now += 60_001;
    const later = join(hello('w1', 'other'));
    expect(later.closed).toBeNull();
    expect(fleet.get('w1').workerId).toBe('other');
  });

  test('reserved words and bad tokens are refused with their own close codes', () => {
    const { join } = setup();
    expect(join(hello('all')).closed).toMatchObject({ code: 4004, reason: expect.stringContaining('reserved') });
    expect(join({ ...hello('w2'), token: 'wrong-token-0123456' }).closed).toEqual({ code: 4001, reason: 'bad token' });
    expect(join({ ...hello('w2'), protocolVersion: 99 }).closed).toMatchObject({ code: 4002 });
  });
});

describe('selectWorkers', () => {
  test('all names every worker; unavailable ones become failed entries, unknown names fail the whole command', () => {
    const { fleet, clock, join } = setup();
    join(hello('w1'));
    const w2 = join(hello('w2'));
    clock.now += 2 * H + 1;
    beat(w2);
    fleet.sweep();
    const all = selectWorkers(fleet, 'all');
    expect(all.sessions.map((s) => s.name)).toEqual(['w2']);
    expect(all.unavailable).toEqual([
      { worker: 'w1', ok: false, error: { code: 'WORKER_UNAVAILABLE', message: expect.stringContaining('worker w1 is unavailable') } },
    ]);
    expect(selectWorkers(fleet, 'w2,w2').sessions).toHaveLength(1);
    expect(() => selectWorkers(fleet, 'w2,w9')).toThrow(/unknown worker "w9" \(known workers: w1, w2\)/);
    expect(() => selectWorkers(setup().fleet, 'all')).toThrow(/no workers have joined/);
  });

  test('targets: one name, a list (each once, empty parts dropped), or nothing', () => {
    expect(parseTargets('w1')).toEqual(['w1']);
    expect(parseTargets('w1,w2,w1')).toEqual(['w1', 'w2']);
    expect(parseTargets(',w1,,')).toEqual(['w1']);
    expect(parseTargets('')).toEqual([]);
    expect(parseTargets(',')).toEqual([]);
    expect(() => selectWorkers(setup().fleet, ',')).toThrow('no worker named in ","');
  });
});
