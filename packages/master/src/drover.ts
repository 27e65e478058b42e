#!/usr/bin/env node
// `drover`: the client, bundled as one CommonJS file and started from V8's code cache, through
// the CommonJS build of bundle-loader (see cli.ts: no ESM import of a builtin on the way in).
import type * as BundleLoader from './bundle-loader.js';

type Loader = typeof BundleLoader;
const require = process.getBuiltinModule('node:module').createRequire(import.meta.url);
(require('./bundle-loader.cjs') as Loader).runBundle(require.resolve('./drover.cjs'));
