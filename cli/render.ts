import { formatDuration } from '../engine/duration.js';
import type { StepState } from '../engine/types.js';
import type { PipelineResult } from '../engine/contracts.js';

const MARK: Record<StepState['status'], string> = {
  pending: '·',
  running: '▶',
  succeeded: '✓',
  cached: '↺',
  skipped: '⤼',
  failed: '✗',
  cancelled: '■',
};

function elapsed(s: StepState): string {
  if (!s.startedAt || !s.endedAt) return '';
  return formatDuration(Date.parse(s.endedAt) - Date.parse(s.startedAt));
}

/**
 * What a step waits for, as `mlpipe status` shows it: the heartbeat's `waiting` message up to its
 * "(unreachable for …)", without the error that follows.
 */
export function waitingNote(message: string): string {
  const m = /^(waiting for .*? \(unreachable for [^)]*\))/.exec(message);
  return m ? m[1]! : message.split('\n')[0]!.slice(0, 200);
}

/** `waiting`: what the step's current attempt waits for (its heartbeat details), if anything. */
export function formatStepLine(id: string, s: StepState, waiting?: string): string {
  const parts = [`${MARK[s.status]} ${id.padEnd(16)} ${s.status.padEnd(9)}`];
  if (s.attempt > 1) {
    // Attempts lost to the infrastructure (a dead worker) are retried without using up the step's retries.
    const errors = s.errors ?? 0;
    const lost = Math.max(0, s.attempt - 1 - errors);
    const why = [errors ? `${errors} error${errors === 1 ? '' : 's'}` : '', lost ? `${lost} lost` : ''].filter(Boolean).join(', ');
    parts.push(`attempt ${s.attempt}${why ? ` (${why} before)` : ''}`);
  }
  if (waiting && s.status === 'running') parts.push(`${s.attempt > 1 ? '· ' : ''}${waitingNote(waiting)}`);
  const t = elapsed(s);
  if (t && s.status !== 'skipped') parts.push(t);
  if (s.reason) parts.push(`(${s.reason})`);
  if (s.error)
    parts.push(
      `— ${s.error.type ? `${s.error.type}: ` : ''}${s.error.message.split('\n').find((l) => l.includes('error')) ?? s.error.message.split('\n')[0]}`,
    );
  return parts.join('  ');
}

function short(v: unknown): string {
  if (v !== null && typeof v === 'object' && (v as { kind?: string }).kind === 'artifact') {
    const a = v as { name?: string; size: number; sha256: string };
    const size =
      a.size >= 1 << 20 ? `${(a.size / (1 << 20)).toFixed(1)} MiB` : a.size >= 1024 ? `${(a.size / 1024).toFixed(1)} KiB` : `${a.size} B`;
    return `artifact ${a.name ?? ''} ${size} sha256:${a.sha256.slice(0, 12)}`;
  }
  const s = JSON.stringify(v);
  return s.length > 120 ? `${s.slice(0, 117)}...` : s;
}

const LOWER_IS_BETTER = new Set(['rmse', 'mae', 'mape', 'logLoss']);
const num = (v: number): string => (Math.abs(v) >= 1000 ? Math.round(v).toLocaleString('en-US') : v.toFixed(3));

/** For every step that output `metrics` and `baseline` (an evaluation): a table of the two. */
export function formatMetricsTables(r: PipelineResult): string[] {
  const out: string[] = [];
  for (const [step, outputs] of Object.entries(r.outputs)) {
    const m = outputs['metrics'] as Record<string, number> | undefined;
    const b = outputs['baseline'] as Record<string, number> | undefined;
    if (!m || !b || typeof m !== 'object' || typeof b !== 'object') continue;
    const rows = Object.keys(m).filter((k) => typeof m[k] === 'number');
    out.push(`\n${step}: model metrics against the baseline (on the data bound to its test input)`);
    out.push(`  ${'metric'.padEnd(10)} ${'model'.padStart(12)} ${'baseline'.padStart(12)} ${'model/baseline'.padStart(15)}`);
    for (const k of rows) {
      // The ratio means something for error metrics only (lower is better, zero is perfect).
      const ratio = LOWER_IS_BETTER.has(k) && typeof b[k] === 'number' && b[k] !== 0 ? (m[k]! / b[k]!).toFixed(3) : '';
      out.push(
        `  ${k.padEnd(10)} ${num(m[k]!).padStart(12)} ${typeof b[k] === 'number' ? num(b[k]!).padStart(12) : ''.padStart(12)} ${ratio.padStart(15)}`,
      );
    }
  }
  return out;
}

/** For every model selection (evaluate.select): its candidates best first, with their metrics. */
export function formatComparisonTables(r: PipelineResult): string[] {
  const out: string[] = [];
  for (const [step, outputs] of Object.entries(r.outputs)) {
    const ranking = outputs['ranking'] as { metric?: unknown; goal?: unknown; order?: unknown } | undefined;
    const comparison = outputs['comparison'] as Record<string, Record<string, number>> | undefined;
    if (!ranking || !Array.isArray(ranking.order) || !comparison || typeof comparison !== 'object') continue;
    const order = ranking.order.filter((c): c is string => typeof c === 'string' && typeof comparison[c] === 'object');
    const metric = String(ranking.metric);
    const keys = [
      metric,
      ...Object.keys(comparison[order[0]!] ?? {}).filter((k) => k !== metric && order.every((c) => typeof comparison[c]![k] === 'number')),
    ];
    const width = Math.max(9, ...order.map((c) => c.length));
    out.push(`\n${step}: model selection on ${metric} (${String(ranking.goal)}), winner ${order[0]}`);
    out.push(`  rank ${'candidate'.padEnd(width)} ${keys.map((k) => k.padStart(12)).join(' ')}`);
    order.forEach((c, i) =>
      out.push(
        `  ${String(i + 1).padStart(4)} ${c.padEnd(width)} ${keys.map((k) => (typeof comparison[c]![k] === 'number' ? num(comparison[c]![k]!) : '').padStart(12)).join(' ')}`,
      ),
    );
  }
  return out;
}

export function formatSummary(r: PipelineResult): string {
  const counts: Record<string, number> = {};
  for (const s of Object.values(r.steps)) counts[s.status] = (counts[s.status] ?? 0) + 1;
  const lines = [
    `\n${r.pipeline}: ${r.state} (${Object.entries(counts)
      .map(([k, n]) => `${n} ${k}`)
      .join(', ')})`,
  ];
  const ids = Object.keys(r.outputs);
  const shown = ids.length > 12 ? [...ids.slice(0, 6), ...ids.slice(-6)] : ids;
  if (ids.length) lines.push('outputs:');
  for (const id of shown) {
    for (const [k, v] of Object.entries(r.outputs[id]!)) lines.push(`  ${id}.${k} = ${short(v)}`);
    if (ids.length > 12 && id === ids[5]) lines.push(`  ... ${ids.length - 12} more steps ...`);
  }
  lines.push(...formatComparisonTables(r));
  lines.push(...formatMetricsTables(r));
  return lines.join('\n');
}
