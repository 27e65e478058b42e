import path from 'node:path';
import { DroverError, ErrorCode, parseSize, toDroverError, type BenchRun, type ErrorBody } from '@drover/protocol';
import { badArgs } from '../run-line.js';
import { defineCommand, type Command } from './types.js';

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
  usage: 'bench [WORKER...|all] [--size 100MiB] [--runs 3] [--block 1MiB] [--dir PATH] [--no-fsync] [--json]',
  summary: 'timed create / copy / delete of a file on workers at once: median, min, max per phase',
  details: [
    'Each worker creates a file of --size random bytes in --block writes and fsyncs it, copies it',
    'to a second file and fsyncs that, then deletes both and syncs the folder; --runs times.',
    '--dir (absolute, on the worker) defaults to <worker state>/bench. A worker refuses when the',
    'folder lacks room for 2 x --size + 32 MiB; files are removed whatever happens.',
  ].join('\n'),
  options: {
    size: { type: 'string' },
    runs: { type: 'string' },
    block: { type: 'string' },
    dir: { type: 'string' },
    'no-fsync': { type: 'boolean' },
  },
  complete: ['worker-or-all', 'worker', 'worker', 'worker', 'worker', 'worker'],
  async run(args, ctx) {
    const self = this as Command;
    const sizeBytes = sizeOption(self, 'size', args.values.size, 100 * MiB);
    const blockBytes = sizeOption(self, 'block', args.values.block, MiB);
    if (blockBytes > 64 * MiB) throw badArgs(self, '--block must be at most 64MiB');
    const runsText = args.values.runs === undefined ? '3' : String(args.values.runs);
    const runs = Number(runsText);
    if (!/^\d+$/.test(runsText) || runs < 1 || runs > 1000) throw badArgs(self, `--runs must be a whole number from 1 to 1000, got "${runsText}"`);
    const dir = args.values.dir === undefined ? null : String(args.values.dir);
    if (dir !== null && !path.isAbsolute(dir)) throw badArgs(self, `--dir must be an absolute path on the workers, got "${dir}"`);
    const fsync = args.values['no-fsync'] !== true;

    const names = targets(
      args.positionals,
      ctx.fleet
        .list()
        .filter((s) => s.status === 'available')
        .map((s) => s.name),
    );
    if (names.length === 0) throw new DroverError(ErrorCode.WORKER_UNAVAILABLE, 'no worker is available');
    const pending = new Set(names);
    const showProgress = (): void => {
      if (!ctx.interactive) return;
      const done = names.filter((n) => !pending.has(n));
      ctx.out.progress(`bench: running on ${[...pending].join(', ') || '-'}${done.length ? ` (${done.join(', ')} done)` : ''}`);
    };
    showProgress();
    const blank = { sizeBytes, blockBytes, fsync };
    const entries = await Promise.all(
      names.map(async (name): Promise<BenchEntry> => {
        let hostname: string | null = null;
        try {
          const session = ctx.fleet.get(name);
          hostname = session.hello.hostname;
          const r = await session.request('bench', { sizeBytes, blockBytes, runs, dir, fsync }, { signal: ctx.signal, timeoutMs: 0 });
          return summarize(name, hostname, r.dir, blank, r.runs);
        } catch (err) {
          return { ...emptyEntry(name, hostname, blank), error: toDroverError(err).toJSON() };
        } finally {
          pending.delete(name);
          showProgress();
        }
      }),
    );
    ctx.out.progress(null);
    if (ctx.signal.aborted) throw new DroverError(ErrorCode.CANCELLED, 'benchmark cancelled; the workers removed their files');
    return entries;
  },
  format(entries) {
    const lines: string[] = [];
    for (const e of entries) {
      const head = `${e.worker}${e.hostname ? ` (${e.hostname})` : ''}`;
      if (!e.ok) {
        lines.push(`${head}  error: ${e.error!.message}`);
        continue;
      }
      lines.push(`${head}  ${formatSize(e.sizeBytes)} x ${e.runs.length} run${e.runs.length > 1 ? 's' : ''}, ${e.fsync ? 'fsync' : 'no fsync'}`);
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
  failed: (entries) => entries.some((e) => !e.ok),
});

/** Worker names from the positionals: none or `all` means every available worker. */
function targets(positionals: string[], available: string[]): string[] {
  if (positionals.length === 0 || positionals.includes('all')) return available;
  return [...new Set(positionals)];
}

function sizeOption(command: Command, name: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  const text = typeof value === 'string' ? value : '';
  const bytes = parseSize(text);
  if (bytes === null || bytes <= 0) throw badArgs(command, `--${name} must be a size like 100MiB, 4KiB or 1GiB, got "${text}"`);
  return bytes;
}

function stats(values: number[]): PhaseStats {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  const median = sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  return { median: round(median), min: round(sorted[0]!), max: round(sorted.at(-1)!) };
}

function summarize(
  worker: string,
  hostname: string,
  dir: string,
  blank: { sizeBytes: number; blockBytes: number; fsync: boolean },
  runs: BenchRun[],
): BenchEntry {
  const creation = stats(runs.map((r) => r.creationTimeMs));
  const copy = stats(runs.map((r) => r.copyTimeMs));
  const deletion = stats(runs.map((r) => r.deletionTimeMs));
  const rate = (ms: number, unit: number): number => round(blank.sizeBytes / unit / Math.max(ms / 1000, 1e-9));
  return {
    worker,
    hostname,
    ok: true,
    error: null,
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

function formatSize(bytes: number): string {
  for (const [unit, n] of [
    ['GiB', 1024 ** 3],
    ['MiB', MiB],
    ['KiB', 1024],
  ] as const)
    if (bytes >= n && bytes % (n / 1024) === 0) return `${+(bytes / n).toFixed(2)} ${unit}`;
  return `${bytes} B`;
}

function phaseLine(label: string, s: PhaseStats, mibps: number | null): string {
  const main = `  ${label.padEnd(9)} ${fmtMs(s.median).padStart(8)} ms   (min ${fmtMs(s.min)}, max ${fmtMs(s.max)})`;
  return mibps === null ? main : `${main.padEnd(52)} ${mibps.toFixed(1).padStart(8)} MiB/s`;
}
