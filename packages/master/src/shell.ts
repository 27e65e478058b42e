import { readdirSync, type Dirent } from 'node:fs';
import { appendFile, readFile, writeFile } from './lazy-fs.js';
import path from 'node:path';
import type { Command, CommandContext, Completion, Output } from './commands/types.js';
import type { Fleet } from './fleet.js';
import { contextMaker, runLine, type LineResult } from './run-line.js';
import { splitCommands } from './tokenize.js';

const HISTORY_SIZE = 1000;

/** What the prompt runs lines with: the master in-process, or a master through a transport (drover). */
export interface ShellBackend {
  run(line: string, io: { signal: AbortSignal; out: Output; interactive: boolean }): Promise<LineResult[]>;
  /** Tab completion from what the backend knows (commands, workers, local paths). */
  complete(line: string): [string[], string];
}

/** The master's own backend: runLine on its fleet. */
export function localBackend(context: Omit<CommandContext, 'signal' | 'out' | 'interactive'>, fleet: Pick<Fleet, 'names'>): ShellBackend {
  const { cwd, color: _color, ...session } = context;
  const contextFor = contextMaker(session);
  return {
    run: (line, io) => runLine(line, contextFor({ ...io, cwd, color: io.interactive && !('NO_COLOR' in process.env) })),
    complete: (line) => complete(line, context.commands, fleet, context.cwd),
  };
}

export interface ShellOptions {
  input: NodeJS.ReadableStream;
  output: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  historyFile: string;
  backend: ShellBackend;
  /** The user asked to leave (exit, Ctrl-D). */
  onExit(): void;
  /** stdin ended without a terminal (piped input ran out): keep serving. */
  onInputEnd(): void;
}

/** The master> prompt: a thin readline loop around runLine. */
export async function startShell(opts: ShellOptions): Promise<{ notice: (text: string) => void; close: () => void }> {
  // Loaded here, not at the top: the drover client bundles this file but opens a shell rarely.
  const readline = process.getBuiltinModule('node:readline');
  const terminal = Boolean((opts.input as { isTTY?: boolean }).isTTY && opts.output.isTTY);
  const history = terminal ? await loadHistory(opts.historyFile) : [];
  const rl = readline.createInterface({
    input: opts.input,
    output: opts.output,
    terminal,
    history,
    historySize: HISTORY_SIZE,
    removeHistoryDuplicates: true,
    completer: (line: string) => opts.backend.complete(line),
    prompt: 'master> ',
  });
  let running: AbortController | null = null;
  let progressShown = false;
  const queue: string[] = [];
  let closed = false;

  const write = (text: string): void => {
    opts.output.write(text);
  };
  const clearProgress = (): void => {
    if (progressShown) write('\r\x1b[K');
    progressShown = false;
  };
  /** Prints above the prompt without garbling what the user is typing. */
  const notice = (text: string): void => {
    if (!terminal) return;
    if (running) {
      clearProgress();
      write(`${text}\n`);
      return;
    }
    readline.clearLine(opts.output, 0);
    readline.cursorTo(opts.output, 0);
    write(`${text}\n`);
    rl.prompt(true);
  };

  const runOne = async (line: string): Promise<void> => {
    const trimmed = line.trim();
    if (trimmed === '') return;
    if (terminal) void appendFile(opts.historyFile, `${trimmed}\n`, { mode: 0o600 }).catch(() => undefined);
    running = new AbortController();
    const io: { signal: AbortSignal; interactive: boolean; out: Output } = {
      signal: running.signal,
      interactive: terminal,
      out: {
        write: (text) => {
          clearProgress();
          if (opts.output.write(text)) return Promise.resolve();
          return new Promise((resolve) => opts.output.once('drain', resolve));
        },
        progress: (text) => {
          if (!terminal) return;
          if (text === null) return clearProgress();
          // A terminal that reports no size (columns 0) still gets a whole line.
          const width = Math.max(20, (opts.output.columns || 80) - 1);
          write(`\r\x1b[K${text.slice(0, width)}`);
          progressShown = true;
        },
      },
    };
    const results = await opts.backend.run(trimmed, io);
    clearProgress();
    running = null;
    for (const r of results) {
      if (r.output) write(`${r.output}\n`);
      if (r.stderr) write(`${r.stderr}\n`);
      if (r.exit) return leave();
    }
  };

  const pump = async (): Promise<void> => {
    while (queue.length && !closed) {
      await runOne(queue.shift()!);
    }
    if (!closed && terminal) rl.prompt();
  };

  const leave = (): void => {
    if (closed) return;
    closed = true;
    rl.close();
    opts.onExit();
  };

  rl.on('line', (line) => {
    queue.push(line);
    if (queue.length === 1 && !running) void pump();
  });
  rl.on('SIGINT', () => {
    if (running) {
      running.abort();
      clearProgress();
      write('^C\n');
      return;
    }
    if (rl.line.length > 0) {
      write('^C\n');
      rl.write(null, { ctrl: true, name: 'u' });
      rl.prompt();
      return;
    }
    write('^C\n(To exit, press Ctrl-D or type exit)\n');
    rl.prompt();
  });
  rl.on('close', () => {
    if (closed) return;
    closed = true;
    if (terminal) {
      write('\n');
      opts.onExit();
    } else {
      // Lines already read still run; then the master keeps serving without a shell.
      void pump().then(() => opts.onInputEnd());
    }
  });
  if (terminal) rl.prompt();
  return {
    notice,
    close: () => {
      closed = true;
      rl.close();
    },
  };
}

