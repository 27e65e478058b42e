import v8 from 'node:v8';
import vm from 'node:vm';

type Collect = (options?: { type: 'minor' | 'major' }) => void;

let collect: Collect | null | undefined;

/** V8's `gc`, exposed at run time (the agent starts as a plain `node worker.mjs`); null where it cannot be. */
function collector(): Collect | null {
  if (collect === undefined) {
    try {
      v8.setFlagsFromString('--expose_gc');
      collect = vm.runInNewContext('gc') as Collect;
    } catch {
      collect = null;
    }
  }
  return collect;
}

/**
 * Runs a full garbage collection, soon, once a bulk transfer is over: what is left of its
 * buffers would otherwise wait for a full GC that an idle agent may not run for a long time.
 * A full GC of the agent's ~10 MiB heap costs a few ms.
 */
export function releaseMemorySoon(): void {
  const gc = collector();
  if (gc) setTimeout(gc, 50).unref();
}

/**
 * A scavenge, now: every 64 KiB the socket reads and every frame ws assembles from them is a
 * young object holding malloc'd memory that V8 frees only when it collects it. Left to V8, a
 * 256 MiB upload piles up ~60 MiB of them in glibc's heap between collections, and glibc keeps
 * that heap's pages after they are freed (it only returns the top of it): the agent stayed at
 * ~130 MiB after a copy. Collected every few MiB they reuse the same few MiB. A scavenge of the
 * agent's young generation, nearly all garbage here, costs ~0.1 ms.
 */
export function collectYoung(): void {
  collector()?.({ type: 'minor' });
}
