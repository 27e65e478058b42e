import { DroverError, ErrorCode, unreachable } from '@drover/protocol';
import { table } from '../format.js';
import { badArgs } from '../run-line.js';
import type { Role } from '../roles.js';
import { defineCommand } from './types.js';

type TokenData =
  | { action: 'create'; name: string; role: Role; token: string }
  | { action: 'list'; tokens: { name: string; role: Role; createdAt: string; revokedAt: string | null }[] }
  | { action: 'revoke'; name: string };

const tokenUsage = 'token create --role admin|read-only [--name N] | token list | token revoke NAME [--json]';

export const tokenCommand = defineCommand<TokenData>({
  name: 'token',
  usage: tokenUsage,
  summary: 'operator tokens for drover on other machines: make one (shown once), list them, revoke one',
  details:
    'An admin token may run every command; a read-only one workers, ps, usage, logs and help.\nThe join token only lets workers join. Only a hash of each token is kept.',
  options: { role: { type: 'string' }, name: { type: 'string' } },
  minArgs: 1,
  maxArgs: 2,
  async run(args, ctx) {
    const [action, name] = args.positionals as [string, string | undefined];
    switch (action) {
      case 'create': {
        const role = args.values.role as string | undefined;
        if (role !== 'admin' && role !== 'read-only') throw badArgs(this, `--role must be admin or read-only, got "${role ?? ''}"`);
        if (name !== undefined) throw badArgs(this, 'name the token with --name');
        return { action, ...(await ctx.tokens.create(role, args.values.name as string | undefined)) };
      }
      case 'list':
        return { action, tokens: ctx.tokens.list() };
      case 'revoke':
        if (!name) throw badArgs(this, 'revoke needs a token NAME');
        await ctx.tokens.revoke(name);
        return { action, name };
      default:
        throw new DroverError(ErrorCode.BAD_ARGUMENTS, `token: no action "${action}" (usage: ${tokenUsage})`);
    }
  },
  format(d) {
    switch (d.action) {
      case 'create':
        return `made ${d.role} token ${d.name}; it is shown this once:\n${d.token}`;
      case 'list':
        return table(
          ['NAME', 'ROLE', 'CREATED', 'REVOKED'],
          d.tokens.map((t) => [t.name, t.role, t.createdAt.replace('T', ' ').slice(0, 19), t.revokedAt ? t.revokedAt.replace('T', ' ').slice(0, 19) : '-']),
        );
      case 'revoke':
        return `revoked ${d.name}: it is refused from now on`;
      default:
        return unreachable(d);
    }
  },
});
