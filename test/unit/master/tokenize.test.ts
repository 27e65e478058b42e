import { describe, expect, test } from 'vitest';
import { quoteWord, splitCommands } from '../../../packages/master/src/tokenize.js';
import { backoffDelay } from '../../../packages/worker/src/backoff.js';

describe('command lines', () => {
  test('split into commands and words like a shell', () => {
    expect(splitCommands('workers; ps all')).toEqual([['workers'], ['ps', 'all']]);
    expect(splitCommands(`launch w1 app -- "a b" 'c;d' e\\ f`)).toEqual([['launch', 'w1', 'app', '--', 'a b', 'c;d', 'e f']]);
    expect(splitCommands('  ;; ')).toEqual([]);
    expect(splitCommands('x ""')).toEqual([['x', '']]);
    expect(() => splitCommands('echo "open')).toThrow(/unclosed double quote/);
    expect(() => splitCommands("echo 'open")).toThrow(/unclosed single quote/);
    expect(splitCommands('a\\')).toEqual([['a\\']]);
    expect(splitCommands('"x\\"y\\\\" z\u00a0w')).toEqual([['x"y\\', 'z', 'w']]);
    expect(splitCommands('a\'b\'"c"d;e')).toEqual([['abcd'], ['e']]);
    const long = 'c'.repeat(62_000);
    expect(splitCommands(`launch w1 true -- ${long} "${long}"`)).toEqual([['launch', 'w1', 'true', '--', long, long]]);
  });

  test('quoteWord survives a round trip', () => {
    for (const w of ['plain', 'a b', "it's", '', 'x;y', '$HOME']) expect(splitCommands(`cmd ${quoteWord(w)}`)[0]![1] ?? '').toBe(w);
  });
});

describe('reconnect backoff', () => {
  test('grows exponentially, is capped, and never drops below half its ceiling', () => {
    expect(backoffDelay(0, 250, 10_000, () => 0)).toBe(125);
    expect(backoffDelay(0, 250, 10_000, () => 1)).toBe(250);
    expect(backoffDelay(3, 250, 10_000, () => 1)).toBe(2000);
    expect(backoffDelay(50, 250, 10_000, () => 1)).toBe(10_000);
    expect(backoffDelay(50, 250, 10_000, () => 0)).toBe(5000);
  });
});
