// npm run bench: drover's figures beside baselines measured in the same run, as ratios.
// Figures drift from run to run (~20%); the ratios are what to compare.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket, { WebSocketServer } from 'ws';
import { quietMsFor } from '@drover/protocol';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const MASTER = path.join(ROOT, 'packages/master/dist/cli.js');
const WORKER = path.join(ROOT, 'packages/worker/dist/worker.mjs');
const TOKEN = 'bench-token-0123456789abcdef';
// --quick (or BENCH_QUICK=1): smaller files and fleets, fewer runs: the same rows in under 2 minutes.
const QUICK = process.argv.includes('--quick') || process.env.BENCH_QUICK === '1';
const SIZE_MIB = Number(process.env.BENCH_SIZE_MIB ?? (QUICK ? 32 : 256));
const RUNS = Number(process.env.BENCH_RUNS ?? (QUICK ? 3 : 5));

const tmp = mkdtempSync(path.join(os.tmpdir(), 'drover-bench-'));
const children = [];
const cleanup = () => {
  for (const c of children) c.kill('SIGKILL');
  rmSync(tmp, { recursive: true, force: true });
};
process.on('exit', cleanup);
process.on('SIGINT', () => process.exit(130));

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const pct = (xs, p) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))];
const now = () => Number(process.hrtime.bigint()) / 1e6;
const timeCmd = (cmd, args, env = process.env) => {
  const t = now();
  const r = spawnSync(cmd, args, { stdio: 'ignore', env });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed`);
  return now() - t;
};
const rows = [];
/**
 * One row of the table: drover's figure against a baseline measured in the same run, and its
 * target as a ratio (drover / baseline <= target). `samples` (drover's) adds the range.
 */
const report = (what, drover, baseline, unit, target, samples) => {
  const ratio = drover / baseline;
  const met = ratio <= target;
  const range = samples?.length ? [Math.min(...samples), Math.max(...samples)] : null;
  rows.push({ what, drover, baseline, unit, ratio, target, met, ...(range ? { range } : {}) });
  const spread = range ? ` (${fmt(range[0]).trim()}-${fmt(range[1]).trim()})` : '';
  console.log(
    `${what.padEnd(44)} drover ${fmt(drover)} ${unit}${spread}  baseline ${fmt(baseline)} ${unit}  ratio ${ratio.toFixed(2)}x  ${met ? 'met' : 'NOT MET'} (target <= ${target.toFixed(2)}x)`,
  );
};
/** CPU time (user + system) of a process so far, in ms. */
const cpuMs = (pid) => {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / 100;
};
const fmt = (n) => (n >= 100 ? n.toFixed(0) : n >= 1 ? n.toFixed(2) : n.toFixed(3)).padStart(8);

function start(cmd, args, env = {}, stdin = 'ignore') {
  const c = spawn(cmd, args, { stdio: [stdin, 'pipe', 'pipe'], env: { ...process.env, ...env } });
  children.push(c);
  let out = '';
  c.stdout.on('data', (d) => (out += d));
  c.stderr.on('data', (d) => (out += d));
  return { child: c, out: () => out };
}

async function until(check, what, ms = 15000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/**
 * A client of the master's control socket: what drover does, without a process per call (the
 * operator WebSocket on the Unix socket, and drover's own file server for the files a command names).
 */
async function control(stateDir, remote = null) {
  const { FileServer } = await import(path.join(ROOT, 'packages/master/dist/file-server.js'));
  const { OutputParts } = await import(path.join(ROOT, 'packages/protocol/dist/index.js'));
  // Remote: the operator API on the master's port, as `drover --master` uses it.
  const url = remote ? `ws://127.0.0.1:${remote.port}/operator` : `ws+unix://${path.join(stateDir, 'master.sock')}:/operator`;
  const headers = remote ? { authorization: `Bearer ${readFileSync(path.join(stateDir, 'admin-token'), 'utf8').trim()}` } : {};
  const ws = new WebSocket(url, { headers, perMessageDeflate: false, generateMask: (m) => m.fill(0) });
  await new Promise((r, j) => ws.once('open', r).once('error', j));
  const files = new FileServer(
    (m) => ws.send(JSON.stringify(m)),
    (frame) => new Promise((resolve) => ws.send(frame, { binary: true }, () => resolve())),
  );
  let waiting = null;
  // Long outputs (ps of a full table) come in parts before their done.
  const parts = new OutputParts();
  ws.on('message', (data, isBinary) => {
    if (isBinary) return files.chunk(data);
    const reply = JSON.parse(data.toString());
    if (reply.type === 'file') return files.ask(reply);
    if (reply.type === 'file-ack') return files.ack(reply);
    if (reply.type === 'part') return parts.add(reply);
    if (reply.type === 'done') (parts.fill(reply), waiting?.(reply));
  });
  const send = (line, json) =>
    new Promise((resolve) => {
      waiting = resolve;
      files.allowLine(line, process.cwd());
      ws.send(JSON.stringify({ v: 1, type: 'run', line, json, cwd: process.cwd() }));
    });
  return {
    async runHuman(line) {
      return (await send(line, false)).results[0].output;
    },
    async run(line) {
      const reply = await send(line, true);
      if (!reply.ok) throw new Error(`${line}: ${reply.results.map((r) => r.output).join(' ')}`);
      return JSON.parse(reply.results[0].output);
    },
    close: () => ws.close(),
  };
}

/**
 * `ssh host true` over a new connection each time (no multiplexing), against an sshd of our own
 * on loopback with throwaway keys; null where sshd is not installed.
 */
/** A private sshd on 127.0.0.1 (its own keys, the bench's user); null where sshd is not installed. */
async function startSshd() {
  const sshd = ['/usr/sbin/sshd', '/usr/bin/sshd'].find((f) => existsSync(f));
  if (!sshd || !existsSync('/usr/bin/ssh')) return null;
  // A fresh folder each time: ssh-keygen asks before it overwrites a key.
  const d = mkdtempSync(path.join(tmp, 'ssh-'));
  execFileSync('mkdir', ['-p', '/run/sshd']);
  for (const k of ['host', 'user']) execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', path.join(d, k)]);
  writeFileSync(path.join(d, 'authorized_keys'), readFileSync(path.join(d, 'user.pub')), { mode: 0o600 });
  const probe = net.createServer().listen(0, '127.0.0.1');
  await new Promise((r) => probe.once('listening', r));
  const sshPort = probe.address().port;
  probe.close();
  const server = start(sshd, [
    '-D',
    '-e',
    '-f',
    '/dev/null',
    '-h',
    path.join(d, 'host'),
    '-p',
    String(sshPort),
    '-o',
    'ListenAddress=127.0.0.1',
    '-o',
    `AuthorizedKeysFile=${path.join(d, 'authorized_keys')}`,
    '-o',
    'StrictModes=no',
    // scp speaks SFTP by default: the server needs the subsystem.
    '-o',
    'Subsystem=sftp internal-sftp',
    '-o',
    `PidFile=${path.join(d, 'pid')}`,
    // See `login` below.
    '-o',
    'AcceptEnv=SHLVL',
  ]);
  const user = os.userInfo().username;
  const base = [
    '-q',
    '-i',
    path.join(d, 'user'),
    '-p',
    String(sshPort),
    '-o',
    'StrictHostKeyChecking=no',
    '-o',
    'UserKnownHostsFile=/dev/null',
    '-o',
    'BatchMode=yes',
  ];
  // The baseline is ssh's own work: the login's shell is told it is not a top-level one
  // (SHLVL=1 becomes 2), so bash skips the ~/.bashrc it otherwise reads under sshd. Root's
  // .bashrc on this machine runs pyenv's init: 0.65 s a login with it, 0.23 s without.
  const login = [...base, '-o', 'ControlPath=none', '-o', 'SetEnv=SHLVL=1', `${user}@127.0.0.1`, 'true'];
  try {
    await until(() => spawnSync('ssh', login, { stdio: 'ignore' }).status === 0, 'sshd on loopback', 10_000);
  } catch {
    console.log(`  (sshd did not accept a login: ${server.out().trim().split('\n').pop()})`);
    server.child.kill();
    return null;
  }
  return { base, user, port: sshPort, key: path.join(d, 'user'), dir: d, login, stop: () => server.child.kill() };
}

