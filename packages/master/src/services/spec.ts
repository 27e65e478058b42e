import * as z from 'zod';
import { LineCounter, parseDocument, isMap, isPair, isScalar, type Node } from 'yaml';
import { DroverError, ENV_NAME_PATTERN, ErrorCode, LABEL_KEY_PATTERN, MAX_ARGS, MAX_ARG_CHARS, checkWorkerName, parseSize } from '@drover/protocol';

/** Service and program names: they make app names on workers (service.program.version), so no dots. */
export const SERVICE_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_-]{0,23}$/;
const serviceName = z.string().regex(SERVICE_NAME_PATTERN, 'expected 1-24 characters from A-Z a-z 0-9 _ -, starting with a letter or digit');

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** "10m", "1s", "500ms", "1h30m" or a number of seconds, in milliseconds; null when not a duration. */
export function parseDuration(value: string | number): number | null {
  if (typeof value === 'number') return Number.isFinite(value) && value >= 0 ? Math.round(value * 1000) : null;
  const text = value.trim();
  if (!/^(\d+(\.\d+)?(ms|s|m|h))+$/.test(text)) return null;
  let ms = 0;
  for (const m of text.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)) ms += Number(m[1]) * DURATION_UNITS[m[2]!]!;
  return Math.round(ms);
}

const duration = z.union([z.string(), z.number()]).transform((v, ctx) => {
  const ms = parseDuration(v);
  if (ms === null) {
    ctx.issues.push({ code: 'custom', message: `expected a duration such as 500ms, 10s, 5m or 1h, got ${JSON.stringify(v)}`, input: v });
    return z.NEVER;
  }
  return ms;
});

const size = z.union([z.string(), z.number()]).transform((v, ctx) => {
  const bytes = typeof v === 'number' ? (Number.isSafeInteger(v) && v >= 0 ? v : null) : parseSize(v);
  if (bytes === null) {
    ctx.issues.push({ code: 'custom', message: `expected a size such as 512MiB or 4GiB, got ${JSON.stringify(v)}`, input: v });
    return z.NEVER;
  }
  return bytes;
});

const scalarText = z.union([z.string(), z.number(), z.boolean()]).transform(String);
/** An argument or environment value: within what a launch carries, refused here with the path, not by the worker. */
const launchText = scalarText.pipe(
  z
    .string()
    .max(MAX_ARG_CHARS)
    .refine((t) => !t.includes('\0'), { message: 'holds a NUL byte, which no argument or environment value can' }),
);
const workerName = z.string().refine((n) => checkWorkerName(n) === null, { message: 'not a worker name' });

/** `restart: always` for `restart: { policy: always }`, `stop: SIGTERM` for `stop: { signal: SIGTERM }`. */
function byName(field: string): (v: unknown) => unknown {
  return (v) => (typeof v === 'string' ? { [field]: v } : v);
}

