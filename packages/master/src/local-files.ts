import { createReadStream } from 'node:fs';
import type { BigIntStats } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { lstat, mkdir, open, readFile, rename, rm, stat } from './lazy-fs.js';
import path from 'node:path';
import { CHUNK_HEADER_BYTES, DroverError, ErrorCode, FILE_CHUNK_BYTES, SyncBehind, toDroverError } from '@drover/protocol';
import { writeFileAtomic } from './atomic-write.js';
import type { FileFacts, FileWriter, Files, PeekedFile, ReadSpec } from './files.js';
import { scanLibraries } from './ldd.js';

// node:crypto (hashes, temp names) loads on first use, through process.getBuiltinModule: the
// clients carry this module, and loading crypto is ~4 ms of a start that needs no file.

/** What identifies an unchanged file: device, inode, size and mtime (as the protocol's `identity`). */
export function identityOf(info: BigIntStats): string {
  return `${info.dev}:${info.ino}:${info.size}:${info.mtimeNs}`;
}

/**
 * Opens `file` only if it is the very file `identity` names (same device, inode, size, mtime),
 * checked on the open descriptor; otherwise null.
 */
export async function openIfSame(file: string, identity: string): Promise<FileHandle | null> {
  const fh = await open(file, 'r').catch(() => null);
  if (!fh) return null;
  const same = await fh.stat({ bigint: true }).then(
    (info) => info.isFile() && identityOf(info) === identity,
    () => false,
  );
  if (same) return fh;
  await fh.close();
  return null;
}

/** What identifies an unchanged file: any write changes its mtime or ctime, a replacement its inode. */
interface HashEntry {
  key: string;
  sha256: string;
}

const MAX_HASHES = 1024;

/**
 * The sha256 of files hashed before, by path, kept while the identity (device, inode, size,
 * mtime, ctime) is the same: redeploying an unchanged binary does not read it again. With a
 * file, the cache outlives the process (the client is one short process per command).
 */
class HashCache {
  private entries = new Map<string, HashEntry>();
  private loaded = false;
  private dirty = false;

  constructor(private readonly file: string | null) {}

  async get(file: string, key: string): Promise<string | undefined> {
    await this.load();
    const e = this.entries.get(file);
    return e?.key === key ? e.sha256 : undefined;
  }

  set(file: string, key: string, sha256: string): void {
    this.entries.delete(file);
    if (this.entries.size >= MAX_HASHES) this.entries.delete(this.entries.keys().next().value!);
    this.entries.set(file, { key, sha256 });
    this.dirty = true;
  }

  /** Best effort: a cache that cannot be written only costs a hash next time. */
  async save(): Promise<void> {
    if (!this.file || !this.dirty) return;
    this.dirty = false;
    try {
      await mkdir(path.dirname(this.file), { recursive: true, mode: 0o700 });
      await writeFileAtomic(this.file, JSON.stringify(Object.fromEntries(this.entries)), 0o600);
    } catch {
      // ignored: see above
    }
  }

  private async load(): Promise<void> {
    if (this.loaded || !this.file) return;
    this.loaded = true;
    try {
      const raw = JSON.parse(await readFile(this.file, 'utf8')) as Record<string, HashEntry>;
      for (const [file, e] of Object.entries(raw)) {
        if (typeof e?.key === 'string' && typeof e.sha256 === 'string' && /^[0-9a-f]{64}$/.test(e.sha256)) this.entries.set(file, e);
      }
    } catch {
      // no cache yet, or an unreadable one: start afresh
    }
  }
}

/** Names an errno for the user: "no file at X (ENOENT)", "cannot read X (EACCES)". */
function readError(file: string, err: NodeJS.ErrnoException): DroverError {
  if (err.code === 'ENOENT') return new DroverError(ErrorCode.NOT_FOUND, `no file at ${file} (ENOENT)`);
  return new DroverError(ErrorCode.IO_ERROR, `cannot read ${file} (${err.code ?? err.message})`);
}

