/** In-memory fakes of our own ports, for unit tests. */
import type { ConfigFiles } from '../../engine/config.js';
import { createDefaultRegistry } from '../../plugins/index.js';

/** ConfigFiles over a map of path -> text (paths relative to conf/). */
export function memoryConf(files: Record<string, string>): ConfigFiles {
  return {
    read: (rel) => (rel in files ? { file: `conf/${rel}`, text: files[rel]! } : undefined),
    list: (relDir) => {
      const prefix = relDir === '' ? '' : relDir.endsWith('/') ? relDir : `${relDir}/`;
      const names = new Set<string>();
      for (const f of Object.keys(files)) if (f.startsWith(prefix)) names.add(f.slice(prefix.length).split('/')[0]!);
      return [...names].sort();
    },
  };
}

export const registry = createDefaultRegistry();
