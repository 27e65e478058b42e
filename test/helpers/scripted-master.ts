import type { AddressInfo } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import { decodeChunk, encodeChunk, type MasterToWorker, type WorkerToMaster } from '@drover/protocol';
import { onCleanup, waitFor } from './cluster.js';

/**
 * A master the test drives by hand, for a real worker to join: it welcomes the worker, then
 * sends whatever frames the test says and records what comes back.
 */
export interface ScriptedMaster {
  address: string;
  received: WorkerToMaster[];
  /** Connections the worker opened so far. */
  connections(): number;
  /** When (Date.now()) each ping from the worker arrived. */
  pings: number[];
  /** Pings the worker (it answers with a pong). */
  ping(): void;
  send(message: MasterToWorker | string): void;
  sendChunk(ref: number, payload: Buffer): void;
  close(code: number, reason: string): void;
  /** Waits for the worker's message matching `match`. */
  next<T extends WorkerToMaster>(match: (m: WorkerToMaster) => m is T, what: string): Promise<T>;
  result(id: number): Promise<Extract<WorkerToMaster, { type: 'result' }>>;
}

export async function startScriptedMaster(
  opts: { welcome?: boolean; heartbeatMs?: number; autoPong?: boolean; quietMs?: number } = {},
): Promise<ScriptedMaster> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, autoPong: opts.autoPong ?? true });
  await new Promise((resolve) => wss.once('listening', resolve));
  onCleanup(() => new Promise<void>((resolve) => wss.close(() => resolve())));
  const received: WorkerToMaster[] = [];
  const pings: number[] = [];
  let socket: WebSocket | null = null;
  let connections = 0;
  wss.on('connection', (ws) => {
    socket = ws;
    connections++;
    ws.on('ping', () => pings.push(Date.now()));
    ws.on('message', (data: Buffer, isBinary) => {
      if (isBinary) return void decodeChunk(data);
      const m = JSON.parse(data.toString()) as WorkerToMaster;
      received.push(m);
      if (m.type === 'hello' && opts.welcome !== false)
        ws.send(JSON.stringify({ v: 1, type: 'welcome', name: m.name, heartbeatMs: opts.heartbeatMs ?? 1000, masterVersion: 'test', quietMs: opts.quietMs }));
    });
  });
  const live = (): WebSocket => {
    if (!socket) throw new Error('no worker connected');
    return socket;
  };
  const next = <T extends WorkerToMaster>(match: (m: WorkerToMaster) => m is T, what: string): Promise<T> => waitFor(() => received.find(match) ?? null, what);
  return {
    address: `127.0.0.1:${(wss.address() as AddressInfo).port}`,
    received,
    connections: () => connections,
    pings,
    ping: () => live().ping(),
    send: (m) => live().send(typeof m === 'string' ? m : JSON.stringify(m)),
    sendChunk: (ref, payload) => live().send(encodeChunk(ref, payload), { binary: true }),
    close: (code, reason) => live().close(code, reason),
    next,
    result: (id) => next((m): m is Extract<WorkerToMaster, { type: 'result' }> => m.type === 'result' && m.id === id, `the result of request ${id}`),
  };
}
