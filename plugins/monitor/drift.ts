import { z } from 'zod';
import { computeDrift, STAT_TESTS, toEvidentlyJson, type DriftOptions, type StatTestName } from '../../engine/drift/index.js';
import { renderDriftHtml } from '../../engine/drift/html.js';
import { datasetFile } from '../data/dataset.js';
import { definePlugin } from '../sdk.js';
import { loadDriftDataset } from './load.js';

const testName = z.enum(Object.keys(STAT_TESTS) as [StatTestName, ...StatTestName[]]);

export const driftParams = z
  .object({
    /** Columns to test (default: every numeric and text column of the reference). */
    columns: z.array(z.string().min(1)).min(1).optional(),
    /** Share of drifted columns from which the dataset drifts (Evidently's drift_share). */
    driftShare: z.number().gt(0).max(1).default(0.5),
    /** Test for every column, or per type; per-column entries win. Default: Evidently's selection. */
    stattest: testName.optional(),
    numStattest: testName.optional(),
    catStattest: testName.optional(),
    threshold: z.number().positive().optional(),
    numThreshold: z.number().positive().optional(),
    catThreshold: z.number().positive().optional(),
    perColumn: z.record(z.string(), z.object({ stattest: testName.optional(), threshold: z.number().positive().optional() }).strict()).default({}),
  })
  .strict();

export type DriftParams = z.infer<typeof driftParams>;

export function driftOptions(p: DriftParams): DriftOptions {
  const perColumnStattest: Record<string, StatTestName> = {};
  const perColumnThreshold: Record<string, number> = {};
  for (const [col, o] of Object.entries(p.perColumn)) {
    if (o.stattest) perColumnStattest[col] = o.stattest;
    if (o.threshold !== undefined) perColumnThreshold[col] = o.threshold;
  }
  return {
    ...(p.columns ? { columns: p.columns } : {}),
    driftShare: p.driftShare,
    ...(p.stattest ? { stattest: p.stattest } : {}),
    ...(p.numStattest ? { numStattest: p.numStattest } : {}),
    ...(p.catStattest ? { catStattest: p.catStattest } : {}),
    ...(p.threshold !== undefined ? { threshold: p.threshold } : {}),
    ...(p.numThreshold !== undefined ? { numThreshold: p.numThreshold } : {}),
    ...(p.catThreshold !== undefined ? { catThreshold: p.catThreshold } : {}),
    perColumnStattest,
    perColumnThreshold,
  };
}

/**
 * monitor.drift — data drift of `current` against `reference`, computed as Evidently computes it
 * (same tests, thresholds and dataset rule). Writes Evidently's legacy JSON report and a
 * self-contained HTML report; returns whether the dataset drifted, the drifted columns and the
 * share; logs the share and each column's score to tracking. Use `datasetDrift` in a later
 * step's `when:` to act on it.
 */
export const monitorDrift = definePlugin({
  name: 'monitor.drift',
  version: '1',
  description: 'Evidently-compatible data drift between a reference and a current dataset, with JSON and HTML reports.',
  params: driftParams,
  inputs: { reference: 'dataset', current: 'dataset' },
  outputs: { report: 'artifact', html: 'artifact', datasetDrift: 'json', driftedColumns: 'json', share: 'json' },
  async run(ctx, p, inputs) {
    const refFile = await datasetFile(ctx, inputs, 'reference');
    const curFile = await datasetFile(ctx, inputs, 'current');
    const reference = await loadDriftDataset(refFile, 'reference', p.columns);
    const current = await loadDriftDataset(curFile, 'current', p.columns);
    ctx.heartbeat({ rows: { reference: reference.rows, current: current.rows } });
    const options = driftOptions(p);
    // Test the columns both sides can: the reference's, unless named.
    options.columns ??= Object.keys(reference.columns);
    const result = computeDrift(reference, current, options);
    const report = await ctx.store.put(toEvidentlyJson(result), { name: 'drift.json', mediaType: 'application/json' });
    const html = await ctx.store.put(renderDriftHtml(result, { title: `Data drift: ${ctx.pipeline} / ${ctx.stepId}`, reference: `${reference.rows} rows`, current: `${current.rows} rows` }), {
      name: 'drift.html',
      mediaType: 'text/html',
    });
    const metrics: Record<string, number> = { drift_share: result.shareOfDriftedColumns, drifted_columns: result.numberOfDriftedColumns, dataset_drift: result.datasetDrift ? 1 : 0 };
    for (const c of result.columns) if (Number.isFinite(c.drift_score)) metrics[`drift_score.${c.column_name}`] = c.drift_score;
    ctx.logMetrics(metrics);
    const drifted = result.columns.filter((c) => c.drift_detected).map((c) => c.column_name);
    ctx.logger.info({ drifted, share: result.shareOfDriftedColumns, datasetDrift: result.datasetDrift }, 'drift computed');
    return { report, html, datasetDrift: result.datasetDrift, driftedColumns: drifted, share: result.shareOfDriftedColumns };
  },
});
