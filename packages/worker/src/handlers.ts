import { DroverError, ErrorCode, MAX_RESULT_BYTES, type RequestOf, type RequestType, type ResultDataOf } from '@drover/protocol';
import { runBench } from './bench.js';
import type { Logger } from './logger.js';
import { logChain } from './log-pump.js';
import { streamLog, tailStart } from './log-stream.js';
import type { Services } from './services.js';

export interface HandlerContext {
  services: Services;
  /** Aborted when the master cancels this request or the link drops. */
  signal: AbortSignal;
  logger: Logger;
}

type Handler<T extends RequestType> = (request: RequestOf<T>, ctx: HandlerContext) => Promise<ResultDataOf<T>>;

/**
 * One handler per request type. The mapped type makes a missing handler, or one that returns
 * another request's result shape, a compile error.
 */
export const handlers: { [T in RequestType]: Handler<T> } = {
  inventory: async (request, ctx) => {
    const manifest = await ctx.services.store.manifest(request.app);
    if (!manifest) return { exists: false, executable: null, files: [] };
    return { exists: true, executable: manifest.executable, files: manifest.files };
  },
  'upload-begin': async (request, ctx) => {
    await ctx.services.transfers.begin(request.id, request.app, request.file, request.mode);
    return {};
  },
  'upload-end': (request, ctx) => ctx.services.transfers.end(request.ref, request.sha256),
  'app-commit': async (request, ctx) => {
    const { store, transfers } = ctx.services;
    const staged = transfers.takeStaged(request.app);
    try {
      return { files: await store.commit(request.app, request.executable, staged, request.files, request.keep) };
    } finally {
      await transfers.discardStaged(staged);
    }
  },
  'app-delete': deleteApp,
  launch: async (request, ctx) => {
    const { supervisor, keeper } = ctx.services;
    const r = request.instance
      ? await keeper.launch(request.app, request.args, request.env ?? {}, request.instance)
      : await supervisor.launch(request.app, request.args, request.env ?? {});
    return { pid: r.pid, state: r.exit ? 'dead' : 'running', startedAt: r.startedAt, logPath: r.logPath };
  },
  ps: async (_request, ctx) => {
    const { supervisor, keeper, workerName } = ctx.services;
    // Refused before it is made: serializing tens of MB would hold the agent's loop for its
    // heartbeat's length, only to be refused after.
    const chars = supervisor.table.argChars();
    if (chars > MAX_RESULT_BYTES) {
      throw new DroverError(
        ErrorCode.TOO_LARGE,
        `the answer to ps on ${workerName} would be more than the ${MAX_RESULT_BYTES} bytes an answer may hold: its launches' command lines alone are ${chars} characters`,
      );
    }
    const processes = await supervisor.list();
    return {
      processes: processes.map((p) => {
        const tag = keeper.tagOf(p.pid, supervisor.table.get(p.pid)?.instance);
        return tag ? { ...p, instance: tag } : p;
      }),
    };
  },
  instances: async (_request, ctx) => ({ instances: ctx.services.keeper.list(), fenced: ctx.services.keeper.fenced() }),
  'instance-stop': (request, ctx) => ctx.services.keeper.stop(request.instance, request.mode, ctx.signal),
  signal: (request, ctx) => ctx.services.supervisor.signal(request.pid, request.mode, request.timeoutMs, ctx.signal),
  usage: async (request, ctx) => ({ processes: await ctx.services.supervisor.usage(request.live === true) }),
  logs,
  bench: (request, ctx) => runBench(request, ctx.services, ctx.signal),
};

/** Answers one request from the master; throws a DroverError for a clear failure. */
export function handleRequest<T extends RequestType>(request: RequestOf<T>, ctx: HandlerContext): Promise<ResultDataOf<T>> {
  const handler = handlers[request.type] as Handler<T>;
  return handler(request, ctx);
}

async function deleteApp(request: RequestOf<'app-delete'>, ctx: HandlerContext): Promise<ResultDataOf<'app-delete'>> {
  const { store, supervisor, workerName } = ctx.services;
  await store.requireManifest(request.app);
  const running = supervisor.table.live().filter((r) => r.app === request.app);
  if (running.length > 0 && !request.force) {
    const pids = running.map((r) => r.pid).join(', ');
    throw new DroverError(ErrorCode.APP_RUNNING, `app "${request.app}" has running processes on ${workerName}: pid ${pids}; stop them first or use --force`);
  }
  // All at once: SIGINT, then SIGKILL after 5 s, so a dozen stubborn processes take 5 s, not 60;
  // and whatever ended launches of the app left behind in their process groups.
  const lingering = request.force ? supervisor.lingeringOf(request.app) : [];
  const outcomes = await Promise.all([...running.map((r) => r.pid), ...lingering].map((pid) => supervisor.signal(pid, 'stop', 5000, ctx.signal)));
  const alive = outcomes.filter((o) => o.state !== 'dead' || o.leftovers?.length).map((o) => o.pid);
  if (alive.length > 0) throw new DroverError(ErrorCode.APP_RUNNING, `could not stop pid ${alive.join(', ')} on ${workerName}; nothing deleted`);
  const stopped = outcomes.map((o) => o.pid);
  const removed = await store.remove(request.app);
  return { removed, stopped };
}

async function logs(request: RequestOf<'logs'>, ctx: HandlerContext): Promise<ResultDataOf<'logs'>> {
  const { supervisor, transfers, workerName } = ctx.services;
  const record = request.pid !== null ? supervisor.require(request.pid) : supervisor.table.latestOf(request.app ?? '');
  if (!record) throw new DroverError(ErrorCode.PROCESS_NOT_FOUND, `app "${request.app}" was never launched on ${workerName}`);
  // An ended process's last output may still be on its way from its pipe into the log.
  await supervisor.settleLog(record, 2000);
  // Its rotated files first (oldest first), then the live log.
  const chain = logChain(record.logPath);
  const start =
    request.tail === null
      ? { file: chain[0]!, offset: 0 }
      : await tailStart(chain, request.tail).catch(() => {
          throw new DroverError(ErrorCode.NOT_FOUND, `log of pid ${record.pid} is gone on ${workerName}`);
        });
  const out = transfers.openOutgoing(request.id);
  try {
    const bytes = await streamLog(record.logPath, start, out, {
      follow: request.follow,
      stillRunning: () => record.exit === null || supervisor.pumping(record.pid),
      signal: ctx.signal,
      rotation: supervisor.rotationOf(record.pid),
    });
    return { pid: record.pid, app: record.app, bytes, path: record.logPath };
  } finally {
    transfers.closeOutgoing(out);
  }
}
