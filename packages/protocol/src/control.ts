import * as z from 'zod';
import { ErrorCode } from './errors.js';
import { MAX_FRAME_BYTES } from './version.js';

/**
 * The operator protocol between a client (`drover`, `master exec`) and the master: JSON
 * messages, newline-delimited over the control socket, one per frame over the master's port
 * (wss, /operator, with a token).
 *   client → {"v":1,"type":"run","line":"ps all","json":false,"cwd":"/home/me"}
 *   master → {"v":1,"type":"out","text":"..."}*  then  {"v":1,"type":"done","ok":true,"results":[...]}
 * Closing the connection cancels the running command.
 */
export const CONTROL_VERSION = 1;
const v = z.literal(CONTROL_VERSION);

export const ControlRun = z.object({
  v,
  type: z.literal('run'),
  line: z.string().max(256 * 1024),
  json: z.boolean(),
  cwd: z.string().min(1).max(4096),
});
export type ControlRun = z.infer<typeof ControlRun>;

/** Stops the command that is running (Ctrl-C in a client). */
export const ControlCancel = z.object({ v, type: z.literal('cancel') });
export type ControlCancel = z.infer<typeof ControlCancel>;

/** Asks for a notice of every change in the fleet (an interactive client prints them). */
export const ControlSubscribe = z.object({ v, type: z.literal('subscribe') });

export const ControlRequest = z.discriminatedUnion('type', [ControlRun, ControlCancel, ControlSubscribe]);
export type ControlRequest = z.infer<typeof ControlRequest>;

/** What one command of a line printed: human text or JSON, and whether it failed. */
export const LineOutcome = z.object({
  ok: z.boolean(),
  output: z.string(),
  /** Error lines that go to stderr beside JSON output. */
  stderr: z.string().optional(),
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

export const ControlReply = z.discriminatedUnion('type', [ControlOut, ControlDone, ControlError, ControlNotice]);
export type ControlReply = z.infer<typeof ControlReply>;

export type ControlParsed<T> = { ok: true; message: T } | { ok: false; error: string };

function parseLine<T>(schema: z.ZodType<T>, raw: string, what: string): ControlParsed<T> {
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
