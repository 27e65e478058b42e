import { closeSync, fstatSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import vm from 'node:vm';

/**
 * Runs a client bundle (dist/drover.cjs, dist/exec.cjs: CommonJS, one file each) from V8's code
 * cache. A script runs `drover` or `master exec` once per command, and compiling the bundle's
 * ~300 KB on every start was ~10 ms of the ~40 it spends beyond `node -e 0` (Node 20 has no
 * module.enableCompileCache). The cache is what V8 made of the bundle by the end of a run, the
 * functions it compiled lazily included, kept per user in $XDG_CACHE_HOME/drover/code and keyed
 * by the bundle file's identity (device, inode, size, and its change and modify times to the
 * nanosecond: any write to it changes them) and the Node version: V8 itself checks only the
 * source's length. Not by a hash of its bytes: node:crypto alone costs ~4 ms of the start.
 * Anything wrong with it (missing, stale, rejected, not ours) costs only the compile; a fresh
 * one is written (write new, rename) when the process exits.
 */
export function runBundle(file: string): void {
  const fd = openSync(file, 'r');
  let source: string;
  let key: string;
  try {
    const st = fstatSync(fd, { bigint: true });
    key = `${path.basename(file)}-${fnv64([process.version, process.arch, st.dev, st.ino, st.size, st.mtimeNs, st.ctimeNs].join(':'))}`;
    source = readFileSync(fd, 'utf8');
  } finally {
    closeSync(fd);
  }
  const cacheFile = path.join(cacheDir(), `${key}.bin`);
  const cachedData = readOwnFile(cacheFile);
  // CommonJS's wrapper, and the bundle's own URL for what its ESM parts ask of import.meta.url.
  // scripts/bundle.mjs writes the clients already wrapped: wrapping here copies the whole source
  // once more into the young generation, and `master exec` alone is that close to a scavenge
  // (~3 ms) at its start.
  const wrapped = source.startsWith(WRAPPER_HEAD) ? source : `${WRAPPER_HEAD}${source}${WRAPPER_TAIL}`;
  // No import() inside: a script compiled from a code cache has no dynamic import callback
  // (scripts/bundle.mjs refuses a client bundle with one; load builtins on demand with
  // process.getBuiltinModule).
  const script = new vm.Script(wrapped, { filename: file, ...(cachedData ? { cachedData } : {}) });
  if (!cachedData || script.cachedDataRejected) process.once('exit', () => writeCache(cacheFile, script, path.basename(file)));
  const module = { exports: {} };
  const run = script.runInThisContext() as (...args: unknown[]) => void;
  run.call(module.exports, module.exports, createRequire(file), module, file, path.dirname(file), pathToFileURL(file).href);
}

/** The function a bundle runs in: CommonJS's arguments, and its own URL for import.meta.url. */
export const WRAPPER_HEAD = '(function (exports, require, module, __filename, __dirname, __droverMetaUrl) {';
export const WRAPPER_TAIL = '\n})';

/** FNV-1a, 64 bits as two 32-bit lanes, in hex: a short name for the key's facts (not a guard: the facts are). */
function fnv64(text: string): string {
  let a = 0x811c9dc5;
  let b = 0xcbf29ce4;
  for (let i = 0; i < text.length; i++) {
    a = Math.imul(a ^ text.charCodeAt(i), 0x01000193);
    b = Math.imul(b ^ text.charCodeAt(i), 0x01000193) ^ (a >>> 15);
  }
  return (a >>> 0).toString(16).padStart(8, '0') + (b >>> 0).toString(16).padStart(8, '0');
}

const cacheBase = (): string => process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
const cacheDir = (): string => path.join(cacheBase(), 'drover', 'code');

/** The cache folder, one level at a time: Node 20's recursive mkdirSync spins forever under /proc. */
function makeCacheDir(): void {
  for (const dir of [cacheBase(), path.join(cacheBase(), 'drover'), cacheDir()]) {
    try {
      mkdirSync(dir, { mode: 0o700 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }
}

/** The file's bytes if it is ours and only we can write it (it becomes code we run); else null. */
function readOwnFile(file: string): Buffer | undefined {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch {
    return undefined;
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile() || st.uid !== process.getuid?.() || (st.mode & 0o022) !== 0) return undefined;
    return readFileSync(fd);
  } catch {
    return undefined;
  } finally {
    closeSync(fd);
  }
}

function writeCache(file: string, script: vm.Script, bundleName: string): void {
  try {
    makeCacheDir();
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, script.createCachedData(), { mode: 0o600 });
    renameSync(tmp, file);
  } catch {
    // A cache we cannot write (a read-only home, a full disk) only means compiling next time.
    return;
  }
  dropStaleCaches(file, bundleName);
}

/** A cache of the same bundle name untouched this long is another build's: an upgrade left it. */
const STALE_MS = 7 * 24 * 3600 * 1000;

/**
 * Each build of a client gets a cache file of its own (~100–130 KB), and nothing else removes
 * them: every upgrade would leave two behind. Run only when a cache is written (the first start
 * of a new build), it removes those of the same bundle name not written for a week. A cache in
 * use by another install of drover that old is written afresh at that install's next start.
 */
function dropStaleCaches(kept: string, bundleName: string): void {
  const dir = path.dirname(kept);
  try {
    for (const name of readdirSync(dir)) {
      // `${bundleName}-${key}.bin`, as runBundle names them.
      if (!name.startsWith(`${bundleName}-`) || !/^[0-9a-f]{16}\.bin$/.test(name.slice(bundleName.length + 1))) continue;
      const file = path.join(dir, name);
      if (file === kept) continue;
      try {
        if (Date.now() - statSync(file).mtimeMs > STALE_MS) unlinkSync(file);
      } catch {
        // gone meanwhile, or not ours to remove: left as it is
      }
    }
  } catch {
    // an unreadable folder: nothing removed
  }
}
