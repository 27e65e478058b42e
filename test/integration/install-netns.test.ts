import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { TOKEN, exec, tempDir, waitFor, type WorkerRow } from '../helpers/cluster.js';
import { canMakeNamespaces, makeHosts, startMasterIn } from '../helpers/netns.js';

describe('one-line install on real hosts (network namespaces)', () => {
  const allowed = canMakeNamespaces();
  if (!allowed) console.warn('network-namespace install test SKIPPED: cannot create network namespaces here (needs root)');

  test.skipIf(!allowed)('two hosts fetch install.sh from the master over the link, join, run a command, and uninstall cleanly', async () => {
    const hosts = makeHosts();
    const stateDir = tempDir();
    const master = await startMasterIn(hosts, stateDir);
    await waitFor(() => master.stdout().includes('listening on 198.18.0.1:7070 with TLS'), 'the master in its namespace');
    // TLS by default, with a self-signed certificate the join line pins. Under --no-shell stdout
    // is a kept log: the join line, but not the token.
    const join =
      /join a VM: {2}curl -fsSLk --pinnedpubkey (sha256\/\/\S+) https:\/\/198\.18\.0\.1:7070\/install\.sh \| DROVER_TOKEN=… sudo --preserve-env=DROVER_TOKEN sh -s -- --fingerprint (sha256:[0-9a-f]{64})/.exec(
        master.stdout(),
      );
    expect(join, master.stdout()).not.toBeNull();
    const [, pin, fingerprint] = join!;
    expect(master.stdout()).not.toContain(TOKEN);

    const prefixes = { a: path.join(tempDir(), 'drover'), b: path.join(tempDir(), 'drover') };
    const install = (ns: string, prefix: string, name: string, extra = '') =>
      spawnSync(
        'ip',
        [
          'netns',
          'exec',
          ns,
          'sh',
          '-c',
          `curl -fsSLk --pinnedpubkey '${pin}' https://198.18.0.1:7070/install.sh | DROVER_TOKEN=${TOKEN} sh -s -- --fingerprint ${fingerprint} --prefix ${prefix} --no-systemd --name ${name} ${extra}`,
        ],
        { encoding: 'utf8' },
      );
    for (const [name, ns] of [
      ['a', hosts.a],
      ['b', hosts.b],
    ] as const) {
      const r = install(ns, prefixes[name], name);
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout).toContain('installed; the worker runs in the background');
    }
    const rows = await waitFor(async () => {
      const r = await exec(stateDir, 'workers', { json: true });
      const list = JSON.parse(r.stdout) as WorkerRow[];
      return list.filter((w) => w.status === 'available').length === 2 ? list : null;
    }, 'both hosts to join');
    expect(rows.map((w) => [w.name, w.address]).sort()).toEqual([
      ['a', '198.18.0.2'],
      ['b', '198.18.0.3'],
    ]);

    // A command runs on both: copy and launch a program, and read its output back.
    const ran = await exec(stateDir, 'copy all /bin/echo --as hello; launch all hello -- from-the-fleet', { json: true });
    expect(ran.code, ran.stdout + ran.stderr).toBe(0);
    const launched = JSON.parse(ran.stdout.trim().split('\n')[1]!) as { worker: string; ok: boolean; pid: number }[];
    expect(launched.map((l) => [l.worker, l.ok]).sort()).toEqual([
      ['a', true],
      ['b', true],
    ]);
    for (const l of launched) {
      await waitFor(async () => (await exec(stateDir, `logs ${l.worker} ${l.pid}`)).stdout === 'from-the-fleet\n', `output on ${l.worker}`);
    }

    // Re-running upgrades in place; the worker comes back.
    const again = install(hosts.a, prefixes.a, 'a');
    expect(again.status, again.stderr).toBe(0);
    expect(again.stdout).toContain('upgrading the existing install');

    for (const [name, ns] of [
      ['a', hosts.a],
      ['b', hosts.b],
    ] as const) {
      const r = install(ns, prefixes[name], name, '--uninstall');
      expect(r.status, r.stderr).toBe(0);
      expect(existsSync(prefixes[name]) ? readdirSync(prefixes[name]) : []).toEqual([]);
    }
    await waitFor(async () => {
      const list = JSON.parse((await exec(stateDir, 'workers', { json: true })).stdout) as WorkerRow[];
      return list.every((w) => w.status === 'unavailable');
    }, 'both workers gone');
  });
});
