import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ROOT } from './cluster.js';

const SRC = path.join(ROOT, 'test/fixtures');

export function haveGcc(): boolean {
  try {
    execFileSync('gcc', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export interface Fixtures {
  dir: string;
  /** Folder of libgreet.so.1; usesLib finds it there through its rpath. */
  libDir: string;
  usesLib: string;
  ignoreSigint: string;
  alloc: string;
  segfault: string;
  ticker: string;
}

/** Builds the C fixture programs into `dir` with the machine's gcc. */
export function buildFixtures(dir: string): Fixtures {
  const libDir = path.join(dir, 'vendor');
  mkdirSync(libDir, { recursive: true });
  const gcc = (...args: string[]): void => void execFileSync('gcc', ['-O1', ...args], { stdio: 'pipe' });
  gcc('-shared', '-fPIC', '-Wl,-soname,libgreet.so.1', '-o', path.join(libDir, 'libgreet.so.1'), path.join(SRC, 'libgreet.c'));
  const out = (name: string): string => path.join(dir, name);
  gcc('-o', out('uses-lib'), path.join(SRC, 'uses-lib.c'), `-L${libDir}`, '-l:libgreet.so.1', `-Wl,-rpath,${libDir}`);
  for (const name of ['ignore-sigint', 'alloc', 'segfault', 'ticker']) gcc('-o', out(name), path.join(SRC, `${name}.c`));
  return { dir, libDir, usesLib: out('uses-lib'), ignoreSigint: out('ignore-sigint'), alloc: out('alloc'), segfault: out('segfault'), ticker: out('ticker') };
}

/** Writes a file of `mib` MiB of varied bytes (a stand-in for a big executable). */
export function writeBigFile(file: string, mib: number, seed = 1): void {
  const block = Buffer.alloc(1024 * 1024);
  for (let i = 0; i < block.length; i += 4) block.writeUInt32LE((i * 2654435761 + seed) >>> 0, i);
  const parts: Buffer[] = [];
  for (let m = 0; m < mib; m++) {
    block.writeUInt32LE(m ^ seed, 0);
    parts.push(Buffer.from(block));
    if (parts.length === 16 || m === mib - 1) {
      writeFileSync(file, Buffer.concat(parts), { flag: m < 16 ? 'w' : 'a', mode: 0o755 });
      parts.length = 0;
    }
  }
}

/**
 * The sha256 of a file, read 1 MiB at a time. Not readFileSync: a test's process holding a few
 * hundred MiB makes every process it spawns after cost more to fork (page tables to copy).
 */
export function fileSha256(file: string): string {
  const hash = createHash('sha256');
  const buf = Buffer.allocUnsafe(1024 * 1024);
  const fd = openSync(file, 'r');
  try {
    for (let n; (n = readSync(fd, buf, 0, buf.length, null)) > 0;) hash.update(buf.subarray(0, n));
  } finally {
    closeSync(fd);
  }
  return hash.digest('hex');
}