const Program = z.strictObject({
  name: serviceName,
  path: z.string().min(1).max(4096),
  libs: z.array(z.string().min(1).max(4096)).max(256).default([]),
  args: z.array(launchText).max(MAX_ARGS).default([]),
  env: z.record(z.string().regex(ENV_NAME_PATTERN, 'not an environment variable name'), launchText).default({}),
  replicas: z.number().int().min(0).max(10_000).default(1),
  on: z
    .union([
      z.literal('any'),
      z.literal('all'),
      z.array(workerName).min(1).max(1000),
      z.record(z.string().regex(LABEL_KEY_PATTERN, 'not a label key'), scalarText),
    ])
    .default('any'),
  resources: z.strictObject({ cpus: z.number().min(0).max(4096).default(0), memory: size.default(0) }).default({ cpus: 0, memory: 0 }),
  restart: z
    .preprocess(
      byName('policy'),
      z
        .strictObject({
          policy: z.enum(['always', 'on-failure', 'never']).default('on-failure'),
          maxRestarts: z.number().int().min(0).max(1_000_000).default(5),
          window: duration.default(600_000),
          backoff: z.tuple([duration, duration]).default([1000, 60_000]),
        })
        .refine((r) => r.backoff[0] <= r.backoff[1], { message: 'backoff is [first, most]: the first delay cannot exceed the most', path: ['backoff'] })
        .refine((r) => r.window > 0, { message: 'window must be longer than 0', path: ['window'] }),
    )
    .default({ policy: 'on-failure', maxRestarts: 5, window: 600_000, backoff: [1000, 60_000] }),
  stop: z
    .preprocess(
      byName('signal'),
      z.strictObject({
        signal: z.enum(['SIGINT', 'SIGTERM', 'SIGQUIT', 'SIGHUP', 'SIGUSR1', 'SIGUSR2']).default('SIGINT'),
        timeout: duration.default(10_000),
      }),
    )
    .default({ signal: 'SIGINT', timeout: 10_000 }),
  healthy: z.strictObject({ after: duration.default(2000) }).default({ after: 2000 }),
  /** Higher first in the queue. */
  priority: z.number().int().min(-1000).max(1000).default(0),
  /** Its log on the worker: rotated past `max` (0: never), `keep` older files; the worker's --log-max/--log-keep where not given. */
  log: z
    .strictObject({
      max: size.refine((b) => b === 0 || b >= 64 * 1024, { message: 'max is 0 (never rotate) or at least 64KiB' }).optional(),
      keep: z.number().int().min(0).max(100).optional(),
    })
    .optional(),
  /** When its worker is cut off: the master's --lost-after, --stop-after and replace (true) where not given. */
  disconnect: z
    .strictObject({ lostAfter: duration.optional(), stopAfter: duration.optional(), replace: z.boolean().optional() })
    .refine((d) => d.lostAfter === undefined || d.stopAfter === undefined || d.stopAfter < d.lostAfter, {
      message: 'stopAfter must be shorter than lostAfter: the worker stops its copy before the master starts another',
      path: ['stopAfter'],
    })
    .optional(),
});

const Service = z
  .strictObject({ name: serviceName, programs: z.array(Program).min(1).max(100) })
  .refine((s) => new Set(s.programs.map((p) => p.name)).size === s.programs.length, { message: 'program names must be unique', path: ['programs'] });

type Parsed = z.infer<typeof Service>;

/** Where a program may run. */
export type Placement = 'any' | 'all' | { workers: string[] } | { labels: Record<string, string> };

/** One program of a service, normalized: durations in ms, sizes in bytes. */
export interface ProgramSpec {
  name: string;
  path: string;
  libs: string[];
  args: string[];
  env: Record<string, string>;
  replicas: number;
  on: Placement;
  resources: { cpus: number; memoryBytes: number };
  restart: { policy: 'always' | 'on-failure' | 'never'; maxRestarts: number; windowMs: number; backoffMs: [number, number] };
  stop: { signal: 'SIGINT' | 'SIGTERM' | 'SIGQUIT' | 'SIGHUP' | 'SIGUSR1' | 'SIGUSR2'; timeoutMs: number };
  healthyAfterMs: number;
  priority: number;
  /** As the file gives it; the master fills in its defaults (see resolveDisconnect). */
  disconnect?: { lostAfterMs?: number; stopAfterMs?: number; replace?: boolean };
  /** As the file gives it; the worker fills in its own defaults. */
  log?: { maxBytes?: number; keep?: number };
}

/** What happens when an instance's worker is cut off, with nothing left to a default. */
export interface Disconnect {
  lostAfterMs: number;
  stopAfterMs: number;
  replace: boolean;
}

/** A program's disconnect settings over the master's defaults; refuses stopAfter >= lostAfter. */
export function resolveDisconnect(p: ProgramSpec, defaults: Disconnect): Disconnect {
  const d = {
    lostAfterMs: p.disconnect?.lostAfterMs ?? defaults.lostAfterMs,
    stopAfterMs: p.disconnect?.stopAfterMs ?? defaults.stopAfterMs,
    replace: p.disconnect?.replace ?? defaults.replace,
  };
  if (d.replace && d.stopAfterMs >= d.lostAfterMs) {
    throw new DroverError(
      ErrorCode.BAD_ARGUMENTS,
      `program ${p.name}: disconnect.stopAfter (${d.stopAfterMs / 1000} s) must be shorter than lostAfter (${d.lostAfterMs / 1000} s): the worker must stop its copy before the master starts another`,
    );
  }
  return d;
}

export interface ServiceSpec {
  name: string;
  programs: ProgramSpec[];
}

