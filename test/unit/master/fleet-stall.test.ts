import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import { afterEach, describe, expect, test } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import { PROTOCOL_VERSION } from '@drover/protocol';
import { Fleet } from '../../../packages/master/src/fleet.js';

const TOKEN = 'unit-token-0123456789';
const H = 300;
const closers: (() => void)[] = [];
afterEach(() => {
  for (const close of closers.splice(0)) close();
});

const heartbeat = (seq: number): string =>
  JSON.stringify({ v: 1, type: 'heartbeat', seq, load: { cpuPercent: 0, memoryUsedBytes: 0, memoryTotalBytes: 1, loadAverage: 0, processes: 0 } });

/** Blocks this thread, as a long GC or a descheduled process would. */
function stall(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until);
}

describe('Fleet liveness on its own sweep timer, over a real socket', () => {
  test('a master stalled past the deadline reads the heartbeats that came meanwhile before it judges: the worker stays available', async () => {
    const fleet = new Fleet({ token: TOKEN, heartbeatMs: H, logger: pino({ level: 'silent' }) });
    const server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    server.on('connection', (ws, req) => fleet.accept(ws, req));
    closers.push(
      () => fleet.close(),
      () => server.close(),
    );
    await once(server, 'listening');
    const client = new WebSocket(`ws://127.0.0.1:${(server.address() as AddressInfo).port}`);
    closers.push(() => client.terminate());
    await once(client, 'open');
    client.send(
      JSON.stringify({
        v: 1,
        type: 'hello',
        token: TOKEN,
        protocolVersion: PROTOCOL_VERSION,
        workerId: 'stall-w1',
        name: 'w1',
        hostname: 'w1',
        os: { platform: 'linux', release: '6', arch: 'x64' },
        cpus: 1,
        memoryBytes: 1,
        gpus: [],
        agentVersion: '0',
      }),
    );
    let seq = 0;
    client.send(heartbeat(seq++));
    const unavailable: string[] = [];
    fleet.on('unavailable', (s) => unavailable.push(s.name));
    await new Promise((r) => setTimeout(r, 50));
    expect(fleet.lookup('w1')?.status).toBe('available');

    // From a timer callback, as the sweep's own: the heartbeat is written to the socket, then this
    // thread is busy for 3 intervals. When it returns, the sweep timer is long overdue and runs in
    // the same timers phase, before the loop polls the socket the heartbeat waits in.
    await new Promise<void>((resolve) =>
      setTimeout(() => {
        client.send(heartbeat(seq++));
        stall(3 * H);
        resolve();
      }, H / 2),
    );
    await new Promise((r) => setTimeout(r, H / 2));
    expect(unavailable).toEqual([]);
    expect(fleet.lookup('w1')?.status).toBe('available');

    // And the deadline still holds: silent for more than 2 intervals, it is unavailable.
    await new Promise((r) => setTimeout(r, 3 * H));
    expect(unavailable).toEqual(['w1']);
  });
});
