#!/usr/bin/env node
/**
 * The `master` command. `master exec` starts once for every command a script runs, so it loads
 * only the small bundled client (dist/exec.cjs: the socket and the printing, no master, no yargs);
 * everything else (starting the master, --help) loads the whole program.
 */
import { fileURLToPath } from 'node:url';

const exec = process.argv[2] === 'exec' && !process.argv.slice(3).some((a) => a === '--help' || a === '-h');
if (exec) {
  const { runBundle } = await import('./bundle-loader.js');
  // Made after tsc, from exec-main.js (scripts/bundle.mjs).
  runBundle(fileURLToPath(new URL('./exec.cjs', import.meta.url)));
} else {
  await import('./master-cli.js');
}
