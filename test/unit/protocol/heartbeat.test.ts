import { expect, test } from 'vitest';
import { Heartbeat, WorkerToMaster, isPlainHeartbeat } from '../../../packages/protocol/src/messages.js';
import { parseWorkerMessage } from '../../../packages/protocol/src/parse.js';

const valid = {
  v: 1,
  type: 'heartbeat',
  seq: 7,
  load: { cpuPercent: 3.5, memoryUsedBytes: 1073741824, memoryTotalBytes: 8589934592, loadAverage: 0.12, processes: 2 },
};
/** Values every field is tried with: each JSON type, and the numbers at zod's edges. */
const POOL: unknown[] = [null, '', '1', true, [], {}, [1], -1, -0, 0, 1, 1.5, 0.1, 2 ** 53 - 1, 2 ** 53, -(2 ** 53), 1e308, -1e-9, 1e-300];
const GONE = Symbol('gone');

/** Every frame one change away from a valid heartbeat: each field (top and load) set to each value or removed, an extra key at each level. */
function variants(): unknown[] {
  const out: unknown[] = [valid, { ...valid, load: { ...valid.load } }];
  const set = (path: string[], value: unknown): unknown => {
    const copy = structuredClone(valid) as Record<string, unknown>;
    let at = copy;
    for (const k of path.slice(0, -1)) at = at[k] as Record<string, unknown>;
    const last = path.at(-1)!;
    if (value === GONE) delete at[last];
    else at[last] = value;
    return copy;
  };
  const fields = [...Object.keys(valid).map((k) => [k]), ...Object.keys(valid.load).map((k) => ['load', k])];
  for (const f of fields) for (const value of [...POOL, GONE, 'heartbeat', 2, 3.5]) out.push(set(f, value));
  out.push(set(['extra'], 1), set(['load', 'extra'], 1), set(['load', 'disk'], undefined), set(['seq'], undefined));
  return out;
}

test('the hand check of a heartbeat takes only what zod takes, and zod gives back the same object', () => {
  let taken = 0;
  for (const v of variants()) {
    // Through JSON, as frames come: undefined keys vanish, -0 stays a number.
    const raw = JSON.stringify(v);
    const obj = JSON.parse(raw) as Record<string, unknown>;
    const zod = Heartbeat.safeParse(obj);
    const byHand = isPlainHeartbeat(structuredClone(obj));
    if (byHand) {
      taken++;
      expect(zod.success, raw).toBe(true);
      expect(zod.data, raw).toEqual(obj);
    }
    // The frame as a whole: the same answer, error wording included, with or without the hand check.
    const whole = WorkerToMaster.safeParse(obj);
    const parsed = parseWorkerMessage(raw);
    expect(parsed.ok, raw).toBe(whole.success);
    if (parsed.ok) expect(parsed.message, raw).toEqual(whole.data);
  }
  // Most one-field changes keep a valid heartbeat (other numbers in range): the hand check must take them.
  expect(taken).toBeGreaterThan(40);
});

test('a heartbeat zod would trim or refuse goes to zod: extra keys, a wrong type, a count past 2^53', () => {
  const obj = (o: object): Record<string, unknown> => JSON.parse(JSON.stringify(o)) as Record<string, unknown>;
  expect(isPlainHeartbeat(obj(valid))).toBe(true);
  expect(isPlainHeartbeat(obj({ ...valid, extra: 1 }))).toBe(false);
  expect(isPlainHeartbeat(obj({ ...valid, load: { ...valid.load, extra: 1 } }))).toBe(false);
  expect(isPlainHeartbeat(obj({ ...valid, seq: 2 ** 53 }))).toBe(false);
  expect(isPlainHeartbeat(obj({ ...valid, load: { ...valid.load, processes: 1.5 } }))).toBe(false);
  expect(isPlainHeartbeat(obj({ ...valid, load: [] }))).toBe(false);
  const refused = parseWorkerMessage(JSON.stringify({ ...valid, load: { ...valid.load, cpuPercent: -1 } }));
  expect(refused).toMatchObject({ ok: false, error: { code: 'PROTOCOL_ERROR' } });
  expect(!refused.ok && refused.error.message).toMatch(/^invalid "heartbeat" worker frame at load\.cpuPercent: /);
});
