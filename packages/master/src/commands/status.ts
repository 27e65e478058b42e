import type { ServiceView } from '../services/manager.js';
import { table } from '../format.js';
import { defineCommand, type Command } from './types.js';

/** ` (rescheduled from w2, lost 35 s ago)` for an instance the master moved. */
function moved(i: ServiceView['programs'][number]['instances'][number]): string {
  if (!i.movedFrom) return '';
  const ago = Math.max(0, Math.round((Date.now() - Date.parse(i.movedFrom.at)) / 1000));
  return i.movedFrom.why === 'lost' ? ` (rescheduled from ${i.movedFrom.worker}, lost ${ago} s ago)` : ` (moved from ${i.movedFrom.worker}: drained)`;
}

function statusText(services: ServiceView[]): string {
  if (services.length === 0) return 'no services (apply a service file to start one)';
  const out: string[] = [];
  for (const s of services) {
    out.push(`service ${s.name} (applied ${s.appliedAt} from ${s.file})`);
    for (const p of s.programs) {
      out.push(`  ${p.name}: ${p.running} of ${p.desired} running (version ${p.version})`);
      if (p.instances.length)
        out.push(
          table(
            ['INSTANCE', 'WORKER', 'PID', 'STATE', 'RESTARTS', 'LAST EXIT'],
            p.instances.map((i) => [i.id, i.worker ?? '-', i.pid ?? '-', i.state + moved(i), i.restarts, i.lastExit?.reason ?? '-']),
          )
            .split('\n')
            .map((l) => `    ${l}`)
            .join('\n'),
        );
      for (const q of p.pending) out.push(`    pending ${q.id}: ${q.reason}`);
    }
  }
  return out.join('\n');
}

export const statusCommand = defineCommand<ServiceView[]>({
  name: 'status',
  usage: 'status [SERVICE] [--json]',
  summary: 'services: each program, desired and running, where each instance runs, restarts, state',
  details:
    'An instance is running, starting (not yet healthy), backoff (the worker restarts it soon),\npending (no room yet: the reason is shown), failed (restarted too often), exited (its policy\ndoes not restart it) or lost (its worker is unavailable).',
  maxArgs: 1,
  async run(args, ctx) {
    return ctx.services.status(args.positionals[0]);
  },
  format: statusText,
});

/** `services`: the same as `status`, under the name people look for. */
export const servicesCommand: Command = { ...statusCommand, name: 'services', usage: 'services [SERVICE] [--json]', summary: 'the same as status' };