/**
 * Room for a WebSocket frame header in front of a chunk frame: a server's header is at most 10
 * bytes (FIN and opcode, a 127 length marker, 64 bits of length; no mask). Here, not in
 * ws-frame.ts: the clients read files with readChunks too, and must not load ws and node:tls.
 */
export const WS_HEADER_ROOM = 10;

/**
 * Room in front of each chunk readChunks reads: a chunk header, and before it a WebSocket
 * header (a frame to a worker over TLS goes as one buffer: ws-frame.ts).
 */
export const READ_HEADROOM = WS_HEADER_ROOM + CHUNK_HEADER_BYTES;

/** The size of a buffer readChunks reads one chunk into: the chunk and room for its headers. */
export const READ_BUFFER_BYTES = READ_HEADROOM + FILE_CHUNK_BYTES;

/**
 * Reads a file in chunks of FILE_CHUNK_BYTES, each into a buffer of READ_BUFFER_BYTES from
 * `alloc` (fresh ones by default) with READ_HEADROOM free in front of the data (a sender
 * writes its frame headers there instead of copying the chunk). Throws when the file is not
 * `size` bytes long any more.
 */
export async function* readChunks(
  file: ReadSpec,
  signal: AbortSignal,
  opts: {
    alloc?: () => Buffer;
    /** Read this open file (closed at the end) instead of opening file.path. */
    handle?: FileHandle;
    /** Start here: the chunks cover [offset, size). */
    offset?: number;
  } = {},
): AsyncGenerator<Buffer> {
  const headroom = READ_HEADROOM;
  const alloc = opts.alloc ?? (() => Buffer.allocUnsafe(READ_BUFFER_BYTES));
  const fh =
    opts.handle ??
    (await open(file.path, 'r').catch((err: NodeJS.ErrnoException) => {
      throw readError(file.path, err);
    }));
  try {
    let offset = opts.offset ?? 0;
    if (offset > file.size) throw new DroverError(ErrorCode.BAD_REQUEST, `offset ${offset} is past the end of ${file.path} (${file.size} bytes)`);
    for (;;) {
      if (signal.aborted) throw new DroverError(ErrorCode.CANCELLED, 'cancelled');
      const buf = alloc();
      const { bytesRead } = await fh.read(buf, headroom, FILE_CHUNK_BYTES, offset).catch((err: NodeJS.ErrnoException) => {
        throw readError(file.path, err);
      });
      if (bytesRead === 0) break;
      offset += bytesRead;
      if (offset > file.size) throw new DroverError(ErrorCode.IO_ERROR, `${file.path} grew while it was being copied`);
      yield buf.subarray(headroom, headroom + bytesRead);
    }
    if (offset !== file.size) throw new DroverError(ErrorCode.IO_ERROR, `${file.path} shrank while it was being copied`);
    // Not hashed before sending (the receiver hashes it): a file written to meanwhile is caught here.
    if (file.identity) {
      const now = await fh.stat({ bigint: true }).catch(() => null);
      if (!now || identityOf(now) !== file.identity) throw new DroverError(ErrorCode.IO_ERROR, `${file.path} changed while it was being copied`);
    }
  } finally {
    await fh.close();
  }
}

/** --out never replaces a device, a folder or a symlink, and replaces a file only with `force`. */
async function checkTarget(file: string, force: boolean): Promise<void> {
  const info = await lstat(file).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return null;
    throw new DroverError(ErrorCode.IO_ERROR, `${file} cannot be written (${err.code})`);
  });
  if (!info) return;
  if (!info.isFile()) {
    const kind = info.isSymbolicLink() ? 'a symbolic link' : info.isDirectory() ? 'a folder' : 'not a regular file';
    throw new DroverError(ErrorCode.BAD_ARGUMENTS, `${file} is ${kind}; name a new file or a regular one`);
  }
  if (!force) throw new DroverError(ErrorCode.BAD_ARGUMENTS, `${file} exists; add --force to replace it`);
}

