import { randomBytes, randomFillSync } from 'node:crypto';
import { copyFile, mkdir, open, rm, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import { DroverError, ErrorCode, formatBytes, releaseMemorySoon, toDroverError, type BenchRun, type RequestOf, type ResultDataOf } from '@drover/protocol';
import { syncDir } from './atomic.js';
import type { Services } from './services.js';

/** Room kept free beyond the two files, so a benchmark never fills a disk to the last byte. */
export const BENCH_MARGIN_BYTES = 32 * 1024 * 1024;

/**
 * The timed file benchmark: create (written in blocks, fsynced), copy (fsynced), delete both
 * (folder synced), `runs` times. One at a time per worker; files are removed whatever happens.
 */
export async function runBench(request: RequestOf<'bench'>, services: Services, signal: AbortSignal): Promise<ResultDataOf<'bench'>> {
  const { workerName } = services;
  if (services.benchRunning) throw new DroverError(ErrorCode.BUSY, `${workerName} is already running a benchmark; try again when it ends`);
  services.benchRunning = true;
  try {
    const dir = await benchDir(request.dir, services);
    const need = 2 * request.sizeBytes + BENCH_MARGIN_BYTES;
    const free = await services.store.freeBytes(dir);
    if (free < need) {
      throw new DroverError(
        ErrorCode.NO_SPACE,
        `${dir} on ${workerName} has ${formatBytes(free)} free; the benchmark needs 2 x ${formatBytes(request.sizeBytes)} + ${formatBytes(BENCH_MARGIN_BYTES)}`,
      );
    }
    const runs: BenchRun[] = [];
    for (let i = 0; i < request.runs; i++) {
      runs.push(await runOnce(dir, request, signal));
      services.logger.debug({ run: i + 1, ...runs[i] }, 'bench run');
    }
    return { dir, sizeBytes: request.sizeBytes, blockBytes: request.blockBytes, fsync: request.fsync, runs };
  } finally {
    services.benchRunning = false;
    // Its blocks and file handles are garbage now: give the memory back once it has settled.
    releaseMemorySoon();
  }
}

async function benchDir(dir: string | null, services: Services): Promise<string> {
  if (dir === null) {
    const own = path.join(services.stateDir, 'bench');
    await mkdir(own, { recursive: true });
    return own;
  }
  if (!path.isAbsolute(dir)) throw new DroverError(ErrorCode.BAD_ARGUMENTS, `--dir must be an absolute path on ${services.workerName}, got ${dir}`);
  const info = await stat(dir).catch(() => null);
  if (!info) throw new DroverError(ErrorCode.NOT_FOUND, `--dir ${dir} does not exist on ${services.workerName}`);
  if (!info.isDirectory()) throw new DroverError(ErrorCode.BAD_ARGUMENTS, `--dir ${dir} is not a folder on ${services.workerName}`);
  return dir;
}

async function runOnce(dir: string, request: RequestOf<'bench'>, signal: AbortSignal): Promise<BenchRun> {
  const tag = randomBytes(6).toString('hex');
  const a = path.join(dir, `.drover-bench-${tag}.a`);
  const b = path.join(dir, `.drover-bench-${tag}.b`);
  try {
    const creationTimeMs = await timed(() => createFile(a, request, signal));
    check(signal);
    const copyTimeMs = await timed(async () => {
      await copyFile(a, b);
      if (request.fsync) await fsyncFile(b);
    });
    check(signal);
    const deletionTimeMs = await timed(async () => {
      await unlink(a);
      await unlink(b);
      if (request.fsync) await syncDir(dir);
    });
    return { creationTimeMs, copyTimeMs, deletionTimeMs };
  } catch (err) {
    const e = toDroverError(err);
    if (e.code === ErrorCode.NO_SPACE) throw new DroverError(ErrorCode.NO_SPACE, `the disk of ${dir} filled up during the benchmark`, { cause: err });
    throw e;
  } finally {
    await Promise.all([rm(a, { force: true }), rm(b, { force: true })]);
  }
}

/** Writes `sizeBytes` of random data in blocks; each block is stamped with its index so none repeats. */
async function createFile(file: string, request: RequestOf<'bench'>, signal: AbortSignal): Promise<void> {
  const block = randomFillSync(Buffer.allocUnsafe(Math.min(request.blockBytes, request.sizeBytes)));
  const fh = await open(file, 'wx', 0o600);
  try {
    let written = 0;
    let index = 0;
    while (written < request.sizeBytes) {
      check(signal);
      if (block.length >= 8) block.writeBigUInt64LE(BigInt(index++), 0);
      const len = Math.min(block.length, request.sizeBytes - written);
      const { bytesWritten } = await fh.write(block, 0, len);
      written += bytesWritten;
    }
    if (request.fsync) await fh.sync();
  } finally {
    await fh.close();
  }
}

async function fsyncFile(file: string): Promise<void> {
  const fh = await open(file, 'r+');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function timed(fn: () => Promise<void>): Promise<number> {
  const start = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - start) / 1e6;
}

function check(signal: AbortSignal): void {
  if (signal.aborted) throw new DroverError(ErrorCode.CANCELLED, 'benchmark cancelled');
}
