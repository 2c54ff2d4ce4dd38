/**
 * Forecasting end to end on a real Temporal dev server: pipelines/forecast-unemployment.yaml reads
 * the BLS series, cuts windows and walk-forward folds (process.window), trains boosted trees on lag
 * features (train.gbdt-forecast, the real LightGBM library) for the test year and each fold, scores
 * the backtest and the test year against the seasonal baselines (evaluate.forecast) and passes its
 * gate; a second run is served from the cache.
 */
import { describe, expect, it } from 'vitest';
import { PIPELINE_WORKFLOW, type PipelineResult } from '../../engine/contracts.js';
import type { ArtifactRef } from '../../engine/types.js';
import { LocalArtifactStore } from '../../adapters/local-store.js';
import { decodeForecasts, decodeWindows } from '../../lib/windows.js';
import { createTestProject, uniqueId, useWorkerAndClient } from './helpers.js';

const project = createTestProject('forecast');
const env = useWorkerAndClient(project);

async function run(overrides: string[] = []): Promise<PipelineResult> {
  const handle = await env.client.workflow.start(PIPELINE_WORKFLOW, {
    taskQueue: project.taskQueue,
    workflowId: uniqueId('forecast'),
    args: [{ pipeline: 'forecast-unemployment', overrides }],
    workflowRunTimeout: '5 minutes',
  });
  return (await handle.result()) as PipelineResult;
}

describe('forecast-unemployment', () => {
  it('windows, trains, backtests over the folds and evaluates the test year against seasonal naive', async () => {
    const r = await run();
    expect(Object.fromEntries(Object.entries(r.steps).map(([id, s]) => [id, s.status]))).toEqual({
      ingest: 'succeeded',
      validate: 'succeeded',
      window: 'succeeded',
      train: 'succeeded',
      // model=gbdt (the default): the sequence model, ETS, their combination and the ONNX export are other branches.
      train_sequence: 'skipped',
      train_ets: 'skipped',
      combine: 'skipped',
      export: 'skipped',
      backtest: 'succeeded',
      evaluate: 'succeeded',
    });
    const counts = r.outputs['window']!['counts'] as Record<string, unknown>;
    expect(counts).toMatchObject({ series: 14, gaps: 0, duplicates: 0, inputs: ['unemployed', 'rate', 'month_sin', 'month_cos'] });
    const store = new LocalArtifactStore(project.settings.artifactsDir);
    const test = decodeWindows(await store.get(r.outputs['window']!['test'] as ArtifactRef));
    // The last 12 months, horizon 6: 7 origins per series.
    expect(test.count).toBe(14 * 7);
    const forecasts = decodeForecasts(await store.get(r.outputs['train']!['forecasts'] as ArtifactRef));
    expect(forecasts.windows).toBe((r.outputs['window']!['test'] as ArtifactRef).sha256);
    const metrics = r.outputs['evaluate']!['metrics'] as Record<string, number>;
    const baseline = r.outputs['evaluate']!['baseline'] as Record<string, number>;
    expect(metrics['mase']).toBeLessThan(0.9 * baseline['mase']!); // the gate held
    expect((r.outputs['evaluate']!['horizon'] as Record<string, number[]>)['mase']).toHaveLength(6);
    const backtest = r.outputs['backtest']!['backtest'] as { folds: { fold: number; mase: number }[]; mean: Record<string, number> };
    expect(backtest.folds.map((f) => f.fold)).toEqual([1, 2, 3]);
    expect((r.outputs['backtest']!['metrics'] as Record<string, number>)['mase']).toBeCloseTo(
      backtest.folds.reduce((a, f) => a + f.mase, 0) / 3,
      4,
    );
    const again = await run();
    expect(again.steps['train']!.status).toBe('cached');
    expect(again.steps['evaluate']!.status).toBe('cached');
  }, 300_000);
});
