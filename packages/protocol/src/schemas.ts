import * as z from 'zod';
import { ErrorCode } from './errors.js';
import { FILE_NAME_PATTERN, NAME_PATTERN } from './names.js';

/** Building blocks shared by several messages. */
export const Name = z.string().regex(NAME_PATTERN, 'invalid name');
export const FileName = z.string().regex(FILE_NAME_PATTERN, 'invalid file name');
export const Sha256 = z.string().regex(/^[0-9a-f]{64}$/, 'expected a hex sha256');
export const Id = z.number().int().nonnegative().max(0xffffffff);
export const Bytes = z.number().int().nonnegative();

export const ErrorBody = z.object({
  code: z.enum(ErrorCode),
  message: z.string().max(4096),
});
export type ErrorBody = z.infer<typeof ErrorBody>;

/** One file of an app: the executable itself or one of its libraries (stored under lib/). */
export const AppFile = z.object({
  kind: z.enum(['exe', 'lib']),
  name: FileName,
  size: Bytes,
  sha256: Sha256,
});
export type AppFile = z.infer<typeof AppFile>;

/**
 * A file as an upload begins: its sha256 may come with upload-end, or not at all (a file no
 * worker has a same-sized copy of is sent without being hashed first; the worker reports the
 * sha256 of what it received).
 */
export const UploadFile = AppFile.extend({ sha256: Sha256.optional() });
export type UploadFile = z.infer<typeof UploadFile>;

/** How a process ended: one shape for every ending. */
export const ExitInfo = z.object({
  code: z.number().int().nullable(),
  signal: z.string().nullable(),
  reason: z.string(),
  signalledBy: z.enum(['stop', 'kill']).nullable(),
  forced: z.boolean(),
  coreDumped: z.boolean(),
  endedAt: z.string(),
});
export type ExitInfo = z.infer<typeof ExitInfo>;

export const ProcessState = z.enum(['running', 'sleeping', 'disk-sleep', 'stopped', 'zombie', 'idle', 'dead']);
export type ProcessState = z.infer<typeof ProcessState>;

export const ProcessInfo = z.object({
  pid: z.number().int().positive(),
  app: Name,
  executable: FileName,
  args: z.array(z.string()),
  startedAt: z.string(),
  runtimeMs: z.number().nonnegative(),
  state: ProcessState,
  exit: ExitInfo.nullable(),
  logPath: z.string(),
  adopted: z.boolean(),
  /** Processes still alive in its process group (children it left behind), when there are any. */
  leftovers: z.array(z.number().int().positive()).optional(),
  /** The service instance this process runs; for its current process, how often the worker restarted it. */
  instance: z.object({ id: z.string(), restarts: z.number().int().nonnegative().optional() }).optional(),
});
export type ProcessInfo = z.infer<typeof ProcessInfo>;

export const UsageInfo = z.object({
  pid: z.number().int().positive(),
  app: Name,
  state: ProcessState,
  cpuUserSeconds: z.number().nonnegative(),
  cpuSystemSeconds: z.number().nonnegative(),
  cpuPercent: z.number().nonnegative(),
  rssBytes: Bytes,
  maxRssBytes: Bytes,
  sampledAt: z.string().nullable(),
});
export type UsageInfo = z.infer<typeof UsageInfo>;

export const BenchRun = z.object({
  creationTimeMs: z.number().nonnegative(),
  copyTimeMs: z.number().nonnegative(),
  deletionTimeMs: z.number().nonnegative(),
});
export type BenchRun = z.infer<typeof BenchRun>;

export const Load = z.object({
  cpuPercent: z.number().nonnegative(),
  memoryUsedBytes: Bytes,
  memoryTotalBytes: Bytes,
  loadAverage: z.number().nonnegative(),
  processes: z.number().int().nonnegative(),
});
export type Load = z.infer<typeof Load>;

export const Gpu = z.object({ name: z.string(), memoryBytes: Bytes });

/** Worker labels (`worker --label zone=a`): what service files select workers by. */
export const LABEL_KEY_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
export const Labels = z.record(z.string().regex(LABEL_KEY_PATTERN), z.string().max(128));
export type Labels = z.infer<typeof Labels>;

/** The id of a service instance: service.program.version.ordinal. */
export const InstanceId = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/, 'invalid instance id');

/**
 * How the worker keeps an instance running, even while the master is away: restart policy
 * with doubling back-off, how to stop it, and when a start counts as healthy.
 */
export const InstanceSpec = z.object({
  id: InstanceId,
  restart: z.object({
    policy: z.enum(['always', 'on-failure', 'never']),
    maxRestarts: z.number().int().min(0).max(1_000_000),
    windowMs: z.number().int().positive(),
    backoffMs: z.tuple([z.number().int().min(0), z.number().int().min(0)]),
  }),
  stop: z.object({ signal: z.enum(['SIGINT', 'SIGTERM', 'SIGQUIT', 'SIGHUP', 'SIGUSR1', 'SIGUSR2']), timeoutMs: z.number().int().positive() }),
  healthyAfterMs: z.number().int().min(0),
  /**
   * Self-fencing: a worker that has heard nothing from the master for stopAfterMs stops the
   * instance (the master starts another elsewhere after lostAfterMs), so there are never two.
   */
  fence: z.object({ stopAfterMs: z.number().int().positive(), lostAfterMs: z.number().int().positive() }).optional(),
  /** Its log: rotated past maxBytes (0: never) with `keep` older files; what is not given is the worker's --log-max/--log-keep. */
  log: z.object({ maxBytes: z.number().int().min(0).optional(), keep: z.number().int().min(0).max(100).optional() }).optional(),
});
export type InstanceSpec = z.infer<typeof InstanceSpec>;

/** running: up; backoff: waiting to restart; failed: gave up (maxRestarts in window); exited: ended, not to be restarted. */
export const InstanceState = z.enum(['running', 'backoff', 'failed', 'exited']);
export type InstanceState = z.infer<typeof InstanceState>;

export const InstanceInfo = z.object({
  id: InstanceId,
  app: Name,
  pid: z.number().int().positive().nullable(),
  state: InstanceState,
  /** Running for healthyAfterMs since its last start. */
  healthy: z.boolean(),
  /** Some run of it lasted healthyAfterMs: it did start, whatever happened after (restarts are its policy's business). */
  everHealthy: z.boolean().optional(),
  restarts: z.number().int().nonnegative(),
  lastExit: ExitInfo.nullable(),
  startedAt: z.string().nullable(),
  /** When a back-off ends. */
  nextStartAt: z.string().nullable(),
});
export type InstanceInfo = z.infer<typeof InstanceInfo>;
export type Gpu = z.infer<typeof Gpu>;
