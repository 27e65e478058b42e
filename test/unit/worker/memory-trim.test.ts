import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { loadMemoryAddon } from '../../../packages/worker/src/memory-trim.js';
import { ROOT, tempDir } from '../../helpers/cluster.js';

const ADDON = path.join(ROOT, 'packages/worker/dist/drover-trim.node');

/** A logger that keeps what it is told. */
function logger() {
  const said: string[] = [];
  const log = (_obj: unknown, msg?: string) => void said.push(msg ?? String(_obj));
  return { said, log: { info: log, warn: log, debug: log, error: log } as unknown as Parameters<typeof loadMemoryAddon>[1] };
}

describe('the agent’s malloc addon', () => {
  // skipped: no C compiler built packages/worker/dist/drover-trim.node
  test.skipIf(!existsSync(ADDON))('loads from the state dir, once per version, and trims', () => {
    const dir = tempDir();
    // One an earlier version left, and one a crash left half written.
    writeFileSync(path.join(dir, 'drover-trim-0123456789ab.node'), 'old');
    writeFileSync(path.join(dir, 'drover-trim-0123456789ab.node.tmp-99'), 'half');
    const { log, said } = logger();
    const addon = { arch: process.arch, base64: readFileSync(ADDON).toString('base64') };
    const loaded = loadMemoryAddon(dir, log, addon);
    expect(loaded).not.toBeNull();
    expect(typeof loaded!.trim()).toBe('boolean');
    // Named by its hash: a second load (an agent restart) writes the same file; the earlier
    // version's is gone, and no temporary file is left.
    expect(loadMemoryAddon(dir, log, addon)).not.toBeNull();
    expect(readdirSync(dir).filter((n) => n.startsWith('drover-trim-'))).toHaveLength(1);
    expect(readdirSync(dir).some((n) => n.includes('.tmp-'))).toBe(false);
    expect(said).toEqual([]);
  });

  test('is not loaded where it cannot run: not built, another architecture, not a shared object; one line says so, nothing is left', () => {
    const dir = tempDir();
    const { log, said } = logger();
    expect(loadMemoryAddon(dir, log, null)).toBeNull();
    expect(loadMemoryAddon(dir, log, { arch: process.arch === 'x64' ? 'arm64' : 'x64', base64: 'AAAA' })).toBeNull();
    expect(said).toEqual([]);
    expect(loadMemoryAddon(dir, log, { arch: process.arch, base64: Buffer.from('not an ELF file').toString('base64') })).toBeNull();
    expect(said).toHaveLength(1);
    expect(said[0]).toMatch(/malloc addon cannot be loaded here/);
    expect(readdirSync(dir).some((n) => n.includes('.tmp-'))).toBe(false);
  });

  /**
   * What a copy does to the agent's heap, in a child of its own, tuned (the settings are the process's):
   * each 1 MiB frame arrives as 16 socket reads of 64 KiB that are freed in batches (the
   * scavenge every 2 MiB), is assembled into one 1 MiB buffer, and that is freed once written,
   * up to 8 later (the window). Prints the minor page faults after 256 and after 1,024 frames.
   */
  const churnTuned = (): { at256: number; at1024: number } => {
    const script = `
const drop = new (require('node:worker_threads').MessageChannel)().port1; drop.close();
const free = (b) => drop.postMessage(null, [b.buffer]);
if (require(${JSON.stringify(ADDON)}).tune() !== true) throw new Error('tune() returned false');
const faults = () => process.resourceUsage().minorPageFault;
const frames = []; let reads = []; const f0 = faults(); const out = {};
for (let i = 1; i <= 1024; i++) {
  for (let r = 0; r < 16; r++) reads.push(new Uint8Array(new ArrayBuffer(65536)).fill(r));
  frames.push(Buffer.allocUnsafe(1 << 20).fill(i));
  if (reads.length >= 32) { reads.forEach(free); reads = []; }
  if (frames.length > 8) free(frames.shift());
  if (i === 256) out.at256 = faults() - f0;
}
out.at1024 = faults() - f0;
console.log(JSON.stringify(out));`;
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    return JSON.parse(r.stdout) as { at256: number; at1024: number };
  };

  // skipped: no C compiler built packages/worker/dist/drover-trim.node
  test.skipIf(!existsSync(ADDON))('tune(): a copy’s chunk buffers are reused from the heap, not faulted in again as the bytes go by', () => {
    const tuned = churnTuned();
    // 768 MiB more moved: tuned, what the window holds was faulted in once, and the rest reuses
    // it (~400 faults more here). With glibc's own thresholds its free heap top is given back
    // and faulted in again: 9,800-30,000 faults more in 9 runs of 10 here (the order in which
    // V8 frees the buffers varies, and with it glibc's heap: under load it once stayed low).
    expect(tuned.at1024 - tuned.at256, JSON.stringify(tuned)).toBeLessThan(768 * 2);
  });
});
