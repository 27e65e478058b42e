#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { AGENT_VERSION, LABEL_KEY_PATTERN, checkHeartbeatMs, checkWorkerName, parseFingerprint, parseSize, toWorkerName } from '@drover/protocol';
import { Agent } from './agent.js';
import { MAX_LOG_KEEP, MIN_LOG_MAX_BYTES } from './log-pump.js';
import { createLogger } from './logger.js';
import { parseMasterAddress } from './address.js';

function fail(message: string): never {
  process.stderr.write(`worker: ${message}\n`);
  process.exit(2);
}

/** The join token, from --token-file, --token or $DROVER_TOKEN; and where it came from, for the log (never the token). */
function readToken(file: string | undefined, flag: string | undefined): { token: string; from: string } {
  if (file !== undefined) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      fail(`cannot read --token-file ${file} (${(err as NodeJS.ErrnoException).code})`);
    }
    const token = text.trim();
    if (!token) fail(`--token-file ${file} is empty`);
    return { token, from: `--token-file ${file}` };
  }
  if (flag) return { token: flag, from: '--token' };
  const env = process.env.DROVER_TOKEN;
  if (env) return { token: env, from: 'DROVER_TOKEN' };
  fail('no join token: pass --token-file FILE or set DROVER_TOKEN (the master prints how to join)');
}

const argv = yargs(hideBin(process.argv))
  .scriptName('worker')
  .usage('$0 --master HOST:PORT [options]\n\nThe drover worker agent: joins a master and runs the apps it is sent.')
  .option('master', { type: 'string', describe: 'Master address, HOST:PORT (or ws://HOST:PORT); default $DROVER_MASTER' })
  .option('name', { type: 'string', describe: 'Worker name (default: $DROVER_NAME, else the host name)' })
  .option('token-file', { type: 'string', describe: 'Read the join token from this file (keeps it off the command line)' })
  .option('token', { type: 'string', describe: 'Join token (visible in ps: prefer --token-file or $DROVER_TOKEN)' })
  .option('fingerprint', {
    type: 'string',
    describe: "sha256:HEX of the master's public key (in its join line): talk to no other server (default: $DROVER_FINGERPRINT)",
  })
  .option('ca', { type: 'string', describe: 'PEM CA certificate(s) to trust for a wss:// master (default: $DROVER_CA, else the system CAs)' })
  .option('state-dir', { type: 'string', describe: 'State folder (default: $STATE_DIRECTORY or ~/.drover/worker)' })
  .option('heartbeat-ms', { type: 'number', default: 1000, describe: 'Heartbeat interval until the master names its own' })
  .option('log-level', {
    type: 'string',
    default: 'info',
    choices: ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'],
    describe: "The agent's log (JSON lines on stdout; the journal under systemd)",
  })
  .option('label', { type: 'string', array: true, describe: 'A label KEY=VALUE that service files select workers by (repeatable)' })
  .option('cpus', { type: 'number', describe: 'CPUs this worker offers to placement (default: all of the machine)' })
  .option('memory', { type: 'string', describe: 'Memory this worker offers to placement, e.g. 8GiB (default: all of the machine)' })
  .option('log-max', {
    type: 'string',
    default: '64MiB',
    describe: "Rotate an app's log past this size (0: never; then its output goes straight to the file, not through the agent)",
  })
  .option('log-keep', { type: 'number', default: 5, describe: 'Rotated log files kept per app process (APP.PID.log.1 … .N)' })
  .option('exit-with-stdin', { type: 'boolean', default: false, hidden: true, describe: 'Exit when stdin closes (local dev clusters)' })
  .conflicts('token', 'token-file')
  .version(AGENT_VERSION)
  .strict()
  .fail((msg, err) => fail(msg || err?.message || 'bad arguments'))
  .help()
  .parseSync();

