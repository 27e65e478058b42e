import { DroverError, ErrorCode } from '@drover/protocol';
import type { DroverEvent } from '../services/events.js';
import { parseDuration } from '../services/spec.js';
import { defineCommand } from './types.js';

const line = (e: DroverEvent): string => `${e.at.replace('T', ' ').slice(0, 23)}  ${e.kind.padEnd(18)} ${e.text}`;

export const eventsCommand = defineCommand<DroverEvent[]>({
  name: 'events',
  usage: 'events [--since DURATION] [--follow] [--json]',
  summary: 'what happened: workers joined, lost, back; instances placed, started, exited, rescheduled, fenced, stopped; applies',
  details:
    'Kept in the master state dir (events.log, rotated at 8 MiB). --since 10m shows the last ten\nminutes; --follow then prints each new event as it happens, until Ctrl-C (one JSON object a\nline with --json).',
  options: { since: { type: 'string' }, follow: { type: 'boolean', short: 'f' } },
  maxArgs: 0,
  async run(args, ctx) {
    const sinceText = args.values.since as string | undefined;
    const sinceMs = sinceText === undefined ? 0 : parseDuration(sinceText);
    if (sinceMs === null) throw new DroverError(ErrorCode.BAD_ARGUMENTS, `--since must be a duration such as 10m or 2h, got "${sinceText}"`);
    const events = await ctx.services.events.read(sinceText === undefined ? 0 : Date.now() - sinceMs);
    if (args.values.follow !== true) return events;
    const show = (e: DroverEvent): Promise<void> => ctx.out.write(`${ctx.json ? JSON.stringify(e) : line(e)}\n`);
    for (const e of events) await show(e);
    // Then as they happen, until Ctrl-C (or the client goes).
    let chain = Promise.resolve();
    const onEvent = (e: DroverEvent): void => void (chain = chain.then(() => show(e)));
    ctx.services.events.on('event', onEvent);
    try {
      await new Promise<void>((resolve) => {
        if (ctx.signal.aborted) return resolve();
        ctx.signal.addEventListener('abort', () => resolve(), { once: true });
      });
    } finally {
      ctx.services.events.off('event', onEvent);
    }
    return [];
  },
  format: (events) => events.map(line).join('\n'),
  // Followed events were printed as they came.
  toJson: (events) => events,
});
