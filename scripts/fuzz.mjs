#!/usr/bin/env node
// Protocol fuzzer: throws generated hostile frames at a live master (as a worker would, before
// and after its hello) and at a live worker (as a master would), then reports tries, crashes,
// hangs, memory growth, and files written outside the state dirs. Bounded in count and time;
// seeded, so a failure can be replayed with --seed.
//
//   node scripts/fuzz.mjs [--tries 2000] [--seconds 60] [--seed N]
//
// `npm run fuzz` runs it; test/integration/fuzz.test.ts runs a short pass inside npm test.
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket, { WebSocketServer } from 'ws';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const MASTER_CLI = path.join(ROOT, 'packages/master/dist/cli.js');
const WORKER_CLI = path.join(ROOT, 'packages/worker/dist/worker.mjs');
const TOKEN = 'fuzz-token-0123456789abcdef';

/** A small seeded PRNG (mulberry32): the same seed, the same frames. */
function prng(seed) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n) => Math.floor(next() * n);
  const pick = (list) => list[int(list.length)];
  return { next, int, pick };
}

/** Names a path traversal would use: each is checked afterwards not to exist outside the state dirs. */
const ESCAPES = ['../../escape-a', '..', '../escape-b', '/tmp/escape-c', 'a/../../escape-d', '.hidden', 'x\u0000y', 'ok/../../escape-e'];

function value(r, depth = 0) {
  switch (r.int(depth > 2 ? 6 : 9)) {
    case 0:
      return r.int(2) ? -r.int(1e9) : r.int(2 ** 32 + 10);
    case 1:
      return r.pick([null, true, false, 0, -1, 1.5, 1e308, Number.MAX_SAFE_INTEGER + 2]);
    case 2:
      return r.pick(ESCAPES);
    case 3:
      return 'x'.repeat(r.pick([0, 1, 64, 65, 4097, 70000]));
    case 4:
      return r.pick(['w1', 'app', 'all', 'gone', 'manifest.json', '\u001b[2J', 'SIGKILL']);
    case 5:
      return '';
    case 6:
      return Array.from({ length: r.int(4) }, () => value(r, depth + 1));
    default: {
      const o = {};
      for (let i = r.int(4); i > 0; i--)
        o[r.pick(['id', 'ref', 'app', 'name', 'pid', 'file', 'kind', 'size', 'sha256', 'mode', 'bytes', 'v', 'type'])] = value(r, depth + 1);
      return o;
    }
  }
}

const MASTER_TYPES = [
  'welcome',
  'cancel',
  'ack',
  'protocol-error',
  'inventory',
  'upload-begin',
  'upload-end',
  'app-commit',
  'app-delete',
  'launch',
  'ps',
  'signal',
  'usage',
  'logs',
  'bench',
  'nonsense',
];
const WORKER_TYPES = ['hello', 'heartbeat', 'result', 'result-parts', 'process-exit', 'ack', 'transfer-error', 'protocol-error', 'nonsense'];

/** Templates of valid messages, mutated field by field. */
function masterTemplate(r, type) {
  const file = { kind: r.pick(['exe', 'lib']), name: r.pick(['app', 'libx.so.1', ...ESCAPES]), size: r.int(5000), sha256: 'a'.repeat(64) };
  const base = { v: 1, type, id: r.int(50) };
  switch (type) {
    case 'upload-begin':
      return { ...base, app: r.pick(['app', ...ESCAPES]), file, mode: r.pick([0o755, 0o4755, 99999]) };
    case 'upload-end':
      return { ...base, ref: r.int(50) };
    case 'app-commit':
      return { ...base, app: r.pick(['app', ...ESCAPES]), executable: r.pick(['app', ...ESCAPES]), files: [file], keep: r.int(2) ? [file] : [] };
    case 'app-delete':
      return { ...base, app: r.pick(['app', ...ESCAPES]), force: r.int(2) === 1 };
    case 'launch':
      return { ...base, app: r.pick(['app', ...ESCAPES]), args: [], env: r.int(2) ? { A: 'b' } : { 'BAD NAME': 'x' } };
    case 'signal':
      return { ...base, pid: r.pick([1, process.pid, 2 ** 31, -1]), mode: r.pick(['stop', 'kill', 'nuke']), timeoutMs: r.pick([null, 1, -5]) };
    case 'logs':
      return { ...base, pid: r.pick([null, 1, 999999]), app: r.pick([null, 'app', ...ESCAPES]), tail: r.pick([null, 0, 5]), follow: false };
    case 'bench':
      return {
        ...base,
        sizeBytes: r.pick([1, 4096, 2 ** 40]),
        blockBytes: r.pick([1, 4096, 2 ** 30]),
        runs: 1,
        dir: r.pick([null, '/', ...ESCAPES]),
        fsync: false,
      };
    case 'welcome':
      return { v: 1, type, name: 'fz', heartbeatMs: r.pick([1, 100, 3e9]), masterVersion: 'x' };
    case 'cancel':
    case 'ack':
      return { v: 1, type, ref: r.int(50), bytes: r.int(1e9) };
    default:
      return base;
  }
}