/** `ssh 127.0.0.1 true` over a new connection each time: the baseline of a client's whole run. */
async function sshBaseline(runs) {
  const sshd = await startSshd();
  if (!sshd) return null;
  const args = sshd.login;
  const times = [];
  for (let i = 0; i < runs; i++) times.push(timeCmd('ssh', args));
  sshd.stop();
  return times;
}

/**
 * Runs one untimed round of each first (on a VM the first touch of fresh memory is slow, and
 * whichever ran first would pay for it), then RUNS timed rounds, alternating which goes first.
 */
async function alternate(drover, baseline) {
  await drover(false);
  await baseline(false);
  for (let i = 0; i < RUNS; i++) {
    const [first, second] = i % 2 === 0 ? [drover, baseline] : [baseline, drover];
    await first(true);
    await second(true);
  }
}

const rssOf = (pid) => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) * 1024;

console.log(
  `drover bench on ${os.cpus().length} cores, ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB, node ${process.version}; ${SIZE_MIB} MiB x ${RUNS} runs\n`,
);

/**
 * Starts a master on loopback with an ephemeral port; resolves once it listens. Plain ws: the
 * baselines are plain ws too, so the ratios measure drover, not TLS.
 */
async function startMaster(stateDir, { shell = false, args = [], tls = false } = {}) {
  const proc = start(
    process.execPath,
    [
      MASTER,
      ...(shell ? [] : ['--no-shell']),
      // The client's remote path is measured too; plain ws, like every baseline here (but the
      // one master with TLS, as a master starts by default, for the client against ssh).
      ...(tls ? [] : ['--no-tls', '--insecure-operator-api']),
      '--host',
      '127.0.0.1',
      '--port',
      '0',
      '--token',
      TOKEN,
      '--state-dir',
      stateDir,
      '--log-level',
      'warn',
      ...args,
    ],
    {},
    shell ? 'pipe' : 'ignore',
  );
  const port = Number((await until(() => /listening on [^ ]+:(\d+)/.exec(proc.out()), 'a master'))[1]);
  return { proc, port };
}

/** A real worker agent named `name` on the master at `masterPort`, its state in tmp/NAME. */
function startWorker(name, masterPort, args = []) {
  return start(
    process.execPath,
    [WORKER, '--master', `127.0.0.1:${masterPort}`, '--name', name, '--token', TOKEN, '--state-dir', path.join(tmp, name), '--log-level', 'warn', ...args],
    // As the installed worker runs (install.sh's wrapper): one malloc arena.
    { MALLOC_ARENA_MAX: '1' },
  );
}

// ---------------------------------------------------------------- a master and one worker
const mstate = path.join(tmp, 'master');
// With its own shell on a pipe: a copy typed there reads the file in the master (section 4).
const { proc: mainMaster, port } = await startMaster(mstate, { shell: true });

/** Runs a line at the master's own prompt and waits for its one-line JSON answer. */
async function atMasterPrompt(line, answered) {
  const from = mainMaster.out().length;
  // Woken by the answer itself, not by polling: a poll every 25 ms added ~12 ms to each copy
  // typed here, the baseline of the copy rows, which flattered drover's copies against it.
  const seen = new Promise((resolve, reject) => {
    const check = () => {
      if (!answered.test(mainMaster.out().slice(from))) return;
      clearTimeout(timer);
      stop();
      resolve();
    };
    const streams = [mainMaster.child.stdout, mainMaster.child.stderr];
    const stop = () => streams.forEach((s) => s.off('data', check));
    const timer = setTimeout(() => {
      stop();
      reject(new Error(`timed out waiting for the answer to ${line}`));
    }, 120_000);
    // After start()'s own listeners, which append to out().
    streams.forEach((s) => s.on('data', check));
  });
  mainMaster.child.stdin.write(`${line} --json\n`);
  await seen;
}
const worker = startWorker('w1', port);
const ctl = await control(mstate);
await until(async () => (await ctl.run('workers')).some((w) => w.status === 'available'), 'the worker');

// ---------------------------------------------------------------- 1. disk benchmark vs dd / cp / rm
console.log('1. bench (create / copy / delete) against dd, cp and rm on the same folder');
const dir = path.join(tmp, 'disk');
execFileSync('mkdir', ['-p', dir]);
const source = path.join(tmp, 'source.bin');
execFileSync('dd', ['if=/dev/urandom', `of=${source}`, 'bs=1M', `count=${SIZE_MIB}`], { stdio: 'ignore' });
const tools = { creation: [], copy: [], deletion: [] };
const drover = { creation: [], copy: [], deletion: [] };
const runDrover = async (keep) => {
  const [e] = await ctl.run(`bench w1 --size ${SIZE_MIB}MiB --runs 1 --dir ${dir}`);
  if (!keep) return;
  drover.creation.push(e.creationTimeMs);
  drover.copy.push(e.copyTimeMs);
  drover.deletion.push(e.deletionTimeMs);
};
const runTools = (keep) => {
  const a = path.join(dir, 'a');
  const b = path.join(dir, 'b');
  const c = timeCmd('dd', [`if=${source}`, `of=${a}`, 'bs=1M', 'conv=fsync']);
  const p = timeCmd('cp', [a, b]) + timeCmd('sync', []);
  const d = timeCmd('rm', [a, b]) + timeCmd('sync', []);
  if (!keep) return;
  tools.creation.push(c);
  tools.copy.push(p);
  tools.deletion.push(d);
};
await alternate(runDrover, runTools);
report('creation (median ms) vs dd bs=1M conv=fsync', median(drover.creation), median(tools.creation), 'ms', 1.25);
report('copy (median ms) vs cp + sync', median(drover.copy), median(tools.copy), 'ms', 1.25);
report('deletion (median ms) vs rm + sync', median(drover.deletion), median(tools.deletion), 'ms', 1.25);

// ---------------------------------------------------------------- 2. command round trip vs a bare ws round trip
console.log('\n2. a command through the master (ps w1) against a bare two-hop ws relay (client → relay → echo), alternating');
const wsLib = JSON.stringify(path.join(ROOT, 'node_modules/ws'));
const echo = start(process.execPath, [
  '-e',
  `const {WebSocketServer}=require(${wsLib});const s=new WebSocketServer({host:'127.0.0.1',port:0},()=>console.log('port',s.address().port));s.on('connection',w=>w.on('message',d=>w.send(d.toString())));`,
]);
const echoPort = Number((await until(() => /port (\d+)/.exec(echo.out()), 'the echo server'))[1]);
// The relay parses each message, as the master does, and passes it on over its own connection.
const relay = start(process.execPath, [
  '-e',
  `const W=require(${wsLib});const s=new W.WebSocketServer({host:'127.0.0.1',port:0},()=>console.log('port',s.address().port));
s.on('connection',(c)=>{const up=new W('ws://127.0.0.1:${echoPort}');const q=[];up.on('open',()=>{for(const m of q.splice(0))up.send(m);});
c.on('message',(d)=>{const m=JSON.stringify(JSON.parse(d.toString()));up.readyState===1?up.send(m):q.push(m);});
up.on('message',(d)=>c.send(JSON.stringify(JSON.parse(d.toString()))));});`,
]);
const relayPort = Number((await until(() => /port (\d+)/.exec(relay.out()), 'the relay'))[1]);
const ws = new WebSocket(`ws://127.0.0.1:${relayPort}`);
await new Promise((r) => ws.once('open', r));
const bare = [];
const viaMaster = [];
const bareOnce = async (i) => {
  const t = now();
  await new Promise((r) => {
    ws.once('message', r);
    ws.send(JSON.stringify({ v: 1, type: 'ps', id: i }));
  });
  return now() - t;
};
const droverOnce = async () => {
  const t = now();
  await ctl.run('ps w1');
  return now() - t;
};
// Alternating within the pass, so both see the same machine. Both sides start cold: V8 runs a
// request's code in its interpreter until it has run often enough to be compiled, which took
// ~3,000 requests here (the master's CPU per ps fell from ~600 to ~100 µs, the relay's from
// ~400 to ~70). What is measured is the master as it runs for weeks: the first WARM of each
// are not counted, and are printed apart. The issue's baseline (the relay at 103 µs) is what the
// relay measures warm here (110-120 µs), not cold (250-500).
const WARM = QUICK ? 2000 : 4000;
const COLD = 2000; // of the WARM, printed apart
const coldBare = [];
const coldVia = [];
for (let i = 0; i < WARM + (QUICK ? 1000 : 2000); i++) {
  const bareFirst = i % 2 === 0;
  const early = bareFirst ? await bareOnce(i) : NaN;
  const d = await droverOnce();
  const b = bareFirst ? early : await bareOnce(i);
  if (i >= WARM) (bare.push(b), viaMaster.push(d));
  else if (i < COLD) (coldBare.push(b), coldVia.push(d));
}
console.log(
  `  the first ${coldVia.length} of each, code still cold on both sides: p50 ${pct(coldVia, 0.5).toFixed(3)} ms against ${pct(coldBare, 0.5).toFixed(3)} ms (${(pct(coldVia, 0.5) / pct(coldBare, 0.5)).toFixed(2)}x)`,
);
report('round trip p50 (ms)', pct(viaMaster, 0.5), pct(bare, 0.5), 'ms', 1.5);
report('round trip p99 (ms)', pct(viaMaster, 0.99), pct(bare, 0.99), 'ms', 3);

