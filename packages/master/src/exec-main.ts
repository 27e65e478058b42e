import os from 'node:os';
import path from 'node:path';
import { execCommands, flushStdio, stdinLines } from './exec-client.js';

/**
 * `master exec [COMMANDS] [--state-dir D] [--json]`, parsed by hand: this entry is bundled on
 * its own (dist/exec.js) so a script's every command starts in the time of `node` and a socket,
 * without loading the master or yargs. The same flags and messages as the full program.
 */
function fail(message: string, code = 2): never {
  process.stderr.write(`master: ${message}\n`);
  process.exit(code);
}

const args = process.argv.slice(3);
let stateDir = process.env.DROVER_STATE_DIR ?? path.join(os.homedir(), '.drover', 'master');
let json = false;
const positionals: string[] = [];
for (let i = 0; i < args.length; i++) {
  const a = args[i]!;
  if (a === '--json') json = true;
  else if (a === '--no-json') json = false;
  else if (a === '--state-dir' || a === '--state-dir=' || a.startsWith('--state-dir=')) {
    const value = a.startsWith('--state-dir=') ? a.slice('--state-dir='.length) : args[++i];
    if (!value) fail('Not enough arguments following: state-dir');
    stateDir = value;
  } else if (a === '--') positionals.push(...args.splice(i + 1));
  else if (a.startsWith('-') && a !== '-') fail(`Unknown argument: ${a.replace(/^-+/, '').split('=')[0]}`);
  else positionals.push(a);
}
if (positionals.length > 1) fail(`Unknown arguments: ${positionals.slice(1).join(', ')} (quote the commands: master exec "workers; ps all")`);

if (positionals[0] === undefined && process.stdin.isTTY) fail('exec needs commands: master exec "workers; ps all", or lines on stdin');
// No top-level await: the client is bundled as CommonJS, to start from V8's code cache (bundle-loader.ts).
(positionals[0] !== undefined ? Promise.resolve([positionals[0]]) : stdinLines())
  .then((lines) => execCommands(path.resolve(stateDir), lines, json))
  .then(
    async (code) => {
      await flushStdio();
      process.exit(code);
    },
    (err: unknown) => fail(err instanceof Error ? err.message : String(err), 1),
  );
