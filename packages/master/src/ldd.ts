import { execFile } from 'node:child_process';
import path from 'node:path';

/** Libraries that are part of the C runtime on every Linux machine: never copied, wherever found. */
const RUNTIME = /^(libc|libpthread|libm|libdl|librt|libutil|libresolv|libnsl|libcrypt|libanl|ld-linux[^/]*|ld64|linux-vdso|linux-gate)\.so/;

/** The system library folders: /lib, /lib64, /usr/lib, /usr/lib64 and their multiarch subfolders. */
export function isSystemLibrary(file: string): boolean {
  const dir = path.dirname(path.normalize(file));
  if (/^\/(usr\/)?lib(32|64|x32)?$/.test(dir)) return true;
  return /^\/(usr\/)?lib(32|64|x32)?\/[a-z0-9_]+-linux-[a-z0-9_]+$/.test(dir);
}

export interface ResolvedLibrary {
  /** The name the loader asks for (the soname), which is the name it is stored under. */
  name: string;
  /** Where it was found on this machine. */
  path: string;
}

export interface LibraryScan {
  libraries: ResolvedLibrary[];
  /** Needed libraries this machine could not resolve: not copied. */
  missing: string[];
}

/**
 * Asks ldd which shared libraries `file` needs and keeps the non-system ones.
 * A static binary or a script needs none.
 */
export function scanLibraries(file: string): Promise<LibraryScan> {
  return new Promise((resolve) => {
    execFile('ldd', [file], { timeout: 20_000, maxBuffer: 4 * 1024 * 1024 }, (_err, stdout) => {
      resolve(parseLdd(String(stdout ?? '')));
    });
  });
}

/** Parses ldd output lines: `libfoo.so.1 => /opt/foo/libfoo.so.1 (0x…)`, `libbar.so => not found`. */
export function parseLdd(output: string): LibraryScan {
  const libraries: ResolvedLibrary[] = [];
  const missing: string[] = [];
  for (const line of output.split('\n')) {
    const m = /^\s*(\S+)\s+=>\s+(.*?)\s*(\(0x[0-9a-f]+\))?\s*$/.exec(line);
    if (!m) continue;
    const name = m[1]!;
    const where = m[2]!;
    if (RUNTIME.test(name)) continue;
    if (where === 'not found') {
      missing.push(name);
      continue;
    }
    if (!where.startsWith('/') || isSystemLibrary(where)) continue;
    libraries.push({ name, path: where });
  }
  return { libraries, missing };
}
