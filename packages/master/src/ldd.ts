import path from 'node:path';
import { parseLdd } from '@drover/protocol';

/** Libraries that are part of the C runtime on every Linux machine: never copied, wherever found. */
const RUNTIME = /^(libc|libpthread|libm|libdl|librt|libutil|libresolv|libnsl|libcrypt|libanl|ld-linux[^/]*|ld64|linux-vdso|linux-gate)\.so/;

/** The system library folders: /lib, /lib64, /usr/lib, /usr/lib64 and their multiarch subfolders. */
export function isSystemLibrary(file: string): boolean {
  const dir = path.dirname(path.normalize(file));
  if (/^\/(usr\/)?lib(32|64|x32)?$/.test(dir)) return true;
  return /^\/(usr\/)?lib(32|64|x32)?\/[a-z0-9_]+-linux-[a-z0-9_]+$/.test(dir);
}

export interface LibraryScan {
  /** Non-system libraries: the name the loader asks for (stored under it) and where it is here. */
  libraries: { name: string; path: string }[];
  /** Needed libraries this machine could not resolve: not copied. */
  missing: string[];
}

/** Keeps what ldd reported that must travel with an executable: non-runtime, non-system libraries. */
export function librariesToCopy(lddOutput: string): LibraryScan {
  const report = parseLdd(lddOutput);
  return {
    libraries: report.resolved.filter((l) => !RUNTIME.test(l.name) && !isSystemLibrary(l.path)),
    missing: report.missing.filter((name) => !RUNTIME.test(name)),
  };
}

/**
 * Asks ldd which shared libraries `file` needs and keeps the non-system ones.
 * A static binary or a script needs none.
 */
export function scanLibraries(file: string): Promise<LibraryScan> {
  // Loaded when first needed: a client (`drover`, `master exec`) that copies nothing never does.
  const { execFile } = process.getBuiltinModule('node:child_process');
  return new Promise((resolve) => {
    execFile('ldd', [file], { timeout: 20_000, maxBuffer: 4 * 1024 * 1024 }, (_err, stdout) => {
      resolve(librariesToCopy(String(stdout ?? '')));
    });
  });
}
