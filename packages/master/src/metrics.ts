import { timingSafeEqual, createHash } from 'node:crypto';
import http from 'node:http';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { DroverError, ErrorCode, type UsageInfo } from '@drover/protocol';
import type { Fleet } from './fleet.js';
import type { Logger } from './logger.js';
import type { ServiceManager } from './services/manager.js';

/** Per-process figures are gathered from the workers this often while someone scrapes. */
const USAGE_EVERY_MS = 15_000;
/** Nobody scraped for this long: stop asking the workers. */
const IDLE_AFTER_MS = 5 * 60_000;
/** Workers asked for usage at once. */
const USAGE_CONCURRENCY = 64;

const digest = (s: string): Buffer => createHash('sha256').update(s).digest();

/** Rows of the slow series rendered between two turns of the event loop. */
const RENDER_SLICE_ROWS = 2000;

/** A label value in the text exposition format: backslash, newline and double quote escaped. */
export function labelValue(v: string): string {
  return /[\\\n"]/.test(v) ? v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"') : v;
}

/** A sample value in the text exposition format. */
function sampleValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (!Number.isFinite(v)) return v < 0 ? '-Inf' : '+Inf';
  return String(v);
}

type SlowMetric<Row> = { name: string; help: string; value: (row: Row) => number | null | undefined; state?: boolean };

/** The per-process series of one live process: its label text made once for all five. */
interface ProcessRow {
  labels: string;
  usage: UsageInfo;
  restarts: number | null;
}

const PROCESS_METRICS: SlowMetric<ProcessRow>[] = [
  { name: 'drover_process_cpu_seconds', help: 'CPU time (user + system) of a live process', value: (r) => r.usage.cpuUserSeconds + r.usage.cpuSystemSeconds },
  { name: 'drover_process_rss_bytes', help: 'Resident memory of a live process', value: (r) => r.usage.rssBytes },
  { name: 'drover_process_peak_rss_bytes', help: 'Peak resident memory of a live process', value: (r) => r.usage.maxRssBytes },
  { name: 'drover_process_restarts', help: 'Restarts its worker made of the service instance it runs (service instances only)', value: (r) => r.restarts },
  {
    name: 'drover_process_state',
    help: 'A live process by its state from /proc (running, sleeping, disk-sleep, stopped, zombie, idle): 1',
    value: () => 1,
    state: true,
  },
];

type WorkerSession = ReturnType<Fleet['list']>[number];
const MACHINE_METRICS: SlowMetric<WorkerSession>[] = [
  { name: 'drover_worker_memory_total_bytes', help: 'Memory of the machine', value: (s) => s.load?.memoryTotalBytes ?? s.hello.memoryBytes },
  { name: 'drover_worker_cpus', help: 'CPUs the worker offers', value: (s) => s.hello.cpus },
];

/** What the per-worker series are read against: the fleet's clock and heartbeat interval. */
interface WorkerClock {
  now: number;
  heartbeatMs: number;
}

/** The series of each worker read from its session (its heartbeats) at every scrape. */
const WORKER_METRICS: { name: string; help: string; value: (s: WorkerSession, c: WorkerClock) => number | null | undefined }[] = [
  { name: 'drover_worker_up', help: '1 while the worker is available', value: (s) => (s.status === 'available' ? 1 : 0) },
  { name: 'drover_worker_heartbeat_age_seconds', help: 'Seconds since its last heartbeat', value: (s, c) => s.liveness.silentMs(c.now) / 1000 },
  {
    name: 'drover_worker_rtt_seconds',
    help: "Round trip of the master's ping on its last heartbeat",
    value: (s) => (s.rttMs === null ? null : s.rttMs / 1000),
  },
  {
    name: 'drover_worker_missed_heartbeats',
    help: 'Heartbeat intervals gone by since its last heartbeat',
    value: (s, c) => s.liveness.missed(c.now, c.heartbeatMs),
  },
  { name: 'drover_worker_cpu_percent', help: 'CPU use of the whole machine, from its heartbeat', value: (s) => s.load?.cpuPercent },
  { name: 'drover_worker_memory_used_bytes', help: 'Memory in use on the machine, from its heartbeat', value: (s) => s.load?.memoryUsedBytes },
  { name: 'drover_worker_load1', help: 'One-minute load average, from its heartbeat', value: (s) => s.load?.loadAverage },
];

