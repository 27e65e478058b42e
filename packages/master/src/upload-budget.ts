import { TRANSFER_WINDOW_BYTES } from '@drover/protocol';

/** Bytes all uploads together may have unacknowledged: `copy all` to a large fleet stays bounded. */
const MASTER_IN_FLIGHT_BYTES = 128 * 1024 * 1024;
const MIN_WINDOW_BYTES = 1024 * 1024;

/**
 * The master's budget of unacknowledged upload bytes, shared by every upload to every worker:
 * each gets the full window while few run and a fair share when many do. Owned by the Fleet.
 */
export class UploadBudget {
  private active = 0;

  constructor(private readonly totalBytes = MASTER_IN_FLIGHT_BYTES) {}

  open(): void {
    this.active++;
  }

  close(): void {
    this.active = Math.max(0, this.active - 1);
  }

  /** The window one upload may use now. */
  windowBytes(): number {
    return Math.max(MIN_WINDOW_BYTES, Math.min(TRANSFER_WINDOW_BYTES, Math.floor(this.totalBytes / Math.max(1, this.active))));
  }
}
