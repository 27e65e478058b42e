#!/usr/bin/env node
/**
 * The `master` command. `master exec` starts once for every command a script runs, so it loads
 * only the small bundled client (dist/exec.cjs: the socket and the printing, no master, no yargs);
 * everything else (starting the master, --help) loads the whole program.
 *
 * The client's way in is CommonJS, required: bundle-loader as dist/bundle-loader.cjs (made by
 * scripts/bundle.mjs), and no `import` of a builtin here: each ESM import of a builtin (and the
 * loader's seven) goes through the ESM loader's translation (~1.5 ms a start, measured).
 */
import type * as BundleLoader from './bundle-loader.js';

type Loader = typeof BundleLoader;
const exec = process.argv[2] === 'exec' && !process.argv.slice(3).some((a) => a === '--help' || a === '-h');
if (exec) {
  const require = process.getBuiltinModule('node:module').createRequire(import.meta.url);
  (require('./bundle-loader.cjs') as Loader).runBundle(require.resolve('./exec.cjs'));
} else {
  await import('./master-cli.js');
}
