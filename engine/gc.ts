/**
 * Garbage collection of the artifact store: removes objects that no manifest references and that
 * are older than a minimum age.
 *
 * Roots (never collected): every artifact named by a run's step manifests (`runs/...`), by a cache
 * entry (`cache/...`) and by a checkpoint record (`checkpoints/...`), and what a deferred dataset
 * named there is computed from (`derivedFrom`). The age bound protects what
 * a running step has uploaded but not yet recorded (its manifest is written when the step ends), so
 * it must exceed the longest step; the default is 7 days.
 *
 * Works through the ArtifactStore port only.
 */
import { artifactRefs } from './lineage.js';
import type { ArtifactStore } from './ports.js';
import type { ArtifactRef } from './types.js';

export const ROOT_PREFIXES = ['runs/', 'cache/', 'checkpoints/', 'monitoring/', 'predictions/'] as const;
export const DEFAULT_GC_AGE_MS = 7 * 86_400_000;

export interface GcReport {
  /** Objects in the store. */
  objects: number;
  bytes: number;
  /** Records read as roots, and the distinct digests they reference. */
  roots: number;
  referenced: number;
  /** Unreferenced but younger than the bound: kept. */
  young: number;
  /** Unreferenced and old enough: deleted (or, in a dry run, would be). */
  collected: { sha256: string; size: number; created: string }[];
  collectedBytes: number;
  dryRun: boolean;
}

/** The digests every root record references. */
export async function referencedDigests(store: ArtifactStore): Promise<{ roots: number; digests: Set<string> }> {
  const digests = new Set<string>();
  // A deferred dataset (a recipe) keeps what it is computed from.
  const add = (ref: ArtifactRef): void => {
    digests.add(ref.sha256);
    if (Array.isArray(ref.derivedFrom)) ref.derivedFrom.forEach(add);
  };
  let roots = 0;
  for (const prefix of ROOT_PREFIXES) {
    const keys = await store.listRecords(prefix);
    roots += keys.length;
    for (let i = 0; i < keys.length; i += 32) {
      const records = await Promise.all(keys.slice(i, i + 32).map((k) => store.getRecord(k)));
      for (const r of records) for (const ref of artifactRefs(r)) add(ref);
    }
  }
  return { roots, digests };
}

export async function collectGarbage(
  store: ArtifactStore,
  options: { olderThanMs?: number; now?: Date; dryRun?: boolean } = {},
): Promise<GcReport> {
  const olderThan = options.olderThanMs ?? DEFAULT_GC_AGE_MS;
  const cutoff = (options.now ?? new Date()).getTime() - olderThan;
  // Roots first, objects second: an object written in between is younger than the cutoff.
  const { roots, digests } = await referencedDigests(store);
  const report: GcReport = {
    objects: 0,
    bytes: 0,
    roots,
    referenced: digests.size,
    young: 0,
    collected: [],
    collectedBytes: 0,
    dryRun: options.dryRun ?? false,
  };
  for await (const o of store.listObjects()) {
    report.objects++;
    report.bytes += o.size;
    if (digests.has(o.sha256)) continue;
    if (o.created.getTime() > cutoff) {
      report.young++;
      continue;
    }
    if (!report.dryRun)
      await store.delete({ kind: 'artifact', uri: '', sha256: o.sha256, size: o.size, mediaType: 'application/octet-stream' });
    report.collected.push({ sha256: o.sha256, size: o.size, created: o.created.toISOString() });
    report.collectedBytes += o.size;
  }
  return report;
}
