/**
 * Step cache keys. Key = sha256 of the canonical JSON of: plugin name, plugin version, resolved
 * params, and inputs with every artifact reference reduced to its digest (so the same bytes under
 * another URI still hit). Canonical JSON sorts object keys, so key order in YAML does not matter.
 */
import { createHash } from 'node:crypto';
import { isArtifactRef } from './types.js';

export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value ?? null);
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
}

function digestsOnly(value: unknown): unknown {
  if (isArtifactRef(value)) return { sha256: value.sha256 };
  if (Array.isArray(value)) return value.map(digestsOnly);
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, digestsOnly(v)]));
  }
  return value;
}

/** A copy of `params` without the dotted paths in `ignore` (cache: { ignore: [...] }). */
export function withoutPaths(params: Record<string, unknown>, ignore: readonly string[]): Record<string, unknown> {
  if (!ignore.length) return params;
  const copy = structuredClone(params);
  for (const path of ignore) {
    const parts = path.split('.');
    let node: unknown = copy;
    for (const p of parts.slice(0, -1)) node = node !== null && typeof node === 'object' ? (node as Record<string, unknown>)[p] : undefined;
    if (node !== null && typeof node === 'object') delete (node as Record<string, unknown>)[parts[parts.length - 1]!];
  }
  return copy;
}

export function stepCacheKey(
  plugin: string,
  version: string,
  params: Record<string, unknown>,
  inputs: Record<string, unknown>,
  ignore: readonly string[] = [],
): string {
  const material = canonicalJson({ plugin, version, params: digestsOnly(withoutPaths(params, ignore)), inputs: digestsOnly(inputs) });
  return createHash('sha256').update(material).digest('hex');
}
