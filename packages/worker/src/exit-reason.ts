import { describeSignal } from './signals.js';

/** What drover did to a process before it ended, if anything. */
export interface Signalled {
  by: 'stop' | 'kill';
  signal: string;
  forced: boolean;
}

/**
 * How a process ended, in words: the one place exits are described. `known` is false when the
 * agent did not see the exit itself (it was re-adopted after a restart, or ended while the
 * agent was down), so neither code nor signal can be known.
 */
export function describeExit(ending: { code: number | null; signal: string | null; signalled: Signalled | null; known: boolean; whileDown?: boolean }): string {
  const { code, signal, signalled: sent, known } = ending;
  if (!known) {
    const after = sent ? ` after drover's ${sent.signal} (${sent.by})` : '';
    if (ending.whileDown) return `ended while the agent was down${after}; exit status unknown`;
    return `ended${after}; exit status unknown (re-adopted after an agent restart)`;
  }
  if (signal) {
    if (sent && sent.signal === signal) {
      if (sent.forced) return 'killed by drover (SIGKILL after the stop timeout)';
      return sent.by === 'stop' ? `stopped by drover (${signal})` : `killed by drover (${signal})`;
    }
    return `killed by ${signal} (${describeSignal(signal)})`;
  }
  if (sent) return `exited with code ${code} after drover's ${sent.signal} (${sent.by})`;
  return `exited with code ${code}`;
}
