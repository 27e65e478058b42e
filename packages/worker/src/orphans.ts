import { readdir, readlink, rename, stat } from 'node:fs/promises';
import path from 'node:path';
import { checkName } from '@drover/protocol';
import { readArgs, readCwd, readStat } from './proc.js';
import type { LogPolicy } from './log-pump.js';
import type { ProcessRecord } from './process-table.js';
import type { AppStore } from './store.js';

/**
 * Launches the process table never recorded: the agent was killed between reporting a pid and
 * writing processes.json. Every launch names its log file by pid at once (logs/APP.PID.log), so
 * a log without a record is such a launch. A live process is ours when it leads its own
 * process group and runs in one of the app's version folders; anything else is recorded as
 * ended, exit status unknown. Every pid drover ever reported is in ps after any crash.
 */
export async function findUnrecorded(
  store: AppStore,
  known: Set<number>,
  /** The policy for a launch found by its pipe (its output went through the agent). */
  piped: LogPolicy,
): Promise<{ live: ProcessRecord[]; ended: ProcessRecord[] }> {
  const live: ProcessRecord[] = [];
  const ended: ProcessRecord[] = [];
  let names: string[];
  try {
    names = await readdir(store.logsDir);
  } catch {
    return { live, ended };
  }
  const starting = names.filter((n) => /\.starting-\d+-\d+\.(log|pipe)$/.test(n));
  const byStarting = starting.length ? await pidsWritingTo(starting.map((n) => path.join(store.logsDir, n))) : new Map<string, number>();
  const seen = new Set<number>();
  for (const name of names) {
    let app: string;
    let pid: number;
    // Its stdout: the log itself, or a pipe the agent carried into the log (APP.PID.pipe).
    const named = /^(.+)\.(\d+)\.(log|pipe)$/.exec(name);
    const pending = /^(.+)\.starting-\d+-\d+\.(log|pipe)$/.exec(name);
    const viaPipe = (named ?? pending)?.[3] === 'pipe';
    if (named) {
      app = named[1]!;
      pid = Number(named[2]);
    } else if (pending && byStarting.has(path.join(store.logsDir, name))) {
      app = pending[1]!;
      pid = byStarting.get(path.join(store.logsDir, name))!;
    } else continue;
    if (checkName(app) || known.has(pid) || seen.has(pid)) continue;
    seen.add(pid);
    const logPath = path.join(store.logsDir, `${app}.${pid}.log`);
    // A launch cut short before its output was named by pid: named now (the next agent pumps it by this name).
    if (pending) await rename(path.join(store.logsDir, name), viaPipe ? path.join(store.logsDir, `${app}.${pid}.pipe`) : logPath).catch(() => undefined);
    const info = await stat(logPath).catch(() => null);
    const startedAtMs = Math.round(info?.birthtimeMs || info?.mtimeMs || Date.now());
    const proc = await readStat(pid);
    const cwd = await readCwd(pid);
    const ours = proc !== null && proc.state !== 'zombie' && proc.pgrp === pid && cwd !== null && cwd.startsWith(`${store.appDir(app)}/`);
    const exe = ours ? await readlink(`/proc/${pid}/exe`).catch(() => '') : '';
    const record: ProcessRecord = {
      pid,
      app,
      executable: path.basename(exe.replace(/ \(deleted\)$/, '')) || app,
      args: (ours ? await readArgs(pid) : null) ?? [],
      startedAt: new Date(startedAtMs).toISOString(),
      startedAtMs,
      startTicks: ours ? proc.startTicks : null,
      logPath,
      exit: null,
      adopted: true,
      coreLimit: null,
      signalled: null,
      usage: { cpuUserSeconds: 0, cpuSystemSeconds: 0, cpuPercent: 0, rssBytes: 0, maxRssBytes: 0, sampledAt: null },
      ...(viaPipe ? { log: piped } : {}),
    };
    (ours ? live : ended).push(record);
  }
  return { live, ended };
}

/** Which process has each of `files` open as its stdout (a launch cut short before its log was named). */
async function pidsWritingTo(files: string[]): Promise<Map<string, number>> {
  const wanted = new Set(files);
  const found = new Map<string, number>();
  for (const e of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(e)) continue;
    const out = await readlink(`/proc/${e}/fd/1`).catch(() => null);
    if (out && wanted.has(out)) found.set(out, Number(e));
  }
  return found;
}
