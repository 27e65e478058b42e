import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, readdirSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { WebSocketServer } from 'ws';
import { AGENT_VERSION } from '@drover/protocol';
import { ROOT, tempDir } from '../helpers/cluster.js';

// The CommonJS build that dist/cli.js and dist/drover.js require.
const LOADER = path.join(ROOT, 'packages/master/dist/bundle-loader.cjs');

/** Runs `file` through bundle-loader, as drover and master exec start, with its cache in `cache`. */
function runBundle(file: string, cache: string): { status: number | null; stdout: string; stderr: string } {
  const code = `require(${JSON.stringify(LOADER)}).runBundle(${JSON.stringify(file)})`;
  return spawnSync(process.execPath, ['-e', code], { encoding: 'utf8', env: { PATH: process.env.PATH, HOME: process.env.HOME, XDG_CACHE_HOME: cache } });
}

describe("the clients' start from V8's code cache", () => {
  test('a cache is written once, keyed by the bundle: a changed bundle of the same length never runs stale code', () => {
    const dir = tempDir();
    const cache = tempDir();
    const bundle = path.join(dir, 'client.cjs');
    // V8 checks a cache only against its source's length: these two must not share one.
    const a = `"use strict";function say(){return "A1"}console.log(say(), require("node:path").basename(__filename), typeof __droverMetaUrl);`;
    const b = a.replace('"A1"', '"B2"');
    expect(b.length).toBe(a.length);
    writeFileSync(bundle, a);
    expect(runBundle(bundle, cache).stdout).toBe('A1 client.cjs string\n');
    const codeDir = path.join(cache, 'drover', 'code');
    const [made] = readdirSync(codeDir);
    expect(made).toMatch(/^client\.cjs-[0-9a-f]{16}\.bin$/);
    expect(statSync(path.join(codeDir, made!)).mode & 0o777).toBe(0o600);
    // From the cache: the same output, and no second file.
    expect(runBundle(bundle, cache).stdout).toBe('A1 client.cjs string\n');
    expect(readdirSync(codeDir)).toEqual([made]);
    writeFileSync(bundle, b);
    expect(runBundle(bundle, cache).stdout).toBe('B2 client.cjs string\n');
    expect(readdirSync(codeDir)).toHaveLength(2);
  });

  test('a cache that is corrupt, or that others could have written, is not used; the bundle still runs', () => {
    const dir = tempDir();
    const cache = tempDir();
    const bundle = path.join(dir, 'client.cjs');
    writeFileSync(bundle, 'console.log("ran", 6 * 7);');
    expect(runBundle(bundle, cache).stdout).toBe('ran 42\n');
    const codeDir = path.join(cache, 'drover', 'code');
    const file = path.join(codeDir, readdirSync(codeDir)[0]!);
    writeFileSync(file, Buffer.alloc(4096, 0xab));
    const corrupt = runBundle(bundle, cache);
    expect(corrupt.stdout).toBe('ran 42\n');
    expect(corrupt.stderr).toBe('');
    // Rejected, so written afresh.
    expect(statSync(file).size).not.toBe(4096);
    chmodSync(file, 0o666);
    expect(runBundle(bundle, cache).stdout).toBe('ran 42\n');
    expect(statSync(file).mode & 0o777).toBe(0o600);
  });

  test('a bundle written inside its wrapper (as the build writes the clients) runs as it is; the built clients are', async () => {
    const { WRAPPER_HEAD, WRAPPER_TAIL } = (await import(path.join(ROOT, 'packages/master/dist/bundle-loader.js'))) as {
      WRAPPER_HEAD: string;
      WRAPPER_TAIL: string;
    };
    const dir = tempDir();
    const bundle = path.join(dir, 'wrapped.cjs');
    writeFileSync(bundle, `${WRAPPER_HEAD}console.log(typeof __droverMetaUrl, typeof module.exports, 6 * 7);${WRAPPER_TAIL}`);
    // Twice: compiled, then from the cache.
    for (let i = 0; i < 2; i++) expect(runBundle(bundle, tempDir()).stdout).toBe('string object 42\n');
    for (const client of ['drover.cjs', 'exec.cjs'])
      expect(readFileSync(path.join(ROOT, 'packages/master/dist', client), 'utf8').startsWith(WRAPPER_HEAD)).toBe(true);
  });

  test("writing a build's cache removes the same bundle's caches untouched for a week, and nothing else", () => {
    const dir = tempDir();
    const cache = tempDir();
    const bundle = path.join(dir, 'client.cjs');
    writeFileSync(bundle, 'console.log("ran");');
    const codeDir = path.join(cache, 'drover', 'code');
    mkdirSync(codeDir, { recursive: true });
    const monthAgo = new Date(Date.now() - 30 * 24 * 3600 * 1000);
    const files = {
      old: 'client.cjs-00000000000000aa.bin', // an earlier build's: removed
      recent: 'client.cjs-00000000000000bb.bin', // another install's, in use: kept
      other: 'other.cjs-00000000000000cc.bin', // another bundle's: kept
      longer: 'client.cjs-x-00000000000000dd.bin', // a bundle named client.cjs-x: kept
    };
    for (const [k, name] of Object.entries(files)) {
      writeFileSync(path.join(codeDir, name), 'x', { mode: 0o600 });
      if (k !== 'recent') utimesSync(path.join(codeDir, name), monthAgo, monthAgo);
    }
    expect(runBundle(bundle, cache).stdout).toBe('ran\n');
    const left = readdirSync(codeDir);
    expect(left).not.toContain(files.old);
    expect(left).toEqual(expect.arrayContaining([files.recent, files.other, files.longer]));
    expect(left.filter((n) => /^client\.cjs-[0-9a-f]{16}\.bin$/.test(n))).toHaveLength(2); // this build's and the recent one
  });

  test('an unwritable cache folder costs only the compile', () => {
    const dir = tempDir();
    const bundle = path.join(dir, 'client.cjs');
    writeFileSync(bundle, 'console.log("still ran");');
    const r = runBundle(bundle, '/proc/no-such-cache');
    expect(r.stdout).toBe('still ran\n');
    expect(r.status).toBe(0);
  });
});