// ---------------------------------------------------------------- 2b. the drover client as a whole process
console.log('\n2b. `drover ps w1` as a whole process (start, connect, answer, exit) against `node -e 0`');
// The bins, as a user's `drover` and `master` run them (CommonJS entries; dist/drover.js and
// dist/cli.js are the same programs behind an ES module entry).
const DROVER = path.join(ROOT, 'packages/master/dist/bin/drover.cjs');
const MASTER_BIN = path.join(ROOT, 'packages/master/dist/bin/master.cjs');
const adminToken = readFileSync(path.join(mstate, 'admin-token'), 'utf8').trim();
const wholeLocal = [];
const wholeRemote = [];
const nodeBare = [];
// Each run (timeCmd) as a user's shell runs it: the bins as programs (their first line is
// /bin/sh's, see scripts/bundle.mjs), node by its path, in this process's environment.
// Node's own start is the baseline without NODE_EXTRA_CA_CERTS (the lower, stricter figure): node
// 20 parses the file it names at every start, before any JavaScript, and some machines set it for
// every program (this one: ~40 ms). The bins keep node from loading it, so a client here would
// otherwise be measured against a node slowed by what the client itself does not pay.
const { NODE_EXTRA_CA_CERTS: extraCa, ...withoutCa } = process.env;
const nodeWithCa = [];
const wholeExec = [];
// ssh encrypts, so the client against it also runs as users run it by default: a master with
// TLS (its self-signed certificate) and drover pinning its key, as `drover login` remembers it.
const tlsState = path.join(tmp, 'master-tls');
const { proc: tlsMaster, port: tlsPort } = await startMaster(tlsState, { tls: true });
const tlsPin = /certificate (sha256:[0-9a-f]{64})/.exec(tlsMaster.out())[1];
const tlsWorker = start(
  process.execPath,
  [
    WORKER,
    ...['--master', `wss://127.0.0.1:${tlsPort}`, '--fingerprint', tlsPin, '--name', 'w1', '--token', TOKEN],
    ...['--state-dir', path.join(tmp, 'w1-tls'), '--log-level', 'warn'],
  ],
  { MALLOC_ARENA_MAX: '1' },
); // as install.sh's wrapper runs it, like w1
const tlsCtl = await control(tlsState);
await until(async () => (await tlsCtl.run('workers')).some((w) => w.status === 'available'), 'the worker over wss');
tlsCtl.close();
const tlsAdmin = readFileSync(path.join(tlsState, 'admin-token'), 'utf8').trim();
const wholeTls = [];
for (let i = 0; i < (QUICK ? 7 : 12); i++) {
  const keep = i >= 2;
  const a = timeCmd(process.execPath, ['-e', '0'], withoutCa);
  const b = timeCmd(DROVER, ['--state-dir', mstate, 'ps', 'w1']);
  const c = timeCmd(DROVER, ['--master', `ws://127.0.0.1:${port}`, 'ps', 'w1'], { ...process.env, DROVER_ADMIN_TOKEN: adminToken });
  const d = timeCmd(MASTER_BIN, ['exec', 'ps w1', '--state-dir', mstate]);
  const e = extraCa ? timeCmd(process.execPath, ['-e', '0']) : NaN;
  const f = timeCmd(DROVER, ['--master', `wss://127.0.0.1:${tlsPort}`, '--fingerprint', tlsPin, 'ps', 'w1'], { ...process.env, DROVER_ADMIN_TOKEN: tlsAdmin });
  if (!keep) continue;
  wholeTls.push(f);
  nodeBare.push(a);
  wholeLocal.push(b);
  wholeRemote.push(c);
  wholeExec.push(d);
  if (extraCa) nodeWithCa.push(e);
}
if (extraCa)
  console.log(
    `  NODE_EXTRA_CA_CERTS is set here (${extraCa}): node -e 0 takes ${median(nodeWithCa).toFixed(0)} ms with it, ${median(nodeBare).toFixed(0)} without (the baseline below)`,
  );
// The issue's target: node's own start + 30 ms.
const startTarget = (median(nodeBare) + 30) / median(nodeBare);
report('master exec "ps w1" (median ms) vs node -e 0', median(wholeExec), median(nodeBare), 'ms', startTarget, wholeExec);
report('drover ps w1, local socket (median ms)', median(wholeLocal), median(nodeBare), 'ms', startTarget, wholeLocal);
report('drover ps w1, remote operator API (median ms)', median(wholeRemote), median(nodeBare), 'ms', startTarget, wholeRemote);
const ssh = await sshBaseline(QUICK ? 6 : 10);
if (ssh) {
  report('drover ps w1, local socket vs `ssh host true`', median(wholeLocal), median(ssh), 'ms', 0.5);
  report('drover ps w1, remote vs `ssh host true`', median(wholeRemote), median(ssh), 'ms', 0.5);
  report('drover ps w1, remote over wss (pinned) vs `ssh host true`', median(wholeTls), median(ssh), 'ms', 0.5);
} else console.log('  (no ssh baseline: install openssh-server for `ssh 127.0.0.1 true` over a new connection)');
console.log(`  drover ps w1 over wss (pinned): ${median(wholeTls).toFixed(0)} ms (${Math.min(...wholeTls).toFixed(0)}-${Math.max(...wholeTls).toFixed(0)})`);

// ---------------------------------------------------------------- 3. launch vs a bare spawn
console.log('\n3. launch through drover against a bare child_process.spawn of the same program, in a Node process that does nothing else');
const prog = '/bin/true';
await ctl.run(`copy w1 ${prog} --as t`);
const bareSpawn = [];
const launches = [];
// The bare spawn runs in a Node process of its own that does nothing else, and times itself. The
// bench's process is bigger than a bare Node, and a fork leaves the forking process's pages
// write-protected: its next work runs slower until each page it writes has faulted once (a
// net.Socket made in 35 µs takes 0.7 ms just after a spawn), so spawning here slowed the launch
// the bench sent next, on its own side.
const spawner = spawn(
  process.execPath,
  [
    '-e',
    `const { spawn } = require('node:child_process');
     require('node:readline').createInterface({ input: process.stdin }).on('line', (prog) => {
       const t = performance.now();
       spawn(prog, [], { stdio: 'ignore', detached: true }).once('spawn', () => process.stdout.write(\`\${performance.now() - t}\\n\`));
     });`,
  ],
  { stdio: ['pipe', 'pipe', 'inherit'] },
);
const spawnTimes = [];
let spawnBuffered = '';
spawner.stdout.setEncoding('utf8').on('data', (text) => {
  const lines = (spawnBuffered + text).split('\n');
  spawnBuffered = lines.pop();
  for (const l of lines) spawnTimes.shift()(Number(l));
});
const spawnOnce = () =>
  new Promise((resolve) => {
    spawnTimes.push(resolve);
    spawner.stdin.write(`${prog}\n`);
  });
