#!/usr/bin/env node
/**
 * `drover`: the client, bundled as one CommonJS file (dist/drover.cjs) and started from V8's code
 * cache by bundle-loader. This way in is CommonJS too: an ES module entry (dist/drover.js, kept
 * for those who run that path) sets up Node's ESM loader first, ~4-10 ms of every command.
 */
(require('../bundle-loader.cjs') as { runBundle(file: string): void }).runBundle(require.resolve('../drover.cjs'));
