import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import WebSocket from 'ws';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { ERROR_CODES, type ErrorCode, PROTOCOL_VERSION, toDroverError } from '@drover/protocol';
import {
  CAN_MOUNT,
  MASTER_CLI,
  ROOT,
  exec,
  mountTmpfs,
  startCluster,
  startMaster,
  startProcess,
  startWorker,
  tempDir,
  waitFor,
  waitForAvailable,
  type Master,
  type Worker,
} from '../helpers/cluster.js';
import { buildFixtures, haveGcc, type Fixtures } from '../helpers/fixtures.js';
import { startScriptedMaster } from '../helpers/scripted-master.js';

/**
 * The error catalogue is honest: every code is raised by the code somewhere, and a test here
 * produces each one the way a user or a peer would meet it. The Record type makes a new code
 * without an entry here a compile error.
 */
const HOW: Record<ErrorCode, string> = {
  BAD_REQUEST: 'a malformed control request; a commit of a file never uploaded; a launch argument past its limit',
  BAD_ARGUMENTS: 'wait with a bad count',
  BAD_NAME: 'an app name with a slash',
  UNKNOWN_COMMAND: 'a misspelled command',
  UNKNOWN_WORKER: 'ps on a worker that never joined',
  WORKER_UNAVAILABLE: 'ps on a stopped (SIGSTOP) worker',
  NOT_FOUND: 'copy of a missing file',
  APP_NOT_FOUND: 'launch of an app never copied',
  PROCESS_NOT_FOUND: 'stop of a pid never launched',
  APP_RUNNING: 'delete of a running app without --force',
  EXEC_FAILED: 'launch of a text file',
  LIBRARY_MISSING: 'launch with its library gone from the worker',
  CHECKSUM_MISMATCH: 'an upload whose bytes do not match the announced sha256',
  NO_SPACE: 'copy to a worker whose disk is full',
  IO_ERROR: 'logs --out into a folder that does not exist',
  BUSY: 'a second benchmark on a worker running one',
  TIMEOUT: 'wait for more workers than there are',
  CANCELLED: 'a request the master cancels',
  PROTOCOL_ERROR: 'a frame the worker cannot read',
  TOO_LARGE: 'ps of a worker whose launches carry 35 MB of arguments (past what an answer may hold)',
  UNAUTHORIZED: 'a worker with a wrong token',
  VERSION_MISMATCH: 'a master that speaks another protocol version',
  DUPLICATE_NAME: 'a second machine taking a live name',
  MASTER_UNREACHABLE: 'master exec --json with no master running',
  INTERNAL: 'an unexpected exception turned into an error',
};

const seen = new Set<string>();
const gcc = haveGcc();

/** Runs a line with --json and returns every error code in what it printed. */
async function codesOf(master: Master, line: string): Promise<string[]> {
  const r = await exec(master.stateDir, line, { json: true });
  const codes = [...r.stdout.matchAll(/"code":"([A-Z_]+)"/g)].map((m) => m[1]!);
  for (const c of codes) seen.add(c);
  return codes;
}

function logCodes(w: Worker): string[] {
  const codes = [...w.stdout().matchAll(/"code":"([A-Z_]+)"/g)].map((m) => m[1]!);
  for (const c of codes) seen.add(c);
  return codes;
}

