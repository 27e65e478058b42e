#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { AGENT_VERSION } from '@drover/protocol';
import { execCommands, flushStdio } from './exec-client.js';
import { quoteWord } from './tokenize.js';

/**
 * `drover COMMAND…`: the client. Runs any master> command against the master on this machine
 * through its control socket (`master exec` is the same thing), and prints what it answers.
 */
function fail(message: string): never {
  process.stderr.write(`drover: ${message}\n`);
  process.exit(2);
}

const argv = await yargs(hideBin(process.argv))
  .scriptName('drover')
  .usage(
    [
      '$0 [--state-dir DIR] [--json] COMMAND [ARGS...]',
      '',
      'Runs a master> command against the master on this machine (its control socket in the',
      'state dir) and prints the answer. Several commands: "workers; ps". Lines on stdin: one',
      'command each. `drover help` lists the commands.',
    ].join('\n'),
  )
  .option('state-dir', {
    type: 'string',
    default: process.env.DROVER_STATE_DIR ?? path.join(os.homedir(), '.drover', 'master'),
    defaultDescription: '$DROVER_STATE_DIR or ~/.drover/master',
    describe: "The master's state dir",
  })
  .option('json', { type: 'boolean', default: false, describe: 'Print every result as JSON' })
  // Everything from the command on is the command's: `drover ps w1 --json` passes --json to ps.
  .parserConfiguration({ 'halt-at-non-option': true, 'unknown-options-as-args': true })
  .version(AGENT_VERSION)
  .help()
  .fail((msg, err) => fail(msg || err?.message || 'bad arguments'))
  .parseAsync();

const words = argv._.map(String);
let lines: string[];
if (words.length > 0) lines = [words.length === 1 ? words[0]! : words.map(quoteWord).join(' ')];
else if (!process.stdin.isTTY)
  lines = readFileSync(0, 'utf8')
    .split('\n')
    .filter((l) => l.trim() && !l.trim().startsWith('#'));
else fail('no command: drover COMMAND (drover help lists them), or lines on stdin');
const code = await execCommands(path.resolve(argv['state-dir']), lines, argv.json, 'drover');
await flushStdio();
process.exit(code);
