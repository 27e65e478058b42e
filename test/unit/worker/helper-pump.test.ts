import { spawnSync } from 'node:child_process';
import { closeSync, constants, existsSync, openSync, readFileSync, readlinkSync, readdirSync, writeSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { HelperPump, pipeOf, type LogProblem, type PumpHost } from '../../../packages/worker/src/log-pump.js';
import { tempDir, waitFor } from '../../helpers/cluster.js';

/** A host that records what the pump asks of the helper, and never pumps itself. */
function host(): PumpHost & { started: HelperPump[]; rotations: number[] } {
  const h = {
    started: [] as HelperPump[],
    rotations: [] as number[],
    pump: (p: HelperPump) => void h.started.push(p),
    rotate: (pid: number) => void h.rotations.push(pid),
  };
  return h;
}

/** A FIFO at APP.PID.pipe with a writer (the app, read-write as a launch's) and our read end. */
function fifo(dir: string) {
  const log = path.join(dir, 'app.4242.log');
  expect(spawnSync('mkfifo', [pipeOf(log)]).status).toBe(0);
  const held = openSync(pipeOf(log), constants.O_RDONLY | constants.O_NONBLOCK);
  const app = openSync(pipeOf(log), constants.O_RDWR);
  return { log, held, app };
}

const readlinkOr = (link: string): string => {
  try {
    return readlinkSync(link);
  } catch {
    return '';
  }
};

const isOpen = (fd: number): boolean => {
  try {
    readlinkSync(`/proc/self/fd/${fd}`);
    return true;
  } catch {
    return false;
  }
};

describe('HelperPump (the agent side of a pump in the native helper)', () => {
  test('holds the read end until the helper has its own; a rotation tells the readers first, then the helper', () => {
    const dir = tempDir();
    const { log, held, app } = fifo(dir);
    const h = host();
    const p = new HelperPump(
      4242,
      'app',
      log,
      { maxBytes: 1024 * 1024, keep: 2 },
      () => undefined,
      () => undefined,
      held,
      h,
    );
    p.start();
    expect(h.started).toEqual([p]);
    expect(isOpen(held)).toBe(true);
    p.heard({ pump: 4242, open: 1 });
    expect(isOpen(held)).toBe(false);

    const seen: number[] = [];
    const clock = p.rotation;
    const stop = clock.watch!(() => seen.push(clock.generation()));
    p.heard({ pump: 4242, rotate: 1 });
    // The watcher ran before the count moved and before the helper was told to go on.
    expect(seen).toEqual([0]);
    expect(clock.generation()).toBe(1);
    expect(h.rotations).toEqual([4242]);
    stop();
    p.heard({ pump: 4242, end: 1 });
    expect(p.running).toBe(false);
    closeSync(app);
  });

  test('says what the helper reports: a full disk, logging again, a failed write', () => {
    const dir = tempDir();
    const { log, held, app } = fifo(dir);
    const problems: LogProblem[] = [];
    const errors: string[] = [];
    const p = new HelperPump(
      4242,
      'app',
      log,
      { maxBytes: 1024 * 1024, keep: 2 },
      (x) => problems.push(x),
      (e) => errors.push(e.message),
      held,
      host(),
    );
    p.heard({ pump: 4242, full: 1 });
    p.heard({ pump: 4242, resumed: 123 });
    p.heard({ pump: 4242, error: 'could not write the log x: Input/output error (EIO)' });
    expect(problems).toEqual([
      { kind: 'no-space', pid: 4242, app: 'app' },
      { kind: 'resumed', pid: 4242, app: 'app', droppedBytes: 123 },
    ]);
    expect(errors).toEqual(['could not write the log x: Input/output error (EIO)']);
    expect(p.running).toBe(true);
    p.detach();
    expect(p.running).toBe(false);
    expect(isOpen(held)).toBe(false);
    closeSync(app);
  });

  test('a helper lost before it opened the FIFO: the pump here carries on from the read end held, rotating with the same clock; goes back to a helper that is up again; ends with the writers', async () => {
    const dir = tempDir();
    const { log, held, app } = fifo(dir);
    writeSync(app, 'before\n');
    const all = (): string =>
      readdirSync(dir)
        .filter((n) => n.startsWith('app.4242.log'))
        .sort()
        .reverse()
        .map((n) => readFileSync(path.join(dir, n), 'utf8'))
        .join('');
    const p = new HelperPump(
      4242,
      'app',
      log,
      { maxBytes: 64 * 1024, keep: 3 },
      () => undefined,
      () => undefined,
      held,
      host(),
    );
    p.start();
    const seen: number[] = [];
    p.rotation.watch!(() => seen.push(p.rotation.generation()));
    p.lost();
    // Lines past the cap: the pump here rotates, and the clock's readers hear of it.
    const line = `${'x'.repeat(99)}\n`;
    // In batches the loop reads between (the pump runs on this thread: a full FIFO would block us).
    for (let b = 0; b < 10; b++) {
      writeSync(app, line.repeat(100));
      await new Promise((r) => setTimeout(r, 10));
    }
    await waitFor(() => readdirSync(dir).includes('app.4242.log.1'), 'a rotation');
    expect(seen.length).toBeGreaterThan(0);
    expect(p.rotation.generation()).toBe(seen.length);
    // What the helper says now is not its to act on.
    p.heard({ pump: 4242, end: 1 });
    expect(p.running).toBe(true);
    // A helper is back: the pump goes back to it, a read end held until it has its own, and the
    // pump here reads no more (what is written now waits in the FIFO for the helper).
    const h = host();
    (p as unknown as { host: PumpHost }).host = h;
    p.handBack();
    expect(h.started).toEqual([p]);
    const holders = (): string[] => readdirSync('/proc/self/fd').filter((fd) => readlinkOr(`/proc/self/fd/${fd}`) === pipeOf(log));
    // The app's end (ours here) and the read end held; the pump here closed its own.
    expect(holders().length).toBe(2);
    writeSync(app, 'for the helper\n');
    await new Promise((r) => setTimeout(r, 50));
    expect(all()).toBe(`before\n${line.repeat(1000)}`);
    p.heard({ pump: 4242, open: 1 });
    expect(holders().length).toBe(1);
    // No helper after all: the pump is lost again, and the one here reads on from the FIFO.
    p.lost();
    await waitFor(() => all().endsWith('for the helper\n'), 'the pump here to read on');
    closeSync(app);
    await p.done;
    expect(p.running).toBe(false);
    expect(existsSync(pipeOf(log))).toBe(false);
    expect(all()).toBe(`before\n${line.repeat(1000)}for the helper\n`);
  });
});