const launchOnce = async () => {
  const t = now();
  await ctl.run('launch w1 t');
  return now() - t;
};
// Alternating, each first in every other pass, so both see the same machine; the first 20 warm
// up. Back to back, as a script launches: the end of each launched /bin/true (its exit, its
// log's close) falls on what comes next, the next launch or the next spawn alike. (Not from rest:
// a pause lets the VM's idle cores sleep, and waking them costs more than a launch's own work.)
for (let i = 0; i < 220; i++) {
  const spawnFirst = i % 2 === 0;
  const early = spawnFirst ? await spawnOnce() : await launchOnce();
  const late = spawnFirst ? await launchOnce() : await spawnOnce();
  if (i < 20) continue;
  bareSpawn.push(spawnFirst ? early : late);
  launches.push(spawnFirst ? late : early);
}
console.log(`  end to end from the control socket: launch p50 ${pct(launches, 0.5).toFixed(2)} ms, p99 ${pct(launches, 0.99).toFixed(2)} ms`);
// The issue's target: spawn + 1 ms. The round trip is section 2's (ps w1 with nothing in its
// list: a launch's answer is one row), measured against the relay the same way.
report(
  'launch p50 minus a command round trip (ms)',
  Math.max(0.001, pct(launches, 0.5) - pct(viaMaster, 0.5)),
  pct(bareSpawn, 0.5),
  'ms',
  (pct(bareSpawn, 0.5) + 1) / pct(bareSpawn, 0.5),
);

// ---------------------------------------------------------------- 3b. launch with many processes running
// The agent samples every live process every 250 ms: that work must not grow into the launches
// (it did: through the thread pool, 200 processes took 75% of a core and launches 2.4-3.4x).
const LIVE = QUICK ? 50 : 200;
console.log(`\n3b. launch with ${LIVE} processes running on the worker against none (the same launch as in 3)`);
await ctl.run('copy w1 /bin/sleep --as s');
for (let i = 0; i < LIVE; i++) await ctl.run('launch w1 s -- 600');
await new Promise((r) => setTimeout(r, 1000));
const launchesBusy = [];
// As in section 3: each launch beside a bare spawn (alternating which goes first), so the two
// launch figures come from the same pattern of work.
for (let i = 0; i < (QUICK ? 100 : 200); i++) {
  if (i % 2 === 0) await spawnOnce();
  launchesBusy.push(await launchOnce());
  if (i % 2 === 1) await spawnOnce();
}
report(`launch p50 with ${LIVE} processes running vs none (ms)`, pct(launchesBusy, 0.5), pct(launches, 0.5), 'ms', 1.25);
spawner.stdin.end();
{
  const c0 = cpuMs(worker.child.pid);
  const t0 = now();
  await new Promise((r) => setTimeout(r, QUICK ? 1000 : 5000));
  console.log(`  the agent at rest with ${LIVE} processes running: ${(((cpuMs(worker.child.pid) - c0) / (now() - t0)) * 100).toFixed(1)}% of a core`);
}
// Ended from here, at once (the agent sees them end as it would any crash): a kill command each
// would wait for each end in turn.
for (const p of await ctl.run('ps w1')) if (p.app === 's' && p.state !== 'dead') process.kill(p.pid, 'SIGKILL');
await until(async () => (await ctl.run('ps w1')).every((p) => p.app !== 's' || p.state === 'dead'), 'the sleeps to end');

// ---------------------------------------------------------------- 4. copy throughput vs cp
console.log('\n4. copy to a worker over loopback against cp to the same disk; drover → master → worker against master → worker');
const copies = [];
const cps = [];
const masterCopies = [];
const remoteCopies = [];
const remoteCtl = await control(mstate, { port });
const cpDest = path.join(dir, 'cp-dest');
/** A copy to w1 from the control socket, timed into `into`. */
const copyTimedInto = (into) => async (keep) => {
  writeFileSync(source, 'x', { flag: 'a' }); // a new sha256 each run, so it is really sent
  const t = now();
  await ctl.run(`copy w1 ${source} --as big`);
  if (keep) into.push(now() - t);
};
const runCopy = copyTimedInto(copies);
const runCp = (keep) => {
  // Like drover's copy, replace the previous copy: both sides recycle the page cache they free.
  rmSync(cpDest, { force: true });
  const t = now();
  timeCmd('cp', [source, cpDest]);
  timeCmd('sync', []);
  if (keep) cps.push(now() - t);
};
// The path before the client sent files: typed at the master's own prompt, the master reads the file.
const runMasterCopy = async (keep) => {
  writeFileSync(source, 'x', { flag: 'a' });
  const t = now();
  await atMasterPrompt(`copy w1 ${source} --as big`, /"app":"big".*\n/);
  if (keep) masterCopies.push(now() - t);
};
// Through the operator API on the port: every byte goes drover → master → worker.
const runRemoteCopy = async (keep) => {
  writeFileSync(source, 'x', { flag: 'a' });
  const t = now();
  await remoteCtl.run(`copy w1 ${source} --as big`);
  if (keep) remoteCopies.push(now() - t);
};
await alternate(runCopy, runCp);
await alternate(runCopy, runMasterCopy);
await alternate(runRemoteCopy, runMasterCopy);
remoteCtl.close();
const mibps = (ms) => SIZE_MIB / (ms / 1000);
console.log(`  copy to a worker ${median(copies).toFixed(0)} ms against cp + sync ${median(cps).toFixed(0)} ms (the disk alone)`);
report('copy (ms): drover on this machine vs the master prompt', median(copies), median(masterCopies), 'ms', 1.1);
report('copy (ms): drover over the port (streamed) vs the master prompt', median(remoteCopies), median(masterCopies), 'ms', 1.1);
// The issue's baseline: scp of the same file over a multiplexed ssh connection (no handshake per
// copy) against `master exec "copy w1 FILE"` as a whole process, alternating.
const sshd = await startSshd();
if (sshd) {
  const ctlSock = path.join(sshd.dir, 'mux');
  const mux = [...sshd.base, '-o', `ControlPath=${ctlSock}`];
  execFileSync('ssh', [...mux, '-o', 'ControlMaster=yes', '-o', 'ControlPersist=120', '-fN', `${sshd.user}@127.0.0.1`], { stdio: 'ignore' });
  const scpDest = path.join(dir, 'scp-dest');
  const execCopies = [];
  const scps = [];
  const runExecCopy = async (keep) => {
    writeFileSync(source, 'x', { flag: 'a' });
    const t = now();
    timeCmd(MASTER_BIN, ['exec', `copy w1 ${source} --as big`, '--state-dir', mstate]); // the bin, as a script runs it (see 2b)
    if (keep) execCopies.push(now() - t);
  };
  const runScp = async (keep) => {
    writeFileSync(source, 'x', { flag: 'a' });
    rmSync(scpDest, { force: true });
    const t = now();
    timeCmd('scp', [
      '-q',
      '-i',
      sshd.key,
      '-P',
      String(sshd.port),
      '-o',
      'StrictHostKeyChecking=no',
      '-o',
      'UserKnownHostsFile=/dev/null',
      '-o',
      `ControlPath=${ctlSock}`,
      source,
      `${sshd.user}@127.0.0.1:${scpDest}`,
    ]);
    timeCmd('sync', []);
    if (keep) scps.push(now() - t);
  };
  // scp encrypts: the same copy also through the master of section 2b, with TLS as a master
  // starts by default and its worker joined by its key's fingerprint.
  const tlsCopies = [];
  const runTlsCopy = async (keep) => {
    writeFileSync(source, 'x', { flag: 'a' });
    const t = now();
    timeCmd(MASTER_BIN, ['exec', `copy w1 ${source} --as big`, '--state-dir', tlsState]);
    if (keep) tlsCopies.push(now() - t);
  };
  let pass = 0;
  const bothCopies = async (keep) => {
    const order = pass++ % 2 === 0 ? [runExecCopy, runTlsCopy] : [runTlsCopy, runExecCopy];
    for (const run of order) await run(keep);
  };
  await alternate(bothCopies, runScp);
  spawnSync('ssh', [...mux, '-O', 'exit', `${sshd.user}@127.0.0.1`], { stdio: 'ignore' });
  sshd.stop();
  report('copy w1 (whole master exec) vs scp, ssh multiplexed (ms)', median(execCopies), median(scps), 'ms', 0.75, execCopies);
  report('copy w1 over wss (pinned) vs scp, ssh multiplexed (ms)', median(tlsCopies), median(scps), 'ms', 0.75, tlsCopies);
} else console.log('  (no scp baseline: install openssh-server for scp over a multiplexed connection)');
tlsWorker.child.kill('SIGINT');
tlsMaster.child.kill('SIGINT');
console.log(
  `  drover copies at ${mibps(median(copies)).toFixed(0)} MiB/s on this machine (the master reads the file drover named, checked to be the same inode), ${mibps(median(remoteCopies)).toFixed(0)} MiB/s streamed through drover, ${mibps(median(masterCopies)).toFixed(0)} MiB/s typed at the master (hash, send, verify, fsync, rename); cp at ${mibps(median(cps)).toFixed(0)} MiB/s`,
);

