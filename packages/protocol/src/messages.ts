import * as z from 'zod';
import { isAmount, isCount, isId, keyCount } from './plain.js';
import { HEARTBEAT_MAX_MS, HEARTBEAT_MIN_MS, QUIET_MAX_MS } from './version.js';
import {
  AppFile,
  BenchRun,
  Bytes,
  ErrorBody,
  ExitInfo,
  FileName,
  Gpu,
  Id,
  InstanceId,
  InstanceInfo,
  InstanceSpec,
  Labels,
  Load,
  Name,
  ProcessInfo,
  Sha256,
  UploadFile,
  UsageInfo,
} from './schemas.js';

const v = z.literal(1);

// ---------------------------------------------------------------- worker → master

export const Hello = z.object({
  v,
  type: z.literal('hello'),
  token: z.string().max(512),
  protocolVersion: z.number().int(),
  workerId: z.string().min(1).max(128),
  name: Name,
  hostname: z.string().max(255),
  os: z.object({ platform: z.string(), release: z.string(), arch: z.string() }),
  cpus: z.number().int().nonnegative(),
  memoryBytes: Bytes,
  gpus: z.array(Gpu),
  agentVersion: z.string().max(64),
  labels: Labels.optional(),
});
export type Hello = z.infer<typeof Hello>;

export const Heartbeat = z.object({ v, type: z.literal('heartbeat'), seq: z.number().int().nonnegative(), load: Load });
export type Heartbeat = z.infer<typeof Heartbeat>;

/**
 * The heartbeat as the agent sends it, checked by hand: a master reads one a second from every
 * worker, and zod's parse of it cost ~5% of a core at 5,000 workers (the fleet row of the bench:
 * 1.37x the bare server's CPU with it, 1.13x without). True only where `Heartbeat` accepts `o`
 * and would give back the same object: exactly its keys (zod drops others, so a frame with more
 * goes to zod), counts that are safe integers >= 0, amounts finite and >= 0 (see plain.ts).
 */
export function isPlainHeartbeat(o: Record<string, unknown>): o is Heartbeat {
  if (o.v !== 1 || o.type !== 'heartbeat' || !isCount(o.seq) || keyCount(o) !== 4) return false;
  const load = o.load;
  if (typeof load !== 'object' || load === null || Array.isArray(load)) return false;
  const l = load as Record<string, unknown>;
  return (
    isAmount(l.cpuPercent) && isCount(l.memoryUsedBytes) && isCount(l.memoryTotalBytes) && isAmount(l.loadAverage) && isCount(l.processes) && keyCount(l) === 5
  );
}

/** The answer to request `id`: its data, or an error. Validated per request type by ResultData. */
export const ResultOk = z.object({ v, type: z.literal('result'), id: Id, ok: z.literal(true), data: z.unknown() });
export const ResultError = z.object({ v, type: z.literal('result'), id: Id, ok: z.literal(false), error: ErrorBody });
export const Result = z.discriminatedUnion('ok', [ResultOk, ResultError]);
export type Result = z.infer<typeof Result>;

/**
 * A successful result, checked by hand: every command's answer comes as one, and the master
 * validates its data per request type afterwards (ResultData). zod's parse of the envelope was
 * ~20 µs of the master's ~300 µs per `ps` round trip, cold as the master is between commands.
 * True only where `ResultOk` accepts `o` as it is (see plain.ts).
 */
export function isPlainResult(o: Record<string, unknown>): o is z.infer<typeof ResultOk> {
  return o.type === 'result' && o.v === 1 && o.ok === true && isId(o.id) && Object.hasOwn(o, 'data') && keyCount(o) === 5;
}

/**
 * The answer to request `id` came before this, in binary chunks of that ref: `bytes` of UTF-8,
 * which read together are a whole `result` message (one too big for a frame).
 */
export const ResultParts = z.object({ v, type: z.literal('result-parts'), id: Id, bytes: Bytes });
export type ResultParts = z.infer<typeof ResultParts>;

export const ProcessExit = z.object({ v, type: z.literal('process-exit'), pid: z.number().int().positive(), app: Name, exit: ExitInfo });
export type ProcessExit = z.infer<typeof ProcessExit>;

/**
 * A process's log could not be written (the disk is full: its output is counted, not kept) or
 * is written again (`droppedBytes` were lost meanwhile).
 */
export const LogProblem = z.object({
  v,
  type: z.literal('log-problem'),
  pid: z.number().int().positive(),
  app: Name,
  problem: z.enum(['no-space', 'resumed']),
  droppedBytes: z.number().int().nonnegative(),
});
export type LogProblem = z.infer<typeof LogProblem>;

