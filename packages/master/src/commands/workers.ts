import { formatBytes } from '@drover/protocol';
import { sparkline, table } from '../format.js';
import type { LoadSeries } from '../load-history.js';
import type { WorkerSession } from '../worker-session.js';
import { defineCommand } from './types.js';

export interface WorkerRow {
  name: string;
  address: string;
  status: 'available' | 'unavailable';
  /** ok; suspect (missed one heartbeat: still available); unavailable (two). */
  liveness: 'ok' | 'suspect' | 'unavailable';
  /** Round trip of the master's last ping on a heartbeat. */
  rttMs: number | null;
  /** Heartbeat intervals gone by since the last one. */
  missedHeartbeats: number;
  /** When it became unavailable (null while available). */
  unavailableSince: string | null;
  connected: boolean;
  lastHeartbeatMs: number;
  hostname: string;
  os: string;
  arch: string;
  cpus: number;
  memoryBytes: number;
  gpus: { name: string; memoryBytes: number }[];
  agentVersion: string;
  /** `worker --label KEY=VALUE`: what service files select workers by. */
  labels: Record<string, string>;
  /** drain WORKER: draining while service instances are still on it, then drained; null otherwise. */
  drain: 'draining' | 'drained' | null;
  connectedAt: string;
  load: { cpuPercent: number; memoryUsedBytes: number; loadAverage: number; processes: number } | null;
  /** With --history: CPU and memory over the last 15 minutes, one point per 10 s. */
  history?: LoadSeries;
}

/** `now` is on the fleet's monotonic clock. */
export function toWorkerRow(s: WorkerSession, now: number, heartbeatMs: number, drain: WorkerRow['drain'] = null): WorkerRow {
  const missed = s.liveness.missed(now, heartbeatMs);
  const since = s.liveness.unavailableAt;
  return {
    name: s.name,
    address: s.address,
    status: s.status,
    liveness: s.status !== 'available' ? 'unavailable' : s.liveness.suspect(now, heartbeatMs) ? 'suspect' : 'ok',
    rttMs: s.rttMs,
    missedHeartbeats: missed,
    unavailableSince: since === null ? null : new Date(Date.now() - (now - since)).toISOString(),
    connected: s.connected,
    lastHeartbeatMs: Math.round(s.liveness.silentMs(now)),
    hostname: s.hello.hostname,
    os: `${s.hello.os.platform} ${s.hello.os.release}`,
    arch: s.hello.os.arch,
    cpus: s.hello.cpus,
    memoryBytes: s.hello.memoryBytes,
    gpus: s.hello.gpus,
    agentVersion: s.hello.agentVersion,
    labels: s.hello.labels ?? {},
    drain,
    connectedAt: new Date(s.connectedAtWall).toISOString(),
    load: s.load && {
      cpuPercent: s.load.cpuPercent,
      memoryUsedBytes: s.load.memoryUsedBytes,
      loadAverage: s.load.loadAverage,
      processes: s.load.processes,
    },
  };
}

export const workersCommand = defineCommand<WorkerRow[]>({
  name: 'workers',
  usage: 'workers [NAME] [--history] [--json]',
  summary: 'list workers: address, status, last heartbeat, CPUs, memory, load',
  details: 'NAME shows one worker. --history adds its CPU and memory over the last 15 minutes (one point\nper 10 s; a sparkline here, the points with --json).',
  options: { history: { type: 'boolean' } },
  complete: ['worker'],
  maxArgs: 1,
  async run(args, ctx) {
    const now = ctx.fleet.clock();
    const name = args.positionals[0];
    const sessions = name === undefined ? ctx.fleet.list() : [ctx.fleet.find(name)];
    return sessions.map((s) => {
      const row = toWorkerRow(s, now, ctx.fleet.heartbeatMs, ctx.services.drainState(s.name));
      return args.values.history === true ? { ...row, history: ctx.fleet.history.series(s.name, Date.now()) } : row;
    });
  },
  // Status words: suspect in yellow, unavailable and disconnected in red, available in green.
  colorize: (text) =>
    text
      .replace(/\b(suspect)\b/g, '\x1b[33m$1\x1b[0m')
      .replace(/\b(UNAVAILABLE|DISCONNECTED)\b/g, '\x1b[31m$1\x1b[0m')
      .replace(/(^|  )(available)\b/gm, '$1\x1b[32m$2\x1b[0m'),
  format(rows) {
    if (rows.length === 0) return 'no workers have joined yet (type join to see how a VM joins)';
    const body = table(
      ['NAME', 'ADDRESS', 'STATUS', 'HEARTBEAT', 'RTT', 'CPUS', 'MEMORY', 'CPU%', 'MEM USED', 'LOAD', 'PROCS', 'HOST', 'LABELS'],
      rows.map((r) => [
        r.name,
        r.address,
        (r.liveness === 'suspect' ? 'suspect' : r.status === 'available' ? 'available' : r.connected ? 'UNAVAILABLE' : 'DISCONNECTED') +
          (r.drain ? ` (${r.drain})` : ''),
        `${(r.lastHeartbeatMs / 1000).toFixed(1)} s ago`,
        r.rttMs === null ? '-' : `${r.rttMs < 10 ? r.rttMs.toFixed(1) : Math.round(r.rttMs)} ms`,
        r.cpus,
        formatBytes(r.memoryBytes),
        r.load ? r.load.cpuPercent.toFixed(1) : '-',
        r.load ? formatBytes(r.load.memoryUsedBytes) : '-',
        r.load ? r.load.loadAverage.toFixed(2) : '-',
        r.load ? r.load.processes : '-',
        r.hostname + (r.gpus.length ? ` (${r.gpus.length} GPU)` : ''),
        Object.entries(r.labels)
          .map(([k, v]) => `${k}=${v}`)
          .join(',') || '-',
      ]),
    );
    const up = rows.filter((r) => r.status === 'available').length;
    const sparks = rows
      .filter((r) => r.history)
      .map(
        (r) =>
          `${r.name}  CPU% ${sparkline(r.history!.cpuPercent, 100)}  memory ${sparkline(r.history!.memoryUsedBytes, r.memoryBytes)}  (15 min, 10 s a step)`,
      );
    return [body, `${up} of ${rows.length} available`, ...sparks].join('\n');
  },
});
