import { CONTROL_VERSION, ErrorCode, decodeChunk, parseControlRequest, unreachable, type ControlReply, type ControlRun } from '@drover/protocol';
import type { CommandContext } from './commands/types.js';
import type { Logger } from './logger.js';
import type { Caller } from './operator-tokens.js';
import { watchFleet } from './notices.js';
import { RemoteFiles } from './remote-files.js';
import { contextMaker, runLine } from './run-line.js';

/** What every operator session shares: the fleet, the command table, the tokens. */
export type BaseContext = Omit<CommandContext, 'signal' | 'out' | 'interactive' | 'cwd' | 'caller' | 'remote' | 'files'>;

/** Characters of output per message: 6 bytes each at worst in JSON, well within a frame. */
const OUT_PIECE_CHARS = 128 * 1024;

/** `text` in pieces of at most OUT_PIECE_CHARS, never cut between the halves of a surrogate pair. */
function* pieces(text: string): Generator<string> {
  for (let at = 0; at < text.length;) {
    let end = Math.min(text.length, at + OUT_PIECE_CHARS);
    if (end < text.length && /[\uD800-\uDBFF]/.test(text[end - 1]!)) end--;
    yield text.slice(at, end);
    at = end;
  }
}

/**
 * One operator session (a WebSocket on the control socket or the master's port): requests come
 * in as raw JSON text, one at a time; replies go out through `send`, which resolves once the
 * client has room (a slow reader slows the command, not the master's memory). Files a command
 * names are the client's, asked for over the same connection (RemoteFiles). Every command is
 * logged with the caller's token name: an audit line, never the secret.
 */
export function operatorSession(opts: {
  base: BaseContext;
  caller: Caller;
  remote: boolean;
  logger: Logger;
  send(reply: ControlReply): Promise<void>;
  sendBinary(frame: Buffer): Promise<void>;
  /** `exit` ran: the master should stop once the reply is out. */
  onExit(): void;
}): { receive(raw: string): void; receiveBinary(frame: Buffer): string | null; close(): void } {
  const files = new RemoteFiles(
    (reply) => opts.send(reply),
    (frame) => opts.sendBinary(frame),
    !opts.remote,
  );
  const out = { write: (text: string) => sendOut(text), progress: () => undefined };
  const contextFor = contextMaker({ ...opts.base, caller: opts.caller, remote: opts.remote, files });
  /**
   * Aborts the command that runs (cancel, or the client went). One controller serves command
   * after command until it is aborted: a signal and its first listener cost ~20 µs to make on
   * every `ps`, and everything that listens takes its listener back when its command ends
   * (onAbort). Nothing outlives its command holding the signal (services start their
   * instances on signals of their own).
   */
  let controller = new AbortController();
  /** A command runs now: a cancel aborts the controller only then. */
  let running = false;
  let closed = false;
  let unwatch: (() => void) | null = null;
  let busy: Promise<void> = Promise.resolve();
  /** Requests taken and not yet answered: the first starts at once, the rest wait in turn. */
  let queued = 0;
  const enqueue = (job: () => Promise<void>): void => {
    const done = (): void => void queued--;
    const failed = (err: unknown): void => {
      opts.logger.error({ err }, 'operator request failed');
      done();
    };
    busy = (queued++ === 0 ? job() : busy.then(job)).then(done, failed);
  };

  const run = async (req: ControlRun): Promise<void> => {
    opts.logger.info({ token: opts.caller.name, role: opts.caller.role, remote: opts.remote, line: req.line }, 'exec');
    if (controller.signal.aborted && !closed) controller = new AbortController();
    running = true;
    const ctx = contextFor({ signal: controller.signal, out, interactive: false, cwd: req.cwd, color: req.color === true });
    const results = await runLine(req.line, ctx, { json: req.json });
    running = false;
    // What fits goes in the done message; longer text goes before it in parts (a frame's worth of
    // text in all, at most, stays in the done).
    let room = OUT_PIECE_CHARS;
    const outcomes = [];
    for (const [index, { exit: _exit, ...outcome }] of results.entries()) {
      for (const field of ['output', 'stderr'] as const) {
        const text = outcome[field];
        if (text === undefined || text.length <= room) {
          room -= text?.length ?? 0;
          continue;
        }
        for (const piece of pieces(text)) await opts.send({ v: CONTROL_VERSION, type: 'part', index, ...(field === 'stderr' ? { field } : {}), text: piece });
        outcome[field] = '';
      }
      outcomes.push(outcome);
    }
    await opts.send({ v: CONTROL_VERSION, type: 'done', ok: results.every((r) => r.ok), results: outcomes });
    if (results.some((r) => r.exit)) opts.onExit();
  };

  /**
   * Output in messages that fit a frame: a log chunk is up to 1 MiB of text, and JSON may make
   * each character up to 6 bytes. Never cut between the halves of a surrogate pair.
   */
  const sendOut = async (text: string): Promise<void> => {
    for (const piece of pieces(text)) await opts.send({ v: CONTROL_VERSION, type: 'out', text: piece });
  };

  return {
    receive(raw) {
      const parsed = parseControlRequest(raw);
      // File answers and acks are not queued either: the running command waits on them.
      if (parsed.ok && parsed.message.type === 'file-reply') return files.receiveReply(parsed.message);
      if (parsed.ok && parsed.message.type === 'file-ack') return files.receiveAck(parsed.message);
      if (parsed.ok && parsed.message.type === 'cancel') {
        // Not queued: it must reach the command that runs now.
        if (running) controller.abort();
        return;
      }
      if (parsed.ok && parsed.message.type === 'subscribe') {
        unwatch ??= watchFleet(opts.base.fleet, (text) => void opts.send({ v: CONTROL_VERSION, type: 'notice', text }));
        return;
      }
      enqueue(async () => {
        if (!parsed.ok) return opts.send({ v: CONTROL_VERSION, type: 'error', error: { code: ErrorCode.BAD_REQUEST, message: parsed.error } });
        const request = parsed.message;
        switch (request.type) {
          case 'run':
            return run(request);
          case 'cancel':
          case 'subscribe':
          case 'file-reply':
          case 'file-ack':
            return;
          default:
            return unreachable(request);
        }
      });
    },
    receiveBinary(frame) {
      const chunk = decodeChunk(frame);
      if (!chunk.ok) return chunk.error;
      return files.receiveChunk(chunk.ref, chunk.payload);
    },
    close() {
      closed = true;
      files.close();
      controller.abort();
      unwatch?.();
    },
  };
}
