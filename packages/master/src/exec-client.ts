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
  // A slow reader of our stdout (a pager, a pipe) pauses the connection, and so the master.
  const stream = async (text: string): Promise<void> => {
    if (process.stdout.write(text)) return;
    transport.pause();
    // An error (EPIPE: the reader left) ends the run through the handler above.
    await once(process.stdout, 'drain').catch(() => new Promise<never>(() => undefined));
    transport.resume();
  };
  let anyFailed = false;
  for (const line of lines) {
    // The master would refuse it and end the session (or, past a frame, just close it).
    if (line.length > MAX_LINE_CHARS) {
      return failed(ErrorCode.BAD_ARGUMENTS, `a command line is at most ${MAX_LINE_CHARS} characters; this one is ${line.length}`, 1);
    }
    const outcome = await runLine(transport, line, json, (to, text) =>
      to === 'stream' ? stream(text) : void (to === 'stdout' ? process.stdout : process.stderr).write(text),
    );
    if ('failure' in outcome) return failed(outcome.failure.code, outcome.failure.message);
    if (!outcome.ok) anyFailed = true;
  }
  await transport.close();
  return anyFailed ? 1 : 0;
}

/** Where runLine prints a piece: output streamed while the command runs (paced), or a result's line. */
export type PrintTo = 'stream' | 'stdout' | 'stderr';

/** One line's answers: whether every command of it succeeded, or why the run cannot go on. */
export type LineOutcome = { ok: boolean } | { failure: { code: Code; message: string } };

/**
 * Sends one command line and prints what comes back through `print` (a promise it returns is
 * waited for: the reader is slow): output as it streams, then each result, errors of human
 * output on stderr and JSON always on stdout, so a script reads one stream.
 */
export async function runLine(
  transport: Transport,
  line: string,
  json: boolean,
  print: (to: PrintTo, text: string) => void | Promise<void>,
): Promise<LineOutcome> {
  transport.run(line, json);
  for (;;) {
    const parsed = await transport.next();
    if (parsed === null) return { failure: { code: ErrorCode.MASTER_UNREACHABLE, message: 'the master closed the connection' } };
    if (!parsed.ok) return { failure: { code: ErrorCode.PROTOCOL_ERROR, message: parsed.error } };
    const reply = parsed.message;
    if (reply.type === 'error') return { failure: reply.error };
    if (reply.type === 'notice') continue;
    if (reply.type === 'out') {
      await print('stream', reply.text);
      continue;
    }
    for (const r of reply.results) {
      if (r.stderr) await print('stderr', `${r.stderr}\n`);
      if (!r.output) continue;
      await print(r.thrown && !r.output.startsWith('{') ? 'stderr' : 'stdout', `${r.output}\n`);
    }
    if (reply.type !== 'done') return unreachable(reply);
    return { ok: reply.ok };
  }
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
