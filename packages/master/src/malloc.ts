import { existsSync } from 'node:fs';
import { loadMallocAddon, useMalloc } from '@drover/protocol';
import type { Logger } from './logger.js';
import { mallocAddonPath } from './worker-bundle.js';

/**
 * Tunes the master's malloc with the agent's addon, built beside worker.mjs (drover-trim.c): the
 * master receives files in the same 1 MiB frames as the agent (a copy streamed from drover
 * elsewhere, logs on their way to a client). Measured on streamed 256 MiB copies: the master's
 * page faults ~26,700 -> ~600 a copy (~3,500 with the trim that follows each), its CPU 895 ->
 * 345 ms. What the settings keep is given back a second after the frames stop (useMalloc).
 * Where the build made no addon, or it cannot load here (not glibc, another architecture), the
 * master says so in one line and goes without.
 */
export function tuneMalloc(logger: Logger, file = mallocAddonPath()): void {
  if (!existsSync(file)) {
    // The build said so already; the agent, likewise without one, says nothing either.
    logger.debug({ file }, 'malloc left as glibc sets it: no addon beside the worker bundle (npm run build makes one where a C compiler is)');
    return;
  }
  try {
    if (useMalloc(loadMallocAddon(file))) logger.debug({ file }, 'malloc tuned for transfers: 1 MiB chunks are reused from the heap');
    else logger.info("glibc did not take the master's malloc settings: a streamed copy costs more page faults");
  } catch (err) {
    logger.info({ file, err: (err as Error).message }, 'malloc left as glibc sets it: the addon cannot be loaded here');
  }
}

let clientTuned = false;

/**
 * A client's malloc, tuned the same way once it receives file data (logs --out, a file written
 * where the client runs): 256 MiB of logs took 13,000-21,000 page faults and 1.11-1.25 s,
 * tuned ~6,000 and 0.91-0.97 s. Only then: a command that moves no file does not load it. Silent
 * where it cannot load: the client's output is the command's.
 */
export function tuneClientMalloc(): void {
  if (clientTuned) return;
  clientTuned = true;
  try {
    useMalloc(loadMallocAddon(mallocAddonPath()));
  } catch {
    // Not built, or not loadable here: the transfer goes on as glibc sets malloc.
  }
}
