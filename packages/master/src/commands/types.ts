import type { Files } from '../files.js';
import type { Fleet } from '../fleet.js';
import type { ServiceManager } from '../services/manager.js';
import type { JoinInfo } from '../join-lines.js';
import type { Caller, TokenStore } from '../operator-tokens.js';

export interface Output {
  /**
   * Streams text as it comes (log lines); a newline is not added. Resolves once the reader has
   * room again, so a slow reader slows the stream instead of filling the master's memory.
   */
  write(text: string): Promise<void>;
  /** A one-line status shown in place (interactive shell only); null clears it. */
  progress(text: string | null): void;
}

export interface CommandContext {
  fleet: Fleet;
  /** Aborted by Ctrl-C in the shell, or when a `master exec` client goes away. */
  signal: AbortSignal;
  /** Folder that relative paths are resolved against, on the machine of whoever typed the command. */
  cwd: string;
  /** True when the result is printed as JSON (--json on the line or on master exec). */
  json?: boolean;
  /** True in the interactive shell: progress bars and live status are welcome. */
  interactive: boolean;
  /** The text lands on a terminal that takes colour (not NO_COLOR): Command.colorize may mark it. */
  color?: boolean;
  out: Output;
  /** The command table, for help and completion. */
  commands: Command[];
  /** Text every master answers `join` with (set once the server listens). */
  joinInfo(): JoinInfo;
  /** A command ran: its name, outcome and seconds (metrics). */
  observe?(command: string, outcome: 'ok' | 'failed' | 'error', seconds: number): void;
  /** Bytes a copy sent to a worker (metrics). */
  copied?(bytes: number): void;
  /** Services: the desired state and the loop that keeps it. */
  services: ServiceManager;
  /** The operator tokens (token create, list, revoke). */
  tokens: TokenStore;
  /** Who runs the command: a token's name and role; the local socket and shell are `local`, admin. */
  caller: Caller;
  /** The command came over the network (for the audit log). */
  remote: boolean;
  /**
   * The files the command names, where the user typed it: the master's disk for its own shell,
   * the client's for drover and master exec (streamed over the operator protocol).
   */
  files: Files;
}

/** Turns an option's text into its value; throws an Error whose message says what was expected. */
export interface ValueParser<T> {
  (text: string): T;
}

export type OptionSpec = { type: 'boolean'; short?: string } | { type: 'string'; short?: string; multiple?: boolean; parse?: ValueParser<unknown> };

export interface ParsedArgs {
  positionals: string[];
  /** Option values, already through each option's parser. */
  values: Record<string, unknown>;
  /** Words after a `--`. */
  rest: string[];
}

export type Completion = 'worker' | 'worker-or-all' | 'command' | 'path' | 'none';

/** One entry of the command table: parse → run (returns data) → format for humans; --json prints the data. */
export interface Command<D = unknown> {
  name: string;
  usage: string;
  summary: string;
  /** Longer help for `help NAME`. */
  details?: string;
  options?: Record<string, OptionSpec>;
  /** What Tab completes at each positional. */
  complete?: Completion[];
  /** Colours the formatted text for a terminal (after it was laid out and escaped). */
  colorize?(text: string): string;
  minArgs?: number;
  maxArgs?: number;
  /** Allows `-- ARGS...` after the positionals. */
  takesRest?: boolean;
  run(args: ParsedArgs, ctx: CommandContext): Promise<D>;
  /** What a person reads on stdout: the successes. Failures come from `failures`. */
  format(data: D, args: ParsedArgs): string;
  /**
   * Per-worker failures, one line each (`error on w2: …`). Printed on stderr in human output;
   * in JSON they are entries with ok:false already. Any of them makes the exit status 1.
   */
  failures?(data: D): string[];
  /** What --json prints, when it is not the data itself. */
  toJson?(data: D): unknown;
}

/** Keeps the data type of a command's run and format in step. */
export function defineCommand<D>(command: Command<D>): Command {
  return command;
}
