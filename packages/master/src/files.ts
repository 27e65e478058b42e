import type { LibraryScan } from './ldd.js';

/** A file as the side that holds it described it: where it is there, its size and sha256. */
export interface FileFacts {
  path: string;
  size: number;
  sha256: string;
  /** device:inode:size:mtime (ns) where the file is: the same string means the same, unchanged file. */
  identity?: string;
}

/** A file as `peek` finds it: the sha256 only when known without reading the file (a cached hash). */
export type PeekedFile = Omit<FileFacts, 'sha256'> & { sha256?: string };

/** What a read needs of a file: where, how big (checked), and which file it must be (identity). */
export type ReadSpec = PeekedFile;

export interface ReadOptions {
  /** Start at this byte (a fan-out reader that fell behind goes on alone from where it is). */
  offset?: number;
  /** Read buffers from here (READ_BUFFER_BYTES each) when the file is read on this machine. */
  alloc?: () => Buffer;
}

/** A file being written where the user is (logs --out): never in place until `finish(true)`. */
export interface FileWriter {
  /** Where the file will be, on the user's machine. */
  readonly path: string;
  /**
   * Resolves once the writer has room for more (a slow disk slows the sender). `data` is a
   * chunk as it arrived in a chunk frame: a writer that sends it on may frame it in place,
   * over the CHUNK_HEADER_BYTES before it in its memory (that frame's old header). Resolves
   * only once nothing refers to `data` any more (written to the file, or out of the socket):
   * the caller may free it then.
   */
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
  /** Size and identity without reading the file; the sha256 only if it is cached. */
  peek(file: string): Promise<PeekedFile>;
  /**
   * The sha256 of a file learnt without reading it here (the workers hashed what they got): kept
   * in the hash cache while the file is still the one `file.identity` names. Best effort.
   */
  remember(file: { path: string; sha256: string; identity: string }): Promise<void>;
  /** The non-system shared libraries `file` needs, by that machine's ldd and environment. */
  libraries(file: string): Promise<LibraryScan>;
  /**
   * The file's bytes, in chunks; throws if it no longer has the size it was described with.
   * Each chunk has CHUNK_HEADER_BYTES free before it in its memory, so a sender frames it in
   * place (frameInPlace) instead of copying it.
   */
  read(file: ReadSpec, signal: AbortSignal, opts?: ReadOptions): AsyncIterable<Buffer>;
  /** Opens `file` to write: refuses anything but a new file, or a regular one with `force`. */
  create(file: string, force: boolean): Promise<FileWriter>;
}
