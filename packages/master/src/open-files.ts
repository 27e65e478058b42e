import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

export interface FileLimit {
  soft: number;
  hard: number;
}

/** Reads this process's open-file limit from /proc/self/limits (Infinity for unlimited). */
export function readOpenFileLimit(text = readFileSync('/proc/self/limits', 'utf8')): FileLimit | null {
  const m = /^Max open files\s+(\S+)\s+(\S+)/m.exec(text);
  if (!m) return null;
  const num = (v: string): number => (v === 'unlimited' ? Number.POSITIVE_INFINITY : Number(v));
  return { soft: num(m[1]!), hard: num(m[2]!) };
}

/**
 * Raises the soft open-file limit to the hard one: every worker is a socket, and a soft limit
 * of 1024 lets a flood of idle connections lock out workers and master exec. Node cannot call
 * setrlimit itself; prlimit (util-linux) sets it on our pid. Returns what happened, in words.
 */
export function raiseOpenFileLimit(): string {
  const before = readOpenFileLimit();
  if (!before) return 'open-file limit unknown (no /proc/self/limits)';
  if (before.soft >= before.hard) return `open-file limit ${before.soft}`;
  const target = Number.isFinite(before.hard) ? before.hard : 1_048_576;
  try {
    execFileSync('prlimit', ['--pid', String(process.pid), `--nofile=${target}:${before.hard === Number.POSITIVE_INFINITY ? 'unlimited' : before.hard}`], {
      stdio: 'ignore',
      timeout: 5000,
    });
  } catch {
    return `open-file limit ${before.soft} (could not raise it to ${target}: prlimit failed; set LimitNOFILE or ulimit -n)`;
  }
  const after = readOpenFileLimit();
  return after && after.soft > before.soft ? `raised the open-file limit from ${before.soft} to ${after.soft}` : `open-file limit ${before.soft}`;
}
