import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { MASTER_CLI, TOKEN, onCleanup, startProcess, waitFor, type Proc } from './cluster.js';

export const ip = (...args: string[]): string => execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

/** True when this process may create network namespaces (root with CAP_SYS_ADMIN). */
export function canMakeNamespaces(): boolean {
  const probe = `drvprobe${randomBytes(3).toString('hex')}`;
  const r = spawnSync('ip', ['netns', 'add', probe], { stdio: 'ignore' });
  if (r.status !== 0) return false;
  spawnSync('ip', ['netns', 'del', probe], { stdio: 'ignore' });
  return true;
}

export interface Hosts {
  master: string;
  a: string;
  b: string;
  /** Takes a host's link to the others down or up (its port on the bridge): a partition, then a heal. */
  link(host: 'a' | 'b', up: boolean): void;
}

/**
 * Test hosts: a master and two workers, each in its own network namespace, joined by veth
 * pairs to a bridge in a fourth namespace. Addresses from 198.18.0.0/15 (benchmarking range):
 * master 198.18.0.1, a .2, b .3. Everything is removed after the test, failed or not.
 */
export function makeHosts(): Hosts {
  const tag = randomBytes(3).toString('hex');
  const ns = { master: `drv${tag}m`, a: `drv${tag}a`, b: `drv${tag}b`, bridge: `drv${tag}x` };
  onCleanup(() => {
    for (const n of Object.values(ns)) {
      const pids = spawnSync('ip', ['netns', 'pids', n], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean);
      for (const pid of pids) spawnSync('kill', ['-9', pid]);
      spawnSync('ip', ['netns', 'del', n], { stdio: 'ignore' });
    }
  });
  for (const n of Object.values(ns)) ip('netns', 'add', n);
  ip('-n', ns.bridge, 'link', 'add', 'br0', 'type', 'bridge');
  ip('-n', ns.bridge, 'link', 'set', 'br0', 'up');
  const hosts: [string, string][] = [
    [ns.master, '198.18.0.1'],
    [ns.a, '198.18.0.2'],
    [ns.b, '198.18.0.3'],
  ];
  hosts.forEach(([n, addr], i) => {
    const inside = `v${tag}${i}`;
    const outside = `p${tag}${i}`;
    ip('link', 'add', inside, 'type', 'veth', 'peer', 'name', outside);
    ip('link', 'set', inside, 'netns', n);
    ip('link', 'set', outside, 'netns', ns.bridge);
    ip('-n', ns.bridge, 'link', 'set', outside, 'master', 'br0');
    ip('-n', ns.bridge, 'link', 'set', outside, 'up');
    ip('-n', n, 'addr', 'add', `${addr}/24`, 'dev', inside);
    ip('-n', n, 'link', 'set', inside, 'up');
    ip('-n', n, 'link', 'set', 'lo', 'up');
  });
  return {
    master: ns.master,
    a: ns.a,
    b: ns.b,
    link: (host, up) => void ip('-n', ns.bridge, 'link', 'set', `p${tag}${host === 'a' ? 1 : 2}`, up ? 'up' : 'down'),
  };
}

/** The built master in the master host's namespace, on 198.18.0.1:7070 with heartbeats every 200 ms; resolves once it listens. */
export async function startMasterIn(hosts: Hosts, stateDir: string, args: string[] = []): Promise<Proc> {
  const master = startProcess('ip', [
    'netns',
    'exec',
    hosts.master,
    process.execPath,
    MASTER_CLI,
    '--host',
    '198.18.0.1',
    '--port',
    '7070',
    '--token',
    TOKEN,
    '--state-dir',
    stateDir,
    '--heartbeat-ms',
    '200',
    '--no-shell',
    ...args,
  ]);
  await waitFor(() => master.stdout().includes('listening on 198.18.0.1:7070'), 'the master in its namespace');
  return master;
}
