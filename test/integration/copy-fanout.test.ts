import { execFile, spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, utimesSync } from 'node:fs';
import path from 'node:path';
import { expect, test } from 'vitest';
import { FILE_CHUNK_BYTES, type WorkerToMaster } from '@drover/protocol';
import { MASTER_CLI, startCluster, startWorker, tempDir, type Master } from '../helpers/cluster.js';
import { fileSha256 as sha, writeBigFile } from '../helpers/fixtures.js';
import { SHARED_READ_RING_BYTES } from '../../packages/master/src/shared-read.js';
import { startScriptedMaster } from '../helpers/scripted-master.js';

type CopyResult = { worker: string; ok: boolean; files: { dest: string; bytes: number; sha256: string; sent: boolean }[] }[];

/** Bytes a process has read through read(2) and friends, page cache or not. */
const readBytes = (pid: number): number => Number(/^rchar: (\d+)$/m.exec(readFileSync(`/proc/${pid}/io`, 'utf8'))![1]);

/** `master exec LINE --json` with its own hash cache; its JSON answer. */
function copy(master: Master, line: string, cache: string): Promise<CopyResult> {
  return new Promise((resolve, reject) =>
    execFile(
      process.execPath,
      [MASTER_CLI, 'exec', line, '--json', '--state-dir', master.stateDir],
      { env: { ...process.env, XDG_CACHE_HOME: cache } },
      (err, stdout, stderr) => (err ? reject(new Error(`${line}: ${stderr}`)) : resolve(JSON.parse(stdout) as CopyResult)),
    ),
  );
}
/** The sha256 the client has cached for `file`, if any. */
const cached = (cache: string, file: string): string | undefined =>
  (JSON.parse(readFileSync(path.join(cache, 'drover', 'hashes.json'), 'utf8')) as Record<string, { sha256: string }>)[file]?.sha256;

test('copy all reads the file once for every worker, each worker checks what it got, and an unchanged file is not read again', async () => {
  const { master, workers } = await startCluster(3);
  const dir = tempDir();
  const big = path.join(dir, 'big');
  // Below the shared read's ring (32 MiB): a worker that falls a ring behind goes on with its
  // own read, by design, and on a loaded machine one does; under it, one read is all there is.
  const MIB = 24;
  expect(MIB * 1024 * 1024).toBeLessThan(SHARED_READ_RING_BYTES);
  writeBigFile(big, MIB);
  const size = MIB * 1024 * 1024;

  const cache = tempDir();
  const before = readBytes(master.pid);
  const first = await copy(master, `copy all ${big}`, cache);
  const read = readBytes(master.pid) - before;
  expect(first.map((r) => [r.worker, r.ok, r.files[0]!.sent])).toEqual([
    ['w1', true, true],
    ['w2', true, true],
    ['w3', true, true],
  ]);
  // One read for three workers (it used to be one each, 3x the file).
  expect(read).toBeGreaterThanOrEqual(size);
  expect(read).toBeLessThan(1.5 * size);
  // The sha256 comes from what the workers received and hashed: the file's.
  for (const r of first) expect(r.files[0]!.sha256).toBe(sha(big));
  for (const w of workers) expect(sha(path.join(w.stateDir, 'apps/big/current/big'))).toBe(sha(big));

  // The client did not hash it, but keeps what the workers found: an unchanged file is read by nobody again.
  expect(cached(cache, big)).toBe(sha(big));
  const quiet = readBytes(master.pid);
  const again = await copy(master, `copy all ${big}`, cache);
  expect(again.map((r) => r.files[0]!.sent)).toEqual([false, false, false]);
  expect(readBytes(master.pid) - quiet).toBeLessThan(size / 4);

  // Same size, other contents (a rebuild): the same-sized copies there make it hash first, then send it.
  writeBigFile(big, MIB, 7);
  utimesSync(big, new Date(), new Date(Date.now() + 2000));
  const changed = await copy(master, `copy w2 ${big}`, cache);
  expect(changed[0]!.files[0]).toMatchObject({ sent: true, sha256: sha(big) });
  expect(sha(path.join(workers[1]!.stateDir, 'apps/big/current/big'))).toBe(sha(big));
});