function writeError(file: string, err: unknown): DroverError {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOSPC' || code === 'EDQUOT') return new DroverError(ErrorCode.NO_SPACE, `${file}: no space left on its device (${code})`);
  if (err instanceof DroverError) return err;
  return new DroverError(ErrorCode.IO_ERROR, `${file} cannot be written (${code ?? toDroverError(err).message})`);
}

/** A new file written beside its target and renamed into place, fsynced, only when kept. */
async function createFile(file: string, force: boolean): Promise<FileWriter> {
  await checkTarget(file, force);
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.tmp-${process.getBuiltinModule('node:crypto').randomBytes(4).toString('hex')}`);
  const fh: FileHandle = await open(tmp, 'wx', 0o644).catch((err: unknown) => {
    throw writeError(file, err);
  });
  let bytes = 0;
  let finished = false;
  // Synced on the way (sync-behind.ts): the fsync that keeps it has only the tail to write.
  const behind = new SyncBehind(fh);
  return {
    path: file,
    async write(data) {
      try {
        await fh.write(data);
        bytes += data.length;
        behind.wrote(bytes);
      } catch (err) {
        throw writeError(file, err);
      }
    },
    async finish(keep) {
      if (finished) return { path: file, bytes };
      finished = true;
      try {
        if (keep) {
          await behind.settle();
          await fh.sync();
          await fh.close();
          await rename(tmp, file);
          const dir = await open(path.dirname(file), 'r');
          await dir.sync().catch(() => undefined);
          await dir.close();
        }
        return { path: file, bytes };
      } catch (err) {
        throw writeError(file, err);
      } finally {
        // Its error, if one failed, is said above or does not matter (the file is not kept).
        await behind.settle().catch(() => undefined);
        await fh.close().catch(() => undefined);
        // Gone once renamed; otherwise nothing half-written is left behind.
        await rm(tmp, { force: true });
      }
    },
  };
}

/** The files on this machine, read and written by this process (with its user and environment). */
export function localFiles(opts: { hashCache?: string } = {}): Files & { flush(): Promise<void> } {
  const cache = new HashCache(opts.hashCache ?? null);
  async function describe(file: string, hash: true): Promise<FileFacts>;
  async function describe(file: string, hash: boolean): Promise<PeekedFile>;
  async function describe(file: string, hash: boolean): Promise<PeekedFile> {
    const info = await stat(file, { bigint: true }).catch((err: NodeJS.ErrnoException) => {
      throw readError(file, err);
    });
    if (!info.isFile()) throw new DroverError(ErrorCode.BAD_ARGUMENTS, `${file} is not a regular file`);
    const identity = identityOf(info);
    const key = `${identity}:${info.ctimeNs}`;
    let sha256 = await cache.get(file, key);
    if (sha256 === undefined && hash) {
      const digest = process.getBuiltinModule('node:crypto').createHash('sha256');
      try {
        for await (const chunk of createReadStream(file, { highWaterMark: 1024 * 1024 })) digest.update(chunk as Buffer);
      } catch (err) {
        throw readError(file, err as NodeJS.ErrnoException);
      }
      sha256 = digest.digest('hex');
      cache.set(file, key, sha256);
    }
    // Whatever happens to the file after this, the worker checks the sha256 of what it receives.
    return { path: file, size: Number(info.size), identity, ...(sha256 === undefined ? {} : { sha256 }) };
  }
  return {
    describe: (file) => describe(file, true),
    peek: (file) => describe(file, false),
    async remember(file) {
      const info = await stat(file.path, { bigint: true }).catch(() => null);
      if (info?.isFile() && identityOf(info) === file.identity) cache.set(file.path, `${file.identity}:${info.ctimeNs}`, file.sha256);
    },
    libraries: (file) => scanLibraries(file),
    read: (file, signal, o = {}) => readChunks(file, signal, o),
    create: (file, force) => createFile(file, force),
    flush: () => cache.save(),
  };
}
