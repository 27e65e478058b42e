import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, rename, rm, type FileHandle } from 'node:fs/promises';
import path from 'node:path';

/** A temp name beside `file`, so the final rename stays on one filesystem. */
export function tempPathFor(file: string): string {
  return path.join(path.dirname(file), `.${path.basename(file)}.tmp-${randomBytes(6).toString('hex')}`);
}

/** Text gathered before one write when writing pieces: the event loop runs between slices. */
const SLICE_CHARS = 1024 * 1024;

/**
 * Writes `pieces` to `fh` in slices of about a MiB, each joined and encoded just before its write,
 * so a text of hundreds of MB is never held whole nor made in one turn of the event loop (the
 * agent's heartbeat runs between slices). Returns the bytes written.
 */
export async function writePieces(fh: FileHandle, pieces: Iterable<string>): Promise<number> {
  let bytes = 0;
  let slice: string[] = [];
  let chars = 0;
  const write = async (): Promise<void> => {
    const buf = Buffer.from(slice.join(''));
    slice = [];
    chars = 0;
    await fh.write(buf, 0, buf.length);
    bytes += buf.length;
  };
  for (const piece of pieces) {
    slice.push(piece);
    chars += piece.length;
    if (chars >= SLICE_CHARS) await write();
  }
  if (chars > 0) await write();
  return bytes;
}

/**
 * Calls `onLine` with each whole line of `file` (without its newline), read in chunks so that a
 * file past what one string may hold is read too. Returns the bytes up to the end of the last
 * whole line and the file's size (more when it ends in a torn line); null when there is no file.
 */
export async function forEachLine(file: string, onLine: (line: string) => void): Promise<{ whole: number; size: number } | null> {
  const stream = createReadStream(file, { highWaterMark: SLICE_CHARS });
  let parts: Buffer[] = [];
  let whole = 0;
  let size = 0;
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      let start = 0;
      for (let nl = chunk.indexOf(10); nl !== -1; nl = chunk.indexOf(10, start)) {
        parts.push(chunk.subarray(start, nl));
        const line = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
        parts = [];
        whole = size + nl + 1;
        onLine(line.toString('utf8'));
        start = nl + 1;
      }
      if (start < chunk.length) parts.push(chunk.subarray(start));
      size += chunk.length;
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  return { whole, size };
}

/**
 * Writes `data` (or, from pieces, in slices: see writePieces) to `file` as temp file → fsync →
 * rename → fsync of the folder; never half-written. Returns the bytes written.
 */
export async function writeFileAtomic(file: string, data: string | Buffer | Iterable<string>, mode = 0o644): Promise<number> {
  const tmp = tempPathFor(file);
  let bytes: number;
  try {
    const fh = await open(tmp, 'wx', mode);
    try {
      if (typeof data === 'string' || Buffer.isBuffer(data)) {
        await fh.writeFile(data);
        bytes = Buffer.byteLength(data);
      } else bytes = await writePieces(fh, data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  await syncDir(path.dirname(file));
  return bytes;
}

/** Flushes a folder's entries (a rename is durable only once its folder is synced). */
export async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } catch {
    // some filesystems refuse fsync on a directory; the rename is still atomic there
  } finally {
    await fh.close();
  }
}
