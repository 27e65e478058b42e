import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, readlinkSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { ROOT, TOKEN, parentOf, pidAlive, startMaster, startWorker, waitFor, waitForAvailable } from '../helpers/cluster.js';

type Row = { pid: number; app: string; state: string; exit: { code: number | null; reason: string } | null };

const NATIVE = path.join(ROOT, 'packages/worker/dist/drover-spawn');
const haveNative = existsSync(NATIVE);
if (!haveNative) console.warn('native spawn helper tests SKIPPED: no C compiler built packages/worker/dist/drover-spawn');

/** The spawn helper of the agent `agentPid` (the native one or Node's), or null. */
function helperOf(agentPid: number): number | null {
  const out = spawnSync('pgrep', ['-P', String(agentPid), '-f', 'drover-spawn|spawn-helper\\.cjs'], { encoding: 'utf8' }).stdout.trim();
  return out ? Number(out.split('\n')[0]) : null;
}

const HELPERS = [
  { kind: 'native', program: NATIVE, env: {}, skip: !haveNative },
  { kind: 'node', program: 'spawn-helper.cjs', env: { DROVER_SPAWN_HELPER: 'node' }, skip: false },
];

/** A master and one worker whose agent has the given environment, with /bin/sleep copied as `s`. */
async function oneWorker(env: NodeJS.ProcessEnv) {
  const master = await startMaster();
  const w = startWorker(master, { name: 'w1', env: { ...process.env, ...env, DROVER_SECRET_PROBE: 'nope' } });
  await waitForAvailable(master, 1);
  await master.execJson('copy w1 /bin/sleep --as s');
  return { master, w, agent: w.child.pid! };
}

