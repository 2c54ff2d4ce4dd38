import { formatDuration } from '../engine/duration.js';
import type { StepState } from '../engine/types.js';
import type { PipelineResult, StepProgress } from '../engine/contracts.js';
import { stepProgressOf } from '../engine/progress.js';

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

/** A metric's short name on the progress line: `val_loss` and `valLoss` are `val`. */
function metricLabel(key: string): string {
  return /^val(_loss|Loss)$/.test(key) ? 'val' : key;
}

/** A metric value in three significant digits, or a whole number from 100 up. */
function metricValue(v: number): string {
  if (Math.abs(v) >= 100) return Math.round(v).toLocaleString('en-US');
  return String(Number(v.toPrecision(3)));
}

/** An ETA: `14s`, `3m05s`, `1h02m`. */
export function formatEta(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/**
 * A step's progress (its heartbeat details' `progress`) in one line: `epoch 12/40 loss 0.183 val
 * 0.192 eta 14s`. The ETA counts down from when the step reported it (`now`, default the clock).
 */
export function formatProgress(p: StepProgress, now: number = Date.now()): string {
  const parts: string[] = [];
  if (p.done !== undefined)
    parts.push(`${p.unit ?? 'step'} ${metricValue(p.done)}${p.total !== undefined ? `/${metricValue(p.total)}` : ''}`);
  for (const [k, v] of Object.entries(p.metrics ?? {}).slice(0, 6)) parts.push(`${metricLabel(k)} ${metricValue(v)}`);
  if (p.etaMs !== undefined && p.total !== undefined && p.done !== undefined && p.done < p.total) {
    parts.push(`eta ${formatEta(p.etaMs - Math.max(0, now - p.at))}`);
  }
  if (p.message) parts.push(p.message);
  return parts.join(' ');
}

/** The progress line of a step from heartbeat details of any shape, or undefined without (valid) progress. */
export function progressOfDetails(details: unknown, now?: number): string | undefined {
  const p = stepProgressOf(details);
  const line = p ? formatProgress(p, now) : '';
  return line || undefined;
}

/**
 * `waiting`: what the step's current attempt waits for (its heartbeat details), if anything;
 * `progress`: its progress line (formatProgress), shown while it runs.
 */
export function formatStepLine(id: string, s: StepState, waiting?: string, progress?: string): string {
  const parts = [`${MARK[s.status]} ${id.padEnd(16)} ${s.status.padEnd(9)}`];
  if (s.attempt > 1) {
    // Attempts lost to the infrastructure (a dead worker) are retried without using up the step's retries.
    const errors = s.errors ?? 0;
    const lost = Math.max(0, s.attempt - 1 - errors);
    const why = [errors ? `${errors} error${errors === 1 ? '' : 's'}` : '', lost ? `${lost} lost` : ''].filter(Boolean).join(', ');
    parts.push(`attempt ${s.attempt}${why ? ` (${why} before)` : ''}`);
  }
  if (waiting && s.status === 'running') parts.push(`${s.attempt > 1 ? '· ' : ''}${waitingNote(waiting)}`);
  else if (progress && s.status === 'running') parts.push(`${s.attempt > 1 ? '· ' : ''}${progress}`);
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

/** A table of an evaluation's metrics against its baseline (the ratio for error metrics). */
export function metricsTable(m: Record<string, unknown>, b: Record<string, unknown>): string[] {
  const out: string[] = [];
  const rows = Object.keys(m).filter((k) => typeof m[k] === 'number');
  out.push(`  ${'metric'.padEnd(10)} ${'model'.padStart(12)} ${'baseline'.padStart(12)} ${'model/baseline'.padStart(15)}`);
  for (const k of rows) {
    const mv = m[k] as number;
    const bv = typeof b[k] === 'number' ? (b[k] as number) : undefined;
    // The ratio means something for error metrics only (lower is better, zero is perfect).
    const ratio = LOWER_IS_BETTER.has(k) && bv !== undefined && bv !== 0 ? (mv / bv).toFixed(3) : '';
    out.push(
      `  ${k.padEnd(10)} ${num(mv).padStart(12)} ${bv !== undefined ? num(bv).padStart(12) : ''.padStart(12)} ${ratio.padStart(15)}`,
    );
  }
  return out;
}

/** For every step that output `metrics` and `baseline` (an evaluation): a table of the two. */
export function formatMetricsTables(r: PipelineResult): string[] {
  const out: string[] = [];
  for (const [step, outputs] of Object.entries(r.outputs)) {
    const m = outputs['metrics'] as Record<string, number> | undefined;
    const b = outputs['baseline'] as Record<string, number> | undefined;
    if (!m || !b || typeof m !== 'object' || typeof b !== 'object') continue;
    out.push(`\n${step}: model metrics against the baseline (on the data bound to its test input)`);
    out.push(...metricsTable(m, b));
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
