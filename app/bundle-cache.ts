/**
 * Housekeeping of the workflow-bundle cache (`<MLPIPE_CACHE_DIR>/workflow-bundles`): every change to
 * workflows/ or engine/, and every upgrade, writes a bundle under a new digest. A bundle read back
 * is touched, and after a new one is written only the most recently used are kept.
 */
import { readdir, stat, unlink, utimes } from 'node:fs/promises';
import { join } from 'node:path';

/** How many bundles the cache keeps (each about 2 MB). */
export const KEPT_BUNDLES = 8;

/** Marks a bundle as just used (best effort: a read-only cache still works). */
export async function touchBundle(file: string): Promise<void> {
  const now = new Date();
  await utimes(file, now, now).catch(() => undefined);
}

/**
 * Deletes all but the `keep` most recently used bundles (and leftover temporary files of
 * interrupted writes older than an hour) in `dir`; returns the names deleted. Never throws:
 * another process may be pruning or reading the same folder.
 */
export async function pruneBundles(dir: string, keep = KEPT_BUNDLES, now = Date.now()): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const entries: { name: string; mtime: number }[] = [];
  for (const name of names) {
    if (!/\.js(\.\d+\.tmp)?$/.test(name)) continue;
    try {
      entries.push({ name, mtime: (await stat(join(dir, name))).mtimeMs });
    } catch {
      // Gone already.
    }
  }
  const bundles = entries.filter((e) => e.name.endsWith('.js')).sort((a, b) => b.mtime - a.mtime);
  const stale = [...bundles.slice(keep), ...entries.filter((e) => e.name.endsWith('.tmp') && now - e.mtime > 3_600_000)];
  const deleted: string[] = [];
  for (const e of stale) {
    try {
      await unlink(join(dir, e.name));
      deleted.push(e.name);
    } catch {
      // Deleted by another process, or not ours to delete.
    }
  }
  return deleted;
}
