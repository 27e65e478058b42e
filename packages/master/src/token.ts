import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { DroverError, ErrorCode } from '@drover/protocol';

/**
 * The join token: --token, else --token-file, else <state>/token (made on first start, mode
 * 0600); with where it came from, to say so without printing it.
 */
export async function resolveToken(stateDir: string, token?: string, tokenFile?: string): Promise<{ token: string; source: string }> {
  if (token !== undefined) return { token: checked(token, '--token'), source: 'the --token argument' };
  if (tokenFile !== undefined) {
    const text = await readFile(tokenFile, 'utf8').catch((err: NodeJS.ErrnoException) => {
      throw new DroverError(ErrorCode.NOT_FOUND, `cannot read --token-file ${tokenFile} (${err.code})`);
    });
    return { token: checked(text.trim(), `--token-file ${tokenFile}`), source: tokenFile };
  }
  const file = path.join(stateDir, 'token');
  try {
    return { token: checked((await readFile(file, 'utf8')).trim(), file), source: file };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const fresh = randomBytes(24).toString('base64url');
  await writeFile(file, `${fresh}\n`, { mode: 0o600, flag: 'wx' });
  return { token: fresh, source: file };
}

function checked(token: string, from: string): string {
  if (!/^[\x21-\x7e]{16,512}$/.test(token)) {
    throw new DroverError(ErrorCode.BAD_ARGUMENTS, `the token from ${from} must be 16-512 printable characters without spaces`);
  }
  return token;
}
