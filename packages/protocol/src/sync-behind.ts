/**
 * Every this many bytes written to a big file, an fdatasync of it starts in the background.
 * Without it the page cache holds the whole file until the fsync at the end, which then writes
 * all of it while the sender waits: 256 MiB took ~260 ms there on this project's VMs, ~1-15 ms
 * with it (the disk writes while the rest arrives). RocksDB's bytes_per_sync, for the same reason.
 */
export const SYNC_EVERY_BYTES = 16 * 1024 * 1024;

/**
 * Keeps a file being written durable behind its writer: `wrote(total)` after each write starts
 * an fdatasync in the background once SYNC_EVERY_BYTES more are written (one at a time), and
 * `settle()` waits for the one running, before the file's final fsync or close.
 *
 * A background sync's error is the file's: the kernel reports a writeback error once per open
 * file, so the final fsync would not see it again. It goes to `onError` at once (an upload stops
 * the sender) and `settle()` rejects with it.
 */
export class SyncBehind {
  private synced = 0;
  private running: Promise<void> | null = null;
  private error: Error | null = null;

  constructor(
    private readonly file: { datasync(): Promise<void> },
    private readonly onError: (err: Error) => void = () => undefined,
    private readonly every = SYNC_EVERY_BYTES,
  ) {}

  /** `total` bytes of the file are written so far. */
  wrote(total: number): void {
    if (this.running || this.error !== null || total - this.synced < this.every) return;
    this.synced = total;
    this.running = this.file.datasync().then(
      () => void (this.running = null),
      (err: unknown) => {
        this.running = null;
        this.error = err instanceof Error ? err : new Error(String(err));
        this.onError(this.error);
      },
    );
  }

  /** Resolves once no sync is running; rejects with the error one of them met. */
  async settle(): Promise<void> {
    await this.running;
    if (this.error !== null) throw this.error;
  }
}
