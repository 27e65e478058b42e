import { expect, test } from 'vitest';
import { parseControlReply } from '../../../packages/protocol/src/control.js';
import { OutputParts } from '../../../packages/protocol/src/output-parts.js';

test('parts join into their results in order, output and stderr apart, and are gone after', () => {
  const parts = new OutputParts();
  for (const raw of [
    { v: 1, type: 'part', index: 1, text: 'ab' },
    { v: 1, type: 'part', index: 1, field: 'stderr', text: 'e1' },
    { v: 1, type: 'part', index: 1, text: 'cd' },
    { v: 1, type: 'part', index: 0, text: 'x' },
  ]) {
    const parsed = parseControlReply(JSON.stringify(raw));
    if (!parsed.ok || parsed.message.type !== 'part') throw new Error(`not a part: ${JSON.stringify(parsed)}`);
    parts.add(parsed.message);
  }
  const done = {
    results: [
      { ok: true, output: '', thrown: false },
      { ok: false, output: '', stderr: '', thrown: false },
    ],
  };
  parts.fill(done);
  expect(done.results).toEqual([
    { ok: true, output: 'x', thrown: false },
    { ok: false, output: 'abcd', stderr: 'e1', thrown: false },
  ]);
  const next = { results: [{ ok: true, output: 'small', thrown: false }] };
  parts.fill(next);
  expect(next.results[0]!.output).toBe('small');
});

test('a part with a bad index or field is refused', () => {
  expect(parseControlReply(JSON.stringify({ v: 1, type: 'part', index: -1, text: 'x' })).ok).toBe(false);
  expect(parseControlReply(JSON.stringify({ v: 1, type: 'part', index: 0, field: 'stdin', text: 'x' })).ok).toBe(false);
});