describe('the error catalogue', () => {
  let fx: Fixtures | null = null;

  beforeAll(() => {
    if (gcc) fx = buildFixtures(tempDir('drover-fixtures-', 'file'));
  });

  afterAll(() => {
    // Every code the catalogue names was produced by one of the tests above, unless its test was skipped.
    const skipped = [...(CAN_MOUNT ? [] : ['NO_SPACE']), ...(gcc ? [] : ['LIBRARY_MISSING'])];
    const missing = ERROR_CODES.filter((c) => !seen.has(c) && !skipped.includes(c));
    expect(missing, 'codes no test produced').toEqual([]);
  });

  test('through the master: bad input, unknown things, and refusals each carry their code', async () => {
    const { master, workers } = await startCluster(2);
    expect(await codesOf(master, 'wait many')).toEqual(['BAD_ARGUMENTS']);
    expect(await codesOf(master, 'launch w1 ../x')).toEqual(['BAD_NAME']);
    expect(await codesOf(master, 'wrokers')).toEqual(['UNKNOWN_COMMAND']);
    expect(await codesOf(master, 'ps w9')).toEqual(['UNKNOWN_WORKER']);
    expect(await codesOf(master, 'copy w1 /no/such/file')).toEqual(['NOT_FOUND']);
    expect(await codesOf(master, 'launch w1 never-copied')).toEqual(['APP_NOT_FOUND']);
    expect(await codesOf(master, 'stop w1 999999')).toEqual(['PROCESS_NOT_FOUND']);
    expect(await codesOf(master, 'wait 5 --timeout 0.2')).toEqual(['TIMEOUT']);

    const text = path.join(tempDir(), 'notes');
    writeFileSync(text, 'just text\n');
    chmodSync(text, 0o755);
    await master.execJson(`copy w1 ${text}`);
    expect(await codesOf(master, 'launch w1 notes')).toEqual(['EXEC_FAILED']);

    await master.execJson('copy w1 /bin/sleep');
    const { pid } = await master.execFirst<{ pid: number }>('launch w1 sleep -- 30');
    expect(await codesOf(master, 'delete w1 sleep')).toEqual(['APP_RUNNING']);
    expect(await codesOf(master, `logs w1 ${pid} --out /no/such/folder/log.txt`)).toEqual(['IO_ERROR']);
    await master.execFirst(`kill w1 ${pid}`);

    // Long enough to be running still when the second arrives; cancelled after, not waited for.
    const first = startProcess(process.execPath, [MASTER_CLI, 'exec', 'bench w2 --size 256MiB --runs 20', '--state-dir', master.stateDir]);
    const benchDir = path.join(workers[1]!.stateDir, 'bench');
    await waitFor(() => existsSync(benchDir) && readdirSync(benchDir).length > 0, 'the first benchmark to run', 10_000, 5);
    expect(await codesOf(master, 'bench w2 --size 1MiB --runs 1')).toEqual(['BUSY']);
    first.child.kill('SIGINT');
    expect((await first.exited).code).toBe(130);

    await master.execJson('copy w2 /bin/true');
    // 140 launches of 248 KB of arguments each, in batches, each once w2 is available: on a loaded
    // CI machine the agent, taking them, once missed two of this test's 200 ms heartbeats (likely
    // the process table's whole rewrite, ~35 MB of JSON) and the launches sent meanwhile answered
    // WORKER_UNAVAILABLE.
    const big = `launch w2 true -- ${`${'c'.repeat(62_000)} `.repeat(4)}\n`;
    let launched = 0;
    const refused: string[] = [];
    for (let round = 0; launched < 140 && round < 30; round++) {
      await waitForAvailable(master, 2);
      const batch = await master.exec(null, { input: big.repeat(Math.min(20, 140 - launched)), json: true });
      launched += (batch.stdout.match(/"ok":true/g) ?? []).length;
      refused.push(...batch.stdout.split('\n').filter((l) => l.includes('"ok":false')));
    }
    expect(launched, refused.join('\n').slice(0, 600)).toBe(140);
    await waitForAvailable(master, 2);
    expect(await codesOf(master, 'ps w2')).toEqual(['TOO_LARGE']);
    // An argument longer than a launch holds: refused by the master with the reason, nothing sent.
    const long = await exec(master.stateDir, `launch w2 true -- ${'d'.repeat(70_000)}`, { json: true });
    expect(long.code).toBe(1);
    expect(long.stdout + long.stderr).toContain("argument 1 is 70000 characters; a launch's arguments hold at most 65536 each");
    expect(await codesOf(master, `launch w2 true -- ${'d'.repeat(70_000)}`)).toEqual(['BAD_REQUEST']);
    // A NUL would end the argument for exec: refused, from a script's stdin as from anywhere.
    const nul = await exec(master.stateDir, null, { json: true, input: 'launch w2 true -- a\0b\n' });
    expect(nul.stdout).toContain('"code":"BAD_REQUEST"');
    expect(nul.stdout).toContain('argument 1 holds a NUL byte');
    // A line longer than the control socket takes is refused by the client, before it is sent.
    const tooLong = await exec(master.stateDir, null, { json: true, input: `ps ${'w'.repeat(2_000_000)}\n` });
    expect(tooLong.code).toBe(1);
    expect(JSON.parse(tooLong.stdout)).toEqual({
      error: { code: 'BAD_ARGUMENTS', message: 'a command line is at most 262144 characters; this one is 2000003' },
    });

    // A control request that is not one: the master answers BAD_REQUEST and carries on.
    const reply = await new Promise<string>((resolve, reject) => {
      const ws = new WebSocket(`ws+unix://${path.join(master.stateDir, 'master.sock')}:/operator`);
      ws.on('message', (d: Buffer) => {
        ws.close();
        resolve(d.toString());
      });
      ws.on('error', reject);
      ws.on('open', () => ws.send('{"v":1,"type":"run","line":7}'));
    });
    expect(JSON.parse(reply)).toMatchObject({ type: 'error', error: { code: 'BAD_REQUEST', message: expect.stringContaining('line') } });
    seen.add('BAD_REQUEST');

    process.kill(workers[1]!.pid, 'SIGSTOP');
    try {
      // Asked with a short deadline: a ps sent while w2 still counts as available waits for it.
      await waitFor(async () => (await codesOf(master, 'ps w2 --timeout 0.3')).includes('WORKER_UNAVAILABLE'), 'w2 to be unavailable');
    } finally {
      process.kill(workers[1]!.pid, 'SIGCONT');
    }
  });

  test.skipIf(!gcc)('LIBRARY_MISSING: a library gone from the worker is named at launch (needs gcc)', async () => {
    const { master, workers } = await startCluster(1);
    await master.execJson(`copy w1 ${fx!.usesLib} --as greeter`);
    renameSync(fx!.libDir, `${fx!.libDir}.away`);
    try {
      rmSync(path.join(workers[0]!.stateDir, 'apps/greeter/current/lib/libgreet.so.1'));
      expect(await codesOf(master, 'launch w1 greeter')).toEqual(['LIBRARY_MISSING']);
    } finally {
      renameSync(`${fx!.libDir}.away`, fx!.libDir);
    }
  });

  test.skipIf(!CAN_MOUNT)('NO_SPACE: a copy to a full disk (needs root for tmpfs)', async () => {
    const master = await startMaster();
    const small = mountTmpfs(8)!;
    startWorker(master, { name: 'tiny', stateDir: small });
    await waitForAvailable(master, 1);
    const big = path.join(tempDir(), 'big');
    writeFileSync(big, Buffer.alloc(16 * 1024 * 1024, 7), { mode: 0o755 });
    expect(await codesOf(master, `copy tiny ${big}`)).toEqual(['NO_SPACE']);
  });

  test('the links: wrong tokens, a taken name, and no master at all', async () => {
    const { master } = await startCluster(1);
    const bad = startWorker(master, { name: 'w3', token: 'not-the-token-0000' });
    await bad.exited;
    expect(logCodes(bad)).toContain('UNAUTHORIZED');

    const impostor = startWorker(master, { name: 'w1' });
    await waitFor(() => logCodes(impostor).includes('DUPLICATE_NAME'), 'the impostor to be refused');
    await impostor.kill();

    const none = spawnSync(process.execPath, [path.join(ROOT, 'packages/master/dist/cli.js'), 'exec', 'workers', '--json', '--state-dir', tempDir()], {
      encoding: 'utf8',
    });
    expect(none.status).toBe(2);
    expect(JSON.parse(none.stdout)).toEqual({ error: { code: 'MASTER_UNREACHABLE', message: expect.stringContaining('cannot reach the master') } });
    seen.add('MASTER_UNREACHABLE');
  });

  test('a real worker against a scripted master: bad frames, bad uploads, cancels, another protocol version', async () => {
    const m = await startScriptedMaster();
    const w = startWorker(m, { name: 'solo' });
    await m.next((x): x is Extract<typeof x, { type: 'hello' }> => x.type === 'hello', 'hello');
    await waitFor(() => w.stdout().includes('joined the master'), 'welcome');

    m.send('not json');
    const pe = await m.next((x): x is Extract<typeof x, { type: 'protocol-error' }> => x.type === 'protocol-error', 'a protocol-error');
    seen.add(pe.error.code);
    expect(pe.error.code).toBe('PROTOCOL_ERROR');

    const file = { kind: 'exe' as const, name: 'app', size: 3, sha256: '0'.repeat(64) };
    m.send({ v: 1, type: 'upload-begin', id: 1, app: 'app', file, mode: 0o755 });
    expect((await m.result(1)).ok).toBe(true);
    m.sendChunk(1, Buffer.from('abc'));
    m.send({ v: 1, type: 'upload-end', id: 2, ref: 1 });
    const mismatch = await m.result(2);
    expect(mismatch).toMatchObject({ ok: false, error: { code: 'CHECKSUM_MISMATCH' } });
    seen.add('CHECKSUM_MISMATCH');

    m.send({ v: 1, type: 'app-commit', id: 3, app: 'app', executable: 'app', files: [file], keep: [] });
    expect(await m.result(3)).toMatchObject({ ok: false, error: { code: 'BAD_REQUEST', message: 'app was not uploaded before commit' } });

    m.send({ v: 1, type: 'bench', id: 4, sizeBytes: 512 * 1024 * 1024, blockBytes: 1024 * 1024, runs: 5, dir: null, fsync: true });
    await new Promise((r) => setTimeout(r, 200));
    m.send({ v: 1, type: 'cancel', ref: 4 });
    expect(await m.result(4)).toMatchObject({ ok: false, error: { code: 'CANCELLED' } });
    seen.add('CANCELLED');

    m.close(4002, `protocol version ${PROTOCOL_VERSION + 1} only`);
    await w.exited;
    expect(logCodes(w)).toContain('VERSION_MISMATCH');
  });

  test('anything unexpected becomes INTERNAL, with its first line only', () => {
    const e = toDroverError(new TypeError('cannot read x of undefined\n    at stack'));
    expect(e.toJSON()).toEqual({ code: 'INTERNAL', message: 'cannot read x of undefined' });
    seen.add(e.code);
    expect(Object.keys(HOW)).toEqual(ERROR_CODES);
  });
});