// The ws floor: the same bytes from a file in one process to a file in another over a bare ws
// connection (server → client, 1 MiB frames, written as they come, fsynced at the end).
const floorFile = path.join(dir, 'floor-dest');
const wsFloor = async (file) => {
  rmSync(floorFile, { force: true });
  const sender = start(process.execPath, [
    '-e',
    `const fs=require('fs');const {WebSocketServer}=require(${JSON.stringify(path.join(ROOT, 'node_modules/ws'))});
const s=new WebSocketServer({host:'127.0.0.1',port:0,perMessageDeflate:false},()=>console.log('port',s.address().port));
s.on('connection',async(w)=>{const fd=fs.openSync(${JSON.stringify(file)},'r');const b=Buffer.allocUnsafe(1<<20);
for(;;){const n=fs.readSync(fd,b,0,b.length,null);if(!n)break;await new Promise((r)=>w.send(b.subarray(0,n),{binary:true},r));}
w.close();});`,
  ]);
  const floorPort = Number((await until(() => /port (\d+)/.exec(sender.out()), 'the floor sender'))[1]);
  const receiver = start(process.execPath, [
    '-e',
    `const fs=require('fs');const W=require(${JSON.stringify(path.join(ROOT, 'node_modules/ws'))});
const fd=fs.openSync(${JSON.stringify(floorFile)},'w');const w=new W('ws://127.0.0.1:${floorPort}',{perMessageDeflate:false});let t;
w.on('open',()=>{t=performance.now();});w.on('message',(d)=>fs.writeSync(fd,d));
w.on('close',()=>{fs.fsyncSync(fd);fs.closeSync(fd);console.log('ms',performance.now()-t);process.exit(0);});`,
  ]);
  const ms = Number((await until(() => /ms ([\d.]+)/.exec(receiver.out()), 'the floor transfer', 120_000))[1]);
  sender.child.kill();
  return ms;
};
const floors = [];
const runFloor = async (keep) => {
  writeFileSync(source, 'x', { flag: 'a' });
  const ms = await wsFloor(source);
  if (keep) floors.push(ms);
};
const floorCopies = [];
await alternate(copyTimedInto(floorCopies), runFloor);
// The issue's target: at least half the floor's throughput (so at most twice its time).
report('copy w1 vs the ws floor, file → file (ms)', median(floorCopies), median(floors), 'ms', 2, floorCopies);

// copy all to 3 workers against copy to 1: one read for all, each worker paced by its own acks.
const fanWorkers = ['c2', 'c3'].map((name) => startWorker(name, port));
await until(async () => (await ctl.run('workers')).filter((w) => w.status === 'available').length >= 3, 'three workers');
const toAll = [];
const toOne = [];
const allCpu = [];
const oneCpu = [];
const masterCpu = () => {
  const f = readFileSync(`/proc/${mainMaster.child.pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / 100;
};
const runAll = async (keep) => {
  writeFileSync(source, 'x', { flag: 'a' });
  const [t, c] = [now(), masterCpu()];
  const r = await ctl.run(`copy all ${source} --as fan`);
  if (r.length !== 3 || !r.every((e) => e.ok)) throw new Error(`copy all: ${JSON.stringify(r).slice(0, 300)}`);
  if (keep) (toAll.push(now() - t), allCpu.push(masterCpu() - c));
};
const runOne = async (keep) => {
  writeFileSync(source, 'x', { flag: 'a' });
  const [t, c] = [now(), masterCpu()];
  await ctl.run(`copy w1 ${source} --as fan`);
  if (keep) (toOne.push(now() - t), oneCpu.push(masterCpu() - c));
};
await alternate(runAll, runOne);
report('copy all to 3 workers vs copy to 1 (ms)', median(toAll), median(toOne), 'ms', 1.3, toAll);
report("copy all to 3: the master's CPU vs copy to 1 (ms)", median(allCpu), median(oneCpu), 'ms', 1.3, allCpu);
console.log("  (the 3 workers share this machine's 2 cores and one disk with the master: each hashes and writes its own copy)");
for (const w of fanWorkers) w.child.kill('SIGINT');

// logs --out: a 256 MiB log from the worker through the master into a file where the client is.
const logApp = path.join(tmp, 'logger');
execFileSync('cp', ['/usr/bin/head', logApp]);
await ctl.run(`copy w1 ${logApp}`);
const logged = await ctl.run(`launch w1 logger -- -c ${SIZE_MIB * 1024 * 1024} ${source}`);
const logPid = logged[0].pid;
await until(async () => (await ctl.run('ps w1')).every((p) => p.pid !== logPid || p.exit), 'the logger to finish', 60_000);
const logOut = path.join(dir, 'log-out');
const logsOut = [];
const logFloors = [];
const logsCopy = path.join(dir, 'log-copy');
const runLogs = async (keep) => {
  const t = now();
  await ctl.run(`logs w1 ${logPid} --out ${logOut} --force`);
  if (keep) logsOut.push(now() - t);
};
const runLogFloor = async (keep) => {
  // The same bytes as the log (the log's own file would be read while drover reads it).
  execFileSync('cp', ['--reflink=never', source, logsCopy]);
  const ms = await wsFloor(logsCopy);
  if (keep) logFloors.push(ms);
};
await alternate(runLogs, runLogFloor);
const outSize = statSync(logOut).size;
if (outSize < SIZE_MIB * 1024 * 1024) throw new Error(`logs --out wrote ${outSize} bytes`);
// The issue's target: at least 0.6 of the floor's throughput (at most 1/0.6 of its time).
report(`logs --out of ${SIZE_MIB} MiB vs the ws floor (ms)`, median(logsOut), median(logFloors), 'ms', 1 / 0.6, logsOut);
console.log(`  logs --out at ${mibps(median(logsOut)).toFixed(0)} MiB/s; the ws floor at ${mibps(median(logFloors)).toFixed(0)} MiB/s`);

// ---------------------------------------------------------------- 5. worker agent memory vs a bare ws client
console.log('\n5. worker agent resident memory against a bare Node process holding one ws client');
const fresh = startWorker('fresh', port);
const baseline = start(process.execPath, [
  '-e',
  `const W=require(${JSON.stringify(path.join(ROOT, 'node_modules/ws'))});const w=new W('ws://127.0.0.1:${echoPort}');setInterval(()=>w.readyState===1&&w.send('{}'),1000);`,
]);
await new Promise((r) => setTimeout(r, 10_000));
const bareRss = rssOf(baseline.child.pid) / 2 ** 20;
report('idle agent RSS (MiB); target under 60 MiB', rssOf(fresh.child.pid) / 2 ** 20, bareRss, 'MiB', 60 / bareRss);
const hwm = Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${worker.child.pid}/status`, 'utf8'))[1]) / 1024;
// The issue's target: back to 60 MiB within 10 s of its copies (here: of everything above).
report('agent RSS 10 s after the copies and all above (MiB)', rssOf(worker.child.pid) / 2 ** 20, bareRss, 'MiB', 60 / bareRss);
console.log(`  its peak: ${hwm.toFixed(0)} MiB`);
{
  const parts = (pid) => {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const part = (key) => (Number(new RegExp(`${key}:\\s+(\\d+) kB`).exec(status)?.[1] ?? 0) / 1024).toFixed(1);
    return `${part('RssAnon')} MiB anonymous + ${part('RssFile')} MiB of files (node's own pages)`;
  };
  console.log(`  the agent after the copies: ${parts(worker.child.pid)}; idle: ${parts(fresh.child.pid)}; the bare process: ${parts(baseline.child.pid)}`);
}
if (rssOf(fresh.child.pid) / 2 ** 20 >= 60) rows.push({ ratio: 2, target: 1 });

