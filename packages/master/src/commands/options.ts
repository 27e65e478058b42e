import { DroverError, ENV_NAME_PATTERN, ErrorCode, checkName, parseSize } from '@drover/protocol';
import type { ValueParser } from './types.js';

/** Seconds (fractions allowed) → milliseconds, within [min, max] seconds. */
export function seconds(opts: { min?: number; max?: number; allowZero?: boolean } = {}): ValueParser<number> {
  const min = opts.min ?? 0;
  const max = opts.max ?? 7 * 24 * 3600;
  return (text) => {
    const s = Number(text);
    const ok = /^\d+(\.\d+)?$/.test(text) && s <= max && (opts.allowZero ? s >= min : s > min);
    if (!ok) throw new Error(`seconds ${opts.allowZero ? '>=' : '>'} ${min}${max < 7 * 24 * 3600 ? ` and <= ${max}` : ''}`);
    return Math.round(s * 1000);
  };
}

/** A whole number within [min, max]. */
export function wholeNumber(min: number, max = Number.MAX_SAFE_INTEGER): ValueParser<number> {
  return (text) => {
    const n = Number(text);
    if (!/^\d+$/.test(text) || n < min || n > max) throw new Error(`a whole number from ${min}${max < Number.MAX_SAFE_INTEGER ? ` to ${max}` : ''}`);
    return n;
  };
}

/** A number of CPUs: above 0, fractions allowed (0.5). */
export function cpus(text: string): number {
  const n = Number(text);
  if (!/^\d+(\.\d+)?$/.test(text) || !(n > 0) || n > 4096) throw new Error('a number of CPUs above 0, such as 1 or 0.5');
  return n;
}

/** A size like 100MiB, 4KiB or 1GiB → bytes, within [1, max]. */
export function size(max = Number.MAX_SAFE_INTEGER, maxText = `${max} bytes`): ValueParser<number> {
  return (text) => {
    const bytes = parseSize(text);
    if (bytes === null || bytes <= 0 || bytes > max)
      throw new Error(`a size like 100MiB, 4KiB or 1GiB${max < Number.MAX_SAFE_INTEGER ? `, at most ${maxText}` : ''}`);
    return bytes;
  };
}

/** An app name from a positional, or BAD_NAME saying what is allowed. */
export function appName(text: string): string {
  const bad = checkName(text, 'app name');
  if (bad) throw new DroverError(ErrorCode.BAD_NAME, bad);
  return text;
}

/** A positional that is a pid (all digits) or else an app name. */
export function pidOrApp(text: string): { pid: number } | { app: string } {
  if (/^\d+$/.test(text)) {
    const pid = Number(text);
    if (!Number.isSafeInteger(pid) || pid <= 0) throw new DroverError(ErrorCode.BAD_ARGUMENTS, `PID must be a positive whole number, got "${text}"`);
    return { pid };
  }
  return { app: appName(text) };
}

/** `K=V` for an app's environment: a variable name, `=`, any value. */
export function envPair(text: string): [string, string] {
  const eq = text.indexOf('=');
  const key = eq > 0 ? text.slice(0, eq) : '';
  if (!ENV_NAME_PATTERN.test(key)) throw new Error('NAME=VALUE with a variable name of letters, digits and _');
  if (key.startsWith('DROVER_')) throw new Error('a variable not starting with DROVER_ (drover sets those)');
  return [key, text.slice(eq + 1)];
}
