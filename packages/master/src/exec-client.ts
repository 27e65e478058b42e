import net from 'node:net';
import readline from 'node:readline';
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
  const replies = readline.createInterface({ input: socket });
  const iterator = replies[Symbol.asyncIterator]();
  process.once('SIGINT', () => {
    socket.destroy();
    process.stderr.write('cancelled\n');
    process.exit(130);
  });
  let failed = false;
  for (const line of lines) {
    socket.write(`${JSON.stringify({ type: 'run', line, json, cwd: process.cwd() })}\n`);
    for (;;) {
      const next = await iterator.next();
      if (next.done) {
        process.stderr.write('master exec: the master closed the connection\n');
        return 2;
      }
      const reply = JSON.parse(next.value) as ControlReply;
      if (reply.type === 'out') {
        process.stdout.write(reply.text);
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