/**
 * The per-worker series (WORKER_METRICS) as text exposition, as prom-client would write them.
 * Written here, at each scrape: through prom-client, 35,000 series of 5,000 workers took ~50 ms
 * a scrape (its formatter builds and escapes each series' labels from an object); here a
 * worker's label text is made once for its seven series.
 */
export function renderWorkerSeries(workers: WorkerSession[], clock: WorkerClock): string {
  const labels = workers.map((s) => `{worker="${labelValue(s.name)}"} `);
  const parts: string[] = [];
  for (const m of WORKER_METRICS) {
    parts.push(`# HELP ${m.name} ${m.help}\n# TYPE ${m.name} gauge\n`);
    for (let i = 0; i < workers.length; i++) {
      const v = m.value(workers[i]!, clock);
      if (v !== null && v !== undefined) parts.push(`${m.name}${labels[i]}${sampleValue(v)}\n`);
    }
    parts.push('\n');
  }
  return parts.join('');
}

/**
 * The series gathered from the workers and the ones that hardly change (what a machine is), as
 * text exposition: rendered here, once per gathering, not by prom-client at each scrape. At
 * 25,000 processes (125,000 series) prom-client's formatter held the loop ~385 ms a gathering,
 * formatting and escaping each series' labels; here each process's labels are made once for its
 * five series, and the loop runs between slices of rows.
 */
export async function renderSlowSeries(
  workers: WorkerSession[],
  usage: Map<string, UsageInfo[]>,
  observedOn: (worker: string) => ReadonlyMap<unknown, { pid: number | null; restarts: number }> | undefined,
): Promise<Buffer> {
  const rows: ProcessRow[] = [];
  for (const [worker, list] of usage) {
    const instances = new Map<number, { restarts: number }>();
    for (const i of observedOn(worker)?.values() ?? []) if (i.pid !== null) instances.set(i.pid, i);
    const w = labelValue(worker);
    for (const u of list) {
      if (u.state === 'dead') continue;
      const service = /^([A-Za-z0-9][A-Za-z0-9_-]*)\.[A-Za-z0-9][A-Za-z0-9_-]*\.[0-9a-f]{8}$/.exec(u.app)?.[1] ?? '';
      rows.push({
        labels: `worker="${w}",app="${labelValue(u.app)}",pid="${u.pid}",service="${service}"`,
        usage: u,
        restarts: instances.get(u.pid)?.restarts ?? null,
      });
    }
  }
  const parts: Buffer[] = [];
  let done = 0;
  let text = '';
  const section = async <Row>(m: SlowMetric<Row>, list: Row[], labels: (row: Row) => string): Promise<void> => {
    // Sections apart by a blank line, as prom-client writes them.
    text += `${parts.length > 0 || text ? '\n' : ''}# HELP ${m.name} ${m.help}\n# TYPE ${m.name} gauge\n`;
    for (const row of list) {
      const v = m.value(row);
      if (v !== null && v !== undefined) text += `${m.name}{${labels(row)}} ${sampleValue(v)}\n`;
      if (++done % RENDER_SLICE_ROWS === 0) {
        parts.push(Buffer.from(text));
        text = '';
        await new Promise((resolve) => setImmediate(resolve));
      }
    }
  };
  for (const m of MACHINE_METRICS) await section(m, workers, (s) => `worker="${labelValue(s.name)}"`);
  for (const m of PROCESS_METRICS) await section(m, rows, (r) => (m.state ? `${r.labels},state="${labelValue(r.usage.state)}"` : r.labels));
  parts.push(Buffer.from(text));
  return Buffer.concat(parts);
}

/**
 * Prometheus metrics (prom-client, but for the series gathered from the workers: see
 * renderSlowSeries) at GET /metrics: the fleet, its
 * processes, services and queue, commands, bytes copied, and the master process itself. Label
 * values are bounded by what exists now: workers, and the worker/app/pid of live processes
 * (dead ones drop out at the next gathering). Never open by default: a bearer token on the
 * master's port (--metrics-token), and/or a plain listener on a loopback address only
 * (--metrics-host 127.0.0.1:9100).
 */
