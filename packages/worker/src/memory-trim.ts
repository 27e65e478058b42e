import { createHash } from 'node:crypto';
import { readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
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

/**
 * Loads the addon from the state dir (written there, named by its hash: a shared object is
 * loaded from a file; an earlier version's is removed). Null where it cannot run: not built, another
 * architecture, a libc that is not glibc, a state dir mounted noexec.
 */
export function loadTrim(stateDir: string, logger: Logger, addon = embedded()): (() => boolean) | null {
  if (!addon || addon.arch !== process.arch || process.platform !== 'linux') return null;
  const bytes = Buffer.from(addon.base64, 'base64');
  const file = path.join(stateDir, `drover-trim-${createHash('sha256').update(bytes).digest('hex').slice(0, 12)}.node`);
  const tmp = `${file}.tmp-${process.pid}`;
  try {
    writeFileSync(tmp, bytes, { mode: 0o600 });
    renameSync(tmp, file);
    // Those of earlier versions go (an upgrade writes its own), and any a crash left half written.
    for (const n of readdirSync(stateDir))
      if (/^drover-trim-[0-9a-f]{12}\.node(\.tmp-\d+)?$/.test(n) && n !== path.basename(file)) rmSync(path.join(stateDir, n), { force: true });
    const loaded = createRequire(import.meta.url)(file) as { trim?: () => boolean };
    if (typeof loaded.trim !== 'function') throw new Error('the addon has no trim()');
    return loaded.trim;
  } catch (err) {
    rmSync(tmp, { force: true });
    logger.info({ err: (err as Error).message }, "freed heap pages stay with the agent: glibc's malloc_trim cannot be loaded here");
    return null;
  }
}

/**
 * After big transfers settle (releaseMemorySoon's collection), gives glibc's freed heap pages
 * back to the system: a copy's chunk buffers leave ~5 MB of free pages in the middle of the heap
 * that glibc keeps. One malloc_trim(0): well under a millisecond for the agent's heap.
 */
export function trimAfterTransfers(stateDir: string, logger: Logger): void {
  let trim: (() => boolean) | null | undefined;
  afterMemoryReleased(() => {
    trim ??= loadTrim(stateDir, logger);
    if (!trim) return;
    const before = process.memoryUsage.rss();
    const gave = trim();
    logger.debug({ gaveBackBytes: Math.max(0, before - process.memoryUsage.rss()), released: gave }, 'gave freed heap pages back to the system');
  });
}
