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
  send(message: MasterToWorker | string): void;
  sendChunk(ref: number, payload: Buffer): void;
  close(code: number, reason: string): void;
  /** Waits for the worker's message matching `match`. */
  next<T extends WorkerToMaster>(match: (m: WorkerToMaster) => m is T, what: string): Promise<T>;
  result(id: number): Promise<Extract<WorkerToMaster, { type: 'result' }>>;
}

export async function startScriptedMaster(opts: { welcome?: boolean } = {}): Promise<ScriptedMaster> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise((resolve) => wss.once('listening', resolve));
  onCleanup(() => new Promise<void>((resolve) => wss.close(() => resolve())));
  const received: WorkerToMaster[] = [];
  let socket: WebSocket | null = null;
  wss.on('connection', (ws) => {
    socket = ws;
    ws.on('message', (data: Buffer, isBinary) => {
      if (isBinary) return void decodeChunk(data);
      const m = JSON.parse(data.toString()) as WorkerToMaster;
      received.push(m);
      if (m.type === 'hello' && opts.welcome !== false)
        ws.send(JSON.stringify({ v: 1, type: 'welcome', name: m.name, heartbeatMs: 1000, masterVersion: 'test' }));
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
    send: (m) => live().send(typeof m === 'string' ? m : JSON.stringify(m)),
    sendChunk: (ref, payload) => live().send(encodeChunk(ref, payload), { binary: true }),
    close: (code, reason) => live().close(code, reason),
    next,
    result: (id) => next((m): m is Extract<WorkerToMaster, { type: 'result' }> => m.type === 'result' && m.id === id, `the result of request ${id}`),
  };
}