// ---------------------------------------------------------------- 6. fleet scale: many workers on one master
const FLEET = Number(process.env.BENCH_FLEET ?? (QUICK ? 1000 : 5000));
console.log(`\n6. ${FLEET} simulated workers heartbeating once a second: the master against a bare ws server that parses the same frames`);
/**
 * Each pid's CPU (% of a core) over `count` windows of `ms`, all read over the same windows;
 * `open` runs at the start of each window (inside it). One array of shares per pid.
 */
async function cpuWindows(pids, count, ms, open = async () => undefined) {
  const shares = pids.map(() => []);
  for (let w = 0; w < count; w++) {
    const c0 = pids.map(cpuMs);
    const t0 = now();
    await open();
    await new Promise((r) => setTimeout(r, Math.max(0, ms - (now() - t0))));
    const dt = now() - t0;
    pids.forEach((pid, i) => shares[i].push(((cpuMs(pid) - c0[i]) / dt) * 100));
  }
  return shares;
}
/** The bare ws server the fleet figures are measured against; resolves with it and its port. */
async function startBareServer() {
  const bare = start(process.execPath, [fileURLToPath(new URL('./baseline-ws-server.mjs', import.meta.url))]);
  const port = Number((await until(() => /port (\d+)/.exec(bare.out()), 'the baseline server'))[1]);
  return { bare, port };
}
/**
 * `count` simulated workers on the master at `address` (simulate-workers.mjs), answering what
 * service placement asks unless `mode` says otherwise; `ready` resolves once all have joined.
 */
function simulatedFleet(address, count, { path: upgrade = '/worker', mode = 'answer', prefix } = {}) {
  // A server that says nothing of its quiet time (the bare one) is pinged as the master's agents
  // are told to ping it for a fleet this size: both servers get the same frames.
  const env = upgrade === '/worker' ? {} : { SIM_QUIET_MS: String(quietMsFor(count, 1000)) };
  const proc = start(
    process.execPath,
    [
      fileURLToPath(new URL('./simulate-workers.mjs', import.meta.url)),
      address,
      String(count),
      TOKEN,
      upgrade,
      ...(mode ? [mode] : []),
      ...(prefix ? [prefix] : []),
    ],
    env,
  );
  const ready = (ms = 120_000) => until(() => /ready (\d+)/.exec(proc.out()), 'the simulated fleet', ms).then((m) => Number(m[1]));
  return Object.assign(proc, { ready });
}

/**
 * Both servers carry a fleet at once, and their CPU is read over the same windows: each window
 * gives one figure for each (the machine drifts between minutes; two servers side by side see
 * the same drift), and the rows give the median window with the range of all.
 */
const FLEET_WINDOWS = QUICK ? 3 : 5;
const FLEET_WINDOW_MS = QUICK ? 1500 : 3000;
const bigState = path.join(tmp, 'fleet-master');
const { proc: big, port: bigPort } = await startMaster(bigState);
const { bare: bare2, port: barePort } = await startBareServer();
const servers = [
  // Answering what the master asks (instances, usage), as real agents do; the bare server asks nothing.
  { pid: big.child.pid, address: `127.0.0.1:${bigPort}`, path: '/worker', mode: 'answer' },
  { pid: bare2.child.pid, address: `127.0.0.1:${barePort}`, path: '/', mode: null },
];
for (const s of servers) s.rss0 = rssOf(s.pid);
for (const s of servers) s.joinCpu0 = cpuMs(s.pid);
const joinT0 = now();
const fleets = servers.map((s) => simulatedFleet(s.address, FLEET, { path: s.path, mode: s.mode }));
const joined = await Promise.all(
  fleets.map((f, i) =>
    f.ready().then((n) => {
      servers[i].joinMs = now() - joinT0;
      servers[i].joinCpu = cpuMs(servers[i].pid) - servers[i].joinCpu0;
      return n;
    }),
  ),
);
// Settled: the joins' work (hellos, the first placements, compiling) is over before the first window.
await new Promise((r) => setTimeout(r, (QUICK ? 1000 : 2000) + FLEET_WINDOW_MS));
// Each server's RSS at the start of every window and after the last: a single reading lands
// anywhere in the young generation's cycle (one build measured 16-27 KiB a connection), the
// median of six less so. The same for both servers.
for (const s of servers) s.rssSeen = [];
const noteRss = async () => servers.forEach((s) => s.rssSeen.push(rssOf(s.pid)));
(
  await cpuWindows(
    servers.map((s) => s.pid),
    FLEET_WINDOWS,
    FLEET_WINDOW_MS,
    noteRss,
  )
).forEach((shares, i) => (servers[i].shares = shares));
await noteRss();
servers.forEach((s, i) => (s.perConn = (median(s.rssSeen) - s.rss0) / Math.max(1, joined[i]) / 1024));
fleets[1].child.kill('SIGKILL');
const [drv, base] = servers;
const bigCtl = await control(bigState);
const listed = await bigCtl.run('workers');
let t = now();
await bigCtl.run('workers');
const listMs = now() - t;
t = now();
await bigCtl.runHuman('workers');
const tableMs = now() - t;
bigCtl.close();
fleets[0].child.kill('SIGKILL');
bare2.child.kill('SIGKILL');
console.log(
  `  ${joined[0]} workers joined (${listed.filter((w) => w.status === 'available').length} available); over all of them \`workers --json\` took ${listMs.toFixed(1)} ms, the table ${tableMs.toFixed(1)} ms`,
);
console.log(
  `  ${FLEET_WINDOWS} windows of ${FLEET_WINDOW_MS / 1000} s, both fleets at once: master ${drv.shares.map((x) => x.toFixed(1)).join(', ')}%; bare server ${base.shares.map((x) => x.toFixed(1)).join(', ')}%`,
);
report(`master CPU at ${FLEET} heartbeats/s (% of a core)`, median(drv.shares), median(base.shares), '%', 1.25, drv.shares);
report('memory per worker connection (KiB); target 16 KiB', drv.perConn, base.perConn, 'KiB', 16 / base.perConn);
console.log(
  `  the joins (both fleets at once): the master ${(drv.joinCpu / 1000).toFixed(1)} s of CPU over ${(drv.joinMs / 1000).toFixed(1)} s (hellos, tokens, what each keeps; 32 handshakes at a time from one address), the bare server ${(base.joinCpu / 1000).toFixed(1)} s over ${(base.joinMs / 1000).toFixed(1)} s`,
);

/**
 * The issue's fleet target at scale: 20,000 workers within 60% of a core. Each server and its
 * fleet alone (two such fleets at once overload two cores), the master first. The master needs
 * a descriptor per worker: the fleet is what this process's limit allows, 20,000 where it can.
 */
const fdLimit = Number(spawnSync('sh', ['-c', 'ulimit -n'], { encoding: 'utf8' }).stdout.trim()) || 1024;
const BIG_FLEET = Number(process.env.BENCH_BIG_FLEET ?? Math.min(20_000, fdLimit - 500));
if (QUICK) console.log(`  (quick mode: no row for a fleet of ${BIG_FLEET}; the full run has it)`);
else {
  const bigShares = async (pid, address, upgrade, mode) => {
    const fleet = simulatedFleet(address, BIG_FLEET, { path: upgrade, mode });
    const n = await fleet.ready(300_000);
    await new Promise((r) => setTimeout(r, 5000));
    const [shares] = await cpuWindows([pid], 3, 5000);
    fleet.child.kill('SIGKILL');
    return { n, shares };
  };
  const bigMaster = await startMaster(path.join(tmp, 'fleet-big'));
  const mine = await bigShares(bigMaster.proc.child.pid, `127.0.0.1:${bigMaster.port}`, '/worker', 'answer');
  bigMaster.proc.child.kill('SIGTERM');
  const { bare: bare3, port: bare3Port } = await startBareServer();
  const theirs = await bigShares(bare3.child.pid, `127.0.0.1:${bare3Port}`, '/', null);
  bare3.child.kill('SIGKILL');
  const bigBase = median(theirs.shares);
  console.log(
    `  ${mine.n} workers (this process may open ${fdLimit} files), 3 windows of 5 s each: master ${mine.shares.map((x) => x.toFixed(1)).join(', ')}%; then the bare server with as many: ${theirs.shares.map((x) => x.toFixed(1)).join(', ')}%`,
  );
  report(`master CPU at ${mine.n} heartbeats/s (% of a core); target 60%`, median(mine.shares), bigBase, '%', 60 / bigBase, mine.shares);
}

