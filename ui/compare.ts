/**
 * Runs side by side: the params (pipeline params, overrides, each step's resolved params) whose
 * values differ between them, and the numeric metrics their steps output.
 */
import type { UiRun } from './runs.js';

export interface Comparison {
  runs: { workflowId: string; runId: string; pipeline: string; state: string; startedAt: string }[];
  /** Dotted path -> one value per run (JSON text; undefined where the run has none). */
  params: { path: string; values: (string | undefined)[] }[];
  metrics: { path: string; values: (number | undefined)[] }[];
}

function flatten(value: unknown, prefix: string, out: Map<string, string>, depth = 0): void {
  if (depth < 8 && value && typeof value === 'object' && !Array.isArray(value) && !('sha256' in value)) {
    for (const [k, v] of Object.entries(value)) flatten(v, prefix ? `${prefix}.${k}` : k, out, depth + 1);
  } else if (value !== undefined) {
    out.set(
      prefix,
      typeof value === 'object' && value && 'sha256' in value ? `sha256:${String(value.sha256).slice(0, 12)}` : JSON.stringify(value),
    );
  }
}

function numbers(value: unknown, prefix: string, out: Map<string, number>, depth = 0): void {
  if (typeof value === 'number' && Number.isFinite(value)) out.set(prefix, value);
  else if (depth < 4 && value && typeof value === 'object' && !Array.isArray(value) && !('sha256' in value))
    for (const [k, v] of Object.entries(value)) numbers(v, `${prefix}.${k}`, out, depth + 1);
}

export function compareRuns(runs: UiRun[]): Comparison {
  const params = runs.map((r) => {
    const m = new Map<string, string>();
    flatten(r.params ?? {}, 'params', m);
    m.set('overrides', JSON.stringify(r.overrides));
    for (const id of r.order) flatten(r.steps[id]!.params ?? {}, `steps.${id}`, m);
    return m;
  });
  const metrics = runs.map((r) => {
    const m = new Map<string, number>();
    for (const id of r.order) {
      const outputs = r.steps[id]!.outputs ?? {};
      for (const [name, v] of Object.entries(outputs)) if (/metric|score|loss|value/i.test(name)) numbers(v, `${id}.${name}`, m);
    }
    return m;
  });
  const differing = [...new Set(params.flatMap((m) => [...m.keys()]))]
    .filter((k) => new Set(params.map((m) => m.get(k))).size > 1)
    .sort()
    .map((path) => ({ path, values: params.map((m) => m.get(path)) }));
  const metricRows = [...new Set(metrics.flatMap((m) => [...m.keys()]))]
    .sort()
    .map((path) => ({ path, values: metrics.map((m) => m.get(path)) }));
  return {
    runs: runs.map((r) => ({ workflowId: r.workflowId, runId: r.runId, pipeline: r.pipeline, state: r.state, startedAt: r.startedAt })),
    params: differing,
    metrics: metricRows,
  };
}