describe('the small clients read what the master sends with the control schemas', () => {
  /** A master that answers any command with `reply` on the control socket in a fresh state dir. */
  async function fakeMaster(reply: object): Promise<{ dir: string; close(): void }> {
    const dir = tempDir();
    const server = http.createServer();
    const wss = new WebSocketServer({ server, path: '/operator' });
    await new Promise<void>((resolve) => server.listen(path.join(dir, 'master.sock'), resolve));
    wss.on('connection', (ws) => ws.on('message', () => ws.send(JSON.stringify(reply))));
    return {
      dir,
      close: () => {
        wss.close();
        server.close();
      },
    };
  }

  /** Runs a built client (not spawnSync: the fake master answers from this process). */
  function client(
    args: string[],
    how: { asProgram?: boolean; env?: NodeJS.ProcessEnv } = {},
  ): Promise<{ status: number | null; stdout: string; stderr: string }> {
    const [file, rest] = how.asProgram ? [args[0]!, args.slice(1)] : [process.execPath, args];
    const child = spawn(file, rest, { stdio: ['ignore', 'pipe', 'pipe'], env: how.env ?? process.env });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    return new Promise((resolve) => child.on('close', (status) => resolve({ status, stdout, stderr })));
  }

  test('a reply that does not match gets one line naming the field, in English, and a failed exit', async () => {
    const master = await fakeMaster({ v: 1, type: 'done', ok: 'yes', results: [] });
    try {
      for (const args of [
        // The bins (CommonJS entries) and the ES module entries that scripts and units name.
        [path.join(ROOT, 'packages/master/dist/bin/drover.cjs'), '--state-dir', master.dir, 'ps'],
        [path.join(ROOT, 'packages/master/dist/bin/master.cjs'), 'exec', 'ps', '--state-dir', master.dir],
        [path.join(ROOT, 'packages/master/dist/drover.js'), '--state-dir', master.dir, 'ps'],
        [path.join(ROOT, 'packages/master/dist/cli.js'), 'exec', 'ps', '--state-dir', master.dir],
      ]) {
        const r = await client(args);
        expect(r.status).not.toBe(0);
        expect(r.stderr).toContain('invalid control reply at ok: Invalid input: expected boolean, received string');
        expect(r.stderr.trim().split('\n')).toHaveLength(1);
        expect(r.stdout).toBe('');
      }
    } finally {
      master.close();
    }
  });

  test("the bins, run as programs, keep node from parsing NODE_EXTRA_CA_CERTS at a client's start; the master keeps it", async () => {
    const master = await fakeMaster({ v: 1, type: 'done', ok: 'yes', results: [] });
    // A file that cannot be read: node warns at its start when it loads the variable.
    const env = { ...process.env, NODE_EXTRA_CA_CERTS: path.join(tempDir(), 'no-such-ca.pem') };
    const nodeWarns = 'Ignoring extra certs from';
    try {
      expect(spawnSync(process.execPath, ['-e', '0'], { encoding: 'utf8', env }).stderr).toContain(nodeWarns);
      for (const args of [
        [path.join(ROOT, 'packages/master/dist/bin/drover.cjs'), '--state-dir', master.dir, 'ps'],
        [path.join(ROOT, 'packages/master/dist/bin/master.cjs'), 'exec', 'ps', '--state-dir', master.dir],
      ]) {
        const r = await client(args, { asProgram: true, env });
        expect(r.stderr).not.toContain(nodeWarns);
        expect(r.stderr.trim().split('\n')).toEqual([expect.stringContaining('invalid control reply at ok')]);
        // `node FILE` runs the same bins as before (the sh line is a string and a comment to node).
        expect((await client(args, { env })).stderr).toContain(nodeWarns);
      }
      // The master itself (anything but exec) starts with the variable, as node would.
      const help = await client([path.join(ROOT, 'packages/master/dist/bin/master.cjs'), '--help'], { asProgram: true, env });
      expect(help.status).toBe(0);
      expect(help.stderr).toContain(nodeWarns);
    } finally {
      master.close();
    }
  });

  test('a lone --version is answered by every program without starting it: the bins by their sh line, the bundles first thing', async () => {
    // A file that cannot be read: node warns at its start when it loads the variable, so a bin
    // answered by its sh line says nothing on stderr.
    const env = { ...process.env, NODE_EXTRA_CA_CERTS: path.join(tempDir(), 'no-such-ca.pem') };
    const bins = ['drover.cjs', 'master.cjs'].map((b) => path.join(ROOT, 'packages/master/dist/bin', b));
    for (const bin of bins) expect(await client([bin, '--version'], { asProgram: true, env })).toEqual({ status: 0, stdout: `${AGENT_VERSION}\n`, stderr: '' });
    const bundles = [path.join(ROOT, 'packages/master/dist/master.mjs'), path.join(ROOT, 'packages/worker/dist/worker.mjs')];
    for (const file of [...bins, ...bundles]) expect(await client([file, '--version'])).toEqual({ status: 0, stdout: `${AGENT_VERSION}\n`, stderr: '' });
    // The bundles answer before any of their modules runs (yargs would print the same line later).
    for (const file of bundles)
      expect(readFileSync(file, 'utf8').split('\n', 3)[2]).toMatch(/^if \(process\.argv\.length === 3 && process\.argv\[2\] === '--version'\)/);
    // Anything more than the flag alone is the program's: yargs answers it as before.
    const worker = await client([path.join(ROOT, 'packages/worker/dist/worker.mjs'), '--version', '--help']);
    expect(worker.status).toBe(0);
    expect(worker.stdout).toContain('--master');
  });
});
