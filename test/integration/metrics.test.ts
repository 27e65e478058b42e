import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { startMaster, startProcess, startWorker, tempDir, waitFor, waitForAvailable } from '../helpers/cluster.js';

const havePrometheus = spawnSync('prometheus', ['--version'], { stdio: 'ignore' }).status === 0;
if (!havePrometheus) console.warn("Prometheus scrape test SKIPPED: no prometheus command here (.ci/run installs Debian's prometheus package)");

async function freePort(): Promise<number> {
  const s = net.createServer().listen(0, '127.0.0.1');
  await new Promise((resolve) => s.once('listening', resolve));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((resolve) => s.close(resolve));
  return port;
}

/** One instant value from Prometheus's HTTP API, or null while it has none. */
async function query(promPort: number, q: string): Promise<number | null> {
  const res = await fetch(`http://127.0.0.1:${promPort}/api/v1/query?query=${encodeURIComponent(q)}`).catch(() => null);
  if (!res?.ok) return null;
  const body = (await res.json()) as { data: { result: { value: [number, string] }[] } };
  const v = body.data.result[0]?.value[1];
  return v === undefined ? null : Number(v);
}

describe('metrics', () => {
  test('/metrics is off without a token, refuses a wrong one, and --metrics-host takes only loopback addresses', async () => {
    const plain = await startMaster();
    expect((await fetch(`http://127.0.0.1:${plain.port}/metrics`)).status).toBe(404);
    const dir = tempDir();
    writeFileSync(path.join(dir, 'token'), 'metrics-secret\n');
    const guarded = await startMaster({ args: ['--metrics-token-file', path.join(dir, 'token')] });
    expect((await fetch(`http://127.0.0.1:${guarded.port}/metrics`)).status).toBe(401);
    expect((await fetch(`http://127.0.0.1:${guarded.port}/metrics`, { headers: { authorization: 'Bearer wrong' } })).status).toBe(401);
    const ok = await fetch(`http://127.0.0.1:${guarded.port}/metrics`, { headers: { authorization: 'Bearer metrics-secret' } });
    expect(ok.status).toBe(200);
    const text = await ok.text();
    expect(text).toMatch(/^drover_workers\{status="available"\} 0$/m);
    // A per-worker metric with no worker yet: its HELP and TYPE lines, no series.
    expect(text).toMatch(/^# TYPE drover_worker_up gauge\n(?!drover_worker_up)/m);
    expect(guarded.stdout()).not.toContain('metrics-secret');
    const open = startProcess(process.execPath, [
      path.join(path.dirname(new URL(import.meta.url).pathname), '../../packages/master/dist/cli.js'),
      '--no-shell',
      '--no-tls',
      '--port',
      '0',
      '--state-dir',
      tempDir(),
      '--metrics-host',
      '0.0.0.0:9100',
    ]);
    const code = await new Promise<number | null>((resolve) => open.child.once('close', resolve));
    expect(code).toBe(1);
    expect(open.stderr()).toContain('--metrics-host must be a loopback address and port, such as 127.0.0.1:9100');
  });

  test.skipIf(!havePrometheus)(
    'a real Prometheus scrapes it with the token: workers by status and a process RSS match workers --json and usage --json (needs prometheus)',
    async () => {
      const dir = tempDir();
      const tokenFile = path.join(dir, 'token');
      writeFileSync(tokenFile, 'scrape-secret\n', { mode: 0o600 });
      // Heartbeats every second: a loaded test machine does not make a worker suspect between two reads.
      const master = await startMaster({ heartbeatMs: 1000, args: ['--metrics-token-file', tokenFile] });
      startWorker(master, { name: 'w1', heartbeatMs: 1000 });
      startWorker(master, { name: 'w2', heartbeatMs: 1000 });
      await waitForAvailable(master, 2);
      await master.execJson('copy w1 /bin/sleep');
      const { pid } = await master.execFirst<{ pid: number }>('launch w1 sleep -- 120');

      const promPort = await freePort();
      const config = path.join(dir, 'prometheus.yml');
      writeFileSync(
        config,
        [
          'global: { scrape_interval: 1s, evaluation_interval: 1s }',
          'scrape_configs:',
          '  - job_name: drover',
          `    authorization: { type: Bearer, credentials_file: ${tokenFile} }`,
          `    static_configs: [{ targets: ['127.0.0.1:${master.port}'] }]`,
          '',
        ].join('\n'),
      );
      startProcess('prometheus', [
        `--config.file=${config}`,
        `--storage.tsdb.path=${path.join(dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${promPort}`,
        '--log.level=warn',
      ]);
      await waitFor(() => query(promPort, 'up{job="drover"} == 1'), 'Prometheus to scrape the master', 30_000, 250);
      // Both sides are read at slightly different moments: they agree once a scrape follows a steady fleet.
      await waitFor(
        async () => {
          const available = await query(promPort, 'drover_workers{status="available"}');
          const workers = await master.execJson<{ liveness: string }[]>('workers');
          return available === 2 && workers.filter((w) => w.liveness === 'ok').length === 2;
        },
        'drover_workers{status="available"} to match workers --json',
        20_000,
        250,
      );
      // The per-worker series: one per worker and metric, as that worker is now.
      expect(await query(promPort, 'sum(drover_worker_up)')).toBe(2);
      expect(await query(promPort, 'count(drover_worker_heartbeat_age_seconds < 3)')).toBe(2);
      expect(await query(promPort, 'drover_worker_memory_used_bytes{worker="w2"} > 0')).toBeGreaterThan(0);
      const rss = await waitFor(() => query(promPort, `drover_process_rss_bytes{worker="w1",pid="${pid}"}`), 'the process RSS', 20_000, 250);
      const usage = (await master.execJson<{ pid: number; rssBytes: number }[]>('usage w1')).find((u) => u.pid === pid)!;
      expect(Math.abs(rss - usage.rssBytes) / usage.rssBytes).toBeLessThan(0.2);
      // Its state, as ps says it (sleep sleeps).
      expect(await query(promPort, `drover_process_state{worker="w1",pid="${pid}",state="sleeping"}`)).toBe(1);
      // A direct launch is no service instance: no restarts series for it.
      expect(await query(promPort, `drover_process_restarts{pid="${pid}"}`)).toBe(null);
      expect(await query(promPort, 'sum(drover_commands_total{command="launch",outcome="ok"})')).toBe(1);
    },
  );
});
