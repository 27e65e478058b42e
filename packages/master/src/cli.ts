#!/usr/bin/env node
/**
 * The `master` command. `master exec` starts once for every command a script runs, so it loads
 * only the small bundled client (dist/exec.js: the socket and the printing, no master, no yargs);
 * everything else (starting the master, --help) loads the whole program.
 */
const exec = process.argv[2] === 'exec' && !process.argv.slice(3).some((a) => a === '--help' || a === '-h');
// Specifiers in variables: the bundle is made after tsc, from exec-main.js.
const entry = exec ? './exec.js' : './master-cli.js';
await import(entry);
