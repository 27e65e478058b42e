import { open, stat } from 'node:fs/promises';
import { CHUNK_BYTES, DroverError, ErrorCode } from '@drover/protocol';
import type { OutgoingTransfer } from './transfers.js';

const FOLLOW_POLL_MS = 200;

/** Offset where the last `lines` lines of the file begin (reads backwards in blocks). */
export async function tailOffset(file: string, lines: number): Promise<number> {
  const fh = await open(file, 'r');
  try {
    const { size } = await fh.stat();
    if (lines === 0) return size;
    const block = Buffer.allocUnsafe(64 * 1024);
    let pos = size;
    let newlines = 0;
    // A final newline ends the last line; it does not start another one.
    let skipTrailing = true;
    while (pos > 0) {
      const len = Math.min(block.length, pos);
      pos -= len;
      await fh.read(block, 0, len, pos);
      for (let i = len - 1; i >= 0; i--) {
        if (block[i] !== 0x0a) {
          skipTrailing = false;
          continue;
        }
        if (skipTrailing && pos + i === size - 1) continue;
        if (++newlines === lines) return pos + i + 1;
      }
    }
    return 0;
  } finally {
    await fh.close();
  }
}

/**
 * Streams `file` from `offset` into the transfer; with `follow`, keeps streaming what is
 * appended until `stillRunning()` turns false (and the rest is drained) or the signal aborts.
 */
export async function streamLog(
  file: string,
  offset: number,
  out: OutgoingTransfer,
  opts: { follow: boolean; stillRunning: () => boolean; signal: AbortSignal },
): Promise<number> {
  const fh = await open(file, 'r').catch((err: NodeJS.ErrnoException) => {
    throw new DroverError(ErrorCode.NOT_FOUND, `log file ${file} is gone (${err.code})`);
  });
  try {
    let pos = offset;
    for (;;) {
      const buf = Buffer.allocUnsafe(CHUNK_BYTES);
      const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
      if (bytesRead > 0) {
        pos += bytesRead;
        await out.write(buf.subarray(0, bytesRead), opts.signal);
        continue;
      }
      if (!opts.follow || opts.signal.aborted) break;
      if (!opts.stillRunning()) {
        // one last look: the process may have written just before it ended
        const { size } = await stat(file);
        if (size <= pos) break;
        continue;
      }
      await sleep(FOLLOW_POLL_MS, opts.signal);
    }
    return pos - offset;
  } finally {
    await fh.close();
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => (clearTimeout(t), resolve()), { once: true });
  });
}
