import en from 'zod/v4/locales/en.js';
import * as z from 'zod/mini';
import { ErrorCode } from './errors.js';
import { keyCount } from './plain.js';
import { MAX_FRAME_BYTES } from './version.js';

/**
 * The operator protocol between a client (`drover`, `master exec`) and the master, over a
 * WebSocket at /operator: on the control socket (a Unix socket in the master's state dir, no
 * token) or on the master's port (wss, with an operator token). One JSON message per text frame:
 *   client → {"v":1,"type":"run","line":"ps all","json":false,"cwd":"/home/me"}
 *   master → {"v":1,"type":"out","text":"..."}*  then  {"v":1,"type":"done","ok":true,"results":[...]}
 * Closing the connection cancels the running command.
 *
 * Files a command names are on the client's machine: while a command runs, the master asks
 * the client for them (`file` messages, answered by `file-reply`), and file data travels in
 * binary frames (the chunk header of chunk.ts, ref = the ask's id), paced by `file-ack`s: the
 * receiver acknowledges what it consumed, and the sender keeps at most FILE_WINDOW_BYTES
 * unacknowledged.
 *
 * In zod's mini form: every client parses the master's replies, and a client starts for every
 * command a script runs. Classic zod gives each schema its ~40 methods as it is built: these
 * schemas built and parsed once in 11-16 ms from a cold start, in the mini form 6-10, and the
 * whole `master exec "ps w1"` started ~9 ms sooner (`drover`, no longer carrying classic zod at
 * all, ~17). The mini form has no wording of its own: English, as classic zod sets it.
 */
z.config(en());
export const CONTROL_VERSION = 1;

/**
 * Each schema is built on its first use, and only the one for the message's type: a client
 * parses a reply or two of one type (`done`), and building all ~100 zod objects at its start
 * was ~3 ms of it.
 */
function lazy<T>(build: () => T): () => T {
  let built: T | undefined;
  return () => (built ??= build());
}

const v = lazy(() => z.literal(CONTROL_VERSION));

/** The longest command line a client sends (a longer one is refused before it is sent). */
export const MAX_LINE_CHARS = 256 * 1024;
const MAX_CWD_CHARS = 4096;
const controlRun = lazy(() =>
  z.object({
    v: v(),
    type: z.literal('run'),
    line: z.string().check(z.maxLength(MAX_LINE_CHARS)),
    json: z.boolean(),
    cwd: z.string().check(z.minLength(1), z.maxLength(MAX_CWD_CHARS)),
    /** The client prints to a terminal that takes colour (optional: older clients do not say). */
    color: z.optional(z.boolean()),
  }),
);
export type ControlRun = z.infer<ReturnType<typeof controlRun>>;

/**
 * A `run` as clients send it, checked by hand: one comes with every command, and its parse was
 * ~20 µs of the master's ~300 µs per `ps` round trip. True only where the schema takes `o` as
 * it is (see plain.ts).
 */
export function isPlainRun(o: Record<string, unknown>): o is ControlRun {
  return (
    o.type === 'run' &&
    o.v === CONTROL_VERSION &&
    typeof o.line === 'string' &&
    o.line.length <= MAX_LINE_CHARS &&
    typeof o.json === 'boolean' &&
    typeof o.cwd === 'string' &&
    o.cwd.length >= 1 &&
    o.cwd.length <= MAX_CWD_CHARS &&
    (o.color === undefined ? keyCount(o) === 5 : typeof o.color === 'boolean' && keyCount(o) === 6)
  );
}

/** Stops the command that is running (Ctrl-C in a client). */
const controlCancel = lazy(() => z.object({ v: v(), type: z.literal('cancel') }));
export type ControlCancel = z.infer<ReturnType<typeof controlCancel>>;

/** Asks for a notice of every change in the fleet (an interactive client prints them). */
const controlSubscribe = lazy(() => z.object({ v: v(), type: z.literal('subscribe') }));

/** Unacknowledged file bytes a sender may have in flight, either way. */
export const FILE_WINDOW_BYTES = 8 * 1024 * 1024;

const filePath = (): z.ZodMiniString<string> => z.string().check(z.minLength(1), z.maxLength(4096));
const fileId = (): z.ZodMiniNumber<number> => z.int().check(z.minimum(1), z.maximum(0xffffffff));
const sha256 = (): z.ZodMiniString<string> => z.string().check(z.regex(/^[0-9a-f]{64}$/));
const count = (): z.ZodMiniNumber<number> => z.int().check(z.minimum(0));
const identity = (): z.ZodMiniString<string> => z.string().check(z.maxLength(200));
const errorBody = lazy(() => z.object({ code: z.enum(ErrorCode), message: z.string().check(z.maxLength(4096)) }));

