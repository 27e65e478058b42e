import { open, rename, rm } from './lazy-fs.js';
import path from 'node:path';

/** Writes `data` to `file` as temp file → fsync → rename → fsync of the folder: never half-written. */
export async function writeFileAtomic(file: string, data: string, mode: number): Promise<void> {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.tmp-${process.getBuiltinModule('node:crypto').randomBytes(6).toString('hex')}`);
  try {
    const fh = await open(tmp, 'wx', mode);
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  const dir = await open(path.dirname(file), 'r');
  try {
    await dir.sync().catch(() => undefined);
  } finally {
    await dir.close();
  }
}
