import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import {
  ERROR_CODES,
  MAX_FRAME_BYTES,
  checkName,
  decodeChunk,
  encodeChunk,
  formatBytes,
  parseMasterMessage,
  parseSize,
  parseWorkerMessage,
  toWorkerName,
} from '@drover/protocol';
import { ROOT } from '../../helpers/cluster.js';

const file = { kind: 'exe', name: 'app', size: 3, sha256: 'a'.repeat(64) };
const exit = { code: 0, signal: null, reason: 'exited with code 0', signalledBy: null, forced: false, coreDumped: false, endedAt: '2026-01-01T00:00:00Z' };

/** One valid example of every message, and a way to break it. */
const workerMessages: [string, object, object][] = [
  [
    'hello',
    {
      token: 't',
      protocolVersion: 1,
      workerId: 'abcdefgh',
      name: 'w1',
      hostname: 'h',
      os: { platform: 'linux', release: '6', arch: 'x64' },
      cpus: 2,
      memoryBytes: 1,
      gpus: [],
      agentVersion: '0',
    },
    { name: '../w1' },
  ],
  ['heartbeat', { seq: 1, load: { cpuPercent: 1, memoryUsedBytes: 1, memoryTotalBytes: 2, loadAverage: 0.1, processes: 0 } }, { seq: -1 }],
  ['result', { id: 3, ok: true, data: { x: 1 } }, { ok: false }],
  ['process-exit', { pid: 9, app: 'a', exit }, { pid: 0 }],
  ['ack', { ref: 3, bytes: 100 }, { bytes: -5 }],
  ['transfer-error', { ref: 3, error: { code: 'NO_SPACE', message: 'full' } }, { ref: -3 }],
  ['protocol-error', { error: { code: 'PROTOCOL_ERROR', message: 'm' } }, { error: { code: 'NOPE', message: 'm' } }],
];

const masterMessages: [string, object, object][] = [
  ['welcome', { name: 'w1', heartbeatMs: 1000, masterVersion: '0' }, { heartbeatMs: 0 }],
  ['welcome', { name: 'w1', heartbeatMs: 1000, masterVersion: '0', quietMs: 19_500 }, { quietMs: 700_000 }],
  ['pace', { quietMs: 4000 }, { quietMs: 2.5 }],
  ['cancel', { ref: 1 }, { ref: 'x' }],
  ['ack', { ref: 1, bytes: 0 }, { ref: -1 }],
  ['protocol-error', { error: { code: 'BAD_REQUEST', message: 'm' } }, { error: null }],
  ['inventory', { id: 1, app: 'a' }, { app: 'a/b' }],
  ['upload-begin', { id: 1, app: 'a', file, mode: 0o755 }, { file: { ...file, name: '../../../etc/passwd' } }],
  ['upload-end', { id: 1, ref: 2 }, { ref: null }],
  ['app-commit', { id: 1, app: 'a', executable: 'app', files: [file], keep: [] }, { executable: '.hidden/x' }],
  ['app-delete', { id: 1, app: 'a', force: false }, { force: 'yes' }],
  ['launch', { id: 1, app: 'a', args: ['-x'] }, { args: 'x' }],
  ['ps', { id: 1 }, { id: -1 }],
  ['signal', { id: 1, pid: 5, mode: 'stop', timeoutMs: null }, { mode: 'nuke' }],
  ['usage', { id: 1 }, { id: 1.5 }],
  ['logs', { id: 1, pid: null, app: 'a', tail: 10, follow: false }, { tail: -1 }],
  ['bench', { id: 1, sizeBytes: 1, blockBytes: 1, runs: 1, dir: null, fsync: true }, { runs: 0 }],
];

