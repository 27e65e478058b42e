import { once } from 'node:events';
import { ErrorCode, MAX_LINE_CHARS, unreachable, type ErrorCode as Code } from '@drover/protocol';
import { connectLocal, type ConnectFailure, type Transport } from './client-transport.js';

/**
 * `master exec`: sends each command line to the running master's control socket and prints
 * what comes back. Resolves to the process exit code: 0 all ok, 1 a command failed, 2 no master.
 */
export async function execCommands(stateDir: string, lines: string[], json: boolean, name = 'master exec'): Promise<number> {
  return runOver(await connectLocal(stateDir), lines, json, name);
}

/**
 * Runs the lines over a connection (or reports why there is none) and prints the answers:
 * output as it streams, then each result (errors of human output on stderr, JSON always on
 * stdout). Resolves to the exit code: 0 all ok, 1 a command failed, 2 no master, 3 refused.
 */
export async function runOver(connection: Transport | ConnectFailure, lines: string[], json: boolean, name: string): Promise<number> {
  /** Says why the whole run failed: one line, or one JSON document with --json. */
  const failed = (code: Code, message: string, exitCode = 2): number => {
    if (json) process.stdout.write(`${JSON.stringify({ error: { code, message } })}\n`);
    else process.stderr.write(`${name}: ${message}\n`);
    return exitCode;
  };
  if ('exitCode' in connection) return failed(connection.code, connection.message, connection.exitCode);
  const transport = connection;
  // The reader went away (`| head`): stop the command and leave quietly, as cat does.
  for (const stream of [process.stdout, process.stderr])
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE') throw err;
      void transport.cancel().finally(() => process.exit(0));
    });
  process.once('SIGINT', () => {
    process.stderr.write('cancelled\n');
    // Exit once the cancel is on its way (a timer that holds the process: the loop may be idle).
    void transport.cancel().finally(() => process.exit(130));
  });
  let anyFailed = false;
  for (const line of lines) {
    // The master would refuse it and end the session (or, past a frame, just close it).
    if (line.length > MAX_LINE_CHARS) {
      return failed(ErrorCode.BAD_ARGUMENTS, `a command line is at most ${MAX_LINE_CHARS} characters; this one is ${line.length}`, 1);
    }
    transport.run(line, json);
    for (;;) {
      const parsed = await transport.next();
      if (parsed === null) return failed(ErrorCode.MASTER_UNREACHABLE, 'the master closed the connection');
      if (!parsed.ok) return failed(ErrorCode.PROTOCOL_ERROR, parsed.error);
      const reply = parsed.message;
      if (reply.type === 'error') return failed(reply.error.code, reply.error.message);
      if (reply.type === 'notice') continue;
      if (reply.type === 'out') {
        // A slow reader of our stdout (a pager, a pipe) pauses the connection, and so the master.
        if (!process.stdout.write(reply.text)) {
          transport.pause();
          // An error (EPIPE: the reader left) ends the run through the handler above.
          await once(process.stdout, 'drain').catch(() => new Promise<never>(() => undefined));
          transport.resume();
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
  await transport.close();
  return anyFailed ? 1 : 0;
}

/**
 * The command lines on stdin: every line but blank ones and # comments. Read as a stream, not
 * with readFileSync(0): stdin may be a pipe a parent left non-blocking (Node's child pipes
 * are), where a synchronous read fails with EAGAIN as soon as the writer is behind.
 */
export async function stdinLines(): Promise<string[]> {
  let text = '';
  process.stdin.setEncoding('utf8');
  for await (const chunk of process.stdin) text += chunk as string;
  return text.split('\n').filter((l) => l.trim() && !l.trim().startsWith('#'));
}

/**
 * Waits until everything written to stdout and stderr is handed to the OS. Writes to a pipe are
 * asynchronous: exiting without this cut the end off output read by a slow consumer.
 */
export async function flushStdio(): Promise<void> {
  await Promise.all([process.stdout, process.stderr].map((stream) => new Promise<void>((resolve) => stream.write('', () => resolve()))));
}
