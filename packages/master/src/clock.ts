/**
 * Milliseconds on a clock that never steps: every deadline and age is measured on it, so
 * setting the wall clock back or forward an hour changes no worker's liveness. Wall time is
 * only for display.
 */
export type Clock = () => number;

export const monotonic: Clock = () => performance.now();
