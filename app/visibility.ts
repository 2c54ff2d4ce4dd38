/**
 * How runs look in Temporal: whether the namespace has mlpipe's search attributes
 * (engine/contracts.ts SEARCH_ATTRIBUTES), and the mlpipe version runs record in MlpipeVersion.
 * A worker checks once at start: runs it compiles set the attributes only when they exist, so a
 * server lacking them still runs everything (and the worker says how to add them).
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SEARCH_ATTRIBUTES, searchAttributeCommand, type SearchAttributeName } from '../engine/contracts.js';

let version: string | undefined;
/** The version in mlpipe's own package.json (next to dist/ or to the sources). */
export function mlpipeVersion(): string {
  if (version) return version;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const file = join(dir, 'package.json');
    if (existsSync(file)) {
      const pkg = JSON.parse(readFileSync(file, 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'mlpipe') return (version = pkg.version ?? 'unknown');
    }
    const up = dirname(dir);
    if (up === dir) return (version = 'unknown');
    dir = up;
  }
}

/** What both connection kinds offer: the operator service's search attribute list. */
interface OperatorServiceOf {
  operatorService: {
    listSearchAttributes(req: { namespace: string }): Promise<{ customAttributes?: Record<string, unknown> | null }>;
  };
}

/** The search attributes of SEARCH_ATTRIBUTES the namespace lacks; undefined when the server would not say. */
export async function missingSearchAttributes(
  connection: OperatorServiceOf,
  namespace: string,
): Promise<SearchAttributeName[] | undefined> {
  try {
    const r = await connection.operatorService.listSearchAttributes({ namespace });
    const have = new Set(Object.keys(r.customAttributes ?? {}));
    return (Object.keys(SEARCH_ATTRIBUTES) as SearchAttributeName[]).filter((n) => !have.has(n));
  } catch {
    return undefined;
  }
}

/** What to print when some are missing. */
export function searchAttributesHint(namespace: string, missing: SearchAttributeName[]): string {
  return `The Temporal namespace '${namespace}' lacks mlpipe's search attributes ${missing.join(', ')}: runs work, but 'temporal workflow list --query' cannot find them by pipeline or label. Add them with: ${searchAttributeCommand(namespace, missing)}`;
}
