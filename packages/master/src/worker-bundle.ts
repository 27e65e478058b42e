import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** packages/master/dist, where this module and the bundles made of it run from. */
const here = path.dirname(fileURLToPath(import.meta.url));

/** The worker bundle the master serves, with the native files the build put beside it. */
export function workerBundlePath(): string {
  return process.env.DROVER_WORKER_BUNDLE ?? path.resolve(here, '../../worker/dist/worker.mjs');
}

/** The malloc addon (packages/worker/native/drover-trim.c) the build put beside worker.mjs. */
export function mallocAddonPath(): string {
  return path.join(path.dirname(workerBundlePath()), 'drover-trim.node');
}
