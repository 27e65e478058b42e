// Bundles the programs that start often or travel into one self-contained file each:
// - the master, dist/master.mjs: what `master` runs (but `master exec`, below).
// - the worker agent, dist/worker.mjs: what `worker` runs, what `master --dev` starts, and what
//   the master serves to VMs (nothing to npm install there). One file also keeps the agent
//   small: loading ~300 separate ESM modules costs ~15 MiB of RSS.
// - the drover client, dist/drover.cjs (from drover-cli.js), and `master exec`'s, dist/exec.cjs (from
//   exec-main.js): a client is started for every command a script runs, and one file starts about
//   twice as fast as the module graph it comes from; CommonJS, so that it can start from V8's
//   code cache (dist/drover.js and cli.js load them through bundle-loader.cjs).
// - bundle-loader itself as CommonJS, dist/bundle-loader.cjs: the clients' entries require it
//   rather than import it (the ESM loader's translation of its builtins cost ~1.5 ms a start).
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { copyFileSync, readFileSync, renameSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { build } from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

// The daemons' bundles answer a lone `--version` before anything else in them runs: yargs and
// the whole program took ~230 ms (worker) and ~250 (master) to print one line; now it costs the
// file's parse (~55 and ~75 ms past node's own start). The same version as yargs prints.
const { AGENT_VERSION } = await import(pathToFileURL(path.join(root, 'packages/protocol/dist/version.js')).href);
const VERSION_FIRST = `if (process.argv.length === 3 && process.argv[2] === '--version') { process.stdout.write(${JSON.stringify(`${AGENT_VERSION}\n`)}); process.exit(0); }\n`;

async function bundle(entry, outfile, format = 'esm', { wrap = false, define = {} } = {}) {
  await build({
    define,
    entryPoints: [path.join(root, entry)],
    outfile: path.join(root, outfile),
    bundle: true,
    minify: true,
    platform: 'node',
    format,
    target: 'node20',
    legalComments: 'none',
    logLevel: 'warning',
    ...(format === 'esm'
      ? {
          banner: {
            js: `#!/usr/bin/env node\nimport { createRequire as __droverRequire } from 'node:module'; const require = __droverRequire(import.meta.url);\n${VERSION_FIRST}`,
          },
        }
      : // What the bundled ESM packages (yargs) ask of import.meta.url: the bundle's own file's
        // URL, which bundle-loader.ts passes in as __droverMetaUrl.
        { define: { ...define, 'import.meta.url': '__droverMetaUrl' } }),
  });
  // esbuild keeps the entry's own shebang: one is enough for a program, and none may be in a
  // CommonJS bundle (it runs inside a function: see WRAPPER_HEAD).
  let code = readFileSync(path.join(root, outfile), 'utf8');
  // bundle-loader.ts runs CommonJS bundles from V8's code cache, where import() has no loader.
  if (format === 'cjs' && /\bimport\(/.test(code)) throw new Error(`${outfile} calls import(): use process.getBuiltinModule or a static import`);
  // A client loads at its start only what every command needs: these builtins each cost ~1.5-4 ms
  // (node:fs/promises brings readline and the file watchers), so only the commands that use
  // them load them, with process.getBuiltinModule where they are used (see lazy-fs.ts).
  // With or without node: (a package brought in names them bare: ws needs http, https, tls, crypto).
  const heavy = format === 'cjs' && code.match(/require\("(?:node:)?(fs\/promises|crypto|readline|http|https|tls|child_process|worker_threads)"\)/);
  if (heavy) throw new Error(`${outfile} loads ${heavy[1]} at its start: load it where it is used (process.getBuiltinModule)`);
  code = format === 'esm' ? code.replace(/^(#!.*\n)([\s\S]*?)#!\/usr\/bin\/env node\n/, '$1$2') : code.replace(/^#!.*\n/, '');
  // A client is written inside the function bundle-loader runs it in, so that it compiles the
  // file's text as it is read, without a copy to wrap it.
  if (wrap) code = `${loader.WRAPPER_HEAD}${code}${loader.WRAPPER_TAIL}`;
  writeFileSync(path.join(root, outfile), code);
  if (format === 'esm') chmodSync(path.join(root, outfile), 0o755);
  return code;
}

/**
 * Compiles a C file of the worker's into `out` with the first compiler that can, trying each of
 * `links` in turn (static first, where wanted); the built file's bytes, or null (no compiler, or
 * no libc.a: the build says what the agent goes without, and goes on).
 */
function compileC(source, out, flags, links, without) {
  const compilers = process.env.CC ? [process.env.CC] : ['cc', 'gcc'];
  for (const cc of compilers) {
    for (const link of links) {
      const r = spawnSync(cc, [...link, ...flags, '-o', `${out}.tmp`, path.join(root, source)], { encoding: 'utf8' });
      if (r.error) break; // not this compiler
      if (r.status !== 0) continue;
      if (r.stderr.trim()) process.stderr.write(r.stderr);
      renameSync(`${out}.tmp`, out);
      return readFileSync(out);
    }
  }
  rmSync(`${out}.tmp`, { force: true });
  rmSync(out, { force: true });
  process.stderr.write(`bundle: no C compiler (${compilers.join(', ')}) could build ${source}; ${without}\n`);
  return null;
}

// The agent's malloc_trim addon (packages/worker/native/drover-trim.c), carried inside worker.mjs
// with the architecture it was built for: memory-trim.ts writes it out and loads it where it can.
const trimAddon = compileC(
  'packages/worker/native/drover-trim.c',
  path.join(root, 'packages/worker/dist/drover-trim.node'),
  ['-shared', '-fPIC', '-O2', '-Wall', '-Wextra', '-s'],
  [[]],
  'the agent keeps the heap pages glibc does not give back itself',
);
const worker = await bundle('packages/worker/dist/cli.js', 'packages/worker/dist/worker.mjs', 'esm', {
  define: {
    __DROVER_TRIM_ADDON__: JSON.stringify(trimAddon ? { arch: process.arch, base64: trimAddon.toString('base64') } : null),
  },
});
writeFileSync(path.join(root, 'packages/worker/dist/worker.mjs.sha256'), `${createHash('sha256').update(worker).digest('hex')}  worker.mjs\n`);
// The worker's native spawn helper, dist/drover-spawn (packages/worker/native/drover-spawn.c):
// posix_spawn, where a fork of the Node helper copies its page tables (~0.3 ms a spawn against
// ~4 here). Linked statically, so that it runs on a VM of any glibc of this architecture; the
// master serves it beside worker.mjs. Without a C compiler (or libc.a) the build says so and goes
// on: the agent then launches through its Node helper, as it does wherever this file cannot run.
{
  const out = path.join(root, 'packages/worker/dist/drover-spawn');
  const made = compileC(
    'packages/worker/native/drover-spawn.c',
    out,
    ['-O2', '-Wall', '-Wextra', '-s'],
    [['-static'], []],
    'workers launch through the Node helper',
  );
  if (made) writeFileSync(`${out}.sha256`, `${createHash('sha256').update(made).digest('hex')}  drover-spawn  ${process.arch}\n`);
  else rmSync(`${out}.sha256`, { force: true });
}
// The master daemon, dist/master.mjs, from dist/master-cli.js: its ~250 modules cost ~0.35 s of
// CPU and ~20 MiB of RSS to load one by one at every start; one file, about half of each. It sits
// beside the modules it is made of, so what they find from import.meta.url (the dashboard, the
// worker bundle, deploy/) is where it was.
await bundle('packages/master/dist/master-cli.js', 'packages/master/dist/master.mjs');
// The clients as CommonJS: dist/drover.js and `master exec` run them from V8's code cache (bundle-loader.ts).
const loader = await import(pathToFileURL(path.join(root, 'packages/master/dist/bundle-loader.js')).href);
await bundle('packages/master/dist/drover-cli.js', 'packages/master/dist/drover.cjs', 'cjs', { wrap: true });
// master exec: started for every command a script runs; the master's own CLI loads it only for exec.
await bundle('packages/master/dist/exec-main.js', 'packages/master/dist/exec.cjs', 'cjs', { wrap: true });
await bundle('packages/master/dist/bundle-loader.js', 'packages/master/dist/bundle-loader.cjs', 'cjs');

// The bins a user runs, dist/bin/drover.cjs and master.cjs, start in /bin/sh for one line: node 20
// reads and parses the file NODE_EXTRA_CA_CERTS names at every start, before any JavaScript runs
// (~40 ms for a system's CA bundle, which some machines set for every program), and a client on
// the control socket never opens TLS. The line hands the variable on as DROVER_NODE_EXTRA_CA_CERTS,
// which client-transport.ts loads where a wss:// master is trusted by its certificate (drover
// only: `master exec` has nothing but its control socket; the master itself keeps the variable),
// and execs node on this same file, for which the line is a string and a comment. `node FILE`
// still runs the bins as before.
const moveCaAside =
  'if [ -n "${NODE_EXTRA_CA_CERTS-}" ]; then DROVER_NODE_EXTRA_CA_CERTS=$NODE_EXTRA_CA_CERTS; export DROVER_NODE_EXTRA_CA_CERTS; unset NODE_EXTRA_CA_CERTS; fi';
// A lone --version is answered by the line itself, node not started (the programs answer it too,
// when run as `node FILE`).
const versionAlone = `if [ "$#" = 1 ] && [ "$1" = --version ]; then echo ${AGENT_VERSION}; exit 0; fi`;
const SH_WAY_IN = {
  'packages/master/dist/bin/drover.cjs': `${versionAlone}; ${moveCaAside}`,
  'packages/master/dist/bin/master.cjs': `${versionAlone}; case "\${1-}" in exec) ${moveCaAside};; esac`,
};
for (const [file, shell] of Object.entries(SH_WAY_IN)) {
  const line = `#!/bin/sh\n':' //; ${shell}; exec node "$0" "$@"\n`;
  const text = readFileSync(path.join(root, file), 'utf8');
  // tsc writes the file again only when its source changes (then it starts with node's
  // shebang); otherwise it still has the sh line of an earlier build, this one or another.
  const body = text.startsWith('#!/usr/bin/env node\n')
    ? text.slice(text.indexOf('\n') + 1)
    : text.startsWith("#!/bin/sh\n':' //;")
      ? text.split('\n').slice(2).join('\n')
      : null;
  if (body === null) throw new Error(`${file} starts with neither node's shebang nor an sh line`);
  if (line + body !== text) writeFileSync(path.join(root, file), line + body);
}

// The web dashboard, dist/dashboard: one script and one stylesheet (preact + htm), served by the master at /.
await build({
  entryPoints: { app: path.join(root, 'packages/master/dashboard/src/main.ts') },
  outdir: path.join(root, 'packages/master/dist/dashboard'),
  bundle: true,
  minify: true,
  platform: 'browser',
  format: 'esm',
  target: ['chrome110', 'firefox110', 'safari16'],
  legalComments: 'none',
  logLevel: 'warning',
});
copyFileSync(path.join(root, 'packages/master/dashboard/index.html'), path.join(root, 'packages/master/dist/dashboard/index.html'));
