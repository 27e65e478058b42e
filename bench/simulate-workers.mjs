// Opens N worker connections to ADDRESS that say hello and heartbeat every second, the way the
// real agent does, from one process. Prints "ready N" once all have been welcomed (or opened,
// against a server that does not answer). Used by run.mjs for the fleet-scale figures.
import WebSocket from 'ws';

const [address, countText, token, path = '/worker'] = process.argv.slice(2);
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
    workerId: `sim-${i}-0000000000`,
    name: `sim${i}`,
    hostname: `sim${i}`,
    os: { platform: 'linux', release: 'sim', arch: 'x64' },
    cpus: 2,
    memoryBytes: 8 * 2 ** 30,
    gpus: [],
    agentVersion: 'sim',
  });
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
        resolve();
      }
    });
    ws.once('message', () => {
      if (settled) return;
      settled = true;
      sockets.push(ws);
      resolve();
    });
  });
}

for (let i = 0; i < count; i += 250) {
  await Promise.all(Array.from({ length: Math.min(250, count - i) }, (_, k) => open(i + k)));
}
ready = sockets.filter((s) => s.readyState === WebSocket.OPEN).length;
console.log(`ready ${ready}`);
// Spread the heartbeats over the second, as independent agents would be.
sockets.forEach((ws, i) => {
  setTimeout(
    () => {
      setInterval(() => {
        if (ws.readyState === WebSocket.OPEN) {
          ws.send(
            `{"v":1,"type":"heartbeat","seq":${seq++},"load":{"cpuPercent":3.5,"memoryUsedBytes":1073741824,"memoryTotalBytes":8589934592,"loadAverage":0.12,"processes":2}}`,
          );
        }
      }, 1000);
    },
    (i * 1000) / sockets.length,
  );
});
