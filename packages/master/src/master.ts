import { chmod, mkdir, readFile } from 'node:fs/promises';
import { createSecureContext } from 'node:tls';
import path from 'node:path';
import { DroverError, ErrorCode, publicKeyPin } from '@drover/protocol';
import { commands } from './commands/index.js';
import { startControlServer } from './control.js';
import { startDevCluster, type DevCluster } from './dev-cluster.js';
import { Fleet } from './fleet.js';
import { createLogger } from './logger.js';
import { startServer } from './server.js';
import { loadInstaller } from './installer.js';
import { advertise } from './advertise.js';
import { raiseOpenFileLimit } from './open-files.js';
import { tuneMalloc } from './malloc.js';
import { keepReceiverFragments } from './ws-receiver.js';
import { loadTlsIdentity } from './tls-identity.js';
import { LOCAL_CALLER, TokenStore } from './operator-tokens.js';
import { operatorEndpoint } from './operator-server.js';
import { dashboardRoutes } from './dashboard.js';
import { joinLines, type JoinInfo } from './join-lines.js';
import { localBackend, startShell } from './shell.js';
import { localFiles } from './local-files.js';
import { ServiceManager } from './services/manager.js';
import { Metrics } from './metrics.js';
import type { Disconnect } from './services/spec.js';
import { watchFleet } from './notices.js';
import { waitForWorkers } from './wait-for-workers.js';
import { resolveToken } from './token.js';

export interface MasterOptions {
  host: string;
  port: number;
  token?: string;
  tokenFile?: string;
  heartbeatMs: number;
  stateDir: string;
  /** HOST[:PORT] that VMs should use to reach this master (default: derived from --host). */
  advertise?: string;
  /** PEM files: serve workers over TLS (wss, and https for the installer). */
  tlsCert?: string;
  tlsKey?: string;
  /** False for --no-tls: plain ws and http (a lab). Otherwise a self-signed certificate is made when none is given. */
  tls?: boolean;
  shell: boolean;
  dev: number;
  logLevel: string;
  /** How long a name stays its worker's after it was last seen. */
  nameHoldMs?: number;
  /** Offer the operator API on the port without TLS. */
  insecureOperatorApi?: boolean;
  /** What a service program's disconnect leaves out (--lost-after, --stop-after). */
  disconnect?: Disconnect;
  /** GET /metrics on the port with this bearer token. */
  metricsToken?: string;
  /** A plain /metrics listener on a loopback HOST:PORT. */
  metricsHost?: string;
  /** Also make (and print) an admin dashboard token: its holder may stop, kill and restart. */
  dashboardAdmin?: boolean;
}

