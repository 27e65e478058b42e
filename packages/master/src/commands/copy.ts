import path from 'node:path';
import { DroverError, ErrorCode, checkFileName, checkName, formatBytes } from '@drover/protocol';
import type { AppFile } from '@drover/protocol';
import { CopySources, copyToWorker, type CopiedSource, type SourceFile } from '../upload.js';
import { failureLines, fanOut, selectWorkers, type Failed, type PerWorker } from './fan-out.js';
import { defineCommand, type CommandContext } from './types.js';

interface CopiedFile {
  path: string;
  dest: string;
  kind: 'exe' | 'lib';
  bytes: number;
  sha256: string;
  sent: boolean;
}

type CopyFields = { app: string; files: CopiedFile[]; warnings: string[] };
type CopyResult = PerWorker<CopyFields> | (Failed & CopyFields);

type CopyData = { results: CopyResult[]; warnings: string[] };

/** Workers copied to at once; the rest wait their turn (file handles and sockets stay bounded). */
const COPY_CONCURRENCY = 32;

export const copyCommand = defineCommand<CopyData>({
  name: 'copy',
  usage: 'copy WORKERS PATH [--lib PATH]... [--as APP] [--json]',
  summary: 'copy an executable and the non-system libraries it needs to workers',
  details: [
    'Libraries come from ldd: every one outside /lib, /lib64, /usr/lib, /usr/lib64 (and their',
    'multiarch folders) is copied, plus each --lib. A file the worker already has (same sha256)',
    'is not sent again. The worker keeps the previous version until every file has arrived and',
    'matched its sha256. --as names the app (default: the file name). Files are read where the',
    'command is typed: drover and master exec send them from their machine, with its LD_LIBRARY_PATH.',
  ].join('\n'),
  options: { lib: { type: 'string', multiple: true }, as: { type: 'string' } },
  complete: ['worker-or-all', 'path'],
  minArgs: 2,
  maxArgs: 2,
  async run(args, ctx) {
    const [target, given] = args.positionals as [string, string];
    const source = path.resolve(ctx.cwd, given);
    const app = (args.values.as as string | undefined) ?? path.basename(source);
    const badApp = checkName(app, 'app name');
    if (badApp) throw new DroverError(ErrorCode.BAD_NAME, args.values.as ? badApp : `${badApp}; name the app with --as`);
    const exeName = path.basename(source);
    const badFile = checkFileName(exeName);
    if (badFile) throw new DroverError(ErrorCode.BAD_NAME, `${badFile}; rename the file before copying`);
    // Unknown workers fail here, before any file is read.
    const { sessions } = selectWorkers(ctx.fleet, target);

    const files = await collectFiles(source, exeName, (args.values.lib as string[] | undefined) ?? [], ctx);
    const known = new Set(files.list.filter((f) => f.sha256));
    const warnings = files.warnings;
    const total = files.list.reduce((n, f) => n + f.size, 0);
    const progress = new Progress(
      ctx,
      app,
      sessions.map((s) => s.name),
      total,
    );
    // One read of each file for every worker, however many.
    const sources = new CopySources(ctx.files);
    const entries = await fanOut(
      ctx,
      target,
      async (s, signal) => {
        try {
          const outcome = await copyToWorker(s, app, files.list, { from: ctx.files, sources, signal, onProgress: (n) => progress.update(s.name, n) });
          ctx.copied?.(outcome.files.filter((f) => f.sent).reduce((n, f) => n + f.file.size, 0));
          return { app, warnings, files: outcome.files.map(({ file, sent }) => describe(file, sent)) };
        } finally {
          progress.done(s.name);
        }
      },
      { concurrency: COPY_CONCURRENCY },
    );
    progress.clear();
    // Sent without hashing them first: the user's machine caches what the workers found, so
    // copying the same file again reads nothing there to tell it is unchanged.
    for (const f of files.list) {
      if (f.sha256 && !known.has(f) && f.identity) await ctx.files.remember({ path: f.source, sha256: f.sha256, identity: f.identity }).catch(() => undefined);
    }
    // Failed entries keep the fields of a successful one, so a script reads every entry alike.
    const results = entries.map((e): CopyResult => (e.ok ? e : { ...e, app, files: [], warnings }));
    return { results, warnings };
  },
  format(d) {
    const lines = d.warnings.map((w) => `warning: ${w}`);
    for (const r of d.results) {
      if (!r.ok) continue;
      const sent = r.files.filter((f) => f.sent);
      lines.push(`${r.worker}: ${r.app} ${sent.length ? `copied (${formatBytes(sent.reduce((n, f) => n + f.bytes, 0))} sent)` : 'already present'}`);
      for (const f of r.files)
        lines.push(`  ${f.dest.padEnd(28)} ${formatBytes(f.bytes).padStart(10)}  ${f.sha256.slice(0, 12)}  ${f.sent ? 'sent' : 'already present'}`);
    }
    return lines.join('\n');
  },
  failures: (d) => failureLines(d.results),
  toJson: (d) => d.results,
});

