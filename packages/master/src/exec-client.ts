import { once } from 'node:events';
import net from 'node:net';
import { CONTROL_VERSION, ErrorCode, parseControlReply, unreachable, type ControlRun, type ErrorCode as Code } from '@drover/protocol';
import { socketPath } from './control.js';

/**
 * `master exec`: sends each command line to the running master's control socket and prints
 * what comes back. Resolves to the process exit code: 0 all ok, 1 a command failed, 2 no master.
 */
export async function execCommands(stateDir: string, lines: string[], json: boolean, name = 'master exec'): Promise<number> {
  const file = socketPath(stateDir);
  const socket = net.connect(file);
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' || code === 'ECONNREFUSED' ? 'is it running?' : `(${code})`;
    return failed(ErrorCode.MASTER_UNREACHABLE, `cannot reach the master at ${file}: ${why} Start it with: master --state-dir ${stateDir}`);
  }
  const nextReply = lineReader(socket);
  process.once('SIGINT', () => {
    socket.destroy();
    process.stderr.write('cancelled\n');
    process.exit(130);
  });
  /** Says why the whole exec failed: one line, or one JSON document with --json. */
  function failed(code: Code, message: string): number {
    if (json) process.stdout.write(`${JSON.stringify({ error: { code, message } })}\n`);
    else process.stderr.write(`${name}: ${message}\n`);
    return 2;
  }
  let anyFailed = false;
  for (const line of lines) {
    const request: ControlRun = { v: CONTROL_VERSION, type: 'run', line, json, cwd: process.cwd() };
    socket.write(`${JSON.stringify(request)}\n`);
    for (;;) {
      const next = await nextReply();
      if (next === null) return failed(ErrorCode.MASTER_UNREACHABLE, 'the master closed the connection');
      const parsed = parseControlReply(next);
      if (!parsed.ok) return failed(ErrorCode.PROTOCOL_ERROR, parsed.error);
      const reply = parsed.message;
      if (reply.type === 'error') return failed(reply.error.code, reply.error.message);
      if (reply.type === 'out') {
        // A slow reader of our stdout (a pager, a pipe) pauses the socket, and so the master.
        if (!process.stdout.write(reply.text)) {
          socket.pause();
          await once(process.stdout, 'drain');
          socket.resume();
        }
        continue;
      }
      for (const r of reply.results) {
        if (r.stderr) process.stderr.write(`${r.stderr}\n`);
        if (!r.output) continue;
        // A failed command's error line goes to stderr; JSON always to stdout, so a script reads one stream.
        const stream = r.thrown && !r.output.startsWith('{') ? process.stderr : process.stdout;
        stream.write(`${r.output}\n`);
      }
      if (reply.type !== 'done') return unreachable(reply);
      if (!reply.ok) anyFailed = true;
      break;
    }
  }
  socket.end();
  return anyFailed ? 1 : 0;
}

/**
 * Waits until everything written to stdout and stderr is handed to the OS. Writes to a pipe are
 * asynchronous: exiting without this cut the end off output read by a slow consumer.
 */
export async function flushStdio(): Promise<void> {
  await Promise.all([process.stdout, process.stderr].map((stream) => new Promise<void>((resolve) => stream.write('', () => resolve()))));
}

/** Reads newline-delimited replies one at a time; null at end of stream. Unread data stays in the socket. */
function lineReader(socket: net.Socket): () => Promise<string | null> {
  let buffered = '';
  const lines: string[] = [];
  let ended = false;
  let wake: (() => void) | null = null;
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => {
    buffered += chunk;
    let nl: number;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      lines.push(buffered.slice(0, nl));
      buffered = buffered.slice(nl + 1);
    }
    // Hold the socket while replies wait to be handled: back-pressure reaches the master.
    if (lines.length > 16) socket.pause();
    wake?.();
  });
  socket.on('end', () => {
    ended = true;
    wake?.();
  });
  socket.on('error', () => {
    ended = true;
    wake?.();
  });
  return async () => {
    while (lines.length === 0 && !ended) await new Promise<void>((resolve) => (wake = resolve));
    wake = null;
    const line = lines.shift();
    if (lines.length <= 16 && socket.isPaused()) socket.resume();
    return line ?? null;
  };
}
