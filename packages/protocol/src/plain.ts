/**
 * The pieces of the hand checks that take the protocol's most frequent frames without zod
 * (heartbeats, successful results, bare requests, the operator's `run`). Each check says yes
 * only where its schema would take the object and give back the same one; anything else goes
 * to the schema, which answers and words any error as before. Differential tests hold each
 * check to its schema (test/unit/protocol/heartbeat.test.ts, plain.test.ts).
 */

/** A safe integer >= 0. */
export const isCount = (x: unknown): boolean => Number.isSafeInteger(x) && (x as number) >= 0;

/** A finite number >= 0. */
export const isAmount = (x: unknown): boolean => typeof x === 'number' && Number.isFinite(x) && x >= 0;

/** A request id: an integer from 0 to 2^32 - 1 (schemas.ts `Id`). */
export const isId = (x: unknown): boolean => Number.isSafeInteger(x) && (x as number) >= 0 && (x as number) <= 0xffffffff;

/** How many own enumerable keys a parsed JSON object has, without making an array of them. */
export function keyCount(o: object): number {
  let n = 0;
  for (const k in o) if (Object.hasOwn(o, k)) n++;
  return n;
}
