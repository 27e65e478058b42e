import { expect, test } from 'vitest';
import { parseMasterAddress } from '../../../packages/worker/src/address.js';

test('master addresses become the worker endpoint URL; bad ones say what was expected', () => {
  expect(parseMasterAddress('10.0.0.5:7070')).toEqual({ ok: true, url: 'ws://10.0.0.5:7070/worker' });
  expect(parseMasterAddress('wss://master.example:7070')).toEqual({ ok: true, url: 'wss://master.example:7070/worker' });
  expect(parseMasterAddress('[::1]:7070')).toEqual({ ok: true, url: 'ws://[::1]:7070/worker' });
  expect(parseMasterAddress('ws://h:1/custom')).toEqual({ ok: true, url: 'ws://h:1/custom' });
  expect(parseMasterAddress('10.0.0.5')).toMatchObject({ ok: false, error: expect.stringContaining('expected HOST:PORT') });
  expect(parseMasterAddress('http://[bad')).toMatchObject({ ok: false });
});
