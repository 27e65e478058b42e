import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import * as z from 'zod';
import { DroverError, ErrorCode, checkName } from '@drover/protocol';
import { writeFileAtomic } from './atomic-write.js';
import type { Role } from './roles.js';

const Entry = z.object({
  name: z.string(),
  role: z.enum(['admin', 'read-only']),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  createdAt: z.string(),
  revokedAt: z.string().nullable(),
});
type Entry = z.infer<typeof Entry>;
const File = z.array(Entry);

/** Who a request comes from: a token's name and role (the local socket is `local`, admin). */
export interface Caller {
  name: string;
  role: Role;
}

export const LOCAL_CALLER: Caller = { name: 'local', role: 'admin' };

const hash = (secret: string): string => createHash('sha256').update(secret).digest('hex');

/**
 * Operator tokens, apart from the join token (which only lets a worker join). Only their sha256
 * is stored (<state>/operator-tokens.json, written atomically); the secret is shown once, when
 * made. The first start makes `admin`, whose secret is kept in <state>/admin-token (0600) for
 * the master's own user. Revoked tokens stay listed, so a refusal can say "revoked".
 */
export class TokenStore {
  private constructor(
    private readonly file: string,
    private entries: Entry[],
  ) {}

  static async open(stateDir: string): Promise<TokenStore> {
    const file = path.join(stateDir, 'operator-tokens.json');
    let entries: Entry[] = [];
    try {
      const parsed = File.safeParse(JSON.parse(await readFile(file, 'utf8')));
      if (!parsed.success) throw new DroverError(ErrorCode.IO_ERROR, `${file} is not a valid token list; move it aside to start afresh`);
      entries = parsed.data;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    const store = new TokenStore(file, entries);
    if (entries.length === 0) {
      const { token } = await store.create('admin', 'admin');
      await writeFileAtomic(path.join(stateDir, 'admin-token'), `${token}\n`, 0o600);
    }
    return store;
  }

  /**
   * The dashboard's login token for `role` (read-only, or admin with --dashboard-admin): its
   * secret is kept in <state>/dashboard-token (or dashboard-admin-token), 0600, and printed at
   * start like the join token. A lost or revoked one is replaced by a new token.
   */
  async dashboardToken(stateDir: string, role: Role): Promise<{ token: string; file: string; name: string; role: Role }> {
    const file = path.join(stateDir, role === 'admin' ? 'dashboard-admin-token' : 'dashboard-token');
    const kept = await readFile(file, 'utf8').then(
      (t) => t.trim(),
      () => '',
    );
    if (kept) {
      const who = this.verify(kept);
      if (!('refused' in who) && who.role === role) return { token: kept, file, name: who.name, role };
    }
    const base = role === 'admin' ? 'dashboard-admin' : 'dashboard';
    const name = this.entries.some((e) => e.name === base) ? `${base}-${randomBytes(3).toString('hex')}` : base;
    const { token } = await this.create(role, name);
    await writeFileAtomic(file, `${token}\n`, 0o600);
    return { token, file, name, role };
  }

  /** The caller a secret stands for, or why it is refused. */
  verify(secret: string): Caller | { refused: 'unknown' | 'revoked' } {
    const digest = Buffer.from(hash(secret), 'hex');
    for (const e of this.entries) {
      if (!timingSafeEqual(Buffer.from(e.sha256, 'hex'), digest)) continue;
      return e.revokedAt ? { refused: 'revoked' } : { name: e.name, role: e.role };
    }
    return { refused: 'unknown' };
  }

  /** Makes a token; its secret is in the answer and nowhere else. */
  async create(role: Role, name?: string): Promise<{ name: string; role: Role; token: string }> {
    const chosen = name ?? `${role === 'admin' ? 'admin' : 'reader'}-${randomBytes(3).toString('hex')}`;
    const bad = checkName(chosen, 'token name');
    if (bad) throw new DroverError(ErrorCode.BAD_NAME, bad);
    if (this.entries.some((e) => e.name === chosen)) throw new DroverError(ErrorCode.BAD_ARGUMENTS, `a token named ${chosen} exists already (token list)`);
    const token = `drv_${randomBytes(24).toString('base64url')}`;
    await this.save([...this.entries, { name: chosen, role, sha256: hash(token), createdAt: new Date().toISOString(), revokedAt: null }]);
    return { name: chosen, role, token };
  }

  list(): { name: string; role: Role; createdAt: string; revokedAt: string | null }[] {
    return this.entries.map(({ name, role, createdAt, revokedAt }) => ({ name, role, createdAt, revokedAt }));
  }

  async revoke(name: string): Promise<void> {
    const e = this.entries.find((x) => x.name === name);
    if (!e) throw new DroverError(ErrorCode.NOT_FOUND, `no token named ${name} (token list)`);
    if (e.revokedAt) return;
    await this.save(this.entries.map((x) => (x.name === name ? { ...x, revokedAt: new Date().toISOString() } : x)));
  }

  private async save(entries: Entry[]): Promise<void> {
    await writeFileAtomic(this.file, `${JSON.stringify(entries, null, 2)}\n`, 0o600);
    this.entries = entries;
  }
}