/** Flow control: the receiver of transfer `ref` has consumed `bytes` bytes in total. */
export const Ack = z.object({ v, type: z.literal('ack'), ref: Id, bytes: Bytes });
export type Ack = z.infer<typeof Ack>;

/** The receiver of upload `ref` failed (disk full, bad data): the sender should stop at once. */
export const TransferError = z.object({ v, type: z.literal('transfer-error'), ref: Id, error: ErrorBody });
export type TransferError = z.infer<typeof TransferError>;

/** Sent by the worker in reply to a frame it could not read (no id to answer to). */
export const ProtocolError = z.object({ v, type: z.literal('protocol-error'), error: ErrorBody });
export type ProtocolError = z.infer<typeof ProtocolError>;

export const WorkerToMaster = z.discriminatedUnion('type', [Hello, Heartbeat, Result, ResultParts, ProcessExit, LogProblem, Ack, TransferError, ProtocolError]);
export type WorkerToMaster = z.infer<typeof WorkerToMaster>;

// ---------------------------------------------------------------- master → worker

const QuietMs = z.number().int().min(HEARTBEAT_MIN_MS).max(QUIET_MAX_MS);

/**
 * `quietMs`: how long the agent lets the master say nothing before its heartbeat carries a
 * ping (and, doubled, before it gives up on the connection). Without it, two heartbeats. A
 * master scales it with its fleet (quietMsFor): every pong is a write it makes.
 */
export const Welcome = z.object({
  v,
  type: z.literal('welcome'),
  name: Name,
  heartbeatMs: z.number().int().min(HEARTBEAT_MIN_MS).max(HEARTBEAT_MAX_MS),
  masterVersion: z.string(),
  quietMs: QuietMs.optional(),
});
export type Welcome = z.infer<typeof Welcome>;

/** A new `quietMs` (see Welcome) for an agent already welcomed: the fleet grew or shrank twofold. */
export const Pace = z.object({ v, type: z.literal('pace'), quietMs: QuietMs });
export type Pace = z.infer<typeof Pace>;

/** Cancels the request (or transfer) whose id is `ref`. */
export const Cancel = z.object({ v, type: z.literal('cancel'), ref: Id });
export type Cancel = z.infer<typeof Cancel>;

const req = <T extends string, S extends z.ZodRawShape>(type: T, shape: S) => z.object({ v, type: z.literal(type), id: Id, ...shape });

export const InventoryRequest = req('inventory', { app: Name });
export const UploadBeginRequest = req('upload-begin', { app: Name, file: UploadFile, mode: z.number().int().min(0).max(0o7777) });
/**
 * `sha256`: the file's, when upload-begin did not carry it; the worker checks what it received
 * against it. With neither (the master did not hash it), the worker answers with the sha256 of
 * what it received and the master checks that every worker got the same.
 */
export const UploadEndRequest = req('upload-end', { ref: Id, sha256: Sha256.optional() });
export const AppCommitRequest = req('app-commit', { app: Name, executable: FileName, files: z.array(AppFile).max(4096), keep: z.array(AppFile).max(4096) });
export const AppDeleteRequest = req('app-delete', { app: Name, force: z.boolean() });
/** Environment variable names an app may be given (`launch --env K=V`). */
export const ENV_NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;
/** A launch's arguments: at most this many, each (and each --env value) at most MAX_ARG_CHARS. */
export const MAX_ARGS = 4096;
export const MAX_ARG_CHARS = 65536;
export const LaunchRequest = req('launch', {
  app: Name,
  args: z.array(z.string().max(MAX_ARG_CHARS)).max(MAX_ARGS),
  /** The app's own environment variables, beside the few drover sets. */
  env: z.record(z.string().regex(ENV_NAME_PATTERN), z.string().max(MAX_ARG_CHARS)).optional(),
  /** A service instance: the worker keeps it running by this spec (restarts, back-off). */
  instance: InstanceSpec.optional(),
});
/** The service instances this worker keeps. */
export const InstancesRequest = req('instances', {});
/** Stops an instance for good (its stop signal, SIGKILL after its timeout) and forgets it. */
export const InstanceStopRequest = req('instance-stop', { instance: InstanceId, mode: z.enum(['stop', 'kill']) });
export const PsRequest = req('ps', {});
export const SignalRequest = req('signal', {
  pid: z.number().int().positive(),
  mode: z.enum(['stop', 'kill']),
  timeoutMs: z.number().int().positive().nullable(),
});
/**
 * `live`: only the processes still running. /metrics asks every worker this every 15 s; without
 * it each answer carried every dead launch the table remembers (up to 1,000). An agent from
 * before drops the key and answers all; the master filters the dead out either way.
 */
