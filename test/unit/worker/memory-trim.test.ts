import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { loadTrim } from '../../../packages/worker/src/memory-trim.js';
import { ROOT, tempDir } from '../../helpers/cluster.js';

const ADDON = path.join(ROOT, 'packages/worker/dist/drover-trim.node');

/** A logger that keeps what it is told. */
function logger() {
  const said: string[] = [];
  const log = (_obj: unknown, msg?: string) => void said.push(msg ?? String(_obj));
  return { said, log: { info: log, warn: log, debug: log, error: log } as unknown as Parameters<typeof loadTrim>[1] };
}

describe('the agent’s malloc_trim addon', () => {
  // skipped: no C compiler built packages/worker/dist/drover-trim.node
  test.skipIf(!existsSync(ADDON))('loads from the state dir, once per version, and trims', () => {
    const dir = tempDir();
    // One an earlier version left, and one a crash left half written.
    writeFileSync(path.join(dir, 'drover-trim-0123456789ab.node'), 'old');
    writeFileSync(path.join(dir, 'drover-trim-0123456789ab.node.tmp-99'), 'half');
    const { log, said } = logger();
    const addon = { arch: process.arch, base64: readFileSync(ADDON).toString('base64') };
    const trim = loadTrim(dir, log, addon);
    expect(trim).not.toBeNull();
    expect(typeof trim!()).toBe('boolean');
    // Named by its hash: a second load (an agent restart) writes the same file; the earlier
    // version's is gone, and no temporary file is left.
    expect(loadTrim(dir, log, addon)).not.toBeNull();
    expect(readdirSync(dir).filter((n) => n.startsWith('drover-trim-'))).toHaveLength(1);
    expect(readdirSync(dir).some((n) => n.includes('.tmp-'))).toBe(false);
    expect(said).toEqual([]);
  });

  test('is not loaded where it cannot run: not built, another architecture, not a shared object; one line says so, nothing is left', () => {
    const dir = tempDir();
    const { log, said } = logger();
    expect(loadTrim(dir, log, null)).toBeNull();
    expect(loadTrim(dir, log, { arch: process.arch === 'x64' ? 'arm64' : 'x64', base64: 'AAAA' })).toBeNull();
    expect(said).toEqual([]);
    expect(loadTrim(dir, log, { arch: process.arch, base64: Buffer.from('not an ELF file').toString('base64') })).toBeNull();
    expect(said).toHaveLength(1);
    expect(said[0]).toMatch(/malloc_trim cannot be loaded here/);
    expect(readdirSync(dir).some((n) => n.includes('.tmp-'))).toBe(false);
  });
});
