import { existsSync } from 'node:fs';
import path from 'node:path';
import { loadMallocAddon, useMalloc } from '@drover/protocol';
import { workerBundlePath } from './installer.js';
import type { Logger } from './logger.js';

/**
 * Tunes the master's malloc with the agent's addon, built beside worker.mjs (drover-trim.c): the
 * master receives files in the same 1 MiB frames as the agent (a copy streamed from drover
 * elsewhere, logs on their way to a client). Measured on a streamed 256 MiB copy: the master's
 * page faults ~26,700 -> ~600, its CPU 895 -> 345 ms. What that keeps is given back a second
 * after the frames stop (useMalloc). Where the build made no addon, or it cannot load here (not
 * glibc, another architecture), the master says so in one line and goes without.
 */
export function tuneMalloc(logger: Logger, file = path.join(path.dirname(workerBundlePath()), 'drover-trim.node')): void {
  if (!existsSync(file)) {
    logger.info({ file }, 'malloc left as glibc sets it: no addon beside the worker bundle (npm run build makes one where a C compiler is)');
    return;
  }
  try {
    if (useMalloc(loadMallocAddon(file))) logger.debug({ file }, 'malloc tuned for transfers: 1 MiB chunks are reused from the heap');
    else logger.info("glibc did not take the master's malloc settings: a streamed copy costs more page faults");
  } catch (err) {
    logger.info({ file, err: (err as Error).message }, 'malloc left as glibc sets it: the addon cannot be loaded here');
  }
}
