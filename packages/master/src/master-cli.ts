import { parseDuration } from './services/spec.js';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { AGENT_VERSION, checkHeartbeatMs, toDroverError } from '@drover/protocol';
import { execCommands, flushStdio, stdinLines } from './exec-client.js';
import { runMaster } from './master.js';

function fail(message: string, code = 2): never {
  process.stderr.write(`master: ${message}\n`);
  process.exit(code);
}

function defaultStateDir(): string {
  return process.env.DROVER_STATE_DIR ?? path.join(os.homedir(), '.drover', 'master');
}

await yargs(hideBin(process.argv))
  .scriptName('master')
  .usage('$0 [options]\n\nThe drover master: holds worker connections and gives you the master> shell.')
  .command(
    '$0',
    'start the master',
    (y) =>
      y
        .option('host', { type: 'string', describe: 'Address to listen on for workers', defaultDescription: '0.0.0.0, or 127.0.0.1 with --dev' })
        .option('port', { type: 'number', default: 7070, describe: 'Port for workers (0 picks a free one)' })
        .option('token', { type: 'string', describe: 'Join token workers must present (default: made once, kept in the state dir)' })
        .option('token-file', { type: 'string', describe: 'Read the join token from this file' })
        .option('heartbeat-ms', { type: 'number', default: 1000, describe: 'Heartbeat interval; 2 missed make a worker unavailable' })
        .option('state-dir', {
          type: 'string',
          default: defaultStateDir(),
          defaultDescription: '$DROVER_STATE_DIR or ~/.drover/master',
          describe: "The master's state folder (tokens, certificate, services, the control socket)",
        })
        .option('tls-cert', { type: 'string', describe: 'PEM certificate (chain): serve workers over TLS (wss, https)' })
        .option('tls-key', { type: 'string', describe: 'PEM private key of --tls-cert' })
        .option('tls', {
          type: 'boolean',
          default: true,
          describe:
            'Serve workers over TLS; without --tls-cert, with a self-signed certificate made in the state dir and pinned by workers (--no-tls: plain ws, for a lab)',
        })
        .option('advertise', { type: 'string', describe: 'HOST[:PORT] VMs use to reach this master (default: from --host)' })
        .option('shell', { type: 'boolean', default: true, describe: 'Run the interactive master> shell (--no-shell to serve only)' })
        .option('dev', { type: 'number', default: 0, describe: 'Also start N local workers (a local cluster)' })
        .option('insecure-operator-api', {
          type: 'boolean',
          default: false,
          describe: 'Offer the operator API (drover --master) on the port without TLS: tokens in the clear (a lab)',
        })
        .option('name-hold', {
          type: 'number',
          default: 600,
          describe: "Seconds a worker name stays its worker's after it was last seen (another machine may not take it meanwhile)",
        })
        .option('metrics-token', {
          type: 'string',
          describe: 'Serve GET /metrics on the port to whoever presents this bearer token (default: $DROVER_METRICS_TOKEN; off without one)',
        })
        .option('metrics-token-file', { type: 'string', describe: 'Read the metrics token from this file (keeps it off the command line)' })
        .option('metrics-host', {
          type: 'string',
          describe: 'Also serve /metrics without a token on this loopback HOST:PORT (127.0.0.1:9100) for a Prometheus on this machine',
        })
        .option('dashboard-admin', {
          type: 'boolean',
          default: false,
          describe: 'Also make an admin dashboard token (in the state dir, printed with the shell): its holder may stop, kill and restart from the web page',
        })
        .option('lost-after', {
          type: 'string',
          default: '30s',
          describe: 'A worker unheard of this long is lost: its service instances are started elsewhere (a program may say otherwise)',
        })
        .option('stop-after', {
          type: 'string',
          default: '25s',
          describe: 'A worker that has not heard from the master this long stops its service instances (shorter than --lost-after)',
        })
        .option('log-level', {
          type: 'string',
          default: 'info',
          choices: ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'],
          describe: "The master's log: master.log in the state dir while the shell runs, else JSON lines on stdout",
        })
        .conflicts('token', 'token-file'),
    async (argv) => {
      if (!Number.isInteger(argv.port) || argv.port < 0 || argv.port > 65535) fail(`--port must be 0-65535, got ${argv.port}`);
      const badBeat = checkHeartbeatMs(argv['heartbeat-ms']);
      if (badBeat) fail(badBeat);
      if (!Number.isFinite(argv['name-hold']) || argv['name-hold'] < 0) fail(`--name-hold must be seconds >= 0, got ${argv['name-hold']}`);
      if (!Number.isInteger(argv.dev) || argv.dev < 0 || argv.dev > 64) fail(`--dev must be 0-64 workers, got ${argv.dev}`);
      const lostAfterMs = parseDuration(argv['lost-after']);
      const stopAfterMs = parseDuration(argv['stop-after']);
      if (!lostAfterMs) fail(`--lost-after must be a duration such as 30s or 2m, got "${argv['lost-after']}"`);
      if (!stopAfterMs) fail(`--stop-after must be a duration such as 25s, got "${argv['stop-after']}"`);
      if (stopAfterMs >= lostAfterMs)
        fail(
          `--stop-after (${argv['stop-after']}) must be shorter than --lost-after (${argv['lost-after']}): a worker stops its copy before the master starts another`,
        );
      try {
        await runMaster({
          // A local cluster stays on this machine unless --host says otherwise.
          host: argv.host ?? (argv.dev > 0 ? '127.0.0.1' : '0.0.0.0'),
          port: argv.port,
          token: argv.token,
          tokenFile: argv['token-file'],
          heartbeatMs: argv['heartbeat-ms'],
          stateDir: path.resolve(argv['state-dir']),
          advertise: argv.advertise,
          tlsCert: argv['tls-cert'],
          tlsKey: argv['tls-key'],
          tls: argv.tls,
          shell: argv.shell,
          dev: argv.dev,
          logLevel: argv['log-level'],
          nameHoldMs: Math.round(argv['name-hold'] * 1000),
          insecureOperatorApi: argv['insecure-operator-api'],
          disconnect: { lostAfterMs: lostAfterMs, stopAfterMs: stopAfterMs, replace: true },
          metricsToken: metricsToken(argv['metrics-token'], argv['metrics-token-file']),
          metricsHost: argv['metrics-host'],
          dashboardAdmin: argv['dashboard-admin'],
        });
        process.exit(0);
      } catch (err) {
        fail(toDroverError(err).message, 1);
      }
    },
  )
  .command(
    'exec [commands]',
    'run commands against the running master ("CMD; CMD"; or lines on stdin)',
    (y) =>
      y
        .positional('commands', { type: 'string', describe: 'Commands separated by ;' })
        .option('state-dir', {
          type: 'string',
          default: defaultStateDir(),
          defaultDescription: '$DROVER_STATE_DIR or ~/.drover/master',
          describe: "The running master's state folder (its control socket)",
        })
        .option('json', { type: 'boolean', default: false, describe: 'Print every result as JSON' }),
    async (argv) => {
      let lines: string[];
      if (argv.commands !== undefined) lines = [argv.commands];
      else if (!process.stdin.isTTY) lines = await stdinLines();
      else fail('exec needs commands: master exec "workers; ps all", or lines on stdin');
      const code = await execCommands(path.resolve(argv['state-dir']), lines, argv.json);
      await flushStdio();
      process.exit(code);
    },
  )
  .version(AGENT_VERSION)
  .strict()
  .fail((msg, err) => fail(msg || err?.message || 'bad arguments'))
  .help()
  .parseAsync();

/** --metrics-token, --metrics-token-file, or $DROVER_METRICS_TOKEN (read once, then gone from the environment). */
function metricsToken(flag: string | undefined, file: string | undefined): string | undefined {
  const env = process.env.DROVER_METRICS_TOKEN || undefined;
  delete process.env.DROVER_METRICS_TOKEN;
  if (flag) return flag;
  if (file) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8').trim();
    } catch (err) {
      return fail(`cannot read --metrics-token-file ${file} (${(err as NodeJS.ErrnoException).code})`);
    }
    if (!text) return fail(`--metrics-token-file ${file} is empty`);
    return text;
  }
  return env;
}
