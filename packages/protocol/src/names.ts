/** App and worker names: a safe single path segment. */
export const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** File names inside an app folder (executables, libraries): one segment, no leading dot. */
export const FILE_NAME_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9._+-]{0,127}$/;

/** Returns an error message when `name` is not a valid app or worker name, else null. */
export function checkName(name: string, what = 'name'): string | null {
  if (NAME_PATTERN.test(name) && name !== '.' && name !== '..') return null;
  const shown = JSON.stringify(name.length > 80 ? `${name.slice(0, 80)}…` : name);
  return `invalid ${what} ${shown}: expected 1-64 characters from A-Z a-z 0-9 . _ -, starting with a letter or digit`;
}

/** Returns an error message when `name` is not a valid file name inside an app, else null. */
export function checkFileName(name: string): string | null {
  if (FILE_NAME_PATTERN.test(name)) return null;
  return `invalid file name ${JSON.stringify(name)}: expected one path segment of A-Z a-z 0-9 . _ + -`;
}

/** Turns a host name into a valid worker name (used as the worker's default name). */
export function toWorkerName(hostname: string): string {
  const cleaned = hostname
    .split('.')[0]!
    .replace(/[^A-Za-z0-9._-]/g, '-')
    .replace(/^[^A-Za-z0-9]+/, '');
  return (cleaned || 'worker').slice(0, 64);
}

/** Words that mean something where a worker name goes (`copy all`, `forget gone`, `launch any`). */
export const RESERVED_WORKER_NAMES: readonly string[] = ['all', 'any', 'gone', 'none'];

/** Like checkName, and refuses the reserved words: a worker named `all` would confuse every command. */
export function checkWorkerName(name: string): string | null {
  const bad = checkName(name, 'worker name');
  if (bad) return bad;
  if (RESERVED_WORKER_NAMES.includes(name.toLowerCase())) {
    return `worker name "${name}" is reserved (${RESERVED_WORKER_NAMES.join(', ')} mean something in commands); pick another with --name`;
  }
  return null;
}
