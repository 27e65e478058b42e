import WebSocket from 'ws';
import type { Hello } from '@drover/protocol';
import { TOKEN, onCleanup } from './cluster.js';

/**
 * A hand-made worker for tests that need one to misbehave: it says `hello` (with any field
 * overridden), heartbeats every 100 ms so it stays available, and answers nothing unless the
 * test does. Closed after the test.
 */
export async function joinRawWorker(address: string, overrides: Partial<Hello> & { name: string }): Promise<WebSocket> {
  const ws = new WebSocket(`ws://${address}/worker`);
  ws.on('error', () => undefined);
  await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
  const hello: Hello = {
    v: 1,
    type: 'hello',
    token: TOKEN,
    protocolVersion: 1,
    workerId: `raw-${overrides.name}-0001`,
    hostname: overrides.name,
    os: { platform: 'linux', release: '6', arch: 'x64' },
    cpus: 1,
    memoryBytes: 1,
    gpus: [],
    agentVersion: 'test',
    ...overrides,
  };
  ws.send(JSON.stringify(hello));
  const load = { cpuPercent: 0, memoryUsedBytes: 0, memoryTotalBytes: 1, loadAverage: 0, processes: 0 };
  const beat = setInterval(() => {
    if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ v: 1, type: 'heartbeat', seq: 0, load }));
  }, 100);
  ws.on('close', () => clearInterval(beat));
  onCleanup(() => {
    clearInterval(beat);
    ws.terminate();
  });
  return ws;
}
