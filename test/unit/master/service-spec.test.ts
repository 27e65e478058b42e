import { describe, expect, test } from 'vitest';
import { parseDuration, parseServiceFile, resolveDisconnect } from '../../../packages/master/src/services/spec.js';

describe('service files', () => {
  test('durations', () => {
    expect(parseDuration('500ms')).toBe(500);
    expect(parseDuration('10m')).toBe(600_000);
    expect(parseDuration('1h30m')).toBe(5_400_000);
    expect(parseDuration(2)).toBe(2000);
    expect(parseDuration('soon')).toBeNull();
    expect(parseDuration(-1)).toBeNull();
  });

  test('defaults fill what the file leaves out; JSON is accepted', () => {
    const s = parseServiceFile('{"name":"api","programs":[{"name":"web","path":"./web","args":[8080],"env":{"DEBUG":true},"on":{"zone":"a"}}]}', 'api.json');
    expect(s.programs[0]).toEqual({
      name: 'web',
      path: './web',
      libs: [],
      args: ['8080'],
      env: { DEBUG: 'true' },
      replicas: 1,
      on: { labels: { zone: 'a' } },
      resources: { cpus: 0, memoryBytes: 0 },
      restart: { policy: 'on-failure', maxRestarts: 5, windowMs: 600_000, backoffMs: [1000, 60_000] },
      stop: { signal: 'SIGINT', timeoutMs: 10_000 },
      healthyAfterMs: 2000,
      priority: 0,
    });
    expect(parseServiceFile('name: a\nprograms:\n  - { name: p, path: x, on: [w1, w3], resources: { memory: 512MiB } }\n', 'a.yaml').programs[0]).toMatchObject(
      {
        on: { workers: ['w1', 'w3'] },
        resources: { memoryBytes: 512 * 1024 * 1024 },
      },
    );
  });

  test('restart and stop take their policy or signal alone', () => {
    const [p] = parseServiceFile('name: a\nprograms:\n  - { name: p, path: x, restart: always, stop: SIGTERM }\n', 'a.yaml').programs;
    expect(p!.restart).toEqual({ policy: 'always', maxRestarts: 5, windowMs: 600_000, backoffMs: [1000, 60_000] });
    expect(p!.stop).toEqual({ signal: 'SIGTERM', timeoutMs: 10_000 });
    expect(() => parseServiceFile('name: a\nprograms:\n  - name: p\n    path: x\n    restart: sometimes\n', 'a.yaml')).toThrow(
      'a.yaml:5: programs.0.restart.policy: Invalid option: expected one of "always"|"on-failure"|"never"',
    );
    expect(() => parseServiceFile('name: a\nprograms:\n  - { name: p, path: x, stop: SIGSTOP }\n', 'a.yaml')).toThrow(
      /^a\.yaml:3: programs\.0\.stop\.signal: Invalid option/,
    );
  });

  test('each problem is a line: file, line, field, why; YAML syntax errors too', () => {
    const bad = (text: string): string[] => {
      try {
        parseServiceFile(text, 's.yaml');
      } catch (err) {
        return (err as Error).message.split('\n');
      }
      throw new Error('parsed');
    };
    expect(bad('name: a.b\nprograms: []\n')).toEqual([
      's.yaml:1: name: expected 1-24 characters from A-Z a-z 0-9 _ -, starting with a letter or digit',
      's.yaml:2: programs: Too small: expected array to have >=1 items',
    ]);
    expect(bad('name: a\nprograms:\n  - { name: p, path: x, restart: { backoff: [1m, 1s] } }\n  - { name: q, path: y }\n')).toEqual([
      's.yaml:3: programs.0.restart.backoff: backoff is [first, most]: the first delay cannot exceed the most',
    ]);
    expect(bad('name: a\nprograms:\n  - { name: p, path: x }\n  - { name: p, path: y }\n')).toEqual(['s.yaml:3: programs: program names must be unique']);
    // Not a service file at all: its keys are named five at most, each cut at 40 characters.
    const keys = Array.from({ length: 8 }, (_, i) => `${'klmnopqr'[i]!.repeat(50)}: 1`).join('\n');
    expect(bad(`name: a\nprograms: [{ name: p, path: x }]\n${keys}\n`)).toEqual([
      `s.yaml:3: ${'k'.repeat(39)}…: unknown fields ${[...'klmno'].map((c) => `${c.repeat(39)}…`).join(', ')} and 3 more`,
    ]);
    expect(bad('name: a\nprograms:\n  - { name: p, path: x, args: ["a\\0b"] }\n')).toEqual([
      's.yaml:3: programs.0.args.0: holds a NUL byte, which no argument or environment value can',
    ]);
    const bomb = ['a: &a [x, x, x, x, x, x, x, x, x]', ...'bcdefg'.split('').map((k, i) => `${k}: &${k} [${Array(9).fill(`*${'abcdef'[i]}`).join(', ')}]`)];
    expect(bad(`${bomb.join('\n')}\nname: x\nprograms: *g\n`)).toEqual(['s.yaml: Excessive alias count indicates a resource exhaustion attack']);
    expect(bad('name: [a\n')[0]).toMatch(/^s\.yaml:\d+: Flow sequence/);
    expect(bad('name: a\nname: b\nprograms: []\n')[0]).toMatch(/^s\.yaml:2: Map keys must be unique/);
  });
});