const master = argv.master ?? process.env.DROVER_MASTER;
if (!master) fail('no master: pass --master HOST:PORT or set DROVER_MASTER');
const url = parseMasterAddress(master);
if (!url.ok) fail(url.error);
const name = argv.name ?? (process.env.DROVER_NAME || toWorkerName(os.hostname()));
const badName = checkWorkerName(name);
if (badName) fail(badName);
const { token, from: tokenFrom } = readToken(argv['token-file'], argv.token);
// Read once, then gone from our environment: nothing we start can inherit it.
delete process.env.DROVER_TOKEN;
const badBeat = checkHeartbeatMs(argv['heartbeat-ms']);
if (badBeat) fail(badBeat);
const stateDir = path.resolve(argv['state-dir'] ?? process.env.STATE_DIRECTORY ?? path.join(os.homedir(), '.drover', 'worker'));

const fingerprintText = argv.fingerprint ?? (process.env.DROVER_FINGERPRINT || undefined);
let fingerprint: string | undefined;
if (fingerprintText !== undefined) {
  fingerprint =
    parseFingerprint(fingerprintText) ??
    fail(`--fingerprint must be sha256: and 64 hex digits (the master's join line has it), got "${fingerprintText.slice(0, 80)}"`);
  if (!url.url.startsWith('wss://')) fail('--fingerprint is for a master with TLS: give --master wss://HOST:PORT');
}
const caFile = argv.ca ?? process.env.DROVER_CA;
let ca: Buffer | undefined;
if (caFile) {
  try {
    ca = readFileSync(caFile);
  } catch (err) {
    fail(`cannot read --ca ${caFile} (${(err as NodeJS.ErrnoException).code})`);
  }
}

const labels: Record<string, string> = {};
for (const text of argv.label ?? []) {
  const m = /^([^=]+)=(.*)$/.exec(text);
  if (!m || !LABEL_KEY_PATTERN.test(m[1]!) || m[2]!.length > 128)
    fail(`--label must be KEY=VALUE (KEY: letters, digits, . _ -; VALUE up to 128 characters), got "${text.slice(0, 80)}"`);
  labels[m[1]!] = m[2]!;
}
if (argv.cpus !== undefined && !(Number.isInteger(argv.cpus) && argv.cpus > 0)) fail(`--cpus must be a whole number above 0, got ${argv.cpus}`);
const memoryBytes = argv.memory === undefined ? undefined : (parseSize(argv.memory) ?? fail(`--memory must be a size such as 8GiB, got "${argv.memory}"`));

const logMax = parseSize(argv['log-max']);
if (logMax === null || (logMax !== 0 && logMax < MIN_LOG_MAX_BYTES))
  fail(`--log-max must be 0 (never rotate) or a size of at least 64KiB such as 64MiB, got "${argv['log-max']}"`);
const logKeep = argv['log-keep'];
if (!Number.isInteger(logKeep) || logKeep < 0 || logKeep > MAX_LOG_KEEP) fail(`--log-keep must be a whole number from 0 to ${MAX_LOG_KEEP}, got ${logKeep}`);

const logger = createLogger(argv['log-level']);
logger.info({ tokenFrom }, 'join token read');
const agent = new Agent({
  url: url.url,
  ca,
  fingerprint,
  name,
  token,
  stateDir,
  heartbeatMs: argv['heartbeat-ms'],
  labels,
  capacity: { cpus: argv.cpus, memoryBytes },
  logPolicy: { maxBytes: logMax, keep: logKeep },
  logger,
  onFatal: (message, code) => {
    logger.fatal({ code }, message);
    process.stderr.write(`worker: ${message}\n`);
    void agent.stop().finally(() => process.exit(3));
  },
});

let stopping = false;
const shutdown = (signal: string): void => {
  if (stopping) return;
  stopping = true;
  logger.info({ signal }, 'shutting down; launched apps keep running');
  void agent.stop().finally(() => process.exit(0));
};
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
if (argv['exit-with-stdin']) {
  process.stdin.on('end', () => shutdown('stdin closed'));
  process.stdin.on('error', () => shutdown('stdin closed'));
  process.stdin.resume();
}

agent.start().then(
  () => logger.info({ worker: name, master: url.url, stateDir }, 'worker started'),
  (err: unknown) => fail(`could not start: ${err instanceof Error ? err.message : String(err)}`),
);
