#!/usr/bin/env node
/**
 * The `master` command. `master exec` starts once for every command a script runs, so it loads
 * only the small bundled client (dist/exec.cjs: the socket and the printing, no master, no
 * yargs) from V8's code cache; everything else (starting the master, --help) loads the whole
 * program, bundled into one file (dist/master.mjs). CommonJS, like drover's entry: no ESM
 * loader on the client's way in (dist/cli.js, the ES module entry that systemd units and
 * scripts name, comes here too).
 */
const exec = process.argv[2] === 'exec' && !process.argv.slice(3).some((a) => a === '--help' || a === '-h');
if (exec) (require('../bundle-loader.cjs') as { runBundle(file: string): void }).runBundle(require.resolve('../exec.cjs'));
// A specifier tsc does not resolve: the bundle is made after it runs (scripts/bundle.mjs).
else void import(['..', 'master.mjs'].join('/'));
