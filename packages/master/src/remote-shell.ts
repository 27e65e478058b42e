import { unreachable } from '@drover/protocol';
import type { Transport } from './client-transport.js';
import type { Completion, Output } from './commands/types.js';
import type { LineResult } from './run-line.js';
import { complete, startShell, type CompletableCommand, type ShellBackend } from './shell.js';

interface Pending {
  out: Output | null;
  resolve(results: LineResult[]): void;
}

/**
 * drover's interactive shell: the same master> prompt as the master's own (completion,
 * history, Ctrl-C, notices), with every line run on the master through the transport. Tab
 * completion uses the command table and worker names the master reported, and paths here.
 */
export async function startRemoteShell(transport: Transport, opts: { historyFile: string; onExit(code: number): void }): Promise<void> {
  // A holder, not a let: the reader below runs in its own closure.
  const state: { pending: Pending | null } = { pending: null };
  let notice: (text: string) => void = () => undefined;
  let closed = false;

  // One reader routes every reply: output and results to the command that runs, notices to the prompt.
  void (async () => {
    for (;;) {
      const parsed = await transport.next();
      if (parsed === null) {
        closed = true;
        state.pending?.resolve([{ ok: false, output: 'error: the master closed the connection', thrown: true, exit: true }]);
        state.pending = null;
        return opts.onExit(2);
      }
      if (!parsed.ok) continue;
      const reply = parsed.message;
      switch (reply.type) {
        case 'out':
          await state.pending?.out?.write(reply.text);
          break;
        case 'done':
          state.pending?.resolve(reply.results.map((r) => ({ ...r, exit: false })));
          state.pending = null;
          break;
        case 'error':
          state.pending?.resolve([{ ok: false, output: `error: ${reply.error.message}`, thrown: true, exit: false }]);
          state.pending = null;
          break;
        case 'notice':
          notice(reply.text);
          break;
        default:
          unreachable(reply);
      }
    }
  })();

  const send = (line: string, json: boolean, out: Output | null): Promise<LineResult[]> =>
    new Promise((resolve) => {
      if (closed) return resolve([{ ok: false, output: 'error: the master closed the connection', thrown: true, exit: true }]);
      state.pending = { out, resolve };
      transport.run(line, json);
    });
  const quietly = async <T>(line: string, fallback: T): Promise<T> => {
    const [r] = await send(line, true, null);
    try {
      return r?.ok ? (JSON.parse(r.output) as T) : fallback;
    } catch {
      return fallback;
    }
  };

  const help = await quietly<{ commands: { name: string; options?: string[]; complete?: Completion[] }[] }>('help', { commands: [] });
  const commands: CompletableCommand[] = help.commands.map((c) => ({
    name: c.name,
    complete: c.complete ?? [],
    options: Object.fromEntries((c.options ?? []).map((o) => [o, true])),
  }));
  let workers: string[] = [];
  const refresh = async (): Promise<void> => {
    workers = (await quietly<{ name: string }[]>('workers', [])).map((w) => w.name);
  };
  await refresh();

  const backend: ShellBackend = {
    async run(line, io) {
      // Ctrl-C stops the command on the master; the session stays.
      const onAbort = (): void => transport.interrupt();
      io.signal.addEventListener('abort', onAbort, { once: true });
      try {
        const results = await send(line, false, io.out);
        // `exit` stops the master (as at its own prompt); the session ends with it.
        if (/^\s*exit\s*$/.test(line) && results.every((r) => r.ok)) return results.map((r) => ({ ...r, exit: true }));
        return results;
      } finally {
        io.signal.removeEventListener('abort', onAbort);
        if (!closed) await refresh();
      }
    },
    complete: (line) => complete(line, commands, { names: () => workers }, process.cwd()),
  };
  const shell = await startShell({
    input: process.stdin,
    output: process.stdout,
    historyFile: opts.historyFile,
    backend,
    onExit: () => void transport.close().then(() => opts.onExit(0)),
    onInputEnd: () => opts.onExit(0),
  });
  notice = shell.notice;
  transport.subscribe();
}
