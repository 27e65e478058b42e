import path from 'node:path';
import { DroverError, ErrorCode, formatBytes, type BenchRun, type ErrorBody } from '@drover/protocol';
import { badArgs } from '../run-line.js';
import { failureLines, fanOut } from './fan-out.js';
import { size, wholeNumber } from './options.js';
import { defineCommand } from './types.js';

interface PhaseStats {
  median: number;
  min: number;
  max: number;
}

export interface BenchEntry {
  worker: string;
  hostname: string | null;
  ok: boolean;
  error: ErrorBody | null;
  sizeBytes: number;
  blockBytes: number;
  fsync: boolean;
  dir: string | null;
  /** Medians, in milliseconds. */
  creationTimeMs: number | null;
  copyTimeMs: number | null;
  deletionTimeMs: number | null;
  creation: PhaseStats | null;
  copy: PhaseStats | null;
  deletion: PhaseStats | null;
  /** Throughput of the median run, in MiB/s (as the human output) and in MB/s (10^6 bytes/s). */
  creationMiBps: number | null;
  copyMiBps: number | null;
  creationMBps: number | null;
  copyMBps: number | null;
  runs: BenchRun[];
}

const MiB = 1024 * 1024;

export const benchCommand = defineCommand<BenchEntry[]>({
  name: 'bench',
  usage: 'bench [WORKERS...] [--size 100MiB] [--runs 3] [--block 1MiB] [--dir PATH] [--no-fsync] [--json]',
  summary: 'timed create / copy / delete of a file on workers at once: median, min, max per phase',
  details: [
    'Each worker creates a file of --size random bytes in --block writes and fsyncs it, copies it',
    'to a second file and fsyncs that, then deletes both and syncs the folder; --runs times.',
    '--dir (absolute, on the worker) defaults to <worker state>/bench. A worker refuses when the',
    'folder lacks room for 2 x --size + 32 MiB; files are removed whatever happens.',
  ].join('\n'),
  options: {
    size: { type: 'string', parse: size() },
    runs: { type: 'string', parse: wholeNumber(1, 1000) },
    block: { type: 'string', parse: size(64 * MiB, '64MiB') },
    dir: { type: 'string' },
    'no-fsync': { type: 'boolean' },
  },
  complete: ['worker-or-all', 'worker', 'worker', 'worker', 'worker', 'worker'],
  async run(args, ctx) {
    const sizeBytes = (args.values.size as number | undefined) ?? 100 * MiB;
    const blockBytes = (args.values.block as number | undefined) ?? MiB;
    const runs = (args.values.runs as number | undefined) ?? 3;
    const dir = (args.values.dir as string | undefined) ?? null;
    if (dir !== null && !path.isAbsolute(dir)) throw badArgs(this, `--dir must be an absolute path on the workers, got "${dir}"`);
    const fsync = args.values['no-fsync'] !== true;

    const target = args.positionals.length === 0 ? 'all' : args.positionals.join(',');
    const blank = { sizeBytes, blockBytes, fsync };
    const pending = new Set<string>();
    const showProgress = (): void => {
      if (!ctx.interactive) return;
      ctx.out.progress(`bench: running on ${[...pending].join(', ') || '-'}`);
    };
    const results = await fanOut(ctx, target, async (s, signal) => {
      pending.add(s.name);
      showProgress();
      try {
        const r = await s.request('bench', { sizeBytes, blockBytes, runs, dir, fsync }, { signal, timeoutMs: 0 });
        return summarize(s.hello.hostname, r.dir, blank, r.runs);
      } finally {
        pending.delete(s.name);
        showProgress();
      }
    });
    ctx.out.progress(null);
    if (ctx.signal.aborted) throw new DroverError(ErrorCode.CANCELLED, 'benchmark cancelled; the workers removed their files');
    // A failed worker's entry has every field of a successful one, set to null.
    return results.map((r): BenchEntry => (r.ok ? { ...r } : { ...emptyEntry(r.worker, hostnameOf(ctx, r.worker), blank), error: r.error }));
  },
  format(entries) {
    const lines: string[] = [];
    for (const e of entries) {
      const head = `${e.worker}${e.hostname ? ` (${e.hostname})` : ''}`;
      if (!e.ok) continue;
      lines.push(`${head}  ${formatBytes(e.sizeBytes)} x ${e.runs.length} run${e.runs.length > 1 ? 's' : ''}, ${e.fsync ? 'fsync' : 'no fsync'}`);
      lines.push(phaseLine('creation', e.creation!, e.creationMiBps));
      lines.push(phaseLine('copy', e.copy!, e.copyMiBps));
      lines.push(phaseLine('deletion', e.deletion!, null));
    }
    const ok = entries.filter((e) => e.ok);
    if (ok.length > 1) {
      const extreme = (label: string, key: 'creationTimeMs' | 'copyTimeMs' | 'deletionTimeMs'): string => {
        const sorted = [...ok].sort((a, b) => a[key]! - b[key]!);
        const [fast, slow] = [sorted[0]!, sorted.at(-1)!];
        return `${label} ${fast.worker} ${fmtMs(fast[key]!)} / ${slow.worker} ${fmtMs(slow[key]!)} ms`;
      };
      lines.push(`fastest / slowest: ${extreme('creation', 'creationTimeMs')}; ${extreme('copy', 'copyTimeMs')}; ${extreme('deletion', 'deletionTimeMs')}`);
    }
    return lines.join('\n');
  },
  failures: failureLines,
});

