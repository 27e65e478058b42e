import { once } from 'node:events';
import net from 'node:net';
import type { ControlReply } from './control.js';
import { socketPath } from './control.js';

/**
 * `master exec`: sends each command line to the running master's control socket and prints
 * what comes back. Resolves to the process exit code: 0 all ok, 1 a command failed, 2 no master.
 */
export async function execCommands(stateDir: string, lines: string[], json: boolean): Promise<number> {
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
    process.stderr.write(`master exec: cannot reach the master at ${file}: ${why} Start it with: master --state-dir ${stateDir}\n`);
    return 2;
  }
  const nextReply = lineReader(socket);
  process.once('SIGINT', () => {
    socket.destroy();
    process.stderr.write('cancelled\n');
    process.exit(130);
  });
  let failed = false;
  for (const line of lines) {
    socket.write(`${JSON.stringify({ type: 'run', line, json, cwd: process.cwd() })}\n`);
    for (;;) {
      const next = await nextReply();
      if (next === null) {
        process.stderr.write('master exec: the master closed the connection\n');
        return 2;
      }
      const reply = JSON.parse(next) as ControlReply;
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
      if (!reply.ok) failed = true;
      break;
    }
  }
  socket.end();
  return failed ? 1 : 0;
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