function normalize(s: Parsed): ServiceSpec {
  return {
    name: s.name,
    programs: s.programs.map((p) => ({
      name: p.name,
      path: p.path,
      libs: p.libs,
      args: p.args,
      env: p.env,
      replicas: p.replicas,
      on: p.on === 'any' || p.on === 'all' ? p.on : Array.isArray(p.on) ? { workers: p.on } : { labels: p.on },
      resources: { cpus: p.resources.cpus, memoryBytes: p.resources.memory },
      restart: { policy: p.restart.policy, maxRestarts: p.restart.maxRestarts, windowMs: p.restart.window, backoffMs: p.restart.backoff },
      stop: { signal: p.stop.signal, timeoutMs: p.stop.timeout },
      healthyAfterMs: p.healthy.after,
      priority: p.priority,
      ...(p.disconnect
        ? {
            disconnect: {
              ...(p.disconnect.lostAfter !== undefined ? { lostAfterMs: p.disconnect.lostAfter } : {}),
              ...(p.disconnect.stopAfter !== undefined ? { stopAfterMs: p.disconnect.stopAfter } : {}),
              ...(p.disconnect.replace !== undefined ? { replace: p.disconnect.replace } : {}),
            },
          }
        : {}),
      ...(p.log ? { log: { ...(p.log.max !== undefined ? { maxBytes: p.log.max } : {}), ...(p.log.keep !== undefined ? { keep: p.log.keep } : {}) } } : {}),
    })),
  };
}

/** Unknown fields named in one problem line; the rest are counted. */
const MAX_KEYS_NAMED = 5;

/** A key as a problem line names it: a file that is not a service file can have keys of any length. */
function shortKey(key: string): string {
  return key.length > 40 ? `${key.slice(0, 39)}…` : key;
}

/**
 * Parses a service file (YAML; JSON is YAML too) and validates it. Every problem is one line
 * naming the file, the line where the parser can tell it, the field, and why; all of them are
 * reported at once (a BAD_ARGUMENTS error, one problem per line). Unknown fields are errors.
 */
export function parseServiceFile(text: string, file: string): ServiceSpec {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const at = (offset: number | undefined): string => {
    if (offset === undefined) return file;
    const { line } = lineCounter.linePos(offset);
    return `${file}:${line}`;
  };
  if (doc.errors.length > 0) {
    throw new DroverError(ErrorCode.BAD_ARGUMENTS, doc.errors.map((e) => `${at(e.pos[0])}: ${e.message.split('\n')[0]}`).join('\n'));
  }
  let value: unknown;
  try {
    // Throws on an alias bomb (the yaml package's alias count limit).
    value = doc.toJS();
  } catch (err) {
    throw new DroverError(ErrorCode.BAD_ARGUMENTS, `${file}: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`);
  }
  const result = Service.safeParse(value);
  if (result.success) return normalize(result.data);
  const problems = result.error.issues.map((issue) => {
    const path = issue.path.filter((k): k is string | number => typeof k !== 'symbol');
    let node = path.length ? (doc.getIn(path, true) as Node | undefined) : (doc.contents as Node | null);
    let field = path.join('.');
    if (issue.code === 'unrecognized_keys') {
      const key = issue.keys[0]!;
      const parent = path.length ? doc.getIn(path, true) : doc.contents;
      const pair = isMap(parent) ? parent.items.find((p) => isPair(p) && isScalar(p.key) && p.key.value === key) : undefined;
      node = (pair?.key as Node | undefined) ?? node ?? undefined;
      field = [...path, shortKey(key)].join('.');
      if (issue.keys.length === 1) return `${at(node?.range?.[0])}: ${field}: unknown field`;
      const named = issue.keys.slice(0, MAX_KEYS_NAMED).map(shortKey).join(', ');
      const more = issue.keys.length > MAX_KEYS_NAMED ? ` and ${issue.keys.length - MAX_KEYS_NAMED} more` : '';
      return `${at(node?.range?.[0])}: ${field}: unknown fields ${named}${more}`;
    }
    // A missing field has no node of its own: point at the object that lacks it.
    for (let up = path.length - 1; !node && up >= 0; up--) node = doc.getIn(path.slice(0, up), true) as Node | undefined;
    const why = issue.code === 'invalid_type' && /received undefined/.test(issue.message) ? 'missing (it is required)' : issue.message;
    return `${at(node?.range?.[0])}: ${field || '(the file)'}: ${why}`;
  });
  throw new DroverError(ErrorCode.BAD_ARGUMENTS, [...new Set(problems)].join('\n'));
}