describe('disconnect', () => {
  const defaults = { lostAfterMs: 30_000, stopAfterMs: 25_000, replace: true };
  test('the file over the master defaults; stopAfter must be shorter than lostAfter', () => {
    const [p] = parseServiceFile('name: a\nprograms:\n  - { name: p, path: x, disconnect: { lostAfter: 10s } }\n', 'a.yaml').programs;
    expect(() => resolveDisconnect(p!, defaults)).toThrow(
      'program p: disconnect.stopAfter (25 s) must be shorter than lostAfter (10 s): the worker must stop its copy before the master starts another',
    );
    const [q] = parseServiceFile('name: a\nprograms:\n  - { name: q, path: x, disconnect: { lostAfter: 10s, stopAfter: 8s } }\n', 'a.yaml').programs;
    expect(resolveDisconnect(q!, defaults)).toEqual({ lostAfterMs: 10_000, stopAfterMs: 8000, replace: true });
    const [r] = parseServiceFile('name: a\nprograms:\n  - { name: r, path: x, disconnect: { replace: false } }\n', 'a.yaml').programs;
    expect(resolveDisconnect(r!, defaults)).toEqual({ ...defaults, replace: false });
    expect(() => parseServiceFile('name: a\nprograms:\n  - { name: s, path: x, disconnect: { lostAfter: 5s, stopAfter: 5s } }\n', 'a.yaml')).toThrow(
      'a.yaml:3: programs.0.disconnect.stopAfter: stopAfter must be shorter than lostAfter: the worker stops its copy before the master starts another',
    );
  });
});

describe('log', () => {
  test('max and keep over the worker defaults; absent, nothing is said (the worker decides)', () => {
    const [p] = parseServiceFile('name: a\nprograms:\n  - { name: p, path: x, log: { max: 16MiB, keep: 2 } }\n', 'a.yaml').programs;
    expect(p!.log).toEqual({ maxBytes: 16 * 1024 * 1024, keep: 2 });
    const [q] = parseServiceFile('name: a\nprograms:\n  - { name: q, path: x, log: { max: 0 } }\n', 'a.yaml').programs;
    expect(q!.log).toEqual({ maxBytes: 0 });
    const [r] = parseServiceFile('name: a\nprograms:\n  - { name: r, path: x }\n', 'a.yaml').programs;
    expect(r!.log).toBeUndefined();
    expect(() => parseServiceFile('name: a\nprograms:\n  - { name: s, path: x, log: { max: 1KiB } }\n', 'a.yaml')).toThrow(
      'a.yaml:3: programs.0.log.max: max is 0 (never rotate) or at least 64KiB',
    );
    expect(() => parseServiceFile('name: a\nprograms:\n  - { name: s, path: x, log: { keep: 500 } }\n', 'a.yaml')).toThrow(/programs\.0\.log\.keep/);
  });

  test('an argument or environment value past what a launch carries is refused in the file, with its path', () => {
    const long = 'a'.repeat(65_537);
    expect(() => parseServiceFile(`name: a\nprograms:\n  - { name: s, path: x, args: [ok, ${long}] }\n`, 'a.yaml')).toThrow(/programs\.0\.args\.1/);
    expect(() => parseServiceFile(`name: a\nprograms:\n  - { name: s, path: x, env: { K: ${long} } }\n`, 'a.yaml')).toThrow(/programs\.0\.env\.K/);
    const [p] = parseServiceFile(`name: a\nprograms:\n  - { name: s, path: x, args: [${'a'.repeat(65_536)}, 7, true] }\n`, 'a.yaml').programs;
    expect(p!.args.map((a) => a.length)).toEqual([65_536, 1, 4]);
  });
});
