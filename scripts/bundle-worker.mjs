// Bundles the worker agent into one self-contained file, dist/worker.mjs: what `worker` runs,
// what `master --dev` starts, and what the master serves to VMs (nothing to npm install there).
// One file also keeps the agent small: loading ~300 separate ESM modules costs ~15 MiB of RSS.
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync, chmodSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const outfile = path.join(root, 'packages/worker/dist/worker.mjs');
await build({
  entryPoints: [path.join(root, 'packages/worker/dist/cli.js')],
  outfile,
  bundle: true,
  minify: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  legalComments: 'none',
  logLevel: 'warning',
  banner: { js: "#!/usr/bin/env node\nimport { createRequire as __droverRequire } from 'node:module'; const require = __droverRequire(import.meta.url);" },
});
// esbuild keeps the entry's own shebang too; one is enough.
const code = readFileSync(outfile, 'utf8').replace(/^(#!.*\n)([\s\S]*?)#!\/usr\/bin\/env node\n/, '$1$2');
writeFileSync(outfile, code);
chmodSync(outfile, 0o755);
writeFileSync(`${outfile}.sha256`, `${createHash('sha256').update(code).digest('hex')}  worker.mjs\n`);
