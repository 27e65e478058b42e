#!/usr/bin/env node
// The `master` command as an ES module, for the paths that name dist/cli.js (systemd units,
// scripts): the same program as the `master` bin, dist/bin/master.cjs.
const require = process.getBuiltinModule('node:module').createRequire(import.meta.url);
require('./bin/master.cjs');
