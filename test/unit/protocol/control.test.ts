import { expect, test } from 'vitest';
import { parseControlReply, parseControlRequest } from '@drover/protocol';

test('replies parse by their type; what is not one says where, in one line', () => {
  const done = { v: 1, type: 'done', ok: true, results: [{ ok: true, output: 'w1', thrown: false }] };
  expect(parseControlReply(JSON.stringify(done))).toEqual({ ok: true, message: done });
  const cases: [string, string][] = [
    ['{"v":1,"type":"done","ok":"yes","results":[]}', 'invalid control reply at ok: Invalid input: expected boolean, received string'],
    [
      '{"v":1,"type":"done","ok":true,"results":[{"ok":true}]}',
      'invalid control reply at results.0.output: Invalid input: expected string, received undefined',
    ],
    ['{"v":1,"type":"launch"}', 'invalid control reply at type: "launch" is not one of out, part, done, error, notice, file, file-ack'],
    ['{"v":1}', 'invalid control reply at type: missing'],
    ['{"v":1,"type":"toString"}', 'invalid control reply at type: "toString" is not one of out, part, done, error, notice, file, file-ack'],
    ['[1]', 'invalid control reply: not a JSON object'],
    ['null', 'invalid control reply: not a JSON object'],
    ['{"v":2,"type":"done"}', 'control reply has version 2; this side speaks 1 (client and master must be the same drover version)'],
    ['{', 'control reply is not JSON'],
  ];
  for (const [raw, error] of cases) expect(parseControlReply(raw)).toEqual({ ok: false, error });
});

test('requests parse by their type; a reply type is not a request', () => {
  const run = { v: 1, type: 'run', line: 'ps w1', json: true, cwd: '/' };
  expect(parseControlRequest(JSON.stringify(run))).toEqual({ ok: true, message: run });
  expect(parseControlRequest('{"v":1,"type":"done","ok":true,"results":[]}')).toEqual({
    ok: false,
    error: 'invalid control request at type: "done" is not one of run, cancel, subscribe, file-reply, file-ack',
  });
  expect(parseControlRequest('{"v":1,"type":"file-reply","id":1,"ok":true}')).toMatchObject({ ok: false, error: expect.stringMatching(/an answer when ok/) });
});
