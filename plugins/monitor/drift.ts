import { computeDrift, toEvidentlyJson } from '../../engine/drift/index.js';
import { driftOptions, driftParams } from '../../engine/drift/params.js';
import { renderDriftHtml } from '../../engine/drift/html.js';
import { datasetFile } from '../../lib/dataset.js';
import { definePlugin } from '../sdk.js';
import { artifactFormat, loadDriftPair } from '../../lib/drift-data.js';

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
    const [reference, current] = await loadDriftPair(
      { file: refFile, format: artifactFormat(inputs.reference) },
      { file: curFile, format: artifactFormat(inputs.current) },
      p.columns,
    );
    ctx.progress({ message: `comparing ${current.rows} current rows with ${reference.rows} reference rows` });
    const options = driftOptions(p);
    // Test the columns both sides can: the reference's, unless named.
    options.columns ??= Object.keys(reference.columns);
    const result = computeDrift(reference, current, options);
    const report = await ctx.store.put(toEvidentlyJson(result), { name: 'drift.json', mediaType: 'application/json' });
    const html = await ctx.store.put(
      renderDriftHtml(result, {
        title: `Data drift: ${ctx.pipeline} / ${ctx.stepId}`,
        reference: `${reference.rows} rows`,
        current: `${current.rows} rows`,
      }),
      {
        name: 'drift.html',
        mediaType: 'text/html',
      },
    );
    const metrics: Record<string, number> = {
      drift_share: result.shareOfDriftedColumns,
      drifted_columns: result.numberOfDriftedColumns,
      dataset_drift: result.datasetDrift ? 1 : 0,
    };
    for (const c of result.columns) if (Number.isFinite(c.drift_score)) metrics[`drift_score.${c.column_name}`] = c.drift_score;
    ctx.logMetrics(metrics);
    const drifted = result.columns.filter((c) => c.drift_detected).map((c) => c.column_name);
    ctx.logger.info({ drifted, share: result.shareOfDriftedColumns, datasetDrift: result.datasetDrift }, 'drift computed');
    return { report, html, datasetDrift: result.datasetDrift, driftedColumns: drifted, share: result.shareOfDriftedColumns };
  },
});