export class Metrics {
  readonly registry = new Registry();
  /** The slow registry's text, rendered (and utf-8 encoded) once per gathering, off the scrape's path. */
  private rendered: { generation: number; body: Buffer } | null = null;
  private readonly commands: Counter<'command' | 'outcome'>;
  private readonly durations: Histogram<'command'>;
  /** Commands observed and not yet counted: counted after the reply is out, or at a scrape. */
  private observed: { command: string; outcome: 'ok' | 'failed' | 'error'; seconds: number }[] = [];
  private flushing = false;
  readonly copiedBytes: Counter;
  private usage = new Map<string, UsageInfo[]>();
  /** Bumped by each gathering: per-process series are rebuilt only then. */
  private generation = 0;
  private lastScrape = 0;
  private timer: NodeJS.Timeout | null = null;
  private gathering = false;
  private local: http.Server | null = null;

  constructor(
    private readonly fleet: Fleet,
    private readonly services: ServiceManager,
    private readonly opts: { token?: string; logger: Logger },
  ) {
    const r = this.registry;
    collectDefaultMetrics({ register: r });
    const gauge = <L extends string>(name: string, help: string, labelNames: L[], collect: (g: Gauge<L>) => void): Gauge<L> =>
      new Gauge<L>({
        name,
        help,
        labelNames,
        registers: [r],
        collect() {
          this.reset();
          collect(this);
        },
      });
    const now = (): number => fleet.clock();
    gauge('drover_workers', 'Workers by liveness: available (ok), suspect (one missed heartbeat), unavailable', ['status'], (g) => {
      const counts = { available: 0, suspect: 0, unavailable: 0 };
      for (const s of fleet.list()) {
        if (s.status !== 'available') counts.unavailable++;
        else if (s.liveness.suspect(now(), fleet.heartbeatMs)) counts.suspect++;
        else counts.available++;
      }
      for (const [status, n] of Object.entries(counts)) g.set({ status }, n);
    });
    gauge('drover_service_desired_instances', 'Instances a service program should have', ['service', 'program'], (g) => {
      for (const s of services.status()) for (const p of s.programs) g.set({ service: s.name, program: p.name }, p.desired);
    });
    gauge('drover_service_running_instances', 'Instances of a service program running and healthy', ['service', 'program'], (g) => {
      for (const s of services.status()) for (const p of s.programs) g.set({ service: s.name, program: p.name }, p.running);
    });
    gauge('drover_queue_length', 'Instances waiting for room', [], (g) => g.set(services.queue().length));

    this.commands = new Counter({
      name: 'drover_commands_total',
      help: 'Commands run, by command and outcome (ok, failed, error)',
      labelNames: ['command', 'outcome'],
      registers: [r],
      collect: () => this.flush(),
    });
    this.durations = new Histogram({
      name: 'drover_command_duration_seconds',
      help: 'How long commands took, by command',
      labelNames: ['command'],
      buckets: [0.001, 0.005, 0.02, 0.1, 0.5, 2, 10, 60],
      registers: [r],
      collect: () => this.flush(),
    });
    this.copiedBytes = new Counter({ name: 'drover_copied_bytes_total', help: 'Bytes sent to workers by copies (apps and service files)', registers: [r] });
  }

  /** A command ran (for drover_commands_total and its latency). Unknown command names are counted as "unknown". */
  observe(command: string, outcome: 'ok' | 'failed' | 'error', seconds: number): void {
    // Counted once the reply is out (setImmediate runs after this turn's I/O): prom-client hashes
    // the labels of each, a few µs on the way of every command's answer otherwise.
    this.observed.push({ command, outcome, seconds });
    if (this.flushing) return;
    this.flushing = true;
    setImmediate(() => this.flush());
  }

  private flush(): void {
    this.flushing = false;
    const all = this.observed;
    if (all.length === 0) return;
    this.observed = [];
    for (const { command, outcome, seconds } of all) {
      this.commands.inc({ command, outcome });
      this.durations.observe({ command }, seconds);
    }
  }

  /** Serves GET /metrics on the master's port when a token is set; answers true when it handled the request. */
  handle(req: http.IncomingMessage, res: http.ServerResponse): boolean {
    if ((req.url ?? '').split('?')[0] !== '/metrics') return false;
    if (!this.opts.token) {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('metrics are off on this port: start the master with --metrics-token T (or --metrics-host 127.0.0.1:PORT)\n');
      return true;
    }
    const m = /^Bearer (\S{1,512})$/.exec(req.headers.authorization ?? '');
    if (!m || !timingSafeEqual(digest(m[1]!), digest(this.opts.token))) {
      res.writeHead(401, { 'content-type': 'text/plain', 'www-authenticate': 'Bearer' });
      res.end('a metrics token is needed (Authorization: Bearer …)\n');
      return true;
    }
    void this.serve(res);
    return true;
  }

