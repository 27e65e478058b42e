// Opens N worker connections to ADDRESS that say hello and heartbeat every second, the way the
// real agent does, from one process. Prints "ready N" once all have been welcomed (or opened,
// against a server that does not answer). Used by run.mjs for the fleet-scale figures.
// With a 5th argument "answer", each also answers what service placement asks (inventory,
// uploads, launch, instances) as a worker would, without running anything: for scheduling figures.
import WebSocket from 'ws';

const [address, countText, token, path = '/worker', mode = 'quiet', prefix = 'sim'] = process.argv.slice(2);
const answering = mode === 'answer';
let fakePid = 100_000;
const count = Number(countText);
const zeroMask = (mask) => mask.fill(0);
let ready = 0;
let seq = 0;
const sockets = [];

function hello(i) {
  return JSON.stringify({
    v: 1,
    type: 'hello',
    token,
    protocolVersion: 1,
    workerId: `${prefix}-${i}-0000000000`,
    name: `${prefix}${i}`,
    hostname: `${prefix}${i}`,
    os: { platform: 'linux', release: 'sim', arch: 'x64' },
    cpus: 2,
    memoryBytes: 8 * 2 ** 30,
    gpus: [],
    agentVersion: 'sim',
  });
}

const HEARTBEAT_MS = 1000;

/**
 * How long a server may be quiet before a heartbeat carries a ping, where the server does not
 * say (the bare baseline server): SIM_QUIET_MS, which run.mjs sets to what the master tells a
 * fleet of this size, so both servers get the same frames. Else two intervals, as the agent.
 */
const DEFAULT_QUIET_MS = Number(process.env.SIM_QUIET_MS ?? 2 * HEARTBEAT_MS);

/**
 * Heartbeats from the moment it is welcomed (as the agent does: a worker that waited for the
 * whole fleet to join would be marked unavailable meanwhile), at a random phase of the second.
 * Like the agent (link.ts), a heartbeat carries a ping when the server has said nothing (no
 * message, ping or pong) for its quiet time: what the master's welcome and pace messages say.
 */
function beat(ws, welcome) {
  let heard = Date.now();
  let quiet = welcome?.quietMs ?? DEFAULT_QUIET_MS;
  ws.on('message', (data, isBinary) => {
    heard = Date.now();
    if (!isBinary && data.includes('"pace"')) quiet = JSON.parse(data.toString()).quietMs ?? quiet;
  });
  const hear = () => (heard = Date.now());
  ws.on('ping', hear);
  ws.on('pong', hear);
  setTimeout(() => {
    const timer = setInterval(() => {
      if (ws.readyState !== WebSocket.OPEN) return clearInterval(timer);
      ws.send(
        `{"v":1,"type":"heartbeat","seq":${seq++},"load":{"cpuPercent":3.5,"memoryUsedBytes":1073741824,"memoryTotalBytes":8589934592,"loadAverage":0.12,"processes":2}}`,
      );
      if (Date.now() - heard >= quiet - 50) ws.ping();
    }, HEARTBEAT_MS);
  }, Math.random() * HEARTBEAT_MS);
}

/** One worker; refused (a full admission queue answers 503), it retries after a jittered pause, as the agent does. */
function open(i, attempt = 0) {
  return new Promise((resolve) => {
    const ws = new WebSocket(`ws://${address}${path}`, { perMessageDeflate: false, generateMask: zeroMask });
    let settled = false;
    const retry = () => {
      if (settled) return;
      settled = true;
      if (attempt >= 20) return resolve();
      setTimeout(() => open(i, attempt + 1).then(resolve), 50 + Math.random() * 200 * (attempt + 1));
    };
    ws.on('error', retry);
    ws.on('open', () => {
      ws.send(hello(i));
      if (path !== '/worker') {
        settled = true;
        sockets.push(ws);
        beat(ws);
        resolve();
      }
    });
    ws.once('message', (data) => {
      if (settled) return;
      settled = true;
      sockets.push(ws);
      beat(ws, JSON.parse(data.toString()));
      resolve();
    });
    if (answering) answer(ws);
  });
}

/** Answers requests as a worker that starts nothing: every launch "runs" and is at once healthy. */
function answer(ws) {
  const uploads = new Map();
  const instances = [];
  const reply = (id, data) => ws.send(JSON.stringify({ v: 1, type: 'result', id, ok: true, data }));
  ws.on('message', (data, isBinary) => {
    if (isBinary) {
      const ref = data.readUInt32BE(4);
      const up = uploads.get(ref);
      if (!up) return;
      up.bytes += data.length - 8;
      ws.send(JSON.stringify({ v: 1, type: 'ack', ref, bytes: up.bytes }));
      return;
    }
    const m = JSON.parse(data.toString());
    switch (m.type) {
      case 'inventory':
        return reply(m.id, { exists: false, executable: null, files: [] });
      case 'upload-begin':
        uploads.set(m.id, { file: m.file, bytes: 0 });
        return reply(m.id, {});
      case 'upload-end': {
        const up = uploads.get(m.ref);
        uploads.delete(m.ref);
        return reply(m.id, { size: up?.file.size ?? 0, sha256: up?.file.sha256 ?? '0'.repeat(64) });
      }
      case 'app-commit':
        return reply(m.id, { files: [...m.files, ...m.keep] });
      case 'launch': {
        const pid = fakePid++;
        const startedAt = new Date().toISOString();
        if (m.instance) {
          instances.push({ id: m.instance.id, app: m.app, pid, state: 'running', healthy: true, restarts: 0, lastExit: null, startedAt, nextStartAt: null });
        }
        return reply(m.id, { pid, state: 'running', startedAt, logPath: `/sim/${m.app}.${pid}.log` });
      }
      case 'instances':
        return reply(m.id, { instances });
      case 'usage': {
        // Four processes of its own, plus the instances it was given.
        const now = new Date().toISOString();
        const own = [1, 2, 3, 4].map((k) => ({ pid: 1000 + k, app: `app${k}` }));
        const processes = [...own, ...instances.map((i) => ({ pid: i.pid, app: i.app }))].map((p) => ({
          ...p,
          state: 'sleeping',
          cpuUserSeconds: 12.5,
          cpuSystemSeconds: 1.25,
          cpuPercent: 0.5,
          rssBytes: 52428800,
          maxRssBytes: 62914560,
          sampledAt: now,
        }));
        return reply(m.id, { processes });
      }
      case 'instance-stop': {
        const i = instances.findIndex((x) => x.id === m.instance);
        const pid = i >= 0 ? instances[i].pid : null;
        if (i >= 0) instances.splice(i, 1);
        return reply(m.id, { instance: m.instance, pid, exit: null, known: i >= 0 });
      }
      case 'app-delete':
        return reply(m.id, { removed: [], stopped: [] });
      default:
        return undefined;
    }
  });
}

for (let i = 0; i < count; i += 250) {
  await Promise.all(Array.from({ length: Math.min(250, count - i) }, (_, k) => open(i + k)));
}
ready = sockets.filter((s) => s.readyState === WebSocket.OPEN).length;
console.log(`ready ${ready}`);
