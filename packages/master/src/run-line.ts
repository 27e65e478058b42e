import { parseArgs } from 'node:util';
import { DroverError, ErrorCode, toDroverError } from '@drover/protocol';
import type { Command, CommandContext, ParsedArgs } from './commands/types.js';
import { splitCommands } from './tokenize.js';

export interface LineResult {
  ok: boolean;
  /** What to print: human text or JSON, per --json. */
  output: string;
  /** The shell should end. */
  exit: boolean;
  /** Error lines for stderr, beside JSON output. */
  stderr?: string;
  /** The command failed as a whole: its output is the error (stderr, for human output). */
  thrown?: boolean;
}

/** Runs one line (possibly several `;`-separated commands) and returns what to print; no console I/O. */
export async function runLine(line: string, ctx: CommandContext, opts: { json?: boolean } = {}): Promise<LineResult[]> {
  let commands: string[][];
  try {
    commands = splitCommands(line);
  } catch (err) {
    return [errorResult(toDroverError(err), opts.json ?? line.includes('--json'))];
  }
  const results: LineResult[] = [];
  for (const words of commands) {
    if (ctx.signal.aborted) break;
    const result = await runWords(words, ctx, opts.json ?? false);
    results.push(result);
    if (result.exit) break;
  }
  return results;
}

async function runWords(words: string[], ctx: CommandContext, forceJson: boolean): Promise<LineResult> {
  const [name, ...argv] = words as [string, ...string[]];
  const dash = argv.indexOf('--');
  const head = dash >= 0 ? argv.slice(0, dash) : argv;
  const json = forceJson || head.includes('--json');
  const command = ctx.commands.find((c) => c.name === name);
  try {
    if (!command) {
      const near = ctx.commands.filter((c) => c.name.startsWith(name.slice(0, 2))).map((c) => c.name);
      throw new DroverError(
        ErrorCode.UNKNOWN_COMMAND,
        `unknown command "${name}"${near.length ? ` (did you mean ${near.join(' or ')}?)` : ''}; type help for the list`,
      );
    }
    const args = parseCommandArgs(command, argv);
    const data = await command.run(args, { ...ctx, json });
    const errors = command.errors?.(data) ?? [];
    const failed = (command.failed?.(data) ?? false) || errors.length > 0;
    if (!json) return { ok: !failed, output: command.format(data, args), exit: name === 'exit' };
    const output = JSON.stringify(command.toJson ? command.toJson(data) : data);
    return { ok: !failed, output, exit: name === 'exit', ...(errors.length ? { stderr: errors.join('\n') } : {}) };
  } catch (err) {
    const e = ctx.signal.aborted ? new DroverError(ErrorCode.CANCELLED, 'cancelled') : toDroverError(err);
    return errorResult(e, json);
  }
}

function errorResult(e: DroverError, json: boolean): LineResult {
  return { ok: false, output: json ? JSON.stringify({ error: e.toJSON() }) : `error: ${e.message}`, exit: false, thrown: true };
}

/** Parses a command's words strictly; errors name the command and show its usage. */
export function parseCommandArgs(command: Command, argv: string[]): ParsedArgs {
  const dash = argv.indexOf('--');
  const head = dash >= 0 ? argv.slice(0, dash) : argv;
  const rest = dash >= 0 ? argv.slice(dash + 1) : [];
  if (rest.length && !command.takesRest) throw badArgs(command, 'takes no arguments after --');
  let parsed;
  try {
    parsed = parseArgs({
      args: head,
      options: { json: { type: 'boolean' }, ...command.options },
      allowPositionals: true,
      strict: true,
    });
  } catch (err) {
    const message = err instanceof Error ? err.message.split('\n')[0]!.replace(/\. To specify a positional.*$/, '') : String(err);
    throw badArgs(command, message.replace(/^Unknown option/, 'unknown option').replace(/^Option/, 'option'));
  }
  const positionals = parsed.positionals;
  if (positionals.length < (command.minArgs ?? 0)) throw badArgs(command, 'missing arguments');
  if (command.maxArgs !== undefined && positionals.length > command.maxArgs) {
    throw badArgs(command, `unexpected argument "${positionals[command.maxArgs]}"`);
  }
  return { positionals, values: parsed.values, rest };
}

export function badArgs(command: Command, why: string): DroverError {
  return new DroverError(ErrorCode.BAD_ARGUMENTS, `${command.name}: ${why} (usage: ${command.usage})`);
}
