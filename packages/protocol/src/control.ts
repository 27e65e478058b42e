import en from 'zod/v4/locales/en.js';
import * as z from 'zod/mini';
import { ErrorCode } from './errors.js';
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
const v = z.literal(CONTROL_VERSION);

export const ControlRun = z.object({
  v,
  type: z.literal('run'),
  line: z.string().check(z.maxLength(256 * 1024)),
  json: z.boolean(),
  cwd: z.string().check(z.minLength(1), z.maxLength(4096)),
  /** The client prints to a terminal that takes colour (optional: older clients do not say). */
  color: z.optional(z.boolean()),
});
export type ControlRun = z.infer<typeof ControlRun>;

/** Stops the command that is running (Ctrl-C in a client). */
export const ControlCancel = z.object({ v, type: z.literal('cancel') });
export type ControlCancel = z.infer<typeof ControlCancel>;

/** Asks for a notice of every change in the fleet (an interactive client prints them). */
export const ControlSubscribe = z.object({ v, type: z.literal('subscribe') });

/** Unacknowledged file bytes a sender may have in flight, either way. */
export const FILE_WINDOW_BYTES = 8 * 1024 * 1024;

const filePath = z.string().check(z.minLength(1), z.maxLength(4096));
const fileId = z.int().check(z.minimum(1), z.maximum(0xffffffff));
const sha256 = z.string().check(z.regex(/^[0-9a-f]{64}$/));
const count = (): z.ZodMiniNumber<number> => z.int().check(z.minimum(0));
const identity = (): z.ZodMiniString<string> => z.string().check(z.maxLength(200));

/**
 * What the master asks of the client's files. `describe`: size and sha256 (the client caches
 * hashes by path, size and mtime). `libraries`: the non-system shared libraries the file needs,
 * found by the client's ldd with the client's environment. `read`: stream the file's bytes.
 * `create`: open a new file to write (replacing an existing regular one only with `force`);
 * the master then streams its bytes and ends with `finish` (keep: rename into place, fsynced;
 * otherwise removed). The client serves only paths named on the command line it sent, and the
 * libraries it found for them.
 */
export const FileOp = z.discriminatedUnion('op', [
  /** `hash: false`: size and identity only, with the sha256 only when the client has it cached. */
  z.object({ op: z.literal('describe'), path: filePath, hash: z.optional(z.boolean()) }),
  z.object({ op: z.literal('libraries'), path: filePath }),
  /** From byte `offset` (0 by default) to the end. */
  z.object({
    op: z.literal('read'),
    path: filePath,
    size: count(),
    sha256: z.optional(sha256),
    identity: z.optional(identity()),
    offset: z.optional(count()),
  }),
  z.object({ op: z.literal('create'), path: filePath, force: z.boolean() }),
  z.object({ op: z.literal('finish'), ref: fileId, keep: z.boolean() }),
  /**
   * The sha256 the workers found for a file the client did not hash (it was sent unhashed): the
   * client caches it if the file is still the one `identity` names, so copying it again does not read it.
   */
  z.object({ op: z.literal('remember'), path: filePath, sha256, identity: identity() }),
  /** Stop streaming read `ref` (the command no longer needs it); not answered. */
  z.object({ op: z.literal('cancel'), ref: fileId }),
]);
export type FileOp = z.infer<typeof FileOp>;

export const ControlFileAsk = z.object({ v, type: z.literal('file'), id: fileId, ask: FileOp });
export type ControlFileAsk = z.infer<typeof ControlFileAsk>;

/** What the client found, by op. */
export const FileAnswer = z.discriminatedUnion('op', [
  z.object({
    op: z.literal('describe'),
    path: filePath,
    size: count(),
    /** Absent only when asked without hashing and none was cached. */
    sha256: z.optional(sha256),
    /** device:inode:size:mtime (ns) as the client sees it: the master on the same machine may read that very file itself. */
    identity: z.optional(identity()),
  }),
  z.object({
    op: z.literal('libraries'),
    libraries: z.array(z.object({ name: z.string().check(z.minLength(1), z.maxLength(255)), path: filePath })).check(z.maxLength(4096)),
    missing: z.array(z.string().check(z.maxLength(255))).check(z.maxLength(4096)),
  }),
  /** Every byte was sent (in binary frames before this answer). */
  z.object({ op: z.literal('read'), bytes: count() }),
  z.object({ op: z.literal('create'), path: filePath }),
  z.object({ op: z.literal('finish'), path: filePath, bytes: count() }),
  z.object({ op: z.literal('remember') }),
]);
export type FileAnswer = z.infer<typeof FileAnswer>;

