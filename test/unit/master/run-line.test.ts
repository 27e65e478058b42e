import { pino } from 'pino';
import { describe, expect, test } from 'vitest';
import { commands } from '../../../packages/master/src/commands/index.js';
import { seconds, size, wholeNumber } from '../../../packages/master/src/commands/options.js';
import { defineCommand, type Command, type CommandContext } from '../../../packages/master/src/commands/types.js';
import { Fleet } from '../../../packages/master/src/fleet.js';
import { localFiles } from '../../../packages/master/src/local-files.js';
import { contextMaker, parseCommandArgs, runLine } from '../../../packages/master/src/run-line.js';

const echo = defineCommand<{ text: string; bad: string[] }>({
  name: 'echo',
  usage: 'echo TEXT [--times N] [--json]',
  summary: 'test command',
  options: { times: { type: 'string', parse: wholeNumber(1, 3) }, fail: { type: 'boolean' } },
  minArgs: 1,
  maxArgs: 1,
  async run(args) {
    const times = (args.values.times as number | undefined) ?? 1;
    return { text: args.positionals[0]!.repeat(times), bad: args.values.fail ? ['error on w9: it broke'] : [] };
  },
  format: (d) => d.text,
  failures: (d) => d.bad,
});

function context(table: Command[] = [...commands, echo]): CommandContext {
  const fleet = new Fleet({ token: 'x'.repeat(16), heartbeatMs: 1000, logger: pino({ level: 'silent' }), sweepTimer: false });
  return {
    fleet,
    signal: new AbortController().signal,
    cwd: '/',
    interactive: false,
    out: { write: async () => undefined, progress: () => undefined },
    commands: table,
    joinInfo: () => ({ workerCommand: 'worker …', installCommand: null }),
    tokens: null as never,
    services: null as never,
    caller: { name: 'local', role: 'admin' },
    remote: false,
    files: localFiles(),
  };
}

describe('runLine', () => {
  test('runs each ;-separated command and formats for people or as JSON', async () => {
    const r = await runLine('echo ab --times 2; echo c --json', context());
    expect(r).toEqual([
      { ok: true, output: 'abab', exit: false, thrown: false },
      { ok: true, output: JSON.stringify({ text: 'c', bad: [] }), exit: false, thrown: false },
    ]);
  });

  test('per-worker failures go to stderr in human output, and fail the command', async () => {
    const [r] = await runLine('echo x --fail', context());
    expect(r).toEqual({ ok: false, output: 'x', stderr: 'error on w9: it broke', exit: false, thrown: false });
    const [j] = await runLine('echo x --fail --json', context());
    expect(j).toMatchObject({ ok: false, thrown: false });
    expect(j!.stderr).toBeUndefined();
  });

  test('unknown commands and bad arguments are one line naming the usage', async () => {
    expect((await runLine('wrokers', context()))[0]).toMatchObject({
      ok: false,
      thrown: true,
      output: expect.stringMatching(/^error: unknown command "wrokers"/),
    });
    expect((await runLine('ech', context()))[0]!.output).toContain('did you mean echo?');
    expect((await runLine('echo', context()))[0]!.output).toBe('error: echo: missing arguments (usage: echo TEXT [--times N] [--json])');
    expect((await runLine('echo a --times 9', context()))[0]!.output).toBe(
      'error: echo: --times must be a whole number from 1 to 3, got "9" (usage: echo TEXT [--times N] [--json])',
    );
    expect((await runLine('echo a --nope', context()))[0]!.output).toMatch(/^error: echo: unknown option '--nope'/);
    expect((await runLine('echo "open', context()))[0]!.output).toBe('error: unclosed double quote');
    expect(JSON.parse((await runLine('nosuch --json', context()))[0]!.output)).toEqual({
      error: { code: 'UNKNOWN_COMMAND', message: expect.stringContaining('nosuch') },
    });
  });

  test('terminal escapes in human output are shown, never sent; JSON keeps the exact text', async () => {
    const evil = '\x1b]52;c;ZXZpbA==\x07\x1b[2Jhost';
    const [h] = await runLine(`echo '${evil}'`, context());
    expect(h!.output).toBe('\\x1b]52;c;ZXZpbA==\\x07\\x1b[2Jhost');
    const [j] = await runLine(`echo '${evil}' --json`, context());
    expect(JSON.parse(j!.output)).toMatchObject({ text: evil });
  });

  test('exit ends the line; an aborted context runs nothing more', async () => {
    const r = await runLine('exit; help', context());
    expect(r).toHaveLength(1);
    expect(r[0]!.exit).toBe(true);
    const ctx = context();
    const abort = new AbortController();
    abort.abort();
    expect(await runLine('help', { ...ctx, signal: abort.signal })).toEqual([]);
  });
});

