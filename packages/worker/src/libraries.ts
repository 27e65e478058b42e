import { execFile } from 'node:child_process';
import { DroverError, ErrorCode } from '@drover/protocol';

/**
 * Asks the dynamic loader (through ldd) whether every library of `exe` resolves here, so a
 * launch fails with the missing library's name rather than a process that dies at once.
 * A static binary, a script, or a machine without ldd passes.
 */
export function checkLibraries(exe: string, env: NodeJS.ProcessEnv, workerName: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('ldd', [exe], { env, timeout: 10_000, maxBuffer: 1024 * 1024 }, (_err, stdout, stderr) => {
      // A library that is found but cannot be loaded (truncated, wrong architecture) stops ldd early.
      const broken = /error while loading shared libraries: (\S+?): (.+)$/m.exec(`${String(stdout ?? '')}\n${String(stderr ?? '')}`);
      if (broken) {
        const name = broken[1]!.split('/').pop()!;
        return reject(new DroverError(ErrorCode.LIBRARY_MISSING, `${name} cannot be loaded on ${workerName} (${broken[2]!.trim()}): copy it with --lib`));
      }
      const missing = String(stdout ?? '')
        .split('\n')
        .map((line) => /^\s*(\S+)\s+=>\s+not found/.exec(line)?.[1])
        .filter((name): name is string => Boolean(name));
      if (missing.length === 0) return resolve();
      const list = missing.join(', ');
      reject(new DroverError(ErrorCode.LIBRARY_MISSING, `${list} not found on ${workerName}: copy ${missing.length > 1 ? 'them' : 'it'} with --lib`));
    });
  });
}