/** Starts the master: server, fleet, control socket, optional dev workers and shell. Resolves when it stops. */
export async function runMaster(opts: MasterOptions): Promise<void> {
  await mkdir(opts.stateDir, { recursive: true, mode: 0o700 });
  // Enforced, not inherited: master.log records every command line, arguments included.
  await chmod(opts.stateDir, 0o700);
  const { token, source: tokenSource } = await resolveToken(opts.stateDir, opts.token, opts.tokenFile);
  const logger = createLogger(opts.logLevel, opts.shell ? path.join(opts.stateDir, 'master.log') : null);
  logger.info(raiseOpenFileLimit());
  tuneMalloc(logger);
  if (!keepReceiverFragments()) logger.warn("ws's Receiver is not the shape drover expects: its per-message arrays are not reused");
  const fleet = new Fleet({ token, heartbeatMs: opts.heartbeatMs, logger, nameHoldMs: opts.nameHoldMs });

  if (opts.tls === false && (opts.tlsCert || opts.tlsKey))
    throw new DroverError(ErrorCode.BAD_ARGUMENTS, '--no-tls and --tls-cert/--tls-key contradict each other');
  const given = await loadTls(opts.tlsCert, opts.tlsKey);
  const identity = given ? { ...given, selfSigned: false, created: false } : opts.tls === false ? undefined : await loadTlsIdentity(opts.stateDir);
  const tls = identity && { cert: identity.cert, key: identity.key };
  // A self-signed certificate is trusted by its pin; a given one by its CA (and can be renewed without re-pinning).
  const pin = identity?.selfSigned ? publicKeyPin(identity.cert) : undefined;
  if (identity?.created) logger.info({ fingerprint: pin?.fingerprint }, `made a self-signed certificate in ${path.join(opts.stateDir, 'tls')}`);
  if (!tls) logger.warn('TLS is off (--no-tls): the join token and all traffic cross the network in the clear');
  const installer = loadInstaller(tls ? 'https' : 'http', pin);
  if (installer.missing) logger.warn(installer.missing);
  const tokens = await TokenStore.open(opts.stateDir);
  const dashboardTokens = [
    await tokens.dashboardToken(opts.stateDir, 'read-only'),
    ...(opts.dashboardAdmin ? [await tokens.dashboardToken(opts.stateDir, 'admin')] : []),
  ];
  const dashboard = dashboardRoutes({ tokens, offered: Boolean(tls) || opts.insecureOperatorApi === true, peerLog: fleet.peerLog });
  const services = new ServiceManager(fleet, opts.stateDir, logger, opts.disconnect);
  await services.start();
  const metrics = new Metrics(fleet, services, { token: opts.metricsToken, logger });
  services.onCopied = (bytes) => metrics.copiedBytes.inc(bytes);
  const observe = (command: string, outcome: 'ok' | 'failed' | 'error', seconds: number): void => metrics.observe(command, outcome, seconds);
  const copied = (bytes: number): void => metrics.copiedBytes.inc(bytes);
  let stopRequested: (() => void) | null = null;
  const operator = operatorEndpoint({
    base: { fleet, commands, joinInfo: () => joinInfo(), tokens, services, observe, copied },
    tokens,
    logger,
    peerLog: fleet.peerLog,
    tls: Boolean(tls),
    insecure: opts.insecureOperatorApi === true,
    onExit: () => stopRequested?.(),
  });
  if (!tls && opts.insecureOperatorApi) logger.warn('the operator API is offered without TLS (--insecure-operator-api): tokens cross the network in the clear');
  const onPlainText = (peer: string): void =>
    fleet.peerLog.log('warn', peer, { peer }, 'a client spoke plain text to this TLS port (it needs wss:// or https://)');
  const server = await startServer({
    host: opts.host,
    port: opts.port,
    fleet,
    logger,
    routes: (req, res) => metrics.handle(req, res) || dashboard.handle(req, res) || installer.handle(req, res),
    tls,
    onPlainText,
    operator: (req, socket, head) => operator.handle(req, socket, head),
  }).catch((err: NodeJS.ErrnoException) => {
    fleet.close();
    if (err.code === 'EADDRINUSE')
      throw new DroverError(ErrorCode.BUSY, `port ${opts.port} on ${opts.host} is in use (another master?); pick another with --port`);
    if (err.code === 'EADDRNOTAVAIL') throw new DroverError(ErrorCode.BAD_ARGUMENTS, `--host ${opts.host} is not an address of this machine`);
    throw err;
  });
  const advertised = advertise(opts.advertise, opts.host, server.port);
  const lines = (shown: string): JoinInfo => joinLines({ advertised, tls: Boolean(tls), token: shown, installer: !installer.missing, pin });
  const joinInfo = (): JoinInfo => lines(token);
  const base = { fleet, commands, joinInfo, tokens, services, observe, copied };
  let control: Awaited<ReturnType<typeof startControlServer>> | null = null;
  let metricsAt: string | null = null;
  try {
    control = await startControlServer(opts.stateDir, (req, socket, head) => operator.handleLocal(req, socket, head), logger);
    if (opts.metricsHost) metricsAt = await metrics.listenLocal(opts.metricsHost);
  } catch (err) {
    await server.close();
    await control?.close();
    metrics.close();
    services.close();
    fleet.close();
    throw err;
  }

  const say = (text: string): void => void process.stdout.write(`${text}\n`);
  // Without a shell, stdout is a log that is kept (the journal): the token stays out of it.
  const join = opts.shell ? joinInfo() : lines('…');
  // One write: whoever reads "listening on" (a script, a test) also has the join lines.
  say(
    [
      `drover master listening on ${opts.host}:${server.port}${tls ? ` with TLS${pin ? ` (certificate ${pin.fingerprint})` : ''}` : ' WITHOUT TLS'} (state ${opts.stateDir})`,
      ...(join.installCommand ? [`join a VM:  ${join.installCommand}`] : []),
      `${join.installCommand ? '   or, where the worker is installed:  ' : 'join a VM:  '}${join.workerCommand}`,
      ...(opts.shell ? [] : [`   (the join token is in ${tokenSource}; master exec join prints these lines with it)`]),
      ...(dashboard.built && (tls || opts.insecureOperatorApi)
        ? dashboardTokens.map(
            (d) =>
              `dashboard${d.role === 'admin' ? ' (admin)' : ''}: ${tls ? 'https' : 'http'}://${advertised}/  ${opts.shell ? `token ${d.token}` : `(its token is in ${d.file})`}`,
          )
        : []),
      ...(metricsAt || opts.metricsToken
        ? [
            `metrics: ${[
              metricsAt ? `http://${metricsAt}/metrics (this machine only)` : '',
              opts.metricsToken ? `/metrics on port ${server.port} with the metrics token` : '',
            ]
              .filter(Boolean)
              .join('; ')}`,
          ]
        : []),
    ].join('\n'),
  );
  logger.info({ host: opts.host, port: server.port, stateDir: opts.stateDir }, 'master started');

  let dev: DevCluster | null = null;
  if (opts.dev > 0) {
    dev = startDevCluster({
      count: opts.dev,
      port: server.port,
      token,
      stateDir: opts.stateDir,
      heartbeatMs: opts.heartbeatMs,
      tls: identity ? { fingerprint: publicKeyPin(identity.cert).fingerprint } : null,
    });
    say(`started ${opts.dev} local workers (${dev.names.join(', ')}); their logs are in ${dev.logDir}`);
    await waitForWorkers(fleet, opts.dev, { timeoutMs: 10_000, quiet: true });
  }

  let shell: Awaited<ReturnType<typeof startShell>> | null = null;
  let stopping: Promise<void> | null = null;
  let finish!: () => void;
  const done = new Promise<void>((resolve) => (finish = resolve));
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      shell?.close();
      services.close();
      metrics.close();
      operator.close();
      fleet.close();
      await Promise.all([server.close(), control?.close(), dev?.stop()]);
      logger.info('master stopped');
      finish();
    })();
    return stopping;
  };
  stopRequested = () => void stop();
  process.on('SIGTERM', () => void stop());

  if (opts.shell) {
    shell = await startShell({
      input: process.stdin,
      output: process.stdout,
      historyFile: path.join(opts.stateDir, 'history'),
      // The master's own prompt: the files it names are on this machine.
      backend: localBackend({ ...base, cwd: process.cwd(), caller: LOCAL_CALLER, remote: false, files: localFiles() }, fleet),
      onExit: () => void stop(),
      onInputEnd: () => logger.info('stdin ended; serving without a shell'),
    });
    watchFleet(fleet, shell.notice);
  } else {
    process.on('SIGINT', () => void stop());
  }
  await done;
}

/** Reads --tls-cert and --tls-key (both or neither); a clear error names the file that failed. */
async function loadTls(certFile: string | undefined, keyFile: string | undefined): Promise<{ cert: Buffer; key: Buffer } | undefined> {
  if (!certFile && !keyFile) return undefined;
  if (!certFile || !keyFile) throw new DroverError(ErrorCode.BAD_ARGUMENTS, '--tls-cert and --tls-key go together');
  const read = (file: string, what: string): Promise<Buffer> =>
    readFile(file).catch((err: NodeJS.ErrnoException) => {
      throw new DroverError(ErrorCode.NOT_FOUND, `cannot read ${what} ${file} (${err.code})`);
    });
  const pair = { cert: await read(certFile, '--tls-cert'), key: await read(keyFile, '--tls-key') };
  try {
    createSecureContext(pair);
  } catch (err) {
    throw new DroverError(ErrorCode.BAD_ARGUMENTS, `--tls-cert/--tls-key are not a usable PEM certificate and key: ${(err as Error).message}`);
  }
  return pair;
}
