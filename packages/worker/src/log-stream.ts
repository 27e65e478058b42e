import { close as closeFd, fstatSync, openSync, read, statSync } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { CHUNK_HEADER_BYTES, DroverError, ErrorCode } from '@drover/protocol';
import { logChain, type RotationClock } from './log-pump.js';
import type { OutgoingTransfer } from './transfers.js';

const FOLLOW_POLL_MS = 200;

/**
 * Where the last `lines` lines of a log begin, reading its files (oldest first, as logChain
 * lists them) backwards in blocks from the end of the newest: the file and the offset in it.
 */
export async function tailStart(files: string[], lines: number): Promise<{ file: string; offset: number }> {
  const newest = files[files.length - 1]!;
  if (lines === 0) return { file: newest, offset: (await stat(newest)).size };
  const block = Buffer.allocUnsafe(64 * 1024);
  let newlines = 0;
  // A final newline ends the last line; it does not start another one.
  let skipTrailing = true;
  for (let f = files.length - 1; f >= 0; f--) {
    const fh = await open(files[f]!, 'r').catch((err: NodeJS.ErrnoException) => {
      // A rotated file removed meanwhile: the lines before it are gone.
      if (f < files.length - 1 && err.code === 'ENOENT') return null;
      throw err;
    });
    if (!fh) return { file: files[f + 1]!, offset: 0 };
    try {
      const { size } = await fh.stat();
      let pos = size;
      while (pos > 0) {
        const len = Math.min(block.length, pos);
        pos -= len;
        await fh.read(block, 0, len, pos);
        for (let i = len - 1; i >= 0; i--) {
          if (block[i] !== 0x0a) {
            skipTrailing = false;
            continue;
          }
          if (skipTrailing) {
            skipTrailing = false;
            continue;
          }
          if (++newlines === lines)
            return pos + i + 1 === size && f < files.length - 1 ? { file: files[f + 1]!, offset: 0 } : { file: files[f]!, offset: pos + i + 1 };
        }
      }
    } finally {
      await fh.close();
    }
  }
  return { file: files[0]!, offset: 0 };
}

interface Open {
  fd: number;
  ino: number;
}

function openAt(file: string): Open | null {
  try {
    const fd = openSync(file, 'r');
    return { fd, ino: fstatSync(fd).ino };
  } catch {
    return null;
  }
}

function readAt(fd: number, buf: Buffer, offset: number, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => read(fd, buf, offset, length, position, (err, n) => (err ? reject(err) : resolve(n))));
}

function closeQuietly(o: Open): void {
  closeFd(o.fd, () => undefined);
}

/**
 * Streams a log from `start` (a file of its chain and an offset) into the transfer, and then
 * each newer file of the chain; with `follow`, keeps streaming what is appended, across
 * rotations, until `stillRunning()` turns false (and the rest is drained) or the signal aborts.
 *
 * Rotation renames log → log.1 → log.2 … and removes the oldest, so files are told apart by
 * inode. While the agent writes the log, each rotation calls this reader first (its `rotation`
 * clock's watch), before the oldest file is removed, and the reader opens the files newer than
 * the one it reads that it does not hold yet: a file removed by a later rotation stays readable
 * through its descriptor, so a reader that falls behind by more than the kept files (its
 * consumer slow, its sends waiting) still reads every line, in order, exactly once. The listing
 * and opens are synchronous: no rotation can run between them, so the chain they see is whole.
 */
export async function streamLog(
  logPath: string,
  start: { file: string; offset: number },
  out: OutgoingTransfer,
  opts: { follow: boolean; stillRunning: () => boolean; signal: AbortSignal; rotation?: RotationClock | null },
): Promise<number> {
  const clock = opts.rotation ?? null;
  const generation = (): number => clock?.generation() ?? 0;
  let cur = openAt(start.file);
  let pos = start.offset;
  if (!cur) {
    // Rotated out between finding the start and opening it: from the oldest kept on.
    cur = openAt(logChain(logPath)[0]!);
    pos = 0;
  }
  if (!cur) throw new DroverError(ErrorCode.NOT_FOUND, `log file ${logPath} is gone`);
  let current: Open = cur;
  /** Newer files of the chain, opened, oldest first. */
  const held: Open[] = [];
  /** The rotation count `held` is up to date with. */
  let seen = -1;

  /** Opens the files newer than `current` not held yet (synchronously: see above). */
  const grab = (): void => {
    const chain = logChain(logPath);
    const inodes = chain.map((f) => statSync(f, { throwIfNoEntry: false })?.ino ?? -1);
    const known = new Set([current.ino, ...held.map((h) => h.ino)]);
    // Files are removed oldest first: when ours is gone, every one left is newer.
    const from = inodes.indexOf(current.ino) + 1;
    for (let i = from; i < chain.length; i++) {
      if (inodes[i] === -1 || known.has(inodes[i]!)) continue;
      const o = openAt(chain[i]!);
      if (o) held.push(o);
    }
    seen = generation();
  };
  const unwatch = clock?.watch?.(grab) ?? null;

  let sent = 0;
  try {
    grab();
    for (;;) {
      if (clock && generation() !== seen) grab();
      // A newer file known before this read: a read that finds nothing means `current` is
      // complete (the writer renames a file only after its last write to it).
      const complete = held.length > 0;
      const buf = out.buffer();
      const bytesRead = await readAt(current.fd, buf, CHUNK_HEADER_BYTES, buf.length - CHUNK_HEADER_BYTES, pos);
      if (bytesRead > 0) {
        pos += bytesRead;
        sent += bytesRead;
        await out.write(buf, bytesRead, opts.signal);
        continue;
      }
      if (complete) {
        closeQuietly(current);
        current = held.shift()!;
        pos = 0;
        continue;
      }
      // At the end of the newest file we know of: rotated since? (read again before moving on)
      if (!clock || generation() !== seen) {
        const live = await stat(logPath).catch(() => null);
        if (live && live.ino !== current.ino) grab();
        if (held.length > 0) continue;
      }
      if (!opts.follow || opts.signal.aborted) break;
      if (!opts.stillRunning()) {
        // one last look: the process may have written just before it ended
        if (fstatSync(current.fd).size <= pos) break;
        continue;
      }
      await sleep(FOLLOW_POLL_MS, opts.signal);
    }
    return sent;
  } finally {
    unwatch?.();
    closeQuietly(current);
    for (const h of held) closeQuietly(h);
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => (clearTimeout(t), resolve()), { once: true });
  });
}
