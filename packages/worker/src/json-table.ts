import { readFile, rename } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from './logger.js';

/**
 * Reads a table the agent keeps as a JSON array (instances.json; processes.json, the snapshot
 * its journal is read on top of): the entries `keep` accepts, none when there is no file. An unreadable file is moved aside for a human to
 * look at, and the agent starts afresh rather than refuse to run.
 */
export async function loadJsonTable<T>(file: string, logger: Logger, keep: (entry: T) => boolean): Promise<T[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    return [];
  }
  try {
    const list = JSON.parse(text) as T[];
    if (!Array.isArray(list)) throw new Error('not an array');
    return list.filter((entry) => keep(entry));
  } catch (err) {
    const aside = `${file}.corrupt-${Date.now()}`;
    logger.error({ err, aside }, `${path.basename(file)} is unreadable; moved it aside`);
    await rename(file, aside).catch(() => undefined);
    return [];
  }
}
