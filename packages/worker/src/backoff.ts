/** Exponential backoff with full jitter, capped: the delay before reconnect attempt `attempt` (0-based). */
export function backoffDelay(attempt: number, baseMs = 250, capMs = 10_000, random = Math.random): number {
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.min(attempt, 16));
  // Never less than half the ceiling, so a fleet that lost its master does not stampede back at 0 ms.
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}