// ---------------------------------------------------------------- 7. services
console.log('\n7. apply of a 10-program service on 3 workers, against the same copies and launches issued one by one');
const extra = ['w2', 'w3'].map((name) => startWorker(name, port));
await until(async () => (await ctl.run('workers')).filter((w) => w.status === 'available').length >= 3, 'three workers');
const svcDir = path.join(tmp, 'svc');
execFileSync('mkdir', ['-p', svcDir]);
for (let i = 0; i < 10; i++) execFileSync('cp', ['/bin/sleep', path.join(svcDir, `p${i}`)]);
const svcFile = path.join(svcDir, 'bench.yaml');
const writeService = (arg) =>
  writeFileSync(
    svcFile,
    `name: bench\nprograms:\n${Array.from({ length: 10 }, (_, i) => `  - { name: p${i}, path: ./p${i}, args: ["${arg}"], healthy: { after: 0s } }`).join('\n')}\n`,
  );
const applies = [];
const oneByOne = [];
let round = 0;
const runApply = async (keep) => {
  writeService(600 + round++); // a new version each time: every instance really starts
  const t = now();
  const r = await ctl.run(`apply ${svcFile}`);
  if (keep) applies.push(now() - t);
  if (r.started.length !== 10) throw new Error(`apply started ${r.started.length}`);
  await ctl.run('teardown bench');
};
const runOneByOne = async (keep) => {
  const workers = ['w1', 'w2', 'w3'];
  const pids = [];
  const t = now();
  for (let i = 0; i < 10; i++) {
    const w = workers[i % 3];
    await ctl.run(`copy ${w} ${path.join(svcDir, `p${i}`)} --as one${i}`);
    pids.push([w, (await ctl.run(`launch ${w} one${i} -- 600`))[0].pid]);
  }
  if (keep) oneByOne.push(now() - t);
  for (const [w, pid] of pids) await ctl.run(`kill ${w} ${pid}`);
  for (let i = 0; i < 10; i++) await ctl.run(`delete ${workers[i % 3]} one${i}`);
};
await alternate(runApply, runOneByOne);
report('apply, 10 programs on 3 workers (median ms)', median(applies), median(oneByOne), 'ms', 1, applies);
console.log('  (apply also hashes and stores the files, places, checks health, and writes its state durably)');
for (const w of extra) w.child.kill('SIGTERM');

const SCHED = Number(process.env.BENCH_SCHED ?? (QUICK ? 200 : 1000));
console.log(`\n8. ${SCHED} queued instances scheduled onto a ${SCHED}-worker simulated fleet as it joins, against the fleet joining alone`);
const schedState = path.join(tmp, 'sched-master');
const { proc: sched, port: schedPort } = await startMaster(schedState);
const schedCtl = await control(schedState);
const schedFile = path.join(svcDir, 'wide.yaml');
writeFileSync(
  schedFile,
  `name: wide\nprograms:\n  - { name: solver, path: ./p0, args: ["600"], replicas: ${SCHED}, resources: { cpus: 2 }, healthy: { after: 0s } }\n`,
);
// No workers yet: every instance waits in the queue.
await schedCtl.runHuman(`apply ${schedFile}`);
const queued = (await schedCtl.run('queue')).length;
const cpu0 = cpuMs(sched.child.pid);
const t0 = now();
const simFleet = simulatedFleet(`127.0.0.1:${schedPort}`, SCHED);
await simFleet.ready();
const joinedMs = now() - t0;
await until(async () => (await schedCtl.run('status wide'))[0].programs[0].running === SCHED, 'every instance running', 300_000);
const scheduledMs = now() - t0;
const schedCpu = (cpuMs(sched.child.pid) - cpu0) / 1000;
report(`${queued} queued instances running (ms from the first join)`, scheduledMs, joinedMs, 'ms', 2);
console.log(
  `  master CPU ${schedCpu.toFixed(1)} s for the joins, ${SCHED} placements, copies and launches; the fleet alone took ${joinedMs.toFixed(0)} ms to join`,
);
simFleet.child.kill('SIGKILL');
schedCtl.close();

// ---------------------------------------------------------------- 9. failover
console.log('\n9. failover: a singleton on a worker killed with SIGKILL, running elsewhere (target: within lostAfter + 1 s)');
const LOST_MS = QUICK ? 2000 : 3000;
const foState = path.join(tmp, 'fo-master');
const { proc: foMaster, port: foPort } = await startMaster(foState, {
  args: ['--lost-after', `${LOST_MS}ms`, '--stop-after', `${LOST_MS - 1000}ms`, '--heartbeat-ms', '250'],
});
const foCtl = await control(foState);
const foWorkers = ['f1', 'f2'].map((name) => startWorker(name, foPort, ['--heartbeat-ms', '250']));
await until(async () => (await foCtl.run('workers')).filter((w) => w.status === 'available').length === 2, 'two workers');
const moves = [];
for (let i = 0; i < 3; i++) {
  const single = path.join(svcDir, `single${i}.yaml`);
  writeFileSync(single, `name: single${i}\nprograms:\n  - { name: app, path: ./p0, args: ["600"], healthy: { after: 0s } }\n`);
  await foCtl.run(`apply ${single}`);
  const where = (await foCtl.run(`status single${i}`))[0].programs[0].instances[0];
  const victim = foWorkers[where.worker === 'f1' ? 0 : 1];
  const t = now();
  victim.child.kill('SIGKILL');
  process.kill(where.pid, 'SIGKILL');
  await until(
    async () => {
      const inst = (await foCtl.run(`status single${i}`))[0].programs[0].instances[0];
      return inst.worker !== where.worker && inst.state === 'running';
    },
    'the singleton elsewhere',
    30_000,
  );
  moves.push(now() - t);
  // The killed worker comes back for the next round.
  const name = where.worker;
  foWorkers[name === 'f1' ? 0 : 1] = startWorker(name, foPort, ['--heartbeat-ms', '250']);
  await until(async () => (await foCtl.run('workers')).filter((w) => w.status === 'available').length === 2, 'two workers again');
  await foCtl.run(`teardown single${i}`);
}
report(`worker killed → singleton running elsewhere (median ms)`, median(moves), LOST_MS + 1000, 'ms', 1);
for (const w of foWorkers) w.child.kill('SIGKILL');
foCtl.close();
foMaster.child.kill('SIGTERM');

const LOSE = Number(process.env.BENCH_LOSE ?? (QUICK ? 100 : 500));
console.log(
  `\n9b. ${LOSE} of ${LOSE * 2} simulated workers lost at once; their ${LOSE * 4} instances rescheduled onto the rest (target: all placed within 10 s)`,
);
const bigFoState = path.join(tmp, 'fo-big');
const { proc: bigFo, port: bigFoPort } = await startMaster(bigFoState, { args: ['--lost-after', '2s', '--stop-after', '1s'] });
const bigFoCtl = await control(bigFoState);
const halves = [0, 1].map((k) => simulatedFleet(`127.0.0.1:${bigFoPort}`, LOSE, { prefix: `h${k}-` }));
for (const h of halves) await h.ready();
const wideFile = path.join(svcDir, 'spread.yaml');
// Each simulated worker offers 2 CPUs; at 0.25 each, the survivors have room for the lost half's share.
writeFileSync(
  wideFile,
  `name: spread\nprograms:\n  - { name: app, path: ./p0, args: ["600"], replicas: ${LOSE * 8}, resources: { cpus: 0.25 }, healthy: { after: 0s } }\n`,
);
const tApply = now();
await bigFoCtl.runHuman(`apply ${wideFile}`);
await until(async () => (await bigFoCtl.run('status spread'))[0].programs[0].running === LOSE * 8, 'every instance running', 300_000);
console.log(`  ${LOSE * 8} instances placed and running on ${LOSE * 2} workers in ${(now() - tApply).toFixed(0)} ms`);
const foCpu0 = cpuMs(bigFo.child.pid);
const tLose = now();
halves[0].child.kill('SIGKILL');
await until(
  async () => {
    const p = (await bigFoCtl.run('status spread'))[0].programs[0];
    return p.running === LOSE * 8 && p.instances.every((i) => i.worker?.startsWith('h1-')) ? p : null;
  },
  'every instance running on the survivors',
  300_000,
);
const rescheduledMs = now() - tLose;
const foCpuS = (cpuMs(bigFo.child.pid) - foCpu0) / 1000;
report(`${LOSE * 4} instances back after ${LOSE} workers lost (ms past lostAfter)`, Math.max(1, rescheduledMs - 2000), 10_000, 'ms', 1);
console.log(
  `  master CPU ${foCpuS.toFixed(1)} s from the loss to every instance running again (${(rescheduledMs / 1000).toFixed(1)} s, of which 2 s is lostAfter)`,
);
halves[1].child.kill('SIGKILL');
bigFoCtl.close();
bigFo.child.kill('SIGTERM');

