/**
 * Lineage: what every run produced from what, kept in the artifact store next to the artifacts.
 *
 *   runs/<workflow>/<run>/run            the run: pipeline, Temporal IDs, params, config, git commit
 *   runs/<workflow>/<run>/steps/<step>   one per step that ran or was served from cache: plugin and
 *                                        version, params and their hash, input digests -> output
 *                                        digests, cache key, timings, attempt
 *   lineage/<sha256>/produced-by/<workflow>.<run>.<step>   index: which step wrote these bytes
 *   lineage/<sha256>/used-by/<workflow>.<run>.<step>       index: which steps read them
 *
 * The records are written by the activities (compilePipeline writes the run record, runStep the step
 * records), not by the workflow, so keeping lineage adds nothing to workflow history and a step's
 * record exists as soon as its outputs do. Run manifests are the roots of garbage collection: an
 * object a manifest references is never collected.
 *
 * Works through the ArtifactStore port only: the same code serves the local folder and GCS.
 */
import { createHash } from 'node:crypto';
import { canonicalJson } from './cache-key.js';
import type { ArtifactStore } from './ports.js';
import { isArtifactRef, type ArtifactRef, type StepRunRecord } from './types.js';

export interface RunManifest {
  kind: 'run';
  pipeline: string;
  file: string;
  workflowId: string;
  runId: string;
  startedAt: string;
  params: Record<string, unknown>;
  config: Record<string, unknown>;
  overrides: string[];
  labels: Record<string, string>;
  gitCommit?: string;
  /** Where the artifacts are (a folder or gs://bucket/prefix). */
  store: string;
}

/** The lineage record of a step that ran or was served from cache (the shared fields: `StepRunRecord`). */
export interface StepManifest extends StepRunRecord {
  kind: 'step';
  workflowId: string;
  runId: string;
  status: 'succeeded' | 'cached' | 'failed';
  /** sha256 of the canonical JSON of the params. */
  paramsHash: string;
  cacheKey: string;
  /** For a cache hit: the run whose outputs were reused. */
  cachedFrom?: { runId: string; stepId: string };
  inputs: Record<string, unknown>;
  outputs: Record<string, unknown>;
  startedAt: string;
  endedAt: string;
  durationMs: number;
}

export interface LineageLink {
  workflowId: string;
  runId: string;
  stepId: string;
}

const SAFE = /^[A-Za-z0-9_.:=@-]+$/;

/**
 * A record-key segment for a Temporal ID. IDs made of safe characters are kept as they are (so keys
 * stay readable); others become their safe characters plus a hash, so no ID can escape its folder.
 */
export function keySegment(id: string): string {
  if (SAFE.test(id) && id !== '.' && id !== '..' && !id.includes('..')) return id;
  const readable = id.replace(/[^A-Za-z0-9_-]+/g, '_').slice(0, 60) || 'id';
  return `${readable}=${createHash('sha256').update(id).digest('hex').slice(0, 12)}`;
}

export function paramsHash(params: unknown): string {
  return createHash('sha256').update(canonicalJson(params)).digest('hex');
}

export const runPrefix = (workflowId: string): string => `runs/${keySegment(workflowId)}/`;
export const runKey = (workflowId: string, runId: string): string => `${runPrefix(workflowId)}${keySegment(runId)}/run`;
export const stepKey = (workflowId: string, runId: string, stepId: string): string =>
  `${runPrefix(workflowId)}${keySegment(runId)}/steps/${keySegment(stepId)}`;
const linkName = (l: LineageLink): string => `${keySegment(l.workflowId)}.${keySegment(l.runId)}.${keySegment(l.stepId)}`;

/** Every artifact reference inside a value (outputs may nest them in objects and lists). */
export function artifactRefs(value: unknown, out: ArtifactRef[] = []): ArtifactRef[] {
  if (isArtifactRef(value)) out.push(value);
  else if (Array.isArray(value)) value.forEach((v) => artifactRefs(v, out));
  else if (value !== null && typeof value === 'object') Object.values(value).forEach((v) => artifactRefs(v, out));
  return out;
}

export async function writeRunManifest(store: ArtifactStore, m: Omit<RunManifest, 'kind'>): Promise<void> {
  await store.putRecord(runKey(m.workflowId, m.runId), { kind: 'run', ...m } satisfies RunManifest);
}

/** The step record first, then the index entries (an index entry never points at a missing record). */
export async function writeStepManifest(store: ArtifactStore, m: Omit<StepManifest, 'kind'>): Promise<void> {
  await store.putRecord(stepKey(m.workflowId, m.runId, m.stepId), { kind: 'step', ...m } satisfies StepManifest);
  if (m.status === 'failed') return;
  const link: LineageLink = { workflowId: m.workflowId, runId: m.runId, stepId: m.stepId };
  const produced = m.status === 'succeeded' ? unique(artifactRefs(m.outputs)) : [];
  const used = unique(artifactRefs(m.inputs));
  await Promise.all([
    ...produced.map((r) => store.putRecord(`lineage/${r.sha256}/produced-by/${linkName(link)}`, link)),
    ...used.map((r) => store.putRecord(`lineage/${r.sha256}/used-by/${linkName(link)}`, link)),
  ]);
}

