import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { readFile, readdir, readlink } from 'node:fs/promises';
import type { ProcessState } from '@drover/protocol';

/** The kernel's AT_CLKTCK entry of the auxiliary vector, which is what sysconf(_SC_CLK_TCK) returns. */
const AT_CLKTCK = 17n;

/** Clock ticks per second, for /proc times (sysconf(_SC_CLK_TCK); 100 on every mainstream Linux). */
export const CLK_TCK = readClockTicks();

/**
 * Read from /proc/self/auxv, not by running getconf: that fork and exec cost the agent ~13 ms of
 * its start. getconf where the vector cannot be read.
 */
function readClockTicks(): number {
  try {
    const n = clockTicksFromAuxv(readFileSync('/proc/self/auxv'));
    if (n !== null) return n;
  } catch {
    // no /proc here: ask getconf
  }
  try {
    const n = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8', timeout: 2000 }).trim());
    return Number.isFinite(n) && n > 0 ? n : 100;
  } catch {
    return 100;
  }
}

/** AT_CLKTCK from an auxiliary vector (pairs of 64-bit words: type, value, up to AT_NULL); null if absent. */
export function clockTicksFromAuxv(auxv: Buffer): number | null {
  if (process.arch !== 'x64' && process.arch !== 'arm64') return null;
  for (let at = 0; at + 16 <= auxv.length; at += 16) {
    const type = auxv.readBigUInt64LE(at);
    if (type === 0n) break;
    if (type === AT_CLKTCK) {
      const n = Number(auxv.readBigUInt64LE(at + 8));
      return n > 0 ? n : null;
    }
  }
  return null;
}

export interface ProcStat {
  state: ProcessState;
  pgrp: number;
  utimeTicks: number;
  stimeTicks: number;
  /** Start time in clock ticks after boot: with the pid, a process's identity. */
  startTicks: number;
}

const STATES: Record<string, ProcessState> = {
  R: 'running',
  S: 'sleeping',
  D: 'disk-sleep',
  T: 'stopped',
  t: 'stopped',
  Z: 'zombie',
  X: 'dead',
  x: 'dead',
  I: 'idle',
  P: 'sleeping',
  W: 'sleeping',
  K: 'sleeping',
};

/** Parses /proc/PID/stat; the command name may hold spaces and parentheses, so split after the last ')'. */
export function parseStat(text: string): ProcStat | null {
  const close = text.lastIndexOf(')');
  if (close < 0) return null;
  const f = text.slice(close + 2).split(' ');
  // f[0] is field 3 (state); field N is f[N - 3].
  const state = STATES[f[0] ?? ''] ?? 'sleeping';
  const num = (field: number): number => Number(f[field - 3]);
  const stat = { state, pgrp: num(5), utimeTicks: num(14), stimeTicks: num(15), startTicks: num(22) };
  return Number.isFinite(stat.startTicks) ? stat : null;
}

/** Reads /proc/PID/stat at once (procfs never waits on a disk, so a read takes microseconds). */
export function readStatSync(pid: number): ProcStat | null {
  try {
    return parseStat(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return null;
  }
}

/** Reads /proc/PID/stat; null when the process is gone. */
export async function readStat(pid: number): Promise<ProcStat | null> {
  try {
    return parseStat(await readFile(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return null;
  }
}

export interface ProcMemory {
  rssBytes: number;
  /** Peak resident set size (VmHWM). */
  maxRssBytes: number;
}

const VM_RSS = /^VmRSS:\s+(\d+) kB/m;
const VM_HWM = /^VmHWM:\s+(\d+) kB/m;

/** Current and peak RSS (VmRSS, VmHWM) of a /proc/PID/status text; null for a zombie, which has none. */
export function parseMemory(text: string): ProcMemory | null {
  const rss = VM_RSS.exec(text);
  const hwm = VM_HWM.exec(text);
  if (!rss || !hwm) return null;
  return { rssBytes: Number(rss[1]) * 1024, maxRssBytes: Number(hwm[1]) * 1024 };
}

/** Seconds since boot (/proc/uptime), at once; null where it cannot be read. */
export function readUptimeSync(): number | null {
  try {
    const s = Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]);
    return Number.isFinite(s) ? s : null;
  } catch {
    return null;
  }
}

/** Reads the soft core-file size limit of a process (procfs, at once): 0 means a crash leaves no core. */
export function readCoreLimitSync(pid: number): number | null {
  try {
    const text = readFileSync(`/proc/${pid}/limits`, 'utf8');
    const m = /^Max core file size\s+(\S+)/m.exec(text);
    if (!m) return null;
    return m[1] === 'unlimited' ? Number.POSITIVE_INFINITY : Number(m[1]);
  } catch {
    return null;
  }
}

/** True when any process (a zombie included) is in process group `pgid`: one syscall, no /proc walk. */
export function groupExists(pgid: number): boolean {
  // Usually there is none, and the answer is a thrown ESRCH: made without a stack, which
  // costs more than the syscall.
  const stackTraceLimit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    process.kill(-pgid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  } finally {
    Error.stackTraceLimit = stackTraceLimit;
  }
}

/** Every live process in one of `groups`, by process group: one pass over /proc for all of them. */
export async function membersOf(candidates: Set<number>): Promise<Map<number, number[]>> {
  const found = new Map<number, number[]>();
  // Most groups are empty once their leader ends: a signal 0 says so without reading /proc.
  const groups = new Set([...candidates].filter(groupExists));
  if (groups.size === 0) return found;
  let entries: string[];
  try {
    entries = await readdir('/proc');
  } catch {
    return found;
  }
  await Promise.all(
    entries.map(async (e) => {
      if (!/^\d+$/.test(e)) return;
      const stat = await readStat(Number(e));
      if (!stat || stat.state === 'zombie' || !groups.has(stat.pgrp)) return;
      const list = found.get(stat.pgrp) ?? [];
      list.push(Number(e));
      found.set(stat.pgrp, list);
    }),
  );
  for (const list of found.values()) list.sort((a, b) => a - b);
  return found;
}

/** The folder a process runs in, or null when it is gone or not ours to read. */
export async function readCwd(pid: number): Promise<string | null> {
  try {
    return await readlink(`/proc/${pid}/cwd`);
  } catch {
    return null;
  }
}

/** A process's arguments (argv without argv[0]), or null when gone. */
export async function readArgs(pid: number): Promise<string[] | null> {
  try {
    const raw = await readFile(`/proc/${pid}/cmdline`, 'utf8');
    return raw.split('\0').slice(1, -1);
  } catch {
    return null;
  }
}
