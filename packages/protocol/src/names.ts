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
