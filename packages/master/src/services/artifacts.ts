import { createHash, randomBytes } from 'node:crypto';
import { mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { DroverError, ErrorCode, SyncBehind } from '@drover/protocol';
import type { FileFacts, Files } from '../files.js';

/**
 * The files of applied services, kept by the master (<state>/artifacts/SHA256) so it can place
 * an instance on any worker later (a queued one, a replacement) without the client that
 * applied the file. Each file is written beside, checked against its sha256, fsynced, and
 * renamed in: never half there.
 */
export class ArtifactStore {
  readonly dir: string;

  constructor(stateDir: string) {
    this.dir = path.join(stateDir, 'artifacts');
  }

  pathOf(sha256: string): string {
    return path.join(this.dir, sha256);
  }

  async has(sha256: string, size: number): Promise<boolean> {
    const info = await stat(this.pathOf(sha256)).catch(() => null);
    return info?.isFile() === true && info.size === size;
  }

  /** Copies a file from where the user is into the store (skipped when it is there already). */
  async put(facts: FileFacts, from: Files, signal: AbortSignal): Promise<void> {
    if (await this.has(facts.sha256, facts.size)) return;
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const tmp = path.join(this.dir, `.${facts.sha256}.tmp-${randomBytes(4).toString('hex')}`);
    const fh = await open(tmp, 'wx', 0o600);
    // Synced on the way (sync-behind.ts): the fsync that keeps it has only the tail to write.
    const behind = new SyncBehind(fh);
    try {
      const hash = createHash('sha256');
      let written = 0;
      for await (const chunk of from.read(facts, signal)) {
        hash.update(chunk);
        await fh.write(chunk);
        behind.wrote((written += chunk.length));
      }
      const got = hash.digest('hex');
      if (got !== facts.sha256)
        throw new DroverError(ErrorCode.CHECKSUM_MISMATCH, `${facts.path} changed while it was being read (sha256 ${got.slice(0, 12)}…)`);
      await behind.settle();
      await fh.sync();
      await fh.close();
      await rename(tmp, this.pathOf(facts.sha256));
    } catch (err) {
      await behind.settle().catch(() => undefined);
      await fh.close().catch(() => undefined);
      await rm(tmp, { force: true });
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOSPC' || code === 'EDQUOT')
        throw new DroverError(ErrorCode.NO_SPACE, `the master's disk is full: cannot keep ${facts.path} for the service`);
      throw err;
    }
  }

  /** Removes every stored file no service needs any more. */
  async prune(keep: Set<string>): Promise<void> {
    const names = await readdir(this.dir).catch(() => [] as string[]);
    await Promise.all(names.filter((n) => !keep.has(n)).map((n) => rm(path.join(this.dir, n), { force: true })));
  }
}
