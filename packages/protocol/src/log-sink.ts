/**
 * What a daemon's log lines go through: a write that never throws and never retries. A line
 * that cannot be written (a full disk, a pipe nobody reads) is dropped and counted, and once
 * writing works again a line says how many were lost and why. Logging must never crash or
 * hang a daemon. The I/O is injected (`writeLine`), so this stays free of it.
 */
export class LineSink {
  private dropped = 0;
  private reason: string | null = null;

  constructor(
    private readonly writeLine: (line: string) => void,
    private readonly name: string,
  ) {}

  /** pino calls this with one serialized line (newline included). */
  write(line: string): void {
    try {
      if (this.dropped > 0) {
        const note = {
          level: 40,
          time: Date.now(),
          name: this.name,
          dropped: this.dropped,
          reason: this.reason,
          msg: `dropped ${this.dropped} log lines (${this.reason})`,
        };
        this.writeLine(`${JSON.stringify(note)}\n`);
        this.dropped = 0;
        this.reason = null;
      }
      this.writeLine(line);
    } catch (err) {
      this.dropped++;
      this.reason = (err as NodeJS.ErrnoException).code ?? (err instanceof Error ? err.message : String(err));
    }
  }

  /** Lines dropped since the last successful write. */
  get droppedLines(): number {
    return this.dropped;
  }
}
