import { readFileSync } from 'node:fs';
import { chmod, mkdir, open, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { DroverError, ErrorCode } from '@drover/protocol';

/**
 * Claims the state dir for this agent: two agents on one state dir would share a process
 * table and an app store, and would keep replacing each other's session at the master.
 * A lock left by an agent that died (its pid gone, or no longer a node process) is taken over.
 */
export async function lockStateDir(stateDir: string): Promise<() => Promise<void>> {
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  // Enforced, not inherited: an existing 0755 folder would let every local user read the apps.
  await chmod(stateDir, 0o700);
  const file = path.join(stateDir, 'worker.pid');
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fh = await open(file, 'wx', 0o644);
      await fh.writeFile(`${process.pid}\n`);
      await fh.close();
      return async () => {
        const owner = await readFile(file, 'utf8').catch(() => '');
        if (owner.trim() === String(process.pid)) await rm(file, { force: true });
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const pid = Number((await readFile(file, 'utf8').catch(() => '')).trim());
    if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && isAgent(pid)) {
      throw new DroverError(ErrorCode.BUSY, `another worker agent (pid ${pid}) is using state dir ${stateDir}; stop it or pick another --state-dir`);
    }
    await rm(file, { force: true });
  }
  throw new DroverError(ErrorCode.BUSY, `could not claim state dir ${stateDir} (${file} keeps reappearing)`);
}

function isAgent(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('node');
  } catch {
    return false;
  }
}