function unique(refs: ArtifactRef[]): ArtifactRef[] {
  return [...new Map(refs.map((r) => [r.sha256, r])).values()];
}

export interface RunView {
  run?: RunManifest;
  steps: StepManifest[];
}

/** The runs recorded for a workflow ID, newest first. */
export async function runsOf(store: ArtifactStore, workflowId: string): Promise<RunView[]> {
  const keys = await store.listRecords(runPrefix(workflowId));
  const byRun = new Map<string, { run?: string; steps: string[] }>();
  for (const k of keys) {
    const rest = k.slice(runPrefix(workflowId).length).split('/');
    const entry = byRun.get(rest[0]!) ?? { steps: [] };
    if (rest[1] === 'run') entry.run = k;
    else if (rest[1] === 'steps') entry.steps.push(k);
    byRun.set(rest[0]!, entry);
  }
  const views = await Promise.all(
    [...byRun.values()].map(async (e) => {
      const run = e.run ? await store.getRecord<RunManifest>(e.run) : undefined;
      const steps = (await Promise.all(e.steps.map((k) => store.getRecord<StepManifest>(k)))).filter(
        (s): s is StepManifest => s !== undefined,
      );
      steps.sort((a, b) => a.startedAt.localeCompare(b.startedAt) || a.stepId.localeCompare(b.stepId));
      return { ...(run ? { run } : {}), steps };
    }),
  );
  const started = (v: RunView): string => v.run?.startedAt ?? v.steps[0]?.startedAt ?? '';
  return views.sort((a, b) => started(b).localeCompare(started(a)));
}

/** Every run manifest in the store (for `mlpipe runs list`). */
export async function listRuns(store: ArtifactStore): Promise<RunManifest[]> {
  const keys = (await store.listRecords('runs/')).filter((k) => k.endsWith('/run'));
  const runs = (await Promise.all(keys.map((k) => store.getRecord<RunManifest>(k)))).filter((r): r is RunManifest => r !== undefined);
  return runs.sort((a, b) => b.startedAt.localeCompare(a.startedAt));
}

/** The full digests whose lineage is recorded and that start with `prefix` (at least 6 hex digits). */
export async function resolveDigest(store: ArtifactStore, prefix: string): Promise<string[]> {
  const digests = new Set<string>();
  for (const k of await store.listRecords(`lineage/${prefix}`)) digests.add(k.split('/')[1]!);
  return [...digests].sort();
}

export interface LineageNode {
  sha256: string;
  /** The artifact's name as its producer recorded it. */
  name?: string;
  size?: number;
  producedBy: (StepManifest & { inputsLineage: Record<string, LineageNode> })[];
  usedBy: LineageLink[];
}

async function links(store: ArtifactStore, sha256: string, kind: 'produced-by' | 'used-by'): Promise<LineageLink[]> {
  const keys = await store.listRecords(`lineage/${sha256}/${kind}/`);
  return (await Promise.all(keys.map((k) => store.getRecord<LineageLink>(k)))).filter((l): l is LineageLink => l !== undefined);
}

/**
 * The upstream tree of an artifact (every producer, newest first; their inputs; their producers ...)
 * and its direct consumers. `path` holds the digests above this one, so only a cycle stops the walk:
 * bytes that several runs (or several inputs) share are shown under each of them (read once: `memo`).
 */
export async function lineageOf(
  store: ArtifactStore,
  sha256: string,
  depth = 20,
  path: ReadonlySet<string> = new Set(),
  memo = new Map<string, Promise<LineageNode>>(),
): Promise<LineageNode> {
  if (path.has(sha256) || depth <= 0) return { sha256, producedBy: [], usedBy: await links(store, sha256, 'used-by') };
  const key = `${sha256}:${depth}`;
  let node = memo.get(key);
  if (!node) memo.set(key, (node = walk(store, sha256, depth, path, memo)));
  return node;
}

async function walk(
  store: ArtifactStore,
  sha256: string,
  depth: number,
  path: ReadonlySet<string>,
  memo: Map<string, Promise<LineageNode>>,
): Promise<LineageNode> {
  const node: LineageNode = { sha256, producedBy: [], usedBy: await links(store, sha256, 'used-by') };
  const below = new Set([...path, sha256]);
  const steps = await Promise.all(
    (await links(store, sha256, 'produced-by')).map((l) => store.getRecord<StepManifest>(stepKey(l.workflowId, l.runId, l.stepId))),
  );
  const producers = steps
    .filter((s): s is StepManifest => s !== undefined)
    .sort((a, b) => b.endedAt.localeCompare(a.endedAt) || a.stepId.localeCompare(b.stepId));
  for (const step of producers) {
    const out = artifactRefs(step.outputs).find((r) => r.sha256 === sha256);
    if (out) {
      node.name ??= out.name;
      node.size ??= out.size;
    }
    const inputsLineage: Record<string, LineageNode> = {};
    for (const [name, value] of Object.entries(step.inputs)) {
      for (const ref of artifactRefs(value)) inputsLineage[name] = await lineageOf(store, ref.sha256, depth - 1, below, memo);
    }
    node.producedBy.push({ ...step, inputsLineage });
  }
  return node;
}
