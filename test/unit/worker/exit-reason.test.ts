import { expect, test } from 'vitest';
import { describeExit } from '../../../packages/worker/src/exit-reason.js';

test('every way a process ends has one wording', () => {
  const stop = { by: 'stop' as const, signal: 'SIGINT', forced: false };
  const cases: [Parameters<typeof describeExit>[0], string][] = [
    [{ code: 0, signal: null, signalled: null, known: true }, 'exited with code 0'],
    [{ code: 3, signal: null, signalled: stop, known: true }, "exited with code 3 after drover's SIGINT (stop)"],
    [{ code: null, signal: 'SIGINT', signalled: stop, known: true }, 'stopped by drover (SIGINT)'],
    [{ code: null, signal: 'SIGKILL', signalled: { by: 'kill', signal: 'SIGKILL', forced: false }, known: true }, 'killed by drover (SIGKILL)'],
    [
      { code: null, signal: 'SIGKILL', signalled: { by: 'stop', signal: 'SIGKILL', forced: true }, known: true },
      'killed by drover (SIGKILL after the stop timeout)',
    ],
    [{ code: null, signal: 'SIGSEGV', signalled: null, known: true }, 'killed by SIGSEGV (segmentation fault)'],
    [{ code: null, signal: null, signalled: null, known: false }, 'ended; exit status unknown (re-adopted after an agent restart)'],
    [
      { code: null, signal: null, signalled: stop, known: false },
      "ended after drover's SIGINT (stop); exit status unknown (re-adopted after an agent restart)",
    ],
    [{ code: null, signal: null, signalled: null, known: false, whileDown: true }, 'ended while the agent was down; exit status unknown'],
  ];
  for (const [ending, words] of cases) expect(describeExit(ending)).toBe(words);
});
