import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { TOKEN, pidAlive, startMaster, startWorker, waitFor, waitForAvailable } from '../helpers/cluster.js';

type Row = { pid: number; app: string; state: string; exit: { code: number | null; reason: string } | null };

/** The spawn helper of the worker whose state dir is `stateDir`, or null. */
function helperOf(stateDir: string): number | null {
  const out = spawnSync('pgrep', ['-f', path.join(stateDir, 'spawn-helper.cjs')], { encoding: 'utf8' }).stdout.trim();
  return out ? Number(out.split('\n')[0]) : null;
}

describe('spawn helper', () => {
  test('launches fork from the helper, not the agent; it holds no secret; its loss leaves processes running, found and stoppable; it ends with its agent', async () => {
    const master = await startMaster();
    const w = startWorker(master, { name: 'w1', env: { ...process.env, DROVER_SECRET_PROBE: 'nope' } });
    await waitForAvailable(master, 1);
    await master.execJson('copy w1 /bin/sleep --as s');

    // No helper until the first launch.
    expect(helperOf(w.stateDir)).toBeNull();
    const first = await master.execFirst<{ pid: number }>('launch w1 s -- 30');
    const helper = helperOf(w.stateDir);
    expect(helper).not.toBeNull();
    // The process is the helper's child, not the agent's; the agent never forked it.
    const ppid = Number(readFileSync(`/proc/${first.pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[1]);
    expect(ppid).toBe(helper);
    // The helper's environment is PATH alone: not the token, nothing else of the agent's.
    const environ = readFileSync(`/proc/${helper}/environ`, 'utf8').split('\0').filter(Boolean);
    expect(environ.map((e) => e.split('=')[0])).toEqual(['PATH']);
    expect(readFileSync(`/proc/${helper}/cmdline`, 'utf8')).not.toContain(TOKEN);

    // Exits come back through the helper with their status, even one read in the same chunk as
    // its pid (these end at once; 20 at a time).
    const quick = (await Promise.all(Array.from({ length: 20 }, () => master.execFirst<{ pid: number }>('launch w1 s -- bad')))).map((r) => r.pid);
    const ended = async (): Promise<Row[]> => (await master.execJson<Row[]>('ps w1')).filter((r) => quick.includes(r.pid) && r.state === 'dead');
    await waitFor(async () => (await ended()).length === 20, 'the quick ones to end');
    for (const r of await ended()) expect(r.exit).toMatchObject({ code: 1, reason: 'exited with code 1' });

    // The helper dies: what it started runs on (re-parented), still listed as running.
    process.kill(helper!, 'SIGKILL');
    await waitFor(() => !pidAlive(helper!), 'the helper to die');
    expect(pidAlive(first.pid)).toBe(true);
    expect((await master.execJson<Row[]>('ps w1')).find((r) => r.pid === first.pid)!.state).not.toBe('dead');

    // A launch right away forks from the agent itself, its exit known as ever.
    const meanwhile = await master.execFirst<{ pid: number }>('launch w1 s -- bad');
    await waitFor(async () => (await master.execJson<Row[]>('ps w1')).find((r) => r.pid === meanwhile.pid)?.exit?.code === 1, 'its exit, with its status');
    // A new helper takes over, and launches fork from it again.
    await waitFor(() => (helperOf(w.stateDir) ?? helper) !== helper, 'a new spawn helper');
    const second = helperOf(w.stateDir)!;
    const after = await master.execFirst<{ pid: number }>('launch w1 s -- 5');
    expect(Number(readFileSync(`/proc/${after.pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[1])).toBe(second);

    // The orphan can still be stopped; its end is found by polling, its status unknown.
    const stopped = await master.exec(`stop w1 ${first.pid} --json`);
    expect(stopped.code).toBe(0);
    await waitFor(async () => (await master.execJson<Row[]>('ps w1')).find((r) => r.pid === first.pid)?.state === 'dead', 'the orphan to be seen ended');
    expect(pidAlive(first.pid)).toBe(false);
    expect(w.stdout() + w.stderr()).toContain('the spawn helper ended');

    // A helper that stops answering is killed after 10 s: the launch fails with a reason, and
    // the next one gets a new helper.
    const third = helperOf(w.stateDir)!;
    process.kill(third, 'SIGSTOP');
    const wedged = await master.exec('launch w1 s -- 1', { json: true });
    expect(wedged.stdout).toContain('EXEC_FAILED');
    expect(wedged.stdout).toContain('the spawn helper ended during the launch');
    await waitFor(() => (helperOf(w.stateDir) ?? third) !== third, 'a new spawn helper', 10_000);
    const last = helperOf(w.stateDir)!;
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