const errorBody = z.object({ code: z.enum(ErrorCode), message: z.string().check(z.maxLength(4096)) });

/** The client's answer to one `file` ask: `answer` when ok, `error` when not. */
export const ControlFileReply = z
  .object({ v, type: z.literal('file-reply'), id: fileId, ok: z.boolean(), answer: z.optional(FileAnswer), error: z.optional(errorBody) })
  .check(z.refine((r) => (r.ok ? r.answer !== undefined : r.error !== undefined), { message: 'a file reply has an answer when ok, an error when not' }));
export type ControlFileReply = z.infer<typeof ControlFileReply>;

/**
 * The receiver of transfer `ref` has consumed `bytes` of it in all (the sender may send more),
 * or failed (`error`: the sender stops). Both directions.
 */
export const ControlFileAck = z.object({ v, type: z.literal('file-ack'), ref: fileId, bytes: count(), error: z.optional(errorBody) });
export type ControlFileAck = z.infer<typeof ControlFileAck>;

export const ControlRequest = z.discriminatedUnion('type', [ControlRun, ControlCancel, ControlSubscribe, ControlFileReply, ControlFileAck]);
export type ControlRequest = z.infer<typeof ControlRequest>;

/** What one command of a line printed: human text or JSON, and whether it failed. */
export const LineOutcome = z.object({
  ok: z.boolean(),
  output: z.string(),
  /** Error lines that go to stderr beside JSON output. */
  stderr: z.optional(z.string()),
  /** The command failed as a whole: its output is the error. */
  thrown: z.boolean(),
});
export type LineOutcome = z.infer<typeof LineOutcome>;

export const ControlOut = z.object({ v, type: z.literal('out'), text: z.string() });
export const ControlDone = z.object({ v, type: z.literal('done'), ok: z.boolean(), results: z.array(LineOutcome) });
/** The master could not read a request: one error, then it goes on reading. */
export const ControlError = z.object({ v, type: z.literal('error'), error: z.object({ code: z.enum(ErrorCode), message: z.string() }) });

/** A change in the fleet, for a subscribed client: one line, as the shell prints it. */
export const ControlNotice = z.object({ v, type: z.literal('notice'), text: z.string() });

export const ControlReply = z.discriminatedUnion('type', [ControlOut, ControlDone, ControlError, ControlNotice, ControlFileAsk, ControlFileAck]);
export type ControlReply = z.infer<typeof ControlReply>;

export type ControlParsed<T> = { ok: true; message: T } | { ok: false; error: string };

function parseLine<T>(schema: z.ZodMiniType<T>, raw: string, what: string): ControlParsed<T> {
  if (raw.length > MAX_FRAME_BYTES) return { ok: false, error: `${what} of ${raw.length} bytes is too long` };
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    return { ok: false, error: `${what} is not JSON` };
  }
  if (typeof value === 'object' && value !== null && 'v' in value && value.v !== CONTROL_VERSION) {
    return {
      ok: false,
      error: `${what} has version ${JSON.stringify(value.v)}; this side speaks ${CONTROL_VERSION} (client and master must be the same drover version)`,
    };
  }
  const r = schema.safeParse(value);
  if (!r.success) {
    const issue = r.error.issues[0];
    return { ok: false, error: `invalid ${what}${issue?.path.length ? ` at ${issue.path.join('.')}` : ''}: ${issue?.message ?? 'does not match'}` };
  }
  return { ok: true, message: r.data };
}

/** Parses one line a client sent to the control socket. */
export function parseControlRequest(raw: string): ControlParsed<ControlRequest> {
  return parseLine(ControlRequest, raw, 'control request');
}

/** Parses one line the master sent back. */
export function parseControlReply(raw: string): ControlParsed<ControlReply> {
  return parseLine(ControlReply, raw, 'control reply');
}
