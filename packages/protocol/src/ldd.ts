/** What ldd said about one executable or library. */
export interface LddReport {
  /** Libraries the loader found: the name it asked for (soname) and where it found it. */
  resolved: { name: string; path: string }[];
  /** Needed libraries the loader could not find. */
  missing: string[];
  /** A library that was found but cannot be loaded (truncated, wrong architecture). */
  broken: { name: string; why: string } | null;
}

/**
 * Parses ldd's output (stdout and stderr together): `libfoo.so.1 => /opt/foo/libfoo.so.1 (0x…)`,
 * `libbar.so => not found`, and `error while loading shared libraries: NAME: WHY`. The master
 * reads it to find what to copy, the worker to check that a launch will find everything.
 */
export function parseLdd(output: string): LddReport {
  const resolved: LddReport['resolved'] = [];
  const missing: string[] = [];
  for (const line of output.split('\n')) {
    const m = /^\s*(\S+)\s+=>\s+(.*?)\s*(\(0x[0-9a-f]+\))?\s*$/.exec(line);
    if (!m) continue;
    const name = m[1]!;
    const where = m[2]!;
    if (where === 'not found') missing.push(name);
    else if (where.startsWith('/')) resolved.push({ name, path: where });
  }
  const err = /error while loading shared libraries: (\S+?): (.+)$/m.exec(output);
  const broken = err ? { name: err[1]!.split('/').pop()!, why: err[2]!.trim() } : null;
  return { resolved, missing, broken };
}
