import { randomBytes } from 'node:crypto';
import { lstat, open, rename, rm, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import { DroverError, ErrorCode, formatBytes } from '@drover/protocol';
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
    '--follow runs until Ctrl-C or the process ends. --out FILE writes the log to FILE on this\nmachine (relative to where master exec runs), atomically; an existing FILE is replaced only\nwith --force, and never when it is not a regular file. Works for dead processes too.',
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
    if (outPath && ctx.remote) {
      throw new DroverError(
        ErrorCode.BAD_ARGUMENTS,
        "--out writes on the master's machine: over the network, redirect the output instead (drover logs … > FILE)",
      );
    }
    if (outPath) await checkTarget(outPath, args.values.force === true);

    let fh: FileHandle | null = null;
    let tmp: string | null = null;
    if (outPath) {
      tmp = path.join(path.dirname(outPath), `.${path.basename(outPath)}.tmp-${randomBytes(4).toString('hex')}`);
      fh = await open(tmp, 'wx', 0o644).catch((err: NodeJS.ErrnoException) => {
        throw new DroverError(ErrorCode.IO_ERROR, `cannot write ${outPath} (${err.code})`);
      });
    }
    const decoder = new StringDecoder('utf8');
    let text = '';
    let received = 0;
    const onChunk = async (payload: Buffer): Promise<void> => {
      received += payload.length;
      if (fh) {
        await fh.write(payload);
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
      if (fh && tmp && outPath) {
        await fh.sync();
        await fh.close();
        fh = null;
        await rename(tmp, outPath);
        tmp = null;
      } else if (!json) {
        await ctx.out.write(decoder.end());
      }
      return { worker, pid: r.pid, app: r.app, bytes: r.bytes, out: outPath, ...(json && !outPath ? { text: text + decoder.end() } : {}) };
    } finally {
      await fh?.close().catch(() => undefined);
      if (tmp) await rm(tmp, { force: true });
    }
  },
  format(d) {
    if (!d.out) return '';
    const what = [d.app, d.pid === null ? null : `pid ${d.pid}`].filter(Boolean).join(' ');
    return `saved ${formatBytes(d.bytes)} of the log of ${what} on ${d.worker} to ${d.out}`;
  },
});

/** --out never replaces a device, a folder or a symlink, and replaces a file only with --force. */
async function checkTarget(file: string, force: boolean): Promise<void> {
  const info = await lstat(file).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return null;
    throw new DroverError(ErrorCode.IO_ERROR, `cannot write ${file} (${err.code})`);
  });
  if (!info) return;
  if (!info.isFile()) {
    const kind = info.isSymbolicLink() ? 'a symbolic link' : info.isDirectory() ? 'a folder' : 'not a regular file';
    throw new DroverError(ErrorCode.BAD_ARGUMENTS, `--out ${file} is ${kind}; name a new file or a regular one`);
  }
  if (!force) throw new DroverError(ErrorCode.BAD_ARGUMENTS, `--out ${file} exists; add --force to replace it`);
}
