import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { AGENT_VERSION, parseFingerprint } from '@drover/protocol';
import { writeFileAtomic } from './atomic-write.js';
import { connectLocal, connectRemote, operatorUrl, type ConnectFailure, type Transport } from './client-transport.js';
import { flushStdio, runOver, stdinLines } from './exec-client.js';
import { startRemoteShell } from './remote-shell.js';
import { quoteWord } from './tokenize.js';
import type Yargs from 'yargs';
import type { hideBin as HideBin } from 'yargs/helpers';

/**
 * `drover COMMAND…`: the client. Runs any master> command against the master on this machine
 * (its control socket) or one elsewhere (its operator API over wss, with an operator token),
 * and prints the answer. `drover login` keeps a master and token for later calls.
 */
function fail(message: string, code = 2): never {
  process.stderr.write(`drover: ${message}\n`);
  process.exit(code);
}

interface Context {
  master: string;
  token: string;
  fingerprint?: string;
}

const contextFile = (): string => path.join(process.env.XDG_CONFIG_HOME || path.join(os.homedir(), '.config'), 'drover', 'context.json');

function readContext(): Context | null {
  try {
    const c = JSON.parse(readFileSync(contextFile(), 'utf8')) as Partial<Context>;
    return typeof c.master === 'string' && typeof c.token === 'string'
      ? { master: c.master, token: c.token, ...(c.fingerprint ? { fingerprint: c.fingerprint } : {}) }
      : null;
  } catch {
    return null;
  }
}

const USAGE = [
  '$0 [--master URL --token T] [--json] COMMAND [ARGS...]',
  '$0 login URL --token T [--fingerprint sha256:…]',
  '',
  // One line per paragraph: yargs wraps them to the terminal (hard breaks here broke mid-sentence).
  'Runs a master> command and prints the answer: against the master on this machine (its ' +
    'control socket in --state-dir; no token needed), or with --master (or DROVER_MASTER, or ' +
    'drover login) against one elsewhere over wss with an operator token. Several commands: ' +
    '"workers; ps". Lines on stdin: one command each. `drover help` lists the commands. ' +
    '`drover login` remembers a master and its token in ~/.config/drover (mode 0600).',
].join('\n');

interface GlobalArgs {
  'state-dir': string;
  master?: string;
  token?: string;
  fingerprint?: string;
  ca?: string;
  json: boolean;
  _: string[];
}

const DEFAULT_STATE_DIR = process.env.DROVER_STATE_DIR ?? path.join(os.homedir(), '.drover', 'master');
const VALUED = new Set(['state-dir', 'master', 'token', 'fingerprint', 'ca']);

/**
 * drover's own flags, up to the command: everything from the command on is the command's
 * (`drover ps w1 --json` passes --json to ps). Parsed by hand, so a command does not wait for
 * yargs to load; null for --help, which yargs answers. --version is answered here: loading yargs
 * to print one line took ~180 ms against ~65 for node itself.
 */
function parseGlobal(args: string[]): GlobalArgs | null {
  const out: GlobalArgs = { 'state-dir': DEFAULT_STATE_DIR, json: false, _: [] };
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--help' || a === '-h') return null;
    if (a === '--version') {
      process.stdout.write(`${AGENT_VERSION}\n`);
      process.exit(0);
    }
    if (a === '--json') out.json = true;
    else if (a === '--no-json') out.json = false;
    else if (a.startsWith('--') && VALUED.has(a.slice(2).split('=')[0]!)) {
      const [name, inline] = a.slice(2).split(/=(.*)/s) as [keyof GlobalArgs, string | undefined];
      const value = inline ?? args[++i];
      if (value === undefined) fail(`Not enough arguments following: ${name}`);
      (out as unknown as Record<string, string>)[name] = value;
    } else {
      out._ = args.slice(i);
      break;
    }
  }
  return out;
}

/**
 * yargs, for --help and login only: required from node_modules when one of them runs,
 * not bundled, so that every other command reads ~70 KB of drover.cjs instead of ~184.
 */
function loadYargs(): { yargs: typeof Yargs; hideBin: typeof HideBin } {
  const require = process.getBuiltinModule('node:module').createRequire(import.meta.url);
  return { yargs: require('yargs') as typeof Yargs, hideBin: (require('yargs/helpers') as { hideBin: typeof HideBin }).hideBin };
}

/** drover --help: the full yargs program (loaded only for it). */
async function help(): Promise<never> {
  const { yargs, hideBin } = loadYargs();
  await yargs(hideBin(process.argv))
    .scriptName('drover')
    .usage(USAGE)
    .option('state-dir', {
      type: 'string',
      default: DEFAULT_STATE_DIR,
      defaultDescription: '$DROVER_STATE_DIR or ~/.drover/master',
      describe: "The local master's state dir",
    })
    .option('master', { type: 'string', describe: 'A master elsewhere: wss://HOST:PORT (default: $DROVER_MASTER, else drover login)' })
    .option('token', { type: 'string', describe: 'Operator token for --master (default: $DROVER_ADMIN_TOKEN; prefer drover login: arguments show in ps)' })
    .option('fingerprint', { type: 'string', describe: "sha256:HEX of the master's key, for a self-signed master (default: $DROVER_FINGERPRINT)" })
    .option('ca', { type: 'string', describe: "PEM CA that signed the master's certificate" })
    .option('json', { type: 'boolean', default: false, describe: 'Print every result as JSON' })
    .parserConfiguration({ 'halt-at-non-option': true, 'unknown-options-as-args': true })
    .version(AGENT_VERSION)
    .help()
    .fail((msg, err) => fail(msg || err?.message || 'bad arguments'))
    .parseAsync();
  process.exit(0);
}

