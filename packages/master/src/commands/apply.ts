import path from 'node:path';
import { DroverError, ErrorCode, formatBytes } from '@drover/protocol';
import type { ApplyResult, PlanStep } from '../services/manager.js';
import { parseServiceFile } from '../services/spec.js';
import { defineCommand, type CommandContext } from './types.js';

/** A service file bigger than this is not one. */
const MAX_SERVICE_FILE = 1024 * 1024;

const MARK: Record<PlanStep['action'], string> = { add: '+', update: '~', scale: '~', settings: '~', unchanged: '=', remove: '-' };

export function planText(service: string, plan: PlanStep[]): string {
  const lines = [`plan for service ${service}:`];
  for (const s of plan) {
    const what =
      [s.start ? `${s.start} to start` : '', s.stop ? `${s.stop} to stop` : ''].filter(Boolean).join(', ') ||
      (s.action === 'settings' ? 'placement settings kept for what comes next; instances stay' : 'nothing to do');
    const files =
      s.action === 'add' || s.action === 'update' ? `  (${s.files.map((f) => `${f.name} ${formatBytes(f.bytes)}`).join(', ')}; version ${s.version})` : '';
    lines.push(`  ${MARK[s.action]} ${s.program.padEnd(16)} ${s.action.padEnd(9)} ${what}${files}`);
  }
  return lines.join('\n');
}

/** Reads the service file where the user is (the client's machine): it and what it names. */
async function readServiceFile(ctx: CommandContext, file: string): Promise<{ text: string; path: string }> {
  const facts = await ctx.files.describe(file);
  if (facts.size > MAX_SERVICE_FILE) throw new DroverError(ErrorCode.BAD_ARGUMENTS, `${file} is ${formatBytes(facts.size)}: a service file is at most 1 MiB`);
  const parts: Buffer[] = [];
  for await (const chunk of ctx.files.read(facts, ctx.signal)) parts.push(Buffer.from(chunk));
  return { text: Buffer.concat(parts).toString('utf8'), path: facts.path };
}

export const applyCommand = defineCommand<ApplyResult>({
  name: 'apply',
  usage: 'apply FILE [--dry-run] [--json]',
  summary: 'run a service as its file describes it: the plan, then all of it or none of it',
  details: [
    'FILE (YAML or JSON, read where the command is typed) names the service and its programs:',
    'path, libs, args, env, replicas, on, resources, restart, stop, healthy, priority (see the',
    'README). The plan is printed first; --dry-run stops there. New instances start while the',
    'old version runs; once every one is healthy the old ones stop. If one fails, everything this',
    'apply started is stopped and removed, and the error names the program, the worker and why.',
    'Exit status 0 only when the whole service runs; instances without room wait in the queue.',
  ].join('\n'),
  options: { 'dry-run': { type: 'boolean' } },
  complete: ['path'],
  minArgs: 1,
  maxArgs: 1,
  async run(args, ctx) {
    const given = args.positionals[0]!;
    const file = path.resolve(ctx.cwd, given);
    const { text, path: where } = await readServiceFile(ctx, file);
    const spec = parseServiceFile(text, given);
    return ctx.services.apply(spec, where, ctx.files, {
      dryRun: args.values['dry-run'] === true,
      signal: ctx.signal,
      // People see the plan before anything happens; scripts get it in the JSON.
      onPlan: async (plan) => {
        if (!ctx.json) await ctx.out.write(`${planText(spec.name, plan)}\n`);
      },
    });
  },
  format(r) {
    if (!r.changed) return `service ${r.service} is unchanged; nothing to do`;
    if (r.dryRun) return '(dry run: nothing was changed)';
    const lines = r.started.map((s) => `started ${s.id} on ${s.worker}${s.pid ? ` (pid ${s.pid})` : ''}`);
    lines.push(...r.stopped.map((s) => `stopped ${s.id} on ${s.worker}`));
    lines.push(
      r.pending.length ? `service ${r.service} applied; ${r.pending.length} instance(s) wait in the queue` : `service ${r.service} is running as described`,
    );
    return lines.join('\n');
  },
  failures: (r) => r.pending.map((p) => `pending ${p.id}: ${p.reason}`),
});