describe.each(HELPERS)('spawn helper ($kind)', ({ kind, program, env, skip }) => {
  test.skipIf(skip)(
    'launches fork from the helper, not the agent; it holds no secret; a process holds only its stdio; exits come back with their status',
    async () => {
      const { master, w, agent } = await oneWorker(env);
      // No helper until the first launch.
      expect(helperOf(agent)).toBeNull();
      const first = await master.execFirst<{ pid: number }>('launch w1 s -- 30');
      const helper = helperOf(agent);
      expect(helper).not.toBeNull();
      // The process is the helper's child, not the agent's; the agent never forked it.
      expect(parentOf(first.pid)).toBe(helper);
      // The helper's environment is PATH alone: not the token, nothing else of the agent's.
      const environ = readFileSync(`/proc/${helper}/environ`, 'utf8').split('\0').filter(Boolean);
      expect(environ.map((e) => e.split('=')[0])).toEqual(['PATH']);
      expect(readFileSync(`/proc/${helper}/cmdline`, 'utf8')).not.toContain(TOKEN);
      expect(readFileSync(`/proc/${helper}/cmdline`, 'utf8')).toContain(program);
      // What the process holds: stdin /dev/null, stdout and stderr its pipe; no signal ignored or
      // blocked; a session of its own. The Node helper passes on what the agent inherited from
      // whoever started it (Node cannot close what it did not open); the native one closes it.
      const fds = readdirSync(`/proc/${first.pid}/fd`).sort();
      if (kind === 'native') expect(fds).toEqual(['0', '1', '2']);
      else expect(fds.slice(0, 3)).toEqual(['0', '1', '2']);
      expect(readlinkSync(`/proc/${first.pid}/fd/0`)).toBe('/dev/null');
      expect(readlinkSync(`/proc/${first.pid}/fd/1`)).toBe(path.join(w.stateDir, 'logs', `s.${first.pid}.pipe`));
      const status = readFileSync(`/proc/${first.pid}/status`, 'utf8');
      expect(status).toMatch(/^SigIgn:\s+0+$/m);
      expect(status).toMatch(/^SigBlk:\s+0+$/m);
      expect(readFileSync(`/proc/${first.pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[3]).toBe(String(first.pid));

      // Exits come back through the helper with their status, even one read in the same chunk as
      // its pid (these end at once; 20 at a time), and a signal's name.
      const quick = (await Promise.all(Array.from({ length: 20 }, () => master.execFirst<{ pid: number }>('launch w1 s -- bad')))).map((r) => r.pid);
      const ended = async (): Promise<Row[]> => (await master.execJson<Row[]>('ps w1')).filter((r) => quick.includes(r.pid) && r.state === 'dead');
      await waitFor(async () => (await ended()).length === 20, 'the quick ones to end');
      for (const r of await ended()) expect(r.exit).toMatchObject({ code: 1, reason: 'exited with code 1' });
      process.kill(first.pid, 'SIGTERM');
      await waitFor(
        async () => (await master.execJson<Row[]>('ps w1')).find((r) => r.pid === first.pid)?.exit?.reason === 'killed by SIGTERM (terminated)',
        'its end by SIGTERM',
      );
    },
  );
});

// The helper's loss, wedge and end are the agent's handling, the same for either helper: tested
// on the one the agent picks.
describe('spawn helper, lost', () => {
  test('its loss leaves processes running, found and stoppable; a wedged one is replaced; it ends with its agent', async () => {
    const { master, w, agent } = await oneWorker({});
    const first = await master.execFirst<{ pid: number }>('launch w1 s -- 30');
    const helper = helperOf(agent)!;
    expect(parentOf(first.pid)).toBe(helper);

    // The helper dies: what it started runs on (re-parented), still listed as running.
    process.kill(helper, 'SIGKILL');
    await waitFor(() => !pidAlive(helper), 'the helper to die');
    expect(pidAlive(first.pid)).toBe(true);
    expect((await master.execJson<Row[]>('ps w1')).find((r) => r.pid === first.pid)!.state).not.toBe('dead');

    // A launch right away forks from the agent itself, its exit known as ever.
    const meanwhile = await master.execFirst<{ pid: number }>('launch w1 s -- bad');
    await waitFor(async () => (await master.execJson<Row[]>('ps w1')).find((r) => r.pid === meanwhile.pid)?.exit?.code === 1, 'its exit, with its status');
    // A new helper takes over, and launches fork from it again.
    await waitFor(() => (helperOf(agent) ?? helper) !== helper, 'a new spawn helper');
    const second = helperOf(agent)!;
    const after = await master.execFirst<{ pid: number }>('launch w1 s -- 5');
    expect(parentOf(after.pid)).toBe(second);

    // The orphan can still be stopped; its end is found by polling, its status unknown.
    const stopped = await master.exec(`stop w1 ${first.pid} --json`);
    expect(stopped.code).toBe(0);
    await waitFor(async () => (await master.execJson<Row[]>('ps w1')).find((r) => r.pid === first.pid)?.state === 'dead', 'the orphan to be seen ended');
    expect(pidAlive(first.pid)).toBe(false);
    expect(w.stdout() + w.stderr()).toContain('the spawn helper ended');

    // A helper that stops answering is killed after 10 s: the launch fails with a reason, and
    // the next one gets a new helper.
    const third = helperOf(agent)!;
    process.kill(third, 'SIGSTOP');
    const wedged = await master.exec('launch w1 s -- 1', { json: true });
    expect(wedged.stdout).toContain('EXEC_FAILED');
    expect(wedged.stdout).toContain('the spawn helper ended during the launch');
    await waitFor(() => (helperOf(agent) ?? third) !== third, 'a new spawn helper', 10_000);
    const last = helperOf(agent)!;
    expect((await master.execFirst<{ pid: number; state: string }>('launch w1 s -- 1')).state).toBe('running');

    // The helper goes with its agent, even one killed outright (its stdin closes); what it
    // started runs on.
    const running = await master.execFirst<{ pid: number }>('launch w1 s -- 30');
    await w.kill('SIGKILL');
    await waitFor(() => !pidAlive(last), 'the helper to end with its agent');
    expect(pidAlive(running.pid)).toBe(true);
    process.kill(running.pid, 'SIGKILL');
  });
});