function mutate(r, msg) {
  const m = { ...msg };
  for (let i = r.int(3); i > 0; i--) {
    const keys = Object.keys(m);
    const k = r.int(3) === 0 ? r.pick(['extra', '__proto__', 'constructor']) : r.pick(keys);
    if (r.int(5) === 0) delete m[k];
    else m[k] = value(r);
  }
  return m;
}

/** A frame: mostly structured, sometimes garbage, sometimes binary chunks for any ref. */
function frame(r, types, template) {
  const roll = r.int(10);
  if (roll === 0) {
    // Random bytes; as text, valid UTF-8 (invalid UTF-8 is refused by ws itself, closing the link, which teaches nothing).
    const bytes = Buffer.from(Array.from({ length: r.int(64) }, () => r.int(256)));
    return r.int(2) ? { data: bytes, binary: true } : { data: bytes.toString('latin1'), binary: false };
  }
  if (roll === 1) {
    const header = Buffer.from([r.pick([0xd7, 0x00]), r.pick([1, 2]), 0, 0, 0, 0, 0, 0]);
    header.writeUInt32BE(r.int(60), 4);
    return { data: Buffer.concat([header, Buffer.alloc(r.pick([0, 1, 4096, 300000]), 0x41)]), binary: true };
  }
  if (roll === 2) return { data: r.pick(['', '{', 'null', '[]', '{"v":1}', '{"v":1,"type":"hello"}', JSON.stringify(value(r))]), binary: false };
  const type = r.pick(types);
  return { data: JSON.stringify(r.int(2) ? template(r, type) : mutate(r, template(r, type))), binary: false };
}

function workerTemplate(r, type) {
  const base = { v: 1, type };
  switch (type) {
    case 'hello':
      return {
        ...base,
        token: r.pick([TOKEN, 'wrong']),
        protocolVersion: 1,
        workerId: 'fuzz-worker-01',
        name: r.pick(['fz', 'all', ...ESCAPES]),
        hostname: 'h',
        os: { platform: 'linux', release: '6', arch: 'x64' },
        cpus: 1,
        memoryBytes: 1,
        gpus: [],
        agentVersion: 'f',
      };
    case 'heartbeat':
      return { ...base, seq: r.int(10), load: { cpuPercent: 1, memoryUsedBytes: 1, memoryTotalBytes: 2, loadAverage: 0, processes: 0 } };
    case 'result':
      return { ...base, id: r.int(50), ok: r.int(2) === 1, data: value(r), error: { code: r.pick(['BUSY', 'NOPE']), message: 'm' } };
    case 'result-parts':
      return { ...base, id: r.int(50), bytes: r.int(3e7) };
    case 'process-exit':
      return {
        ...base,
        pid: r.int(99999),
        app: 'app',
        exit: { code: 0, signal: null, reason: '\u001b]52;c;x\u0007', signalledBy: null, forced: false, coreDumped: false, endedAt: 'x' },
      };
    case 'ack':
      return { ...base, ref: r.int(50), bytes: r.int(1e9) };
    default:
      return { ...base, ref: r.int(50), error: { code: 'NO_SPACE', message: 'x' } };
  }
}

function rss(pid) {
  try {
    return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) * 1024;
  } catch {
    return 0;
  }
}

