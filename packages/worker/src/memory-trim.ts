import { createHash } from 'node:crypto';
import { existsSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { afterMemoryReleased } from '@drover/protocol';
import type { Logger } from './logger.js';

/**
 * The malloc_trim addon (native/drover-trim.c) that scripts/bundle.mjs puts inside worker.mjs,
 * with the architecture it was built for; null where no C compiler built it, and not defined at
 * all outside the bundle (the modules tsc writes).
 */
declare const __DROVER_TRIM_ADDON__: { arch: string; base64: string } | null;

const embedded = (): { arch: string; base64: string } | null => (typeof __DROVER_TRIM_ADDON__ === 'undefined' ? null : __DROVER_TRIM_ADDON__);

const cannot = (logger: Logger, err: unknown): null => {
  logger.info({ err: (err as Error).message }, "freed heap pages stay with the agent: glibc's malloc_trim cannot be loaded here");
  return null;
};

/**
 * Puts the addon in the state dir, where a shared object can be loaded from (named by its hash;
 * written only when that file is not there yet, so once per version: earlier versions' are
 * removed). Done at the agent's start: written at its first trim, it would take the room of a
 * disk that the transfers before had filled. The file's path, or null where it cannot run: not
 * built, another architecture.
 */
export function placeTrim(stateDir: string, logger: Logger, addon = embedded()): string | null {
  if (!addon || addon.arch !== process.arch || process.platform !== 'linux') return null;
  const bytes = Buffer.from(addon.base64, 'base64');
  const file = path.join(stateDir, `drover-trim-${createHash('sha256').update(bytes).digest('hex').slice(0, 12)}.node`);
  if (existsSync(file)) return file;
  const tmp = `${file}.tmp-${process.pid}`;
  try {
    writeFileSync(tmp, bytes, { mode: 0o600 });
    renameSync(tmp, file);
    // Those of earlier versions go (an upgrade writes its own), and any a crash left half written.
    for (const n of readdirSync(stateDir))
      if (/^drover-trim-[0-9a-f]{12}\.node(\.tmp-\d+)?$/.test(n) && n !== path.basename(file)) rmSync(path.join(stateDir, n), { force: true });
    return file;
  } catch (err) {
    rmSync(tmp, { force: true });
    return cannot(logger, err);
  }
}

/** Loads the addon placed at `file`; null where it cannot run (a libc that is not glibc, a state dir mounted noexec). */
function loadPlaced(file: string, logger: Logger): (() => boolean) | null {
  try {
    const loaded = createRequire(import.meta.url)(file) as { trim?: () => boolean };
    if (typeof loaded.trim !== 'function') throw new Error('the addon has no trim()');
    return loaded.trim;
  } catch (err) {
    return cannot(logger, err);
  }
}

/** placeTrim, then loads it: the addon's trim(), or null where it cannot run. */
export function loadTrim(stateDir: string, logger: Logger, addon = embedded()): (() => boolean) | null {
  const file = placeTrim(stateDir, logger, addon);
  return file === null ? null : loadPlaced(file, logger);
}

/**
 * After big transfers settle (releaseMemorySoon's collection), gives glibc's freed heap pages
 * back to the system: a copy's chunk buffers leave ~5 MB of free pages in the middle of the heap
 * that glibc keeps. One malloc_trim(0): well under a millisecond for the agent's heap. The addon
 * is placed now and loaded at the first trim.
 */
export function trimAfterTransfers(stateDir: string, logger: Logger): void {
  const file = placeTrim(stateDir, logger);
  if (file === null) return;
  let trim: (() => boolean) | null | undefined;
  afterMemoryReleased(() => {
    trim ??= loadPlaced(file, logger);
    if (!trim) return;
    const before = process.memoryUsage.rss();
    const gave = trim();
    logger.debug({ gaveBackBytes: Math.max(0, before - process.memoryUsage.rss()), released: gave }, 'gave freed heap pages back to the system');
  });
}
