#!/usr/bin/env node
// `drover`: the client, bundled as one CommonJS file and started from V8's code cache.
import { fileURLToPath } from 'node:url';
import { runBundle } from './bundle-loader.js';

runBundle(fileURLToPath(new URL('./drover.cjs', import.meta.url)));
