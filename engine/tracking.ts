/**
 * Experiment tracking, the pure part: what a pipeline run reports (params, metrics, tags, status)
 * and MLflow's rules for it (key syntax, value lengths, batch limits). No I/O: the delivery
 * activity (activities/tracking.ts) sends these records to a backend (adapters/mlflow/).
 */
import type { StepRunRecord } from './types.js';

/** One metric point. The timestamp is fixed when the value is produced, so a resend is recognisable. */
export interface MetricPoint {
  key: string;
  value: number;
  /** Milliseconds since the epoch. */
  timestamp: number;
  step: number;
}

export interface Param {
  key: string;
  value: string;
}

export interface Tag {
  key: string;
  value: string;
}

export type RunStatus = 'RUNNING' | 'FINISHED' | 'FAILED' | 'KILLED';

/** Per pipeline, from the spec's `tracking:` block and the worker's settings. */
export interface TrackingConfig {
  enabled: boolean;
  experiment: string;
  /** The tracking URI is the worker's (MLFLOW_TRACKING_URI), never in history: it may hold credentials. */
  /** Register a step's model output as a version of `name` when the run succeeds. */
  registerModel?: { name: string; step: string; output: string; aliases: string[] };
  /** The project's git commit when known (mlflow.source.git.commit). */
  gitCommit?: string;
  /** The MLflow run this run nests under (an HPO trial under its search). */
  parentMlflowRunId?: string;
  /** @deprecated The name of `parentMlflowRunId` in tracking workflows started before it; still read. */
  parentRunId?: string;
}

/** A step as the tracker sees it, once it has ended (the `step-ended` event). */
export interface StepRecord extends StepRunRecord {
  /** Series a plugin reported (training curves), with their own steps and timestamps. */
  series?: MetricPoint[];
  /** The step's live MLflow run may still have been in the making when it ended (StepResult.liveRun). */
  liveRun?: boolean;
}

/** MLflow's limits for one runs/log-batch request. */
export const LIMITS = {
  metricsPerBatch: 1000,
  paramsPerBatch: 100,
  tagsPerBatch: 100,
  itemsPerBatch: 1000,
  bodyBytes: 1_000_000,
  keyLength: 250,
  paramValueLength: 6000,
  tagValueLength: 8000,
} as const;

const KEY_CHARS = /^[/\w.\- :]*$/;

/** A valid MLflow key for any text: disallowed characters become '_', no '..', no leading '/'. */
export function sanitizeKey(key: string): string {
  let k = key
    .replace(/[^/\w.\- :]/g, '_')
    .replace(/\.{2,}/g, '.')
    .replace(/^\/+/, '');
  if (k.length > LIMITS.keyLength) k = k.slice(0, LIMITS.keyLength);
  return k || '_';
}

export function isValidKey(key: string): boolean {
  return key.length > 0 && key.length <= LIMITS.keyLength && KEY_CHARS.test(key) && !key.includes('..') && !key.startsWith('/');
}

function text(value: unknown): string {
  return typeof value === 'string' ? value : (JSON.stringify(value) ?? 'null');
}

/**
 * Flattens nested config to dotted params, as MLflow users log Hydra configs: objects recurse,
 * arrays and scalars become one value (JSON for arrays). Values longer than MLflow allows are cut
 * with a marker.
 */
export function flattenParams(value: Record<string, unknown>, prefix = ''): Param[] {
  const out: Param[] = [];
  for (const [k, v] of Object.entries(value)) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (v !== null && typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length > 0) {
      out.push(...flattenParams(v as Record<string, unknown>, key));
      continue;
    }
    let s = text(v);
    if (s.length > LIMITS.paramValueLength) s = `${s.slice(0, LIMITS.paramValueLength - 15)}...(truncated)`;
    out.push({ key: sanitizeKey(key), value: s });
  }
  return out;
}

/** Numeric leaves of a value as metric keys: {rmse: 1, nested: {a: 2}} -> rmse, nested.a. */
export function numericLeaves(value: unknown, prefix = ''): { key: string; value: number }[] {
  if (typeof value === 'number') return Number.isFinite(value) && prefix ? [{ key: sanitizeKey(prefix), value }] : [];
  if (typeof value === 'boolean') return prefix ? [{ key: sanitizeKey(prefix), value: value ? 1 : 0 }] : [];
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return [];
  if ((value as { kind?: unknown }).kind === 'artifact') return [];
  return Object.entries(value).flatMap(([k, v]) => numericLeaves(v, prefix ? `${prefix}.${k}` : k));
}

export function tag(key: string, value: unknown): Tag {
  let s = text(value);
  if (s.length > LIMITS.tagValueLength) s = s.slice(0, LIMITS.tagValueLength);
  return { key, value: s };
}

export interface Batch {
  metrics: MetricPoint[];
  params: Param[];
  tags: Tag[];
}

function size(b: Batch): number {
  return b.metrics.length + b.params.length + b.tags.length;
}

/**
 * Splits what one run should receive into log-batch requests within MLflow's limits: at most 1000
 * metrics, 100 params, 100 tags and 1000 items per request, and a body under 1 MB (estimated from
 * the JSON of each item plus the envelope).
 */
export function chunkBatch(all: Batch, mlflowRunId = 'x'.repeat(32)): Batch[] {
  const out: Batch[] = [];
  let cur: Batch = { metrics: [], params: [], tags: [] };
  const envelope = JSON.stringify({ run_id: mlflowRunId, metrics: [], params: [], tags: [] }).length;
  let bytes = envelope;
  const push = <K extends keyof Batch>(kind: K, item: Batch[K][number], cap: number): void => {
    const itemBytes = JSON.stringify(item).length + 1;
    if (cur[kind].length >= cap || size(cur) >= LIMITS.itemsPerBatch || bytes + itemBytes > LIMITS.bodyBytes) {
      out.push(cur);
      cur = { metrics: [], params: [], tags: [] };
      bytes = envelope;
    }
    (cur[kind] as Batch[K][number][]).push(item);
    bytes += itemBytes;
  };
  for (const p of all.params) push('params', p, LIMITS.paramsPerBatch);
  for (const t of all.tags) push('tags', t, LIMITS.tagsPerBatch);
  for (const m of all.metrics) push('metrics', m, LIMITS.metricsPerBatch);
  if (size(cur) > 0 || out.length === 0) out.push(cur);
  return out;
}

/** Same point: key, step, timestamp and value (MLflow stores metrics as doubles). */
export function pointId(p: MetricPoint): string {
  return `${p.key}\u0000${p.step}\u0000${p.timestamp}\u0000${p.value}`;
}

/** Points not already present (by pointId): the deduplication used when a delivery is retried. */
export function missingPoints(wanted: MetricPoint[], present: MetricPoint[]): MetricPoint[] {
  const have = new Set(present.map(pointId));
  return wanted.filter((p) => !have.has(pointId(p)));
}

export function statusOf(step: StepRecord['status']): RunStatus {
  return step === 'failed' ? 'FAILED' : step === 'cancelled' ? 'KILLED' : 'FINISHED';
}