// ---------------------------------------------------------------- 10. metrics
const SCRAPE_FLEET = Number(process.env.BENCH_SCRAPE_FLEET ?? (QUICK ? 1000 : 5000));
console.log(`\n10. GET /metrics with ${SCRAPE_FLEET} simulated workers and ${SCRAPE_FLEET * 4} processes (target: a scrape within 250 ms)`);
// The scrapes' latency on one master and its fleet. Then a second master with the same fleet,
// never scraped, and the CPU of both read over the same windows (the machine drifts between
// minutes). A window is one gathering period (15 s), opened by a scrape, as Prometheus would
// scrape at its default interval.
const SCRAPE_WINDOWS = QUICK ? 1 : 3;
const SCRAPE_WINDOW_MS = 15_000;
const metricsMaster = async (name) => {
  const { proc, port: p } = await startMaster(path.join(tmp, name), { args: ['--metrics-token', 'bench-metrics'] });
  const fleet = simulatedFleet(`127.0.0.1:${p}`, SCRAPE_FLEET);
  await fleet.ready(180_000);
  return { proc, port: p, fleet };
};
// Both masters and their fleets start at once (the second sits idle, heartbeats only, while
// the first is scraped): joining them one after the other was ~3 s of the quick run's 2 minutes.
const [mScraped, mQuiet] = await Promise.all([metricsMaster('metrics-master'), metricsMaster('metrics-quiet')]);
// Timed to the last byte, as curl's time_total: decoding ~9 MB of text into a string is the
// scraper's work (fetch's text() added ~100 ms here), not the master's.
const scrape = () =>
  new Promise((resolve, reject) => {
    const t = now();
    const req = http.get(`http://127.0.0.1:${mScraped.port}/metrics`, { headers: { authorization: 'Bearer bench-metrics' } }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const ms = now() - t;
        const text = Buffer.concat(chunks).toString();
        resolve({ ms, bytes: text.length, series: text.split('\n').filter((l) => l && !l.startsWith('#')).length });
      });
    });
    req.on('error', reject);
  });
const firstScrape = await scrape(); // starts the per-process gathering
await new Promise((r) => setTimeout(r, QUICK ? 500 : 6000));
const scrapes = [];
let last;
for (let i = 0; i < (QUICK ? 3 : 7); i++) {
  last = await scrape();
  scrapes.push(last.ms);
  await new Promise((r) => setTimeout(r, QUICK ? 250 : 1000));
}
const metricsMasters = [mScraped, mQuiet];
await new Promise((r) => setTimeout(r, QUICK ? 500 : 3000));
(
  await cpuWindows(
    metricsMasters.map((m) => m.proc.child.pid),
    SCRAPE_WINDOWS,
    SCRAPE_WINDOW_MS,
    scrape,
  )
).forEach((shares, i) => (metricsMasters[i].shares = shares));
const scrapedPct = median(mScraped.shares);
const quietPct = median(mQuiet.shares);
report(`scrape of ${last.series} series (median ms)`, median(scrapes), 250, 'ms', 1);
report('master CPU while scraped (% of a core)', scrapedPct, Math.max(quietPct, 0.1), '%', 1.25, mScraped.shares);
console.log(
  `  first scrape (gathers from every worker) ${firstScrape.ms.toFixed(0)} ms; ${(last.bytes / 2 ** 20).toFixed(1)} MiB of text; all scrapes ${scrapes.map((s) => s.toFixed(0)).join(', ')} ms`,
);
console.log(
  `  master CPU in ${SCRAPE_WINDOWS} windows of 15 s (each opened by a scrape; its gathering included): ${mScraped.shares.map((x) => x.toFixed(1)).join(', ')}%; a master with the same fleet, never scraped, over the same windows: ${mQuiet.shares.map((x) => x.toFixed(1)).join(', ')}%`,
);
for (const m of metricsMasters) {
  m.fleet.child.kill('SIGKILL');
  m.proc.child.kill('SIGTERM');
}

// ---------------------------------------------------------------- 11. dashboard
const PAINT_FLEET = Number(process.env.BENCH_PAINT_FLEET ?? (QUICK ? 300 : 1000));
console.log(`\n11. The dashboard's first paint of ${PAINT_FLEET} simulated workers in headless Chromium (target: 1 s from navigation)`);
if (!existsSync('/usr/bin/chromium')) {
  console.log("  skipped: no /usr/bin/chromium here (Debian's chromium package; .ci/run installs it)");
} else {
  const { chromium } = await import('playwright-core');
  const dState = path.join(tmp, 'dashboard-master');
  const { proc: dMaster, port: dPort } = await startMaster(dState);
  const dFleet = simulatedFleet(`127.0.0.1:${dPort}`, PAINT_FLEET);
  await dFleet.ready();
  const token = readFileSync(path.join(dState, 'dashboard-token'), 'utf8').trim();
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run'],
  });
  const paints = [];
  for (let pass = 0; pass < 3; pass++) {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    // Logged in already (as after a reload): the time is the page's, from navigation to the first
    // frame painted with a row for every worker (the rows in the document, then the frame that
    // draws them: a task queued from requestAnimationFrame runs once that frame is rendered).
    await context.addInitScript(
      ([t, want]) => {
        sessionStorage.setItem('drover-token', t);
        new MutationObserver((_m, obs) => {
          if (document.querySelectorAll('#fleet tbody tr').length >= want) {
            obs.disconnect();
            requestAnimationFrame(() => setTimeout(() => (window.painted ??= performance.now())));
          }
        }).observe(document, { childList: true, subtree: true });
      },
      [token, PAINT_FLEET],
    );
    const page = await context.newPage();
    await page.goto(`http://127.0.0.1:${dPort}/#/`);
    await page.waitForFunction(() => window.painted !== undefined, null, { timeout: 30_000 });
    const painted = await page.evaluate(() => window.painted);
    const fcp = await page.evaluate(() => performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? null);
    paints.push({ painted, fcp });
    await context.close();
  }
  await browser.close();
  report(`first paint of ${PAINT_FLEET} workers (median ms)`, median(paints.map((p) => p.painted)), 1000, 'ms', 1);
  console.log(
    `  all passes: ${paints.map((p) => `${p.painted.toFixed(0)} ms`).join(', ')}; first contentful paint ${paints.map((p) => (p.fcp === null ? '-' : `${p.fcp.toFixed(0)} ms`)).join(', ')}`,
  );
  dFleet.child.kill('SIGKILL');
  dMaster.child.kill('SIGTERM');
}

ctl.close();
ws.close();
const over = rows.filter((r) => !r.met);
// The same table as JSON, with the machine it ran on (bench/results.json; not kept in git).
const results = {
  at: new Date().toISOString(),
  quick: QUICK,
  machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model ?? null, memoryBytes: os.totalmem(), node: process.version, kernel: os.release() },
  sizeMiB: SIZE_MIB,
  runs: RUNS,
  rows,
};
const jsonFile = process.env.BENCH_JSON ?? path.join(ROOT, 'bench', 'results.json');
writeFileSync(jsonFile, `${JSON.stringify(results, null, 2)}\n`);
console.log(`\n${rows.length} rows, ${rows.length - over.length} met, ${over.length} not met${over.length ? `: ${over.map((r) => r.what).join('; ')}` : ''}`);
console.log(`the table as JSON: ${jsonFile}`);
process.exit(0);
