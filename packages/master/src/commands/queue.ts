import type { QueueEntry } from '../services/manager.js';
import { table } from '../format.js';
import { defineCommand } from './types.js';

export const queueCommand = defineCommand<QueueEntry[]>({
  name: 'queue',
  usage: 'queue [--json]',
  summary: 'instances waiting for room, in the order they will be placed, and why they wait',
  maxArgs: 0,
  async run(_args, ctx) {
    return ctx.services.queue();
  },
  format: (q) =>
    q.length === 0
      ? 'the queue is empty'
      : table(
          ['INSTANCE', 'PRIORITY', 'QUEUED', 'WHY IT WAITS'],
          q.map((e) => [e.id, e.priority, e.queuedAt, e.reason]),
        ),
});
