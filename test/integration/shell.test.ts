import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { MASTER_CLI, TOKEN, startMaster, startProcess, startWorker, tempDir, waitFor, waitForAvailable } from '../helpers/cluster.js';

describe('master> shell', () => {
  test('driven through stdin: help, workers, an unknown command, bad arguments, exit', async () => {
    const master = await startMaster({ stdin: 'pipe' });
    startWorker(master, { name: 'w1' });
    await waitForAvailable(master, 1);
    master.child.stdin!.write('help\nworkers\nfrobnicate w1\nwait banana\nhelp wait\nexit\n');
    const { code } = await master.exited;
    expect(code).toBe(0);
    const out = master.stdout();
    expect(out).toMatch(/COMMAND +WHAT IT DOES/);
    // suspect: a heartbeat late by half an interval on a loaded machine; still available.
    expect(out).toMatch(/w1\s+127\.0\.0\.1\s+(available|suspect)/);
    expect(out).toContain('error: unknown command "frobnicate"; type help for the list');
    expect(out).toContain('error: wait: N must be a whole number, got "banana" (usage: wait N [--timeout S] [--json])');
    expect(out).toContain('usage: wait N [--timeout S] [--json]');
    expect(out).not.toMatch(/\s+at .*:\d+:\d+/);
    // the control socket is gone with the master
    expect(existsSync(path.join(master.stateDir, 'master.sock'))).toBe(false);
  });

  test('in a terminal: prompt, Tab completion, notices, history, Ctrl-C and Ctrl-D', async () => {
    const stateDir = tempDir();
    const cmd = `${process.execPath} ${MASTER_CLI} --host 127.0.0.1 --port 0 --token ${TOKEN} --state-dir ${stateDir} --heartbeat-ms 200 --no-tls`;
    // script(1) gives the master a real pseudo-terminal; what we write to its stdin is typed.
    const term = startProcess('script', ['-qfec', cmd, '/dev/null'], { stdin: 'pipe', env: { TERM: 'xterm', COLUMNS: '120' } });
    const type = (s: string): boolean => term.child.stdin!.write(s);
    await waitFor(() => term.stdout().includes('master> '), 'the prompt');
    const port = Number(/listening on [^ ]+:(\d+)/.exec(term.stdout())![1]);
    startWorker({ address: `127.0.0.1:${port}` }, { name: 'w1' });
    await waitFor(() => term.stdout().includes('[w1 joined from 127.0.0.1]'), 'a join notice');

    type('wor\t');
    await waitFor(() => term.stdout().includes('workers '), 'completion of "wor"');
    type('\r');
    // In a terminal the status is coloured (green: available).
    await waitFor(() => /w1\s+127\.0\.0\.1\s+\x1b\[32mavailable\x1b\[0m/.test(term.stdout()), 'the workers table, its status in green');

    type('help wa\t');
    await waitFor(() => term.stdout().includes('help wait '), 'completion of a command argument');
    type('\x03'); // Ctrl-C drops the line
    await waitFor(() => term.stdout().includes('^C'), 'Ctrl-C echo');
    type('wait 5 --timeout 30\r');
    await waitFor(() => term.stdout().includes('waiting for 5 workers: 1 available'), 'the live status of wait');
    type('\x03'); // Ctrl-C cancels the running command
    await waitFor(() => term.stdout().includes('error: cancelled'), 'the running command cancelled');

    type('bogus\r');
    await waitFor(() => term.stdout().includes('error: unknown command "bogus"'), 'unknown command');
    type('\x04'); // Ctrl-D quits
    const { code } = await term.exited;
    expect(code).toBe(0);
    const history = readFileSync(path.join(stateDir, 'history'), 'utf8');
    expect(history).toContain('workers');
    expect(history).toContain('bogus');
  });
});