export const UsageRequest = req('usage', { live: z.boolean().optional() });
export const LogsRequest = req('logs', {
  pid: z.number().int().positive().nullable(),
  app: Name.nullable(),
  tail: z.number().int().nonnegative().nullable(),
  follow: z.boolean(),
});
export const BenchRequest = req('bench', {
  sizeBytes: z.number().int().positive(),
  blockBytes: z
    .number()
    .int()
    .positive()
    .max(64 * 1024 * 1024),
  runs: z.number().int().positive().max(1000),
  dir: z.string().max(4096).nullable(),
  fsync: z.boolean(),
});

/** Every request the master sends; each is answered by one `result` with the same id. */
const requests = [
  InventoryRequest,
  UploadBeginRequest,
  UploadEndRequest,
  AppCommitRequest,
  AppDeleteRequest,
  LaunchRequest,
  PsRequest,
  SignalRequest,
  UsageRequest,
  LogsRequest,
  BenchRequest,
  InstancesRequest,
  InstanceStopRequest,
] as const;

export const Request = z.discriminatedUnion('type', requests);
export type Request = z.infer<typeof Request>;

/** The request types that carry nothing but their envelope (ps), read from their schemas. */
const BARE_REQUESTS: ReadonlySet<string> = new Set(requests.filter((r) => Object.keys(r.shape).length === 3).map((r) => r.shape.type.value as string));

/**
 * A request with nothing but its envelope, checked by hand on the agent (`ps`: what scripts ask
 * most). True only where `Request` accepts `o` as it is (see plain.ts).
 */
export function isBareRequest(o: Record<string, unknown>): boolean {
  return o.v === 1 && typeof o.type === 'string' && BARE_REQUESTS.has(o.type) && isId(o.id) && keyCount(o) === 3;
}

export type RequestType = Request['type'];
export type RequestOf<T extends RequestType> = Extract<Request, { type: T }>;
/** What the master fills in for a request: everything but the envelope. */
export type RequestParams<T extends RequestType> = Omit<RequestOf<T>, 'v' | 'type' | 'id'>;

export const MasterToWorker = z.discriminatedUnion('type', [Welcome, Pace, Cancel, Ack, ProtocolError, ...requests]);
export type MasterToWorker = z.infer<typeof MasterToWorker>;

/** The data of a successful result, per request type; the master validates each one. */
export const ResultData = {
  inventory: z.object({ exists: z.boolean(), executable: FileName.nullable(), files: z.array(AppFile) }),
  'upload-begin': z.object({}),
  'upload-end': z.object({ size: Bytes, sha256: Sha256 }),
  'app-commit': z.object({ files: z.array(AppFile) }),
  'app-delete': z.object({ removed: z.array(z.string()), stopped: z.array(z.number().int()) }),
  launch: z.object({ pid: z.number().int().positive(), state: z.string(), startedAt: z.string(), logPath: z.string() }),
  ps: z.object({ processes: z.array(ProcessInfo) }),
  signal: z.object({
    pid: z.number().int().positive(),
    state: z.string(),
    exit: ExitInfo.nullable(),
    alreadyEnded: z.boolean(),
    /** Members of its process group still alive afterwards (the signal went to them too). */
    leftovers: z.array(z.number().int().positive()).optional(),
  }),
  usage: z.object({ processes: z.array(UsageInfo) }),
  logs: z.object({ pid: z.number().int().positive(), app: Name, bytes: Bytes, path: z.string() }),
  bench: z.object({ dir: z.string(), sizeBytes: Bytes, blockBytes: Bytes, fsync: z.boolean(), runs: z.array(BenchRun) }),
  instances: z.object({
    instances: z.array(InstanceInfo),
    /** Instances this worker stopped itself, cut off from the master (newest last, at most 100). */
    fenced: z
      .array(z.object({ id: InstanceId, at: z.string() }))
      .max(1000)
      .optional(),
  }),
  'instance-stop': z.object({ instance: InstanceId, pid: z.number().int().positive().nullable(), exit: ExitInfo.nullable(), known: z.boolean() }),
} satisfies Record<RequestType, z.ZodType>;
export type ResultDataOf<T extends RequestType> = z.infer<(typeof ResultData)[T]>;