async function loadHistory(file: string): Promise<string[]> {
  try {
    const lines = (await readFile(file, 'utf8')).split('\n').filter(Boolean);
    const recent = lines.slice(-HISTORY_SIZE);
    if (lines.length > HISTORY_SIZE * 2) await writeFile(file, `${recent.join('\n')}\n`, { mode: 0o600 });
    return recent.reverse();
  } catch {
    return [];
  }
}

/** What completion needs of a command: its name, its options, what each positional takes. */
export type CompletableCommand = Pick<Command, 'name' | 'complete'> & { options?: Record<string, unknown> };

/** Tab completion: command names first, then what the command takes at that position. */
export function complete(line: string, commands: CompletableCommand[], fleet: Pick<Fleet, 'names'>, cwd = process.cwd()): [string[], string] {
  const lastCommand = line.slice(line.lastIndexOf(';') + 1).trimStart();
  let words: string[];
  try {
    words = splitCommands(lastCommand)[0] ?? [];
  } catch {
    return [[], ''];
  }
  const endsWithSpace = /\s$/.test(lastCommand) || lastCommand === '';
  const current = endsWithSpace ? '' : (words.pop() ?? '');
  if (words.length === 0) {
    const names = commands.map((c) => c.name).filter((n) => n.startsWith(current));
    return [names.map((n) => `${n} `), current];
  }
  const command = commands.find((c) => c.name === words[0]);
  if (!command) return [[], current];
  // Options that take a file on this machine.
  if (words.at(-1) === '--lib' || words.at(-1) === '--out') return [completePath(current, cwd), current];
  if (current.startsWith('-')) {
    const flags = ['--json', ...Object.keys(command.options ?? {}).map((o) => `--${o}`)];
    return [flags.filter((f) => f.startsWith(current)), current];
  }
  const position = words.slice(1).filter((w) => !w.startsWith('-')).length;
  const kind: Completion = command.complete?.[position] ?? 'none';
  let candidates: string[] = [];
  if (kind === 'worker' || kind === 'worker-or-all') candidates = fleet.names();
  if (kind === 'worker-or-all') candidates = ['all', ...candidates];
  if (kind === 'command') candidates = commands.map((c) => c.name);
  if (kind === 'path') return [completePath(current, cwd), current];
  return [candidates.filter((c) => c.startsWith(current)).map((c) => `${c} `), current];
}

/** Files and folders (with a trailing /) that complete `current`, relative to `cwd`. */
function completePath(current: string, cwd: string): string[] {
  const slash = current.lastIndexOf('/');
  const dirPart = slash >= 0 ? current.slice(0, slash + 1) : '';
  const base = current.slice(slash + 1);
  const dir = path.resolve(cwd, dirPart || '.');
  let entries: Dirent[];
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return [];
  }
  return entries
    .filter((e) => e.name.startsWith(base) && (base.startsWith('.') || !e.name.startsWith('.')))
    .map((e) => `${dirPart}${e.name}${e.isDirectory() ? '/' : ' '}`)
    .sort();
}