/**
 * What the master asks of the client's files. `describe`: size and sha256 (the client caches
 * hashes by path, size and mtime). `libraries`: the non-system shared libraries the file needs,
 * found by the client's ldd with the client's environment. `read`: stream the file's bytes.
 * `create`: open a new file to write (replacing an existing regular one only with `force`);
 * the master then streams its bytes and ends with `finish` (keep: rename into place, fsynced;
 * otherwise removed). The client serves only paths named on the command line it sent, and the
 * libraries it found for them.
 */
const fileOp = lazy(() =>
  z.discriminatedUnion('op', [
    /** `hash: false`: size and identity only, with the sha256 only when the client has it cached. */
    z.object({ op: z.literal('describe'), path: filePath(), hash: z.optional(z.boolean()) }),
    z.object({ op: z.literal('libraries'), path: filePath() }),
    /** From byte `offset` (0 by default) to the end. */
    z.object({
      op: z.literal('read'),
      path: filePath(),
      size: count(),
      sha256: z.optional(sha256()),
      identity: z.optional(identity()),
      offset: z.optional(count()),
    }),
    z.object({ op: z.literal('create'), path: filePath(), force: z.boolean() }),
    z.object({ op: z.literal('finish'), ref: fileId(), keep: z.boolean() }),
    /**
     * The sha256 the workers found for a file the client did not hash (it was sent unhashed): the
     * client caches it if the file is still the one `identity` names, so copying it again does not read it.
     */
    z.object({ op: z.literal('remember'), path: filePath(), sha256: sha256(), identity: identity() }),
    /** Stop streaming read `ref` (the command no longer needs it); not answered. */
    z.object({ op: z.literal('cancel'), ref: fileId() }),
  ]),
);
export type FileOp = z.infer<ReturnType<typeof fileOp>>;

const controlFileAsk = lazy(() => z.object({ v: v(), type: z.literal('file'), id: fileId(), ask: fileOp() }));
export type ControlFileAsk = z.infer<ReturnType<typeof controlFileAsk>>;

/** What the client found, by op. */
const fileAnswer = lazy(() =>
  z.discriminatedUnion('op', [
    z.object({
      op: z.literal('describe'),
      path: filePath(),
      size: count(),
      /** Absent only when asked without hashing and none was cached. */
      sha256: z.optional(sha256()),
      /** device:inode:size:mtime (ns) as the client sees it: the master on the same machine may read that very file itself. */
      identity: z.optional(identity()),
    }),
    z.object({
      op: z.literal('libraries'),
      libraries: z.array(z.object({ name: z.string().check(z.minLength(1), z.maxLength(255)), path: filePath() })).check(z.maxLength(4096)),
      missing: z.array(z.string().check(z.maxLength(255))).check(z.maxLength(4096)),
    }),
    /** Every byte was sent (in binary frames before this answer). */
    z.object({ op: z.literal('read'), bytes: count() }),
    z.object({ op: z.literal('create'), path: filePath() }),
    z.object({ op: z.literal('finish'), path: filePath(), bytes: count() }),
    z.object({ op: z.literal('remember') }),
  ]),
);
export type FileAnswer = z.infer<ReturnType<typeof fileAnswer>>;

/** The client's answer to one `file` ask: `answer` when ok, `error` when not. */
const controlFileReply = lazy(() =>
  z
    .object({ v: v(), type: z.literal('file-reply'), id: fileId(), ok: z.boolean(), answer: z.optional(fileAnswer()), error: z.optional(errorBody()) })
    .check(z.refine((r) => (r.ok ? r.answer !== undefined : r.error !== undefined), { message: 'a file reply has an answer when ok, an error when not' })),
);
export type ControlFileReply = z.infer<ReturnType<typeof controlFileReply>>;

/**
 * The receiver of transfer `ref` has consumed `bytes` of it in all (the sender may send more),
 * or failed (`error`: the sender stops). Both directions.
 */
const controlFileAck = lazy(() => z.object({ v: v(), type: z.literal('file-ack'), ref: fileId(), bytes: count(), error: z.optional(errorBody()) }));
export type ControlFileAck = z.infer<ReturnType<typeof controlFileAck>>;

export type ControlRequest = ControlRun | ControlCancel | z.infer<ReturnType<typeof controlSubscribe>> | ControlFileReply | ControlFileAck;

