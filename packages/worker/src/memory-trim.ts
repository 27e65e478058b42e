import { createHash } from 'node:crypto';
import { existsSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterMemoryReleased, loadMallocAddon, useMalloc, type MallocAddon } from '@drover/protocol';
import type { Logger } from './logger.js';

/**
 * The malloc addon (native/drover-trim.c: malloc_trim and mallopt) that scripts/bundle.mjs puts
 * inside worker.mjs, with the architecture it was built for; null where no C compiler built it,
 * and not defined at all outside the bundle (the modules tsc writes).
 */
declare const __DROVER_TRIM_ADDON__: { arch: string; base64: string } | null;

const embedded = (): { arch: string; base64: string } | null => (typeof __DROVER_TRIM_ADDON__ === 'undefined' ? null : __DROVER_TRIM_ADDON__);

const cannot = (logger: Logger, err: unknown): null => {
  logger.info({ err: (err as Error).message }, "the agent's malloc addon cannot be loaded here: freed heap pages stay with it, and copies fault more");
  return null;
};

/**
 * Puts the addon in the state dir, where a shared object can be loaded from (named by its hash;
 * written only when that file is not there yet, so once per version: earlier versions' are
 * removed). Done at the agent's start, before any transfer could fill the disk it needs room on.
 * The file's path, or null where it cannot run: not built, another architecture.
 */
export function placeAddon(stateDir: string, logger: Logger, addon = embedded()): string | null {
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
function loadPlaced(file: string, logger: Logger): MallocAddon | null {
  try {
    return loadMallocAddon(file);
  } catch (err) {
    return cannot(logger, err);
  }
}

/** placeAddon, then loads it: the addon, or null where it cannot run. */
export function loadMemoryAddon(stateDir: string, logger: Logger, addon = embedded()): MallocAddon | null {
  const file = placeAddon(stateDir, logger, addon);
  return file === null ? null : loadPlaced(file, logger);
}

/**
 * At the agent's start: sets glibc's thresholds so that a copy's chunk buffers are reused from
 * the heap rather than faulted in anew (tune(), drover-trim.c: ~20,000 page faults per 256 MiB
 * copy before, 40% of the agent's CPU on a VM). After big transfers settle (releaseMemorySoon's
 * collection), gives glibc's freed heap pages back to the system: what the thresholds keep, and
 * the free pages a copy leaves in the middle of the heap, which glibc never gives back by itself.
 * One malloc_trim(0): well under a millisecond for the agent's heap.
 */
export function tuneMemory(stateDir: string, logger: Logger): void {
  const addon = loadMemoryAddon(stateDir, logger);
  if (!addon) return;
  if (useMalloc(addon)) logger.debug('malloc tuned for transfers: 1 MiB chunks are reused from the heap');
  else logger.info("glibc did not take the agent's malloc settings: a copy costs more page faults");
  afterMemoryReleased(() => {
    const before = process.memoryUsage.rss();
    const gave = addon.trim();
    logger.debug({ gaveBackBytes: Math.max(0, before - process.memoryUsage.rss()), released: gave }, 'gave freed heap pages back to the system');
  });
}