function hostnameOf(ctx: { fleet: { list(): { name: string; hello: { hostname: string } }[] } }, worker: string): string | null {
  return ctx.fleet.list().find((s) => s.name === worker)?.hello.hostname ?? null;
}

function stats(values: number[]): PhaseStats {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  const median = sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  return { median: round(median), min: round(sorted[0]!), max: round(sorted.at(-1)!) };
}

function summarize(
  hostname: string,
  dir: string,
  blank: { sizeBytes: number; blockBytes: number; fsync: boolean },
  runs: BenchRun[],
): Omit<BenchEntry, 'worker' | 'ok' | 'error'> {
  const creation = stats(runs.map((r) => r.creationTimeMs));
  const copy = stats(runs.map((r) => r.copyTimeMs));
  const deletion = stats(runs.map((r) => r.deletionTimeMs));
  const rate = (ms: number, unit: number): number => round(blank.sizeBytes / unit / Math.max(ms / 1000, 1e-9));
  return {
    hostname,
    ...blank,
    dir,
    creationTimeMs: creation.median,
    copyTimeMs: copy.median,
    deletionTimeMs: deletion.median,
    creation,
    copy,
    deletion,
    creationMiBps: rate(creation.median, MiB),
    copyMiBps: rate(copy.median, MiB),
    creationMBps: rate(creation.median, 1e6),
    copyMBps: rate(copy.median, 1e6),
    runs: runs.map((r) => ({ creationTimeMs: round(r.creationTimeMs), copyTimeMs: round(r.copyTimeMs), deletionTimeMs: round(r.deletionTimeMs) })),
  };
}

function emptyEntry(worker: string, hostname: string | null, blank: { sizeBytes: number; blockBytes: number; fsync: boolean }): BenchEntry {
  return {
    worker,
    hostname,
    ok: false,
    error: null,
    ...blank,
    dir: null,
    creationTimeMs: null,
    copyTimeMs: null,
    deletionTimeMs: null,
    creation: null,
    copy: null,
    deletion: null,
    creationMiBps: null,
    copyMiBps: null,
    creationMBps: null,
    copyMBps: null,
    runs: [],
  };
}

function round(n: number): number {
  return Math.round(n * 1000) / 1000;
}

function fmtMs(ms: number): string {
  return ms >= 100 ? ms.toFixed(0) : ms >= 10 ? ms.toFixed(1) : ms.toFixed(2);
}

function phaseLine(label: string, s: PhaseStats, mibps: number | null): string {
  const main = `  ${label.padEnd(9)} ${fmtMs(s.median).padStart(8)} ms   (min ${fmtMs(s.min)}, max ${fmtMs(s.max)})`;
  return mibps === null ? main : `${main.padEnd(52)} ${mibps.toFixed(1).padStart(8)} MiB/s`;
}
