import type * as FsPromises from 'node:fs/promises';

/**
 * What the clients' modules use of `node:fs/promises`, loaded on the first call. It brings
 * readline and the file watchers with it, ~4 ms of a client's start (`master exec`, `drover`)
 * that moves no file; a static import is loaded at the start of every command. Same functions,
 * same types (scripts/bundle.mjs refuses a client bundle that loads it at its start).
 */
const fsp = (): typeof FsPromises => process.getBuiltinModule('node:fs/promises');

export const appendFile = ((...a: Parameters<typeof FsPromises.appendFile>) => fsp().appendFile(...a)) as typeof FsPromises.appendFile;
export const lstat = ((...a: Parameters<typeof FsPromises.lstat>) => fsp().lstat(...a)) as typeof FsPromises.lstat;
export const mkdir = ((...a: Parameters<typeof FsPromises.mkdir>) => fsp().mkdir(...a)) as typeof FsPromises.mkdir;
export const open = ((...a: Parameters<typeof FsPromises.open>) => fsp().open(...a)) as typeof FsPromises.open;
export const readFile = ((...a: Parameters<typeof FsPromises.readFile>) => fsp().readFile(...a)) as typeof FsPromises.readFile;
export const rename = ((...a: Parameters<typeof FsPromises.rename>) => fsp().rename(...a)) as typeof FsPromises.rename;
export const rm = ((...a: Parameters<typeof FsPromises.rm>) => fsp().rm(...a)) as typeof FsPromises.rm;
export const stat = ((...a: Parameters<typeof FsPromises.stat>) => fsp().stat(...a)) as typeof FsPromises.stat;
export const writeFile = ((...a: Parameters<typeof FsPromises.writeFile>) => fsp().writeFile(...a)) as typeof FsPromises.writeFile;