/** What one command of a line printed: human text or JSON, and whether it failed. */
const lineOutcome = lazy(() =>
  z.object({
    ok: z.boolean(),
    output: z.string(),
    /** Error lines that go to stderr beside JSON output. */
    stderr: z.optional(z.string()),
    /** The command failed as a whole: its output is the error. */
    thrown: z.boolean(),
  }),
);
export type LineOutcome = z.infer<ReturnType<typeof lineOutcome>>;

const controlOut = lazy(() => z.object({ v: v(), type: z.literal('out'), text: z.string() }));
/**
 * A piece of `field` (output by default, or stderr) of result `index` of the `done` that follows,
 * which then carries that field empty: text longer than a frame holds (`ps` over a busy fleet)
 * comes in pieces, in order. The client joins them before it reads the result.
 */
const controlPart = lazy(() =>
  z.object({ v: v(), type: z.literal('part'), index: count(), field: z.optional(z.enum(['output', 'stderr'])), text: z.string() }),
);
const controlDone = lazy(() => z.object({ v: v(), type: z.literal('done'), ok: z.boolean(), results: z.array(lineOutcome()) }));
/** The master could not read a request: one error, then it goes on reading. */
const controlError = lazy(() => z.object({ v: v(), type: z.literal('error'), error: z.object({ code: z.enum(ErrorCode), message: z.string() }) }));

/** A change in the fleet, for a subscribed client: one line, as the shell prints it. */
const controlNotice = lazy(() => z.object({ v: v(), type: z.literal('notice'), text: z.string() }));

export type ControlPart = z.infer<ReturnType<typeof controlPart>>;

export type ControlReply =
  | z.infer<ReturnType<typeof controlOut>>
  | ControlPart
  | z.infer<ReturnType<typeof controlDone>>
  | z.infer<ReturnType<typeof controlError>>
  | z.infer<ReturnType<typeof controlNotice>>
  | ControlFileAsk
  | ControlFileAck;

/** Each message's schema by its `type`: what a side may receive. */
type SchemaTable<T extends { type: string }> = { [K in T['type']]: () => z.ZodMiniType<Extract<T, { type: K }>> };

const requests: SchemaTable<ControlRequest> = {
  run: controlRun,
  cancel: controlCancel,
  subscribe: controlSubscribe,
  'file-reply': controlFileReply,
  'file-ack': controlFileAck,
};

const replies: SchemaTable<ControlReply> = {
  out: controlOut,
  part: controlPart,
  done: controlDone,
  error: controlError,
  notice: controlNotice,
  file: controlFileAsk,
  'file-ack': controlFileAck,
};

export type ControlParsed<T> = { ok: true; message: T } | { ok: false; error: string };

function parseLine<T extends { type: string }>(
  table: SchemaTable<T>,
  raw: string,
  what: string,
  fast?: (o: Record<string, unknown>) => boolean,
): ControlParsed<T> {
  if (raw.length > MAX_FRAME_BYTES) return { ok: false, error: `${what} of ${raw.length} bytes is too long` };
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    return { ok: false, error: `${what} is not JSON` };
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return { ok: false, error: `invalid ${what}: not a JSON object` };
  if ('v' in value && value.v !== CONTROL_VERSION) {
    return {
      ok: false,
      error: `${what} has version ${JSON.stringify(value.v)}; this side speaks ${CONTROL_VERSION} (client and master must be the same drover version)`,
    };
  }
  const type = 'type' in value ? value.type : undefined;
  if (typeof type !== 'string' || !Object.hasOwn(table, type)) {
    const known = Object.keys(table).join(', ');
    return { ok: false, error: `invalid ${what} at type: ${type === undefined ? 'missing' : `${JSON.stringify(type)} is not one of ${known}`}` };
  }
  if (fast?.(value as Record<string, unknown>)) return { ok: true, message: value as T };
  const r = (table[type as T['type']] as () => z.ZodMiniType<T>)().safeParse(value);
  if (!r.success) {
    const issue = r.error.issues[0];
    return { ok: false, error: `invalid ${what}${issue?.path.length ? ` at ${issue.path.join('.')}` : ''}: ${issue?.message ?? 'does not match'}` };
  }
  return { ok: true, message: r.data };
}

/** Parses one line a client sent to the control socket. */
export function parseControlRequest(raw: string): ControlParsed<ControlRequest> {
  return parseLine(requests, raw, 'control request', isPlainRun);
}

/** Parses one line the master sent back. */
export function parseControlReply(raw: string): ControlParsed<ControlReply> {
  return parseLine(replies, raw, 'control reply');
}
