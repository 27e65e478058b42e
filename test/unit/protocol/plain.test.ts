import { expect, test } from 'vitest';
import { parseControlRequest } from '../../../packages/protocol/src/control.js';
import { isBareRequest, isPlainResult, isPlainRun } from '../../../packages/protocol/src/index.js';
import { parseMasterMessage, parseWorkerMessage } from '../../../packages/protocol/src/parse.js';

/** Values every field is tried with: each JSON type, and the numbers and lengths at the schemas' edges. */
const POOL: unknown[] = [
  null,
  '',
  '1',
  'x'.repeat(4096),
  'x'.repeat(4097),
  'x'.repeat(256 * 1024),
  'x'.repeat(256 * 1024 + 1),
  true,
  false,
  [],
  {},
  [1],
  -1,
  -0,
  0,
  1,
  1.5,
  2 ** 32 - 1,
  2 ** 32,
  2 ** 53,
  1e308,
  'result',
  'run',
  'ps',
  'usage',
];
const GONE = Symbol('gone');

/** Every frame one change away from `valid`: each field set to each value or removed, and an extra key. */
function variants(valid: Record<string, unknown>): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [valid];
  for (const key of [...Object.keys(valid), 'extra', 'color', 'data']) {
    for (const value of [...POOL, GONE]) {
      const copy: Record<string, unknown> = { ...valid };
      if (value === GONE) delete copy[key];
      else copy[key] = value;
      out.push(copy);
    }
  }
  // Through JSON, as frames come.
  return out.map((o) => JSON.parse(JSON.stringify(o)) as Record<string, unknown>);
}

/**
 * The hand check takes only what the schema takes, as it is. The schema's answer is the frame's
 * parse with one more key: zod drops it, and no hand check takes a frame with a key it does not
 * know. Returns how many of the variants the check took (it must take the common frames).
 */
function holdsTo(check: (o: Record<string, unknown>) => boolean, parse: (raw: string) => unknown, valids: Record<string, unknown>[]): number {
  let taken = 0;
  for (const valid of valids) {
    expect(check(structuredClone(valid)), JSON.stringify(valid)).toBe(true);
    for (const obj of variants(valid)) {
      if (!check(structuredClone(obj))) continue;
      taken++;
      const raw = JSON.stringify(obj);
      expect(parse(JSON.stringify({ ...obj, zz: 1 })), `by the schema: ${raw.slice(0, 200)}`).toEqual({ ok: true, message: obj });
      expect(parse(raw), raw.slice(0, 200)).toEqual({ ok: true, message: obj });
    }
  }
  return taken;
}

test('a successful result is taken by hand only where ResultOk takes it as it is', () => {
  const valids = [
    { v: 1, type: 'result', id: 5, ok: true, data: { processes: [] } },
    { v: 1, type: 'result', id: 0, ok: true, data: null },
    { v: 1, type: 'result', id: 2 ** 32 - 1, ok: true, data: [1, 'x', { a: 1 }] },
  ];
  const taken = holdsTo(isPlainResult, parseWorkerMessage, valids);
  expect(taken).toBeGreaterThan(40);
  expect(isPlainResult({ v: 1, type: 'result', id: 1, ok: false, error: { code: 'IO_ERROR', message: 'x' } })).toBe(false);
});

test('a request with nothing but its envelope (ps) is taken by hand on the agent; one with parameters goes to zod', () => {
  const taken = holdsTo(isBareRequest, parseMasterMessage, [{ v: 1, type: 'ps', id: 9 }]);
  expect(taken).toBeGreaterThan(5);
  expect(isBareRequest({ v: 1, type: 'usage', id: 9 })).toBe(false);
  expect(isBareRequest({ v: 1, type: 'launch', id: 9 })).toBe(false);
  expect(isBareRequest({ v: 1, type: 'welcome', id: 9 })).toBe(false);
  expect(parseMasterMessage(JSON.stringify({ v: 1, type: 'ps', id: 9, extra: 1 }))).toEqual({ ok: true, message: { v: 1, type: 'ps', id: 9 } });
});

test("the operator's run is taken by hand only where its schema takes it as it is", () => {
  const valids = [
    { v: 1, type: 'run', line: 'ps w1', json: true, cwd: '/home/me' },
    { v: 1, type: 'run', line: '', json: false, cwd: '/', color: true },
  ];
  const taken = holdsTo(isPlainRun, parseControlRequest, valids);
  expect(taken).toBeGreaterThan(40);
});