describe('protocol messages', () => {
  test.each(workerMessages)('worker → master %s round-trips and rejects a bad field', (type, fields, broken) => {
    const good = { v: 1, type, ...fields };
    const parsed = parseWorkerMessage(JSON.stringify(good));
    expect(parsed).toEqual({ ok: true, message: good });
    const bad = parseWorkerMessage(JSON.stringify({ ...good, ...broken }));
    expect(bad.ok).toBe(false);
    if (!bad.ok) expect(bad.error.code).toBe('PROTOCOL_ERROR');
  });

  test.each(masterMessages)('master → worker %s round-trips and rejects a bad field', (type, fields, broken) => {
    const good = { v: 1, type, ...fields };
    expect(parseMasterMessage(JSON.stringify(good))).toEqual({ ok: true, message: good });
    const bad = parseMasterMessage(JSON.stringify({ ...good, ...broken }));
    expect(bad.ok).toBe(false);
  });

  test('bad frames are named, with the request id when there is one', () => {
    expect(parseWorkerMessage('nope')).toMatchObject({ ok: false, error: { message: expect.stringContaining('not JSON') }, id: null });
    expect(parseWorkerMessage('[]')).toMatchObject({ ok: false, error: { message: expect.stringContaining('not a JSON object') } });
    expect(parseWorkerMessage('{"v":2,"type":"heartbeat"}')).toMatchObject({ ok: false, error: { message: expect.stringContaining('protocol version 2') } });
    expect(parseMasterMessage('{"v":1,"type":"launch","id":42,"app":"x"}')).toMatchObject({
      ok: false,
      id: 42,
      error: { message: expect.stringContaining('args') },
    });
    expect(parseMasterMessage('{"v":1,"type":"warp","id":5}')).toMatchObject({ ok: false, id: 5, error: { message: expect.stringContaining('"warp"') } });
    expect(parseWorkerMessage('x'.repeat(MAX_FRAME_BYTES + 1))).toMatchObject({ ok: false, error: { message: expect.stringContaining('exceeds') } });
  });

  test('chunk frames encode and decode; bad ones are refused', () => {
    const frame = encodeChunk(0xdeadbeef, Buffer.from('hello'));
    const d = decodeChunk(frame);
    expect(d).toMatchObject({ ok: true, ref: 0xdeadbeef });
    if (d.ok) expect(d.payload.toString()).toBe('hello');
    expect(decodeChunk(Buffer.from([0xd7, 1]))).toMatchObject({ ok: false });
    expect(decodeChunk(Buffer.from([0, 1, 0, 0, 0, 0, 0, 1]))).toMatchObject({ ok: false, error: expect.stringContaining('magic') });
    expect(decodeChunk(Buffer.from([0xd7, 9, 0, 0, 0, 0, 0, 1]))).toMatchObject({ ok: false, error: expect.stringContaining('version') });
  });
});

describe('names and sizes', () => {
  test('names keep to one safe path segment', () => {
    for (const ok of ['w1', 'my-app', 'a.b_c', 'X'.repeat(64)]) expect(checkName(ok)).toBeNull();
    for (const bad of ['', '..', '../x', 'a/b', '.hidden', '-x', 'X'.repeat(65), 'a b', 'ü']) expect(checkName(bad, 'app name')).toMatch(/^invalid app name/);
    expect(toWorkerName('ip-172-31-37-219.ec2.internal')).toBe('ip-172-31-37-219');
  });

  test('sizes parse with binary and decimal units', () => {
    expect(parseSize('100MiB')).toBe(100 * 1024 * 1024);
    expect(parseSize('4 KiB')).toBe(4096);
    expect(parseSize('1GiB')).toBe(1024 ** 3);
    expect(parseSize('1.5k')).toBe(1536);
    expect(parseSize('10MB')).toBe(10_000_000);
    expect(parseSize('512')).toBe(512);
    for (const bad of ['', 'MiB', '-1', '1 XB', '1e3']) expect(parseSize(bad)).toBeNull();
    expect(formatBytes(1536)).toBe('1.5 KiB');
    expect(formatBytes(17)).toBe('17 B');
  });
});

test('every error code is documented in the README', () => {
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const missing = ERROR_CODES.filter((code) => !readme.includes(`\`${code}\``));
  expect(missing).toEqual([]);
});