describe('parseCommandArgs and the option parsers', () => {
  const stop = commands.find((c) => c.name === 'stop')!;

  test('options go through their parsers; rest words come after --', () => {
    expect(parseCommandArgs(stop, ['w1', 'api', '--timeout', '1.5'])).toEqual({ positionals: ['w1', 'api'], values: { timeout: 1500 }, rest: [] });
    const launch = commands.find((c) => c.name === 'launch')!;
    expect(parseCommandArgs(launch, ['w1', 'app', '--env', 'A=1', '--env', 'B=x=y', '--', '--port', '9'])).toEqual({
      positionals: ['w1', 'app'],
      values: {
        env: [
          ['A', '1'],
          ['B', 'x=y'],
        ],
      },
      rest: ['--port', '9'],
    });
    expect(() => parseCommandArgs(launch, ['w1', 'app', '--env', 'DROVER_APP=x'])).toThrow(/--env must be a variable not starting with DROVER_/);
    expect(() => parseCommandArgs(stop, ['w1', '1', '--', 'x'])).toThrow(/takes no arguments after --/);
    expect(() => parseCommandArgs(stop, ['w1', '1', 'extra'])).toThrow(/unexpected argument "extra"/);
    expect(() => parseCommandArgs(stop, ['w1', '1', '--timeout', '0'])).toThrow(/--timeout must be seconds > 0/);
    expect(() => parseCommandArgs(launch, ['w1', 'app', '--cpus', '-1'])).toThrow(
      /^launch: --cpus needs a value; one that starts with - is written --cpus=VALUE \(usage: /,
    );
    expect(() => parseCommandArgs(launch, ['w1', 'app', '--cpus=-1'])).toThrow(/^launch: --cpus must be /);
    expect(() => parseCommandArgs(launch, ['w1', 'app', '--cpus'])).toThrow(/^launch: --cpus needs a value \(usage: /);
  });

  test('words without options (no parseArgs) come out as parseArgs would give them', () => {
    const ps = commands.find((c) => c.name === 'ps')!;
    expect(parseCommandArgs(ps, ['w1'])).toEqual({ positionals: ['w1'], values: {}, rest: [] });
    expect(parseCommandArgs(ps, [])).toEqual({ positionals: [], values: {}, rest: [] });
    // `-` alone is a word, as parseArgs has it; `-5` is an option to parseArgs, and unknown.
    expect(parseCommandArgs(stop, ['w1', '-'])).toEqual({ positionals: ['w1', '-'], values: {}, rest: [] });
    expect(() => parseCommandArgs(stop, ['w1', '-5'])).toThrow(/unknown option '-5'/);
    expect(() => parseCommandArgs(ps, ['w1', 'w2'])).toThrow(/ps: unexpected argument "w2" \(usage: ps /);
    expect(() => parseCommandArgs(stop, ['w1'])).toThrow(/stop: missing arguments/);
  });

  test('seconds, sizes and whole numbers say what they expected', () => {
    expect(seconds()('2.5')).toBe(2500);
    expect(() => seconds()('0')).toThrow('seconds > 0');
    expect(seconds({ allowZero: true })('0')).toBe(0);
    expect(() => seconds({ max: 10 })('11')).toThrow('seconds > 0 and <= 10');
    expect(size()('4KiB')).toBe(4096);
    expect(() => size(1024, '1KiB')('2KiB')).toThrow('at most 1KiB');
    expect(wholeNumber(1, 5)('5')).toBe(5);
    expect(() => wholeNumber(1)('1.5')).toThrow('a whole number from 1');
  });
});

describe('contextMaker', () => {
  test("each command's context has its own fields over the session's, in an object of its own", async () => {
    const { signal: _s, out: _o, interactive: _i, cwd: _c, color: _k, ...session } = context();
    const contextFor = contextMaker(session);
    const one = new AbortController();
    const out = { write: async () => undefined, progress: () => undefined };
    const a = contextFor({ signal: one.signal, out, interactive: true, cwd: '/a', color: true });
    const b = contextFor({ signal: new AbortController().signal, out, interactive: false, cwd: '/b', color: false });
    expect(a).not.toBe(b);
    expect(a).toMatchObject({ cwd: '/a', color: true, interactive: true, json: false, caller: session.caller, fleet: session.fleet, files: session.files });
    expect(b).toMatchObject({ cwd: '/b', color: false, interactive: false });
    expect(a.signal).toBe(one.signal);
    expect(Object.keys(a).sort()).toEqual([...Object.keys(session), 'signal', 'out', 'interactive', 'cwd', 'color', 'json'].sort());
    // It runs commands like any context: --json per command, the rest from the session.
    expect(await runLine('echo hi --json; echo ho', a)).toMatchObject([
      { ok: true, output: '{"text":"hi","bad":[]}' },
      { ok: true, output: 'ho' },
    ]);
  });
});