/**
 * Everything past parsing: an async function, not top-level await, so the client can be bundled
 * as CommonJS and started from V8's code cache (see bundle-loader.ts).
 */
async function main(): Promise<void> {
  const argv: GlobalArgs = parseGlobal(process.argv.slice(2)) ?? (await help());
  const words = argv._.map(String);
  const fingerprintOf = (text: string | undefined): string | undefined => {
    if (!text) return undefined;
    return parseFingerprint(text) ?? fail(`--fingerprint must be sha256: and 64 hex digits, got "${text.slice(0, 80)}"`);
  };
  const ca = argv.ca
    ? (() => {
        try {
          return readFileSync(argv.ca);
        } catch (err) {
          return fail(`cannot read --ca ${argv.ca} (${(err as NodeJS.ErrnoException).code})`);
        }
      })()
    : undefined;

  if (words[0] === 'login' || words[0] === 'logout') {
    if (words[0] === 'logout') {
      rmSync(contextFile(), { force: true });
      process.stdout.write(`drover: forgot the master and token in ${contextFile()}\n`);
      process.exit(0);
    }
    // What follows `login` is login's own: URL --token T [--fingerprint F].
    const { yargs } = loadYargs();
    const login = await yargs(words.slice(1))
      .option('token', { type: 'string' })
      .option('fingerprint', { type: 'string' })
      .strictOptions()
      .fail((msg) => fail(`login: ${msg}`))
      .parseAsync();
    const master = login._[0] === undefined ? fail('usage: drover login wss://HOST:PORT --token T [--fingerprint sha256:…]') : String(login._[0]);
    const token =
      login.token ?? argv.token ?? process.env.DROVER_ADMIN_TOKEN ?? fail('drover login needs --token (an operator token: token create on the master)');
    const fingerprint = fingerprintOf(login.fingerprint ?? argv.fingerprint ?? process.env.DROVER_FINGERPRINT);
    // Only a token the master accepts is remembered.
    const probe = await connectRemote({ url: master, token, fingerprint, ca });
    if ('exitCode' in probe) fail(probe.message, probe.exitCode);
    await probe.close();
    mkdirSync(path.dirname(contextFile()), { recursive: true, mode: 0o700 });
    await writeFileAtomic(contextFile(), `${JSON.stringify({ master, token, ...(fingerprint ? { fingerprint } : {}) }, null, 2)}\n`, 0o600);
    process.stdout.write(`drover: logged in to ${master}; drover COMMAND now runs there (kept in ${contextFile()}, mode 0600)\n`);
    process.exit(0);
  }

  let lines: string[] | null;
  if (words.length > 0) lines = [words.length === 1 ? words[0]! : words.map(quoteWord).join(' ')];
  else if (!process.stdin.isTTY) lines = await stdinLines();
  else lines = null; // a terminal and no command: the interactive master> prompt

  const context = readContext();
  const master = argv.master ?? (process.env.DROVER_MASTER || undefined) ?? context?.master;
  let connection: Transport | ConnectFailure;
  if (master) {
    if (operatorUrl(master) === null) fail(`not a master address: ${master} (wss://HOST:PORT, or ws:// for a master without TLS)`, 2);
    const token = argv.token ?? (process.env.DROVER_ADMIN_TOKEN || undefined) ?? (master === context?.master ? context.token : undefined);
    if (!token) fail(`no operator token for ${master}: pass --token, set DROVER_ADMIN_TOKEN, or drover login`);
    const fingerprint = fingerprintOf(
      argv.fingerprint ?? (process.env.DROVER_FINGERPRINT || undefined) ?? (master === context?.master ? context.fingerprint : undefined),
    );
    connection = await connectRemote({ url: master, token, fingerprint, ca });
  } else {
    connection = await connectLocal(path.resolve(argv['state-dir']));
  }
  if (lines === null) {
    if ('exitCode' in connection) fail(connection.message, connection.exitCode);
    const historyFile = path.join(path.dirname(contextFile()), 'history');
    mkdirSync(path.dirname(historyFile), { recursive: true, mode: 0o700 });
    await startRemoteShell(connection, { historyFile, onExit: (code) => void flushStdio().then(() => process.exit(code)) });
  } else {
    const code = await runOver(connection, lines, argv.json, 'drover');
    await flushStdio();
    process.exit(code);
  }
}

main().catch((err: unknown) => fail(err instanceof Error ? err.message : String(err), 1));
