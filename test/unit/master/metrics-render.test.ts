import { Gauge, Registry } from 'prom-client';
import { expect, test } from 'vitest';
import type { UsageInfo } from '../../../packages/protocol/src/index.js';
import { renderSlowSeries, renderWorkerSeries } from '../../../packages/master/src/metrics.js';

const usage = (pid: number, app: string, state: UsageInfo['state'], cpu: number): UsageInfo => ({
  pid,
  app,
  state,
  cpuUserSeconds: cpu,
  cpuSystemSeconds: 0.25,
  cpuPercent: 1,
  rssBytes: pid * 1000,
  maxRssBytes: pid * 2000,
  sampledAt: null,
});

type Worker = Parameters<typeof renderSlowSeries>[0][number];
const worker = (name: string, cpus: number, memoryTotalBytes: number | null): Worker =>
  ({ name, hello: { cpus, memoryBytes: 1 }, load: memoryTotalBytes === null ? null : { memoryTotalBytes } }) as unknown as Worker;

test('the gathered series render as prom-client would render them, labels escaped, dead processes left out', async () => {
  const workers = [worker('w1', 2, 4096), worker('w"2\\', 8, null)];
  const rows = new Map<string, UsageInfo[]>([
    ['w1', [usage(10, 'web.api.0123abcd', 'running', 1.5), usage(11, 'gone', 'dead', 0), usage(12, 'odd"app\nname\\x', 'sleeping', 0)]],
    ['w"2\\', [usage(20, 'db', 'disk-sleep', 3)]],
  ]);
  const observed = (w: string) => (w === 'w1' ? new Map([['web.api.0123abcd', { pid: 10, restarts: 4 }]]) : undefined);
  const text = (await renderSlowSeries(workers, rows, observed)).toString();

  // The oracle: the same series set on prom-client gauges.
  const r = new Registry();
  const g = (name: string, help: string, labelNames: string[]) => new Gauge({ name, help, labelNames, registers: [r] });
  const mem = g('drover_worker_memory_total_bytes', 'Memory of the machine', ['worker']);
  const cpus = g('drover_worker_cpus', 'CPUs the worker offers', ['worker']);
  mem.set({ worker: 'w1' }, 4096);
  mem.set({ worker: 'w"2\\' }, 1);
  cpus.set({ worker: 'w1' }, 2);
  cpus.set({ worker: 'w"2\\' }, 8);
  const labels = ['worker', 'app', 'pid', 'service'];
  const cpu = g('drover_process_cpu_seconds', 'CPU time (user + system) of a live process', labels);
  const rss = g('drover_process_rss_bytes', 'Resident memory of a live process', labels);
  const peak = g('drover_process_peak_rss_bytes', 'Peak resident memory of a live process', labels);
  const restarts = g('drover_process_restarts', 'Restarts its worker made of the service instance it runs (service instances only)', labels);
  const state = g('drover_process_state', 'A live process by its state from /proc (running, sleeping, disk-sleep, stopped, zombie, idle): 1', [
    ...labels,
    'state',
  ]);
  const live: [string, UsageInfo, string][] = [
    ['w1', rows.get('w1')![0]!, 'web'],
    ['w1', rows.get('w1')![2]!, ''],
    ['w"2\\', rows.get('w"2\\')![0]!, ''],
  ];
  for (const [w, u, service] of live) {
    const l = { worker: w, app: u.app, pid: String(u.pid), service };
    cpu.set(l, u.cpuUserSeconds + u.cpuSystemSeconds);
    rss.set(l, u.rssBytes);
    peak.set(l, u.maxRssBytes);
  }
  restarts.set({ worker: 'w1', app: 'web.api.0123abcd', pid: '10', service: 'web' }, 4);
  for (const [w, u, service] of live) state.set({ worker: w, app: u.app, pid: String(u.pid), service, state: u.state }, 1);

  expect(text).toBe(await r.metrics());
  expect(text).toContain('app="odd\\"app\\nname\\\\x"');
  expect(text).not.toContain('pid="11"');
});

