/**
 * Operator roles and what each may run. Apart from operator-tokens.ts (the token store, with its
 * file's schema): the shell that every client carries checks commands against these, and should
 * not build that schema at each client's start.
 */
export type Role = 'admin' | 'read-only';

/** What a read-only token may run; everything else needs an admin token. */
export const READ_ONLY_COMMANDS: ReadonlySet<string> = new Set(['workers', 'ps', 'usage', 'logs', 'status', 'services', 'queue', 'events', 'help']);
