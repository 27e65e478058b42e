import path from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import { DroverError, ErrorCode, formatBytes } from '@drover/protocol';
import type { FileWriter } from '../files.js';
import { pidOrApp, wholeNumber } from './options.js';
import { defineCommand } from './types.js';

interface LogsData {
  worker: string;
  /** Null only when --follow was cancelled before the worker named the process. */
  pid: number | null;
  app: string;
  bytes: number;
  out: string | null;
  /** The log text, with --json and no --out (otherwise it was streamed as it came). */
  text?: string;
}

/** Beyond this, --json without --out refuses to hold a log in memory. */
const MAX_JSON_TEXT = 64 * 1024 * 1024;

export const logsCommand = defineCommand<LogsData>({
  name: 'logs',
  usage: 'logs WORKER PID|APP [--tail N] [--follow] [--out FILE [--force]] [--json]',
  summary: "print a process's log (APP: its newest launch); --follow streams new lines, --out saves it here",
  details:
    '--follow runs until Ctrl-C or the process ends. --out FILE writes the log to FILE on the\nmachine where the command is typed (drover writes it there), atomically: it appears whole or\nnot at all. An existing FILE is replaced only with --force, and never when it is not a\nregular file. Works for dead processes too.',
  options: {
    tail: { type: 'string', parse: wholeNumber(0) },
    follow: { type: 'boolean', short: 'f' },
    out: { type: 'string' },
    force: { type: 'boolean' },
  },
  complete: ['worker'],
  minArgs: 2,
  maxArgs: 2,
  async run(args, ctx) {
    const [worker, which] = args.positionals as [string, string];
    const what = pidOrApp(which);
    const tail = (args.values.tail as number | undefined) ?? null;
    const follow = args.values.follow === true;
    const outPath = args.values.out === undefined ? null : path.resolve(ctx.cwd, args.values.out as string);
    const json = ctx.json === true;
    const session = ctx.fleet.get(worker);
    // Opened before the worker is asked: a bad --out changes nothing anywhere.
    const writer: FileWriter | null = outPath
      ? await ctx.files.create(outPath, args.values.force === true).catch((err: unknown) => {
          if (err instanceof DroverError) throw new DroverError(err.code, `--out ${err.message}`);
          throw err;
        })
      : null;
    let kept = false;
    const decoder = new StringDecoder('utf8');
    let text = '';
    let received = 0;
    const onChunk = async (payload: Buffer): Promise<void> => {
      received += payload.length;
      if (writer) {
        await writer.write(payload, ctx.signal);
      } else if (json) {
        if (text.length + payload.length > MAX_JSON_TEXT) throw new DroverError(ErrorCode.BAD_ARGUMENTS, 'log too large for --json; use --out FILE');
        text += decoder.write(payload);
      } else {
        // Acknowledged only once the reader took it: a slow terminal or pipe paces the worker.
        await ctx.out.write(decoder.write(payload));
      }
    };
    try {
      const r = await session
        .request(
          'logs',
          { pid: 'pid' in what ? what.pid : null, app: 'app' in what ? what.app : null, tail, follow },
          { signal: ctx.signal, onChunk, timeoutMs: follow ? 0 : 300_000 },
        )
        .catch((err: unknown) => {
          // Ctrl-C is how a --follow ends: keep what arrived.
          if (follow && ctx.signal.aborted) return { pid: 'pid' in what ? what.pid : null, app: 'app' in what ? what.app : '', bytes: received };
          throw err;
        });
      if (writer) {
        kept = true;
        await writer.finish(true);
      } else if (!json) {
        await ctx.out.write(decoder.end());
      }
      return { worker, pid: r.pid, app: r.app, bytes: r.bytes, out: writer?.path ?? null, ...(json && !outPath ? { text: text + decoder.end() } : {}) };
    } finally {
      // Nothing half-written stays: the partial file is removed.
      if (writer && !kept) await writer.finish(false).catch(() => undefined);
    }
  },
  format(d) {
    if (!d.out) return '';
    const what = [d.app, d.pid === null ? null : `pid ${d.pid}`].filter(Boolean).join(' ');
    return `saved ${formatBytes(d.bytes)} of the log of ${what} on ${d.worker} to ${d.out}`;
  },
});
