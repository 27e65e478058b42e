import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { expect, test } from 'vitest';
import { commands } from '../../packages/master/src/commands/index.js';
import { ROOT } from '../helpers/cluster.js';

const read = (file: string): string => readFileSync(path.join(ROOT, file), 'utf8');

test('every link in the docs points at a file inside the repository', () => {
  for (const doc of ['README.md', 'ARCHITECTURE.md', 'SECURITY.md']) {
    const links = [...read(doc).matchAll(/\]\(([^)#\s]+)(#[^)]*)?\)/g)].map((m) => m[1]!).filter((l) => !/^[a-z]+:/.test(l));
    for (const link of links) {
      const target = path.resolve(ROOT, link);
      expect(target.startsWith(`${ROOT}/`), `${doc} links outside the repository: ${link}`).toBe(true);
      expect(existsSync(target), `${doc} links to a missing file: ${link}`).toBe(true);
    }
  }
  expect(read('README.md')).toContain('](ARCHITECTURE.md)');
});

test('the README lists every command of the table', () => {
  const readme = read('README.md');
  const missing = commands.filter((c) => !readme.includes(`| \`${c.name}`));
  expect(missing.map((c) => c.name)).toEqual([]);
});