function start(cmd, args, env = {}) {
  const child = spawn(process.execPath, [cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  return { child, out: () => out, alive: () => child.exitCode === null && child.signalCode === null };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(check, ms, what) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

function openClient(url) {
  return new Promise((resolve) => {
    const ws = new WebSocket(url);
    ws.on('error', () => undefined);
    ws.once('open', () => resolve(ws));
    ws.once('close', () => resolve(null));
  });
}

/** Asks the master through its control socket, as master exec does: a hang shows here. */
function masterAnswers(stateDir) {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, [MASTER_CLI, 'exec', 'workers --json', '--state-dir', stateDir], { stdio: 'ignore' });
    const timer = setTimeout(() => (c.kill('SIGKILL'), resolve(false)), 10_000);
    c.on('exit', (code) => (clearTimeout(timer), resolve(code === 0)));
  });
}

/** Every file under `root` that is not inside one of `allowed`. */
function strayFiles(root, allowed) {
  const out = [];
  const walk = (dir) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (allowed.some((a) => p === a || p.startsWith(`${a}/`))) continue;
      if (e.isDirectory()) walk(p);
      else out.push(p);
    }
  };
  walk(root);
  return out;
}

/**
 * Runs the fuzzer; resolves with its report. Nothing it starts outlives it.
 * @param {{tries?: number, seconds?: number, seed?: number, log?: (s: string) => void}} opts
 */
