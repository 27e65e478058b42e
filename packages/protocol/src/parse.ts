import type { z } from 'zod';
import { ErrorCode, type ErrorCode as Code } from './errors.js';
import { MAX_FRAME_BYTES, MAX_RESULT_BYTES, PROTOCOL_VERSION } from './version.js';
import { MasterToWorker, WorkerToMaster, isBareRequest, isPlainHeartbeat, isPlainResult } from './messages.js';

export type Parsed<T> = { ok: true; message: T } | { ok: false; error: { code: Code; message: string }; id: number | null };

/**
 * Turns one raw text frame into a typed message, once, at the socket.
 * Never throws; the error names what was wrong and, where the frame had one, its request id
 * so the receiver can answer that request with an error result. `fast`: a hand check that says
 * yes only where the schema would take the object as it is; the schema decides the rest.
 */
function parseWith<T>(schema: z.ZodType<T>, raw: string, direction: string, fast?: (o: Record<string, unknown>) => boolean, max = MAX_FRAME_BYTES): Parsed<T> {
  if (raw.length > max) {
    return fail(`frame of ${raw.length} bytes exceeds the ${max}-byte limit`, null);
  }
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    return fail(`frame is not JSON: ${preview(raw)}`, null);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return fail(`frame is not a JSON object: ${preview(raw)}`, null);
  }
  const obj = value as Record<string, unknown>;
  const id = typeof obj.id === 'number' && Number.isInteger(obj.id) && obj.id >= 0 ? obj.id : null;
  if (obj.v !== PROTOCOL_VERSION) {
    return fail(`frame has protocol version ${JSON.stringify(obj.v)}, expected ${PROTOCOL_VERSION}`, id);
  }
  if (fast?.(obj)) return { ok: true, message: obj as T };
  const result = schema.safeParse(value);
  if (!result.success) {
    const issue = result.error.issues[0];
    const where = issue && issue.path.length > 0 ? ` at ${issue.path.join('.')}` : '';
    const type = typeof obj.type === 'string' ? `"${obj.type.slice(0, 40)}" ` : '';
    return fail(`invalid ${type}${direction} frame${where}: ${issue?.message ?? 'does not match the schema'}`, id);
  }
  return { ok: true, message: result.data };
}

function fail(message: string, id: number | null): Parsed<never> {
  return { ok: false, error: { code: ErrorCode.PROTOCOL_ERROR, message }, id };
}

function preview(raw: string): string {
  const s = JSON.stringify(raw.length > 40 ? `${raw.slice(0, 40)}…` : raw);
  return s;
}

/** Heartbeats and results, most of what a master reads, are checked by hand first (plain.ts). */
const isPlainWorkerMessage = (o: Record<string, unknown>): boolean => (o.type === 'heartbeat' ? isPlainHeartbeat(o) : isPlainResult(o));

/** Parses a frame the master received from a worker. */
export function parseWorkerMessage(raw: string): Parsed<WorkerToMaster> {
  return parseWith(WorkerToMaster, raw, 'worker', isPlainWorkerMessage);
}

/** Parses a worker's answer that came in parts (result-parts): a frame's text, up to MAX_RESULT_BYTES. */
export function parseWorkerParts(raw: string): Parsed<WorkerToMaster> {
  return parseWith(WorkerToMaster, raw, 'worker', isPlainWorkerMessage, MAX_RESULT_BYTES);
}

/** Parses a frame the worker received from the master. */
export function parseMasterMessage(raw: string): Parsed<MasterToWorker> {
  return parseWith(MasterToWorker, raw, 'master', isBareRequest);
}
