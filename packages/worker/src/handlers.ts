import { DroverError, ErrorCode, type Request, type RequestOf, type ResultDataOf, type RequestType } from '@drover/protocol';
import { runBench } from './bench.js';
import type { Logger } from './logger.js';
import { streamLog, tailOffset } from './log-stream.js';
import type { Services } from './services.js';

export interface HandlerContext {
  services: Services;
  /** Aborted when the master cancels this request or the link drops. */
  signal: AbortSignal;
  logger: Logger;
}

/** Answers one request from the master; throws a DroverError for a clear failure. */
export async function handleRequest(request: Request, ctx: HandlerContext): Promise<ResultDataOf<RequestType>> {
  switch (request.type) {
    case 'inventory':
      return inventory(request, ctx);
    case 'upload-begin':
      await ctx.services.transfers.begin(request.id, request.app, request.file, request.mode);
      return {};
    case 'upload-end':
      return ctx.services.transfers.end(request.ref);
    case 'app-commit':
      return commit(request, ctx);
    case 'app-delete':
      return deleteApp(request, ctx);
    case 'launch': {
      const r = await ctx.services.supervisor.launch(request.app, request.args);
      return { pid: r.pid, state: r.exit ? 'dead' : 'running', startedAt: r.startedAt, logPath: r.logPath };
    }
    case 'ps':
      return { processes: await ctx.services.supervisor.list() };
    case 'signal':
      return ctx.services.supervisor.signal(request.pid, request.mode, request.timeoutMs, ctx.signal);
    case 'usage':
      return { processes: await ctx.services.supervisor.usage() };
    case 'logs':
      return logs(request, ctx);
    case 'bench':
      return runBench(request, ctx.services, ctx.signal);
  }
}

async function inventory(request: RequestOf<'inventory'>, ctx: HandlerContext): Promise<ResultDataOf<'inventory'>> {
  const manifest = await ctx.services.store.manifest(request.app);
  if (!manifest) return { exists: false, executable: null, files: [] };
  return { exists: true, executable: manifest.executable, files: manifest.files };
}

async function commit(request: RequestOf<'app-commit'>, ctx: HandlerContext): Promise<ResultDataOf<'app-commit'>> {
  const { store, transfers } = ctx.services;
  const staged = transfers.takeStaged(request.app);
  try {
    const files = await store.commit(request.app, request.executable, staged, request.files, request.keep);
    return { files };
  } finally {
    await transfers.discardStaged(staged);
  }
}

async function deleteApp(request: RequestOf<'app-delete'>, ctx: HandlerContext): Promise<ResultDataOf<'app-delete'>> {
  const { store, supervisor, workerName } = ctx.services;
  await store.requireManifest(request.app);
  const running = supervisor.table.live().filter((r) => r.app === request.app);
  if (running.length > 0 && !request.force) {
    const pids = running.map((r) => r.pid).join(', ');
    throw new DroverError(ErrorCode.APP_RUNNING, `app "${request.app}" has running processes on ${workerName}: pid ${pids}; stop them first or use --force`);
  }
  // All at once: SIGINT, then SIGKILL after 5 s, so a dozen stubborn processes take 5 s, not 60.
  const outcomes = await Promise.all(running.map((r) => supervisor.signal(r.pid, 'stop', 5000, ctx.signal)));
  const alive = outcomes.filter((o) => o.state !== 'dead').map((o) => o.pid);
  if (alive.length > 0) throw new DroverError(ErrorCode.APP_RUNNING, `could not stop pid ${alive.join(', ')} on ${workerName}; nothing deleted`);
  const stopped = outcomes.map((o) => o.pid);
  const removed = await store.remove(request.app);
  return { removed, stopped };
}

async function logs(request: RequestOf<'logs'>, ctx: HandlerContext): Promise<ResultDataOf<'logs'>> {
  const { supervisor, transfers, workerName } = ctx.services;
  const record = request.pid !== null ? supervisor.require(request.pid) : supervisor.table.latestOf(request.app ?? '');
  if (!record) throw new DroverError(ErrorCode.PROCESS_NOT_FOUND, `app "${request.app}" was never launched on ${workerName}`);
  const offset =
    request.tail === null
      ? 0
      : await tailOffset(record.logPath, request.tail).catch(() => {
          throw new DroverError(ErrorCode.NOT_FOUND, `log of pid ${record.pid} is gone on ${workerName}`);
        });
  const out = transfers.openOutgoing(request.id);
  try {
    const bytes = await streamLog(record.logPath, offset, out, {
      follow: request.follow,
      stillRunning: () => record.exit === null,
      signal: ctx.signal,
    });
    return { pid: record.pid, app: record.app, bytes, path: record.logPath };
  } finally {
    transfers.closeOutgoing(out);
  }
}