function describe(file: CopiedSource, sent: boolean): CopiedFile {
  return { path: file.source, dest: file.kind === 'exe' ? file.name : `lib/${file.name}`, kind: file.kind, bytes: file.size, sha256: file.sha256, sent };
}

/**
 * Size (and the sha256 if it is cached) of a file where the user is, as the SourceFile it
 * becomes on the worker. It is not read here: the workers hash what they receive, and it is
 * hashed first only where a worker has a same-sized copy that might be the same.
 */
async function describeFile(ctx: CommandContext, source: string, kind: AppFile['kind'], name: string): Promise<SourceFile> {
  const facts = await ctx.files.peek(source);
  return { kind, name, size: facts.size, sha256: facts.sha256, source: facts.path, identity: facts.identity, mode: kind === 'exe' ? 0o755 : 0o644 };
}

/**
 * The executable, the non-system libraries ldd finds for it and for each --lib, and each --lib:
 * all found, read and hashed where the user is (ctx.files), with that machine's environment.
 */
async function collectFiles(source: string, exeName: string, libs: string[], ctx: CommandContext): Promise<{ list: SourceFile[]; warnings: string[] }> {
  const list: SourceFile[] = [await describeFile(ctx, source, 'exe', exeName)];
  const warnings: string[] = [];
  const byName = new Map<string, string>();
  const explicit = libs.map((l) => path.resolve(ctx.cwd, l));
  for (const lib of explicit) {
    const name = path.basename(lib);
    const bad = checkFileName(name);
    if (bad) throw new DroverError(ErrorCode.BAD_NAME, `--lib ${lib}: ${bad}`);
    byName.set(name, lib);
  }
  for (const scanned of [source, ...explicit]) {
    const scan = await ctx.files.libraries(scanned);
    for (const lib of scan.libraries) if (!byName.has(lib.name)) byName.set(lib.name, lib.path);
    for (const name of scan.missing) {
      if (!byName.has(name)) warnings.push(`${name} (needed by ${path.basename(scanned)}) is not found on this machine: not copied; pass it with --lib`);
    }
  }
  for (const [name, lib] of byName) list.push(await describeFile(ctx, lib, 'lib', name));
  return { list, warnings: [...new Set(warnings)] };
}

/** A progress bar for copies that take more than a moment (interactive shell only). */
class Progress {
  private readonly sent = new Map<string, number>();
  private readonly finished = new Set<string>();
  private readonly started = performance.now();
  private last = 0;

  constructor(
    private readonly ctx: CommandContext,
    private readonly app: string,
    private readonly workers: string[],
    private readonly total: number,
  ) {}

  update(worker: string, bytes: number): void {
    this.sent.set(worker, bytes);
    this.render();
  }

  done(worker: string): void {
    this.finished.add(worker);
    this.render();
  }

  clear(): void {
    this.ctx.out.progress(null);
  }

  private render(): void {
    const now = performance.now();
    if (!this.ctx.interactive || now - this.started < 300 || now - this.last < 100) return;
    this.last = now;
    const all = this.workers.length * this.total || 1;
    const got = this.workers.reduce((n, w) => n + (this.finished.has(w) ? this.total : (this.sent.get(w) ?? 0)), 0);
    const share = Math.min(1, got / all);
    const width = 24;
    const bar = '#'.repeat(Math.round(share * width)).padEnd(width, '.');
    const rate = got / ((now - this.started) / 1000);
    this.ctx.out.progress(
      `copy ${this.app} [${bar}] ${(share * 100).toFixed(0)}%  ${formatBytes(got)} of ${formatBytes(all)}  ${formatBytes(rate)}/s  ${this.finished.size}/${this.workers.length} workers done`,
    );
  }
}
