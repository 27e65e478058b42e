#!/usr/bin/env node
// `drover` as an ES module, for those who run dist/drover.js: the same client as the `drover`
// bin, dist/bin/drover.cjs (CommonJS, which starts a few ms sooner).
const require = process.getBuiltinModule('node:module').createRequire(import.meta.url);
require('./bin/drover.cjs');