test('a worker hashes what it receives: without a sha256 it answers with it, with a wrong one it refuses (small files here, big ones on its thread)', async () => {
  const m = await startScriptedMaster();
  startWorker(m, { name: 'solo' });
  await m.next((x): x is Extract<typeof x, { type: 'hello' }> => x.type === 'hello', 'hello');
  let id = 10;
  const upload = async (bytes: Buffer, begin: string | undefined, end: string | undefined): Promise<Extract<WorkerToMaster, { type: 'result' }>> => {
    const ref = id++;
    const file = { kind: 'exe' as const, name: `f${ref}`, size: bytes.length, ...(begin ? { sha256: begin } : {}) };
    m.send({ v: 1, type: 'upload-begin', id: ref, app: 'app', file, mode: 0o755 });
    expect((await m.result(ref)).ok).toBe(true);
    for (let at = 0; at < bytes.length; at += FILE_CHUNK_BYTES) m.sendChunk(ref, bytes.subarray(at, at + FILE_CHUNK_BYTES));
    const endId = id++;
    m.send({ v: 1, type: 'upload-end', id: endId, ref, ...(end ? { sha256: end } : {}) });
    return m.result(endId);
  };
  for (const bytes of [randomBytes(3000), randomBytes(6 * 1024 * 1024 + 5)]) {
    const right = createHash('sha256').update(bytes).digest('hex');
    const wrong = createHash('sha256').update('other').digest('hex');
    expect(await upload(bytes, undefined, undefined)).toMatchObject({ ok: true, data: { size: bytes.length, sha256: right } });
    expect(await upload(bytes, undefined, right)).toMatchObject({ ok: true, data: { sha256: right } });
    expect(await upload(bytes, right, undefined)).toMatchObject({ ok: true, data: { sha256: right } });
    expect(await upload(bytes, undefined, wrong)).toMatchObject({ ok: false, error: { code: 'CHECKSUM_MISMATCH' } });
    expect(await upload(bytes, wrong, undefined)).toMatchObject({ ok: false, error: { code: 'CHECKSUM_MISMATCH' } });
    expect(await upload(bytes, right, wrong)).toMatchObject({ ok: false, error: { code: 'BAD_REQUEST' } });
  }
});

const hasStrace = spawnSync('sh', ['-c', 'command -v strace']).status === 0;

test.skipIf(!hasStrace)(
  'a big upload is fdatasynced on the way, so its last fsync has only the tail to write (needs strace; .ci/run installs it)',
  async () => {
    const { master, workers } = await startCluster(1);
    const dir = tempDir();
    const big = path.join(dir, 'big');
    writeBigFile(big, 48);
    // Every thread of the agent (the thread pool does the syncs), with the paths of their fds.
    const out = path.join(dir, 'strace.out');
    const tracer = spawn('strace', ['-f', '-y', '-e', 'trace=fdatasync,fsync', '-o', out, '-p', String(workers[0]!.pid)], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let said = '';
    tracer.stderr.on('data', (d: Buffer) => (said += d.toString()));
    for (let i = 0; i < 100 && !/attached/.test(said); i++) await new Promise((r) => setTimeout(r, 50));
    expect(said).toMatch(/attached/);
    try {
      const [r] = await copy(master, `copy w1 ${big}`, tempDir());
      expect(r!.files[0]!.sha256).toBe(sha(big));
    } finally {
      await new Promise((resolve) => {
        tracer.once('exit', resolve);
        tracer.kill('SIGINT');
      });
    }
    // The staged file's syncs, in order: fdatasyncs while it arrived, then the fsync that ends it.
    const syncs = readFileSync(out, 'utf8')
      .split('\n')
      .filter((l) => /-exe-big>\)/.test(l) && !/resumed|unfinished/.test(l))
      .map((l) => /(fdatasync|fsync)\(/.exec(l)![1]);
    expect(syncs.length).toBeGreaterThanOrEqual(2);
    expect(syncs.at(-1)).toBe('fsync');
    expect(syncs.slice(0, -1).every((c) => c === 'fdatasync')).toBe(true);
    expect(sha(path.join(workers[0]!.stateDir, 'apps/big/current/big'))).toBe(sha(big));
  },
);
