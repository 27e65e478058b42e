import type { LibraryScan } from './ldd.js';

/** A file as the side that holds it described it: where it is there, its size and sha256. */
export interface FileFacts {
  path: string;
  size: number;
  sha256: string;
  /** device:inode:size:mtime (ns) where the file is: the same string means the same, unchanged file. */
  identity?: string;
}

/** A file being written where the user is (logs --out): never in place until `finish(true)`. */
export interface FileWriter {
  /** Where the file will be, on the user's machine. */
  readonly path: string;
  /** Resolves once the writer has room for more (a slow disk slows the sender). */
  write(data: Buffer, signal: AbortSignal): Promise<void>;
  /** keep: fsync and rename into place; otherwise the partial file is removed. */
  finish(keep: boolean): Promise<{ path: string; bytes: number }>;
}

/**
 * The files a command names, on the machine of whoever typed it: the master's own disk for its
 * own shell, the client's for `drover` and `master exec` (asked over the operator protocol).
 * Paths are absolute (commands resolve them against the caller's cwd).
 */
export interface Files {
  /** Size and sha256; each file is hashed once per path, size and mtime. */
  describe(file: string): Promise<FileFacts>;
  /** The non-system shared libraries `file` needs, by that machine's ldd and environment. */
  libraries(file: string): Promise<LibraryScan>;
  /**
   * The file's bytes, in chunks; throws if it no longer has the size it was described with.
   * Each chunk has CHUNK_HEADER_BYTES free before it in its memory, so a sender frames it in
   * place (frameInPlace) instead of copying it.
   */
  read(file: FileFacts, signal: AbortSignal): AsyncIterable<Buffer>;
  /** Opens `file` to write: refuses anything but a new file, or a regular one with `force`. */
  create(file: string, force: boolean): Promise<FileWriter>;
}
