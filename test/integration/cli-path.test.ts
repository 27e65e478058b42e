import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { ROOT, startCluster, tempDir } from '../helpers/cluster.js';

const run = (cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}) =>
  spawnSync(cmd, args, { cwd: opts.cwd ?? ROOT, encoding: 'utf8', env: { ...process.env, ...opts.env }, timeout: 120_000 });

describe('the commands on PATH', () => {
  test('npx drover, npx master and npx worker work from the checkout after the install command', () => {
    for (const bin of ['drover', 'master', 'worker']) {
      const r = run('npx', ['--no-install', bin, '--version']);
      expect(r.status, `${bin}: ${r.stderr}`).toBe(0);
      expect(r.stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
    }
  });

  test("the README's one line (npm install -g .) puts drover, master and worker on PATH", () => {
    const prefix = tempDir('drover-global-');
    const r = run('npm', ['install', '--global', '--prefix', prefix, ROOT]);
    expect(r.status, r.stderr).toBe(0);
    for (const bin of ['drover', 'master', 'worker']) {
      const v = run(path.join(prefix, 'bin', bin), ['--version']);
      expect(v.status, `${bin}: ${v.stderr}`).toBe(0);
      expect(v.stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
    }
  });

  test("drover runs commands against the local master; arguments after the command are the command's", async () => {
    const { master } = await startCluster(1);
    const drover = path.join(ROOT, 'packages/master/dist/drover.js');
    const json = run(process.execPath, [drover, '--state-dir', master.stateDir, 'workers', '--json']);
    expect(json.status, json.stderr).toBe(0);
    expect((JSON.parse(json.stdout) as { name: string }[]).map((w) => w.name)).toEqual(['w1']);
    const env = run(process.execPath, [drover, 'ps', 'w1'], { env: { DROVER_STATE_DIR: master.stateDir } });
    expect(env.status, env.stderr).toBe(0);
    expect(env.stdout).toContain('no processes launched yet');
    const many = run(process.execPath, [drover, '--state-dir', master.stateDir, '--json', 'workers; help']);
    expect(many.stdout.trim().split('\n')).toHaveLength(2);
    const bad = run(process.execPath, [drover, '--state-dir', master.stateDir, 'stop', 'w1', '0']);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/^error: PID must be a positive whole number/);
    const none = run(process.execPath, [drover, '--state-dir', tempDir(), 'workers']);
    expect(none.status).toBe(2);
    expect(none.stderr).toMatch(/^drover: cannot reach the master at .*: is it running\? Start it with: master --state-dir /);
  });
});