export async function runFuzz(opts = {}) {
  const tries = opts.tries ?? 2000;
  const seconds = opts.seconds ?? 60;
  const seed = opts.seed ?? Math.floor(Math.random() * 2 ** 31);
  const log = opts.log ?? ((s) => process.stdout.write(`${s}\n`));
  const r = prng(seed);
  // A sandbox whose only legitimate writes are the two state dirs: anything else is an escape.
  const sandbox = mkdtempSync(path.join(os.tmpdir(), 'drover-fuzz-'));
  const mstate = path.join(sandbox, 'master');
  const wstate = path.join(sandbox, 'deep/er/worker');
  mkdirSync(path.dirname(wstate), { recursive: true });
  const report = { seed, tries: 0, toMaster: 0, toWorker: 0, crashes: [], hangs: [], masterGrowthBytes: 0, workerGrowthBytes: 0, strayFiles: [] };
  const deadline = Date.now() + seconds * 1000;
  const children = [];
  try {
    // --- the master, fuzzed by clients that pose as workers
    const master = start(MASTER_CLI, [
      '--host',
      '127.0.0.1',
      '--port',
      '0',
      '--token',
      TOKEN,
      '--state-dir',
      mstate,
      '--no-shell',
      '--no-tls',
      '--heartbeat-ms',
      '1000',
      '--log-level',
      'warn',
    ]);
    children.push(master);
    const port = Number((await until(() => /listening on [^ ]+:(\d+)/.exec(master.out()), 10_000, 'the master'))[1]);
    // --- a real worker, fuzzed by a fake master it joins
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    await new Promise((resolve) => wss.once('listening', resolve));
    let workerSocket = null;
    wss.on('connection', (ws) => {
      ws.on('error', () => undefined);
      ws.once('message', () => ws.send(JSON.stringify({ v: 1, type: 'welcome', name: 'fz', heartbeatMs: 1000, masterVersion: 'fuzz' })));
      workerSocket = ws;
    });
    const worker = start(WORKER_CLI, ['--master', `127.0.0.1:${wss.address().port}`, '--name', 'fz', '--state-dir', wstate, '--log-level', 'warn'], {
      DROVER_TOKEN: TOKEN,
    });
    children.push(worker);
    await until(() => workerSocket, 10_000, 'the worker to join the fake master');
    await sleep(300);
    const masterBase = rss(master.child.pid);
    const workerBase = rss(worker.child.pid);

    let clients = [];
    const batch = 50;
    while (report.tries < tries && Date.now() < deadline) {
      // Half the batch at the master (fresh connections, some after a valid hello), half at the worker.
      for (const ws of clients) ws.terminate();
      clients = [];
      for (let i = 0; i < 5; i++) {
        const ws = await openClient(`ws://127.0.0.1:${port}/worker`);
        if (!ws) continue;
        if (r.int(2)) ws.send(JSON.stringify(workerTemplate(r, 'hello')));
        clients.push(ws);
      }
      for (let i = 0; i < batch && report.tries < tries; i++, report.tries++) {
        if (i % 2 === 0 && clients.length) {
          const f = frame(r, WORKER_TYPES, workerTemplate);
          const ws = r.pick(clients);
          if (ws.readyState === WebSocket.OPEN) ws.send(f.data, { binary: f.binary });
          report.toMaster++;
        } else if (workerSocket && workerSocket.readyState === WebSocket.OPEN) {
          const f = frame(r, MASTER_TYPES, masterTemplate);
          workerSocket.send(f.data, { binary: f.binary });
          report.toWorker++;
        }
      }
      await sleep(50);
      if (!master.alive())
        report.crashes.push(`master exited (${master.child.exitCode ?? master.child.signalCode}) after ${report.tries} tries: ${master.out().slice(-500)}`);
      if (!worker.alive())
        report.crashes.push(`worker exited (${worker.child.exitCode ?? worker.child.signalCode}) after ${report.tries} tries: ${worker.out().slice(-500)}`);
      if (report.crashes.length) break;
      // Hangs: each must still answer, every few batches.
      if (report.tries % (batch * 4) === 0 || report.tries >= tries) {
        if (!(await masterAnswers(mstate))) report.hangs.push(`master did not answer workers after ${report.tries} tries`);
        if (workerSocket?.readyState === WebSocket.OPEN) {
          const id = 900000 + report.tries;
          const answered = new Promise((resolve) => {
            const onMessage = (d, binary) => {
              if (binary) return;
              try {
                const m = JSON.parse(d.toString());
                if (m.type === 'result' && m.id === id) (workerSocket.off('message', onMessage), resolve(true));
              } catch {
                // not ours
              }
            };
            workerSocket.on('message', onMessage);
            setTimeout(() => (workerSocket.off('message', onMessage), resolve(false)), 10_000);
          });
          workerSocket.send(JSON.stringify({ v: 1, type: 'ps', id }));
          if (!(await answered)) report.hangs.push(`worker did not answer ps after ${report.tries} tries`);
        } else {
          // The worker reconnects by itself after a close the fuzzer caused; wait for it.
          await until(() => workerSocket?.readyState === WebSocket.OPEN, 15_000, 'the worker to come back').catch(() =>
            report.hangs.push('worker did not reconnect'),
          );
        }
        if (report.hangs.length) break;
      }
    }
    for (const ws of clients) ws.terminate();
    await sleep(300);
    report.masterGrowthBytes = rss(master.child.pid) - masterBase;
    report.workerGrowthBytes = rss(worker.child.pid) - workerBase;
    report.strayFiles = strayFiles(sandbox, [mstate, wstate]);
    for (const p of ['/tmp/escape-c', path.join(os.tmpdir(), 'escape-c')]) {
      try {
        readFileSync(p);
        report.strayFiles.push(p);
      } catch {
        // not there: good
      }
    }
    wss.close();
    log(
      `fuzz: seed ${seed}, ${report.tries} frames (${report.toMaster} at the master, ${report.toWorker} at a worker); ` +
        `crashes ${report.crashes.length}, hangs ${report.hangs.length}, memory growth master ${(report.masterGrowthBytes / 2 ** 20).toFixed(1)} MiB / worker ${(report.workerGrowthBytes / 2 ** 20).toFixed(1)} MiB, ` +
        `files outside the state dirs ${report.strayFiles.length}`,
    );
    for (const line of [...report.crashes, ...report.hangs, ...report.strayFiles]) log(`  ${line}`);
    return report;
  } finally {
    for (const c of children) c.child.kill('SIGKILL');
    rmSync(sandbox, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const arg = (name, fallback) => {
    const i = process.argv.indexOf(`--${name}`);
    return i > 0 ? Number(process.argv[i + 1]) : fallback;
  };
  const report = await runFuzz({ tries: arg('tries', 2000), seconds: arg('seconds', 60), seed: arg('seed', undefined) });
  const bad = report.crashes.length + report.hangs.length + report.strayFiles.length;
  process.exit(bad ? 1 : 0);
}
