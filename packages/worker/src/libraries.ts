import { execFile } from 'node:child_process';
import { DroverError, ErrorCode, parseLdd } from '@drover/protocol';

/**
 * Asks the dynamic loader (through ldd) whether every library of `exe` resolves here, so a
 * launch fails with the missing library's name rather than a process that dies at once.
 * A static binary, a script, or a machine without ldd passes.
 */
export function checkLibraries(exe: string, env: NodeJS.ProcessEnv, workerName: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('ldd', [exe], { env, timeout: 10_000, maxBuffer: 1024 * 1024 }, (_err, stdout, stderr) => {
      const report = parseLdd(`${String(stdout ?? '')}\n${String(stderr ?? '')}`);
      // A library that is found but cannot be loaded (truncated, wrong architecture) stops ldd early.
      if (report.broken) {
        const { name, why } = report.broken;
        return reject(new DroverError(ErrorCode.LIBRARY_MISSING, `${name} cannot be loaded on ${workerName} (${why}): copy it with --lib`));
      }
      if (report.missing.length === 0) return resolve();
      const list = report.missing.join(', ');
      reject(new DroverError(ErrorCode.LIBRARY_MISSING, `${list} not found on ${workerName}: copy ${report.missing.length > 1 ? 'them' : 'it'} with --lib`));
    });
  });
}