  /** A plain listener for /metrics, loopback addresses only (no token: only this machine reaches it). */
  async listenLocal(hostPort: string): Promise<string> {
    const m = /^(127(?:\.\d{1,3}){3}|\[::1\]|::1|localhost):(\d{1,5})$/.exec(hostPort);
    if (!m)
      throw new DroverError(
        ErrorCode.BAD_ARGUMENTS,
        `--metrics-host must be a loopback address and port, such as 127.0.0.1:9100 (got "${hostPort}"): use --metrics-token to serve metrics beyond this machine`,
      );
    const host = m[1]!.replace(/^\[|\]$/g, '');
    const server = http.createServer({ headersTimeout: 5000, requestTimeout: 10_000 }, (req, res) => {
      if ((req.url ?? '').split('?')[0] !== '/metrics') {
        res.writeHead(404, { 'content-type': 'text/plain' });
        res.end('not found: try /metrics\n');
        return;
      }
      void this.serve(res);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) =>
        reject(new DroverError(err.code === 'EADDRINUSE' ? ErrorCode.BUSY : ErrorCode.BAD_ARGUMENTS, `--metrics-host ${hostPort}: ${err.code ?? err.message}`)),
      );
      server.listen(Number(m[2]), host, () => resolve());
    });
    this.local = server;
    const a = server.address();
    return typeof a === 'object' && a ? `${host}:${a.port}` : hostPort;
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.local?.close();
    this.local?.closeAllConnections();
  }

  private async serve(res: http.ServerResponse): Promise<void> {
    const first = this.lastScrape === 0 || Date.now() - this.lastScrape > IDLE_AFTER_MS;
    this.lastScrape = Date.now();
    if (first) {
      // Per-process figures come from the workers: gathered in the background while scraped.
      await this.gatherUsage();
      if (this.timer) clearInterval(this.timer);
      this.timer = setInterval(() => {
        if (Date.now() - this.lastScrape > IDLE_AFTER_MS) {
          clearInterval(this.timer!);
          this.timer = null;
          this.usage.clear();
          return;
        }
        void this.gatherUsage();
      }, USAGE_EVERY_MS);
      this.timer.unref();
    }
    try {
      const slow = await this.renderSlow();
      const head = await this.registry.metrics();
      const workers = renderWorkerSeries(this.fleet.list(), { now: this.fleet.clock(), heartbeatMs: this.fleet.heartbeatMs });
      res.writeHead(200, { 'content-type': this.registry.contentType });
      // No 10 MB concatenation: the slow part is bytes already.
      res.write(`${head}\n${workers}`);
      res.end(slow);
    } catch (err) {
      this.opts.logger.error({ err }, 'could not render metrics');
      res.writeHead(500, { 'content-type': 'text/plain' });
      res.end('could not render metrics\n');
    }
  }

  /** The per-process (and per-machine) series as bytes, rendered once per gathering. */
  private async renderSlow(): Promise<Buffer> {
    if (this.rendered?.generation !== this.generation) {
      const generation = this.generation;
      this.rendered = { generation, body: await renderSlowSeries(this.fleet.list(), this.usage, (worker) => this.services.observedOn(worker)) };
    }
    return this.rendered.body;
  }

  /** Asks every available worker for its processes' usage (a few at a time); keeps the last answer of each. */
  private async gatherUsage(): Promise<void> {
    if (this.gathering) return;
    this.gathering = true;
    try {
      const workers = this.fleet.list().filter((s) => s.status === 'available');
      const seen = new Set(workers.map((w) => w.name));
      for (const name of this.usage.keys()) if (!seen.has(name)) this.usage.delete(name);
      let next = 0;
      await Promise.all(
        Array.from({ length: Math.min(USAGE_CONCURRENCY, workers.length) }, async () => {
          while (next < workers.length) {
            const w = workers[next++]!;
            try {
              this.usage.set(w.name, (await w.request('usage', { live: true }, { timeoutMs: 10_000 })).processes);
            } catch {
              this.usage.delete(w.name);
            }
          }
        }),
      );
    } finally {
      this.generation++;
      this.gathering = false;
    }
    // Rendered now, not by the next scrape: a scrape only sends it.
    await this.renderSlow().catch((err: unknown) => this.opts.logger.error({ err }, 'could not render metrics'));
  }
}
