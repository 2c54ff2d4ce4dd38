import { z } from 'zod';
import { PipelineError } from '../../engine/errors.js';
import { isArtifactRef, type ArtifactRef } from '../../engine/types.js';
import { definePlugin } from '../sdk.js';

const candidateName = z
  .string()
  .regex(/^[A-Za-z][A-Za-z0-9_]*$/, 'candidate names are letters, digits and _ (starting with a letter)')
  .max(40);

const params = z
  .object({
    /** The candidates, in order of preference on a tie: each has inputs `<name>_model` and `<name>_metrics`. */
    candidates: z
      .array(candidateName)
      .min(2)
      .refine((c) => new Set(c).size === c.length, 'candidate names must be distinct'),
    /** The metric deciding the choice: a key of every candidate's metrics (validation metrics, not test). */
    metric: z.object({ key: z.string().min(1), goal: z.enum(['minimize', 'maximize']) }).strict(),
  })
  .strict();

export interface ComparisonRow {
  candidate: string;
  rank: number;
  metrics: Record<string, number>;
}

const fmt = (v: number): string => (Math.abs(v) >= 100 ? Math.round(v).toLocaleString('en-US') : Number(v.toPrecision(4)).toString());

/** The comparison as a Markdown table: one row per candidate, best first, every numeric metric they share. */
export function comparisonMarkdown(rows: ComparisonRow[], metric: { key: string; goal: string }): string {
  const keys = [metric.key, ...Object.keys(rows[0]?.metrics ?? {}).filter((k) => k !== metric.key && rows.every((r) => k in r.metrics))];
  const lines = [
    `| rank | candidate | ${keys.map((k) => (k === metric.key ? `**${k}** (${metric.goal})` : k)).join(' | ')} |`,
    `|---:|---|${keys.map(() => '---:').join('|')}|`,
    ...rows.map(
      (r) => `| ${r.rank} | ${r.rank === 1 ? `**${r.candidate}**` : r.candidate} | ${keys.map((k) => fmt(r.metrics[k]!)).join(' | ')} |`,
    ),
  ];
  return `${lines.join('\n')}\n`;
}

/**
 * evaluate.select — model selection: takes several candidate models with their metrics (from
 * evaluate.model on the validation split), ranks them by `metric` and outputs the best one's model and
 * metrics, its name, the comparison (numbers, tracked in MLflow), the ranking (names best first, shown
 * by `mlpipe run` and `mlpipe demo`) and the comparison table (Markdown artifact, uploaded to the
 * step's MLflow run). Candidate `x` is bound as inputs `x_model` and
 * `x_metrics`. A tie goes to the candidate listed first.
 */
export const evaluateSelect = definePlugin({
  name: 'evaluate.select',
  version: '1',
  description: 'Picks the best of several candidate models by a declared metric and direction; outputs its model and the comparison table.',
  params,
  inputs: (p: z.infer<typeof params>) =>
    Object.fromEntries(
      p.candidates.flatMap((c) => [[`${c}_model`, 'model' as const] as const, [`${c}_metrics`, 'metrics' as const] as const]),
    ),
  outputs: { model: 'model', winner: 'json', metrics: 'metrics', comparison: 'json', ranking: 'json', table: 'artifact' },
  async run(ctx, p, inputs) {
    const given = inputs as Record<string, unknown>;
    const scored = p.candidates.map((candidate, order) => {
      const model = given[`${candidate}_model`];
      if (!isArtifactRef(model))
        throw new PipelineError('PLUGIN_INPUT', `evaluate.select: input '${candidate}_model' must be a model artifact.`, {
          hint: `Bind it: inputs: { ${candidate}_model: \${steps.<train step>.outputs.model} }`,
        });
      const raw = given[`${candidate}_metrics`];
      if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
        throw new PipelineError('PLUGIN_INPUT', `evaluate.select: input '${candidate}_metrics' must be a metrics object.`, {
          hint: `Bind it to an evaluation of that model on the validation split: \${steps.<evaluate step>.outputs.metrics}`,
        });
      const metrics = Object.fromEntries(Object.entries(raw).filter((e): e is [string, number] => typeof e[1] === 'number'));
      const value = metrics[p.metric.key];
      if (value === undefined || !Number.isFinite(value))
        throw new PipelineError(
          'PLUGIN_INPUT',
          `evaluate.select: candidate '${candidate}' has no finite '${p.metric.key}' (${value === undefined ? 'missing' : String(value)}). Its metrics: ${Object.keys(metrics).join(', ') || 'none'}.`,
          { hint: 'Every candidate must be scored with the same metric, on the same rows.' },
        );
      return { candidate, order, model: model as ArtifactRef, metrics, value };
    });
    const sign = p.metric.goal === 'minimize' ? 1 : -1;
    const ranked = [...scored].sort((a, b) => sign * (a.value - b.value) || a.order - b.order);
    const best = ranked[0]!;
    const rows: ComparisonRow[] = ranked.map((r, i) => ({ candidate: r.candidate, rank: i + 1, metrics: r.metrics }));
    const markdown = comparisonMarkdown(rows, p.metric);
    const table = await ctx.store.put(markdown, { name: 'model-comparison.md', mediaType: 'text/markdown' });
    ctx.logger.info(
      { winner: best.candidate, metric: p.metric.key, value: best.value },
      `selected ${best.candidate}: ${p.metric.key} ${fmt(best.value)} (${ranked
        .slice(1)
        .map((r) => `${r.candidate} ${fmt(r.value)}`)
        .join(', ')})`,
    );
    return {
      model: best.model,
      winner: best.candidate,
      metrics: best.metrics,
      comparison: Object.fromEntries(scored.map((s) => [s.candidate, s.metrics])),
      ranking: { metric: p.metric.key, goal: p.metric.goal, order: ranked.map((r) => r.candidate) },
      table,
    };
  },
});