test('a gathering of many processes renders whole across its slices', async () => {
  const list = Array.from({ length: 5000 }, (_, i) => usage(i + 1, `app${i % 7}`, 'running', i));
  const text = (await renderSlowSeries([worker('w1', 2, 1)], new Map([['w1', list]]), () => undefined)).toString();
  const lines = text.split('\n');
  // Four per-process series each (no restarts: no service instances), two per worker, and each
  // metric's HELP and TYPE.
  expect(lines.filter((l) => l.startsWith('drover_process_')).length).toBe(4 * 5000);
  expect(lines.filter((l) => l.startsWith('# TYPE')).length).toBe(7);
  expect(lines.every((l) => l === '' || l.startsWith('#') || /^drover_[a-z_]+\{[^}]*\} \S+$/.test(l))).toBe(true);
  expect(text).toContain('drover_process_cpu_seconds{worker="w1",app="app3",pid="4",service=""} 3.25\n');
});

test('the per-worker series render as prom-client renders the same gauges: NaN, infinities, missing values, escaped names', async () => {
  type Session = Parameters<typeof renderWorkerSeries>[0][number];
  const session = (name: string, up: boolean, heardAt: number, rttMs: number | null, load: object | null): Session =>
    ({
      name,
      status: up ? 'available' : 'unavailable',
      rttMs,
      load,
      liveness: { silentMs: (now: number) => now - heardAt, missed: (now: number, hb: number) => Math.floor((now - heardAt) / hb) },
    }) as unknown as Session;
  const workers = [
    session('w1', true, 750, 1.25, { cpuPercent: 12.5, memoryUsedBytes: 2 ** 33, loadAverage: 0.5 }),
    session('w"2\\', false, -3500, null, null),
    session('w10', true, 1000, 0.5, { cpuPercent: Number.NaN, memoryUsedBytes: 0, loadAverage: Number.POSITIVE_INFINITY }),
  ];
  // The oracle: prom-client gauges of the same names, helps and values.
  const gauges = () => {
    const r = new Registry();
    const g = (name: string, help: string) => new Gauge({ name, help, labelNames: ['worker'], registers: [r] });
    return {
      r,
      up: g('drover_worker_up', '1 while the worker is available'),
      age: g('drover_worker_heartbeat_age_seconds', 'Seconds since its last heartbeat'),
      rtt: g('drover_worker_rtt_seconds', "Round trip of the master's ping on its last heartbeat"),
      missed: g('drover_worker_missed_heartbeats', 'Heartbeat intervals gone by since its last heartbeat'),
      cpu: g('drover_worker_cpu_percent', 'CPU use of the whole machine, from its heartbeat'),
      mem: g('drover_worker_memory_used_bytes', 'Memory in use on the machine, from its heartbeat'),
      load: g('drover_worker_load1', 'One-minute load average, from its heartbeat'),
    };
  };
  const o = gauges();
  for (const [worker, up, age, rtt, missed] of [
    ['w1', 1, 0.25, 0.00125, 0],
    ['w"2\\', 0, 4.5, null, 4],
    ['w10', 1, 0, 0.0005, 0],
  ] as const) {
    o.up.set({ worker }, up);
    o.age.set({ worker }, age);
    if (rtt !== null) o.rtt.set({ worker }, rtt);
    o.missed.set({ worker }, missed);
  }
  o.cpu.set({ worker: 'w1' }, 12.5);
  o.cpu.set({ worker: 'w10' }, Number.NaN);
  o.mem.set({ worker: 'w1' }, 2 ** 33);
  o.mem.set({ worker: 'w10' }, 0);
  o.load.set({ worker: 'w1' }, 0.5);
  o.load.set({ worker: 'w10' }, Number.POSITIVE_INFINITY);
  // serve() writes it after prom-client's text and a blank line, and the gathered series after it.
  const text = renderWorkerSeries(workers, { now: 1000, heartbeatMs: 1000 });
  // prom-client writes NaN as `Nan`; the exposition format's spelling is `NaN` (Prometheus reads both).
  expect(text).toBe(`${(await o.r.metrics()).replace(/ Nan$/gm, ' NaN')}\n`);
  expect(text).toContain('drover_worker_cpu_percent{worker="w10"} NaN\n');
  expect(text).toContain('drover_worker_up{worker="w\\"2\\\\"} 0\n');
  expect(text).toContain('drover_worker_load1{worker="w10"} +Inf\n');
  // No worker yet: each metric's HELP and TYPE lines, no series, as prom-client writes a gauge without values.
  expect(renderWorkerSeries([], { now: 0, heartbeatMs: 1000 })).toBe(`${await gauges().r.metrics()}\n`);
});
