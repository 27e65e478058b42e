import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { DroverError, ErrorCode } from '@drover/protocol';
import { writeFileAtomic } from './atomic-write.js';
import { createSelfSigned } from './self-signed.js';

export interface TlsIdentity {
  cert: Buffer;
  key: Buffer;
  /** Made by this master (self-signed): clients pin it rather than trust a CA. */
  selfSigned: boolean;
  /** Made now, on this start. */
  created: boolean;
}

/**
 * The master's certificate and key: `--tls-cert/--tls-key` when given, else the self-signed
 * pair in <state>/tls/, made on first start. The pair becomes current whole: both files are
 * written into a new folder that is renamed to tls/ in one step.
 */
export async function loadTlsIdentity(stateDir: string): Promise<TlsIdentity> {
  const dir = path.join(stateDir, 'tls');
  try {
    const [cert, key] = await Promise.all([readFile(path.join(dir, 'cert.pem')), readFile(path.join(dir, 'key.pem'))]);
    return { cert, key, selfSigned: true, created: false };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new DroverError(ErrorCode.IO_ERROR, `cannot read the master's certificate in ${dir} (${(err as NodeJS.ErrnoException).code})`);
    }
  }
  const made = createSelfSigned('drover master');
  const tmp = path.join(stateDir, `.tls-${randomBytes(4).toString('hex')}`);
  try {
    await mkdir(tmp, { mode: 0o700 });
    await writeFileAtomic(path.join(tmp, 'cert.pem'), made.cert, 0o644);
    await writeFileAtomic(path.join(tmp, 'key.pem'), made.key, 0o600);
    await rename(tmp, dir);
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    throw err;
  }
  return { cert: Buffer.from(made.cert), key: Buffer.from(made.key), selfSigned: true, created: true };
}
