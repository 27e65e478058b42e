import { spawn, spawnSync } from 'node:child_process';
import { closeSync, constants, existsSync, openSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { LINE_SLACK, LogPump, logChain, pipeOf, type LogProblem } from '../../../packages/worker/src/log-pump.js';
import { streamLog, tailStart } from '../../../packages/worker/src/log-stream.js';
import { OUT_BUFFER_BYTES, type OutgoingTransfer } from '../../../packages/worker/src/transfers.js';
import { CHUNK_HEADER_BYTES } from '@drover/protocol';
import { tempDir } from '../../helpers/cluster.js';

const file = (dir: string, name: string, text: string): string => {
  const p = path.join(dir, name);
  writeFileSync(p, text);
  return p;
};

/** What streamLog sends, collected. */
function collector(): { out: OutgoingTransfer; text: () => string } {
  const chunks: Buffer[] = [];
  // As the real one: buffers with room for the header, the bytes read after it.
  const out = {
    buffer: () => Buffer.alloc(OUT_BUFFER_BYTES),
    write: async (b: Buffer, n: number) => void chunks.push(Buffer.from(b.subarray(CHUNK_HEADER_BYTES, CHUNK_HEADER_BYTES + n))),
  } as unknown as OutgoingTransfer;
  return { out, text: () => Buffer.concat(chunks).toString() };
}

describe('tailStart', () => {
  test('finds where the last N lines start, across block boundaries and without a final newline', async () => {
    const dir = tempDir();
    const three = file(dir, 'three', 'one\ntwo\nthree\n');
    expect(await tailStart([three], 1)).toEqual({ file: three, offset: 8 });
    expect(await tailStart([three], 2)).toEqual({ file: three, offset: 4 });
    expect(await tailStart([three], 3)).toEqual({ file: three, offset: 0 });
    expect(await tailStart([three], 10)).toEqual({ file: three, offset: 0 });
    expect(await tailStart([three], 0)).toEqual({ file: three, offset: 14 });
    const open = file(dir, 'open', 'a\nb');
    expect(await tailStart([open], 1)).toEqual({ file: open, offset: 2 });
    const empty = file(dir, 'empty', '');
    expect(await tailStart([empty], 5)).toEqual({ file: empty, offset: 0 });
    const long = file(dir, 'long', `${'x'.repeat(100_000)}\n${'y'.repeat(70_000)}\nlast\n`);
    expect(await tailStart([long], 2)).toEqual({ file: long, offset: 100_001 });
  });

  test('counts back across rotated files, the live one just rotated (empty) included', async () => {
    const dir = tempDir();
    const log = path.join(dir, 'app.1.log');
    file(dir, 'app.1.log.2', '1\n2\n3\n');
    file(dir, 'app.1.log.1', '4\n5\n');
    writeFileSync(log, '');
    const chain = logChain(log);
    expect(chain).toEqual([`${log}.2`, `${log}.1`, log]);
    expect(await tailStart(chain, 2)).toEqual({ file: `${log}.1`, offset: 0 });
    expect(await tailStart(chain, 3)).toEqual({ file: `${log}.2`, offset: 4 });
    const { out, text } = collector();
    await streamLog(log, await tailStart(chain, 3), out, { follow: false, stillRunning: () => false, signal: new AbortController().signal });
    expect(text()).toBe('3\n4\n5\n');
  });
});

const haveMkfifo = spawnSync('mkfifo', ['--version'], { stdio: 'ignore' }).status === 0;

/** Writes `lines` numbered lines of 12-61 bytes into the pipe of `log` from another process, as a launched one does. */
async function writeLines(log: string, lines: number): Promise<void> {
  const w = openSync(pipeOf(log), constants.O_RDWR);
  const writer = spawn(
    'awk',
    [`BEGIN { for (i = 1; i <= ${lines}; i++) { d = ""; for (j = 0; j < i % 50; j++) d = d "."; printf "line %06d %s\\n", i, d } }`],
    { stdio: ['ignore', w, 'inherit'] },
  );
  closeSync(w);
  await new Promise((resolve) => writer.once('exit', resolve));
}

const numbers = (text: string): number[] =>
  text
    .split('\n')
    .filter(Boolean)
    .map((l) => Number(/^line (\d+)/.exec(l)![1]));

async function startPump(dir: string, keep: number): Promise<{ log: string; pump: LogPump; problems: LogProblem[] }> {
  const log = path.join(dir, 'app.42.log');
  expect(spawnSync('mkfifo', [pipeOf(log)]).status).toBe(0);
  const problems: LogProblem[] = [];
  const pump = new LogPump(
    42,
    'app',
    log,
    { maxBytes: 64 * 1024, keep },
    (p) => problems.push(p),
    (err) => {
      throw err;
    },
  );
  pump.start();
  return { log, pump, problems };
}

describe.skipIf(!haveMkfifo)('LogPump (needs mkfifo)', () => {
  test('carries a pipe into a log rotated at line ends, and a follower reads every line once, in order, across rotations', async () => {
    const dir = tempDir();
    const { log, pump, problems } = await startPump(dir, 30);
    const { out, text } = collector();
    const following = streamLog(log, { file: log, offset: 0 }, out, {
      follow: true,
      stillRunning: () => pump.running,
      signal: new AbortController().signal,
      rotation: pump.rotation,
    });
    await writeLines(log, 20_000);
    await pump.done;
    await following;
    const seen = numbers(text());
    expect([seen.length, seen[0], seen.at(-1)]).toEqual([20_000, 1, 20_000]);
    expect(seen.every((n, i) => n === i + 1)).toBe(true);
    // The pipe is gone with its last writer; every rotated file ends at a line end within the cap.
    expect(existsSync(pipeOf(log))).toBe(false);
    const rotated = readdirSync(dir).filter((n) => /^app\.42\.log\.\d+$/.test(n));
    expect(rotated.length).toBeGreaterThan(5);
    for (const f of rotated) {
      const body = readFileSync(path.join(dir, f));
      expect(body.length).toBeLessThanOrEqual(64 * 1024 + LINE_SLACK);
      expect(body[body.length - 1]).toBe(0x0a);
    }
    expect(problems).toEqual([]);
  });

  test('keeps `keep` rotated files; the tail is the newest lines whichever files hold them', async () => {
    const dir = tempDir();
    const { log, pump } = await startPump(dir, 3);
    await writeLines(log, 20_000);
    await pump.done;
    expect(readdirSync(dir).sort()).toEqual(['app.42.log', 'app.42.log.1', 'app.42.log.2', 'app.42.log.3']);
    for (const n of [1, 5, 3000]) {
      const { out, text } = collector();
      await streamLog(log, await tailStart(logChain(log), n), out, { follow: false, stillRunning: () => false, signal: new AbortController().signal });
      expect(numbers(text())).toEqual(Array.from({ length: n }, (_, i) => 20_000 - n + 1 + i));
    }
    // The whole log: the kept files in order, ending with the last line.
    const { out, text } = collector();
    await streamLog(log, { file: logChain(log)[0]!, offset: 0 }, out, { follow: false, stillRunning: () => false, signal: new AbortController().signal });
    const all = numbers(text());
    expect(all.at(-1)).toBe(20_000);
    expect(all.every((n, i) => i === 0 || n === all[i - 1]! + 1)).toBe(true);
  });
});
