import v8 from 'node:v8';
import vm from 'node:vm';

let collect: (() => void) | null | undefined;

/**
 * Runs a full garbage collection, soon, once a bulk transfer is over. File chunks arrive as
 * fresh 256 KiB buffers that outlive a scavenge and then wait for a full GC that an idle
 * agent may not run for a long time: after a 256 MiB copy that is ~80 MiB of dead buffers held
 * in RSS. A full GC of the agent's ~10 MiB heap costs a few ms.
 */
export function releaseMemorySoon(): void {
  if (collect === undefined) {
    try {
      v8.setFlagsFromString('--expose_gc');
      collect = vm.runInNewContext('gc') as () => void;
    } catch {
      collect = null;
    }
  }
  if (collect) setTimeout(collect, 50).unref();
}
