/**
 * The forecast pipeline's hpo: section run as a search on a real Temporal dev server: three trials
 * of pipelines/forecast-unemployment.yaml (boosted trees, fewer rounds), each a child workflow up
 * to the backtest step, scored on the walk-forward folds' mean MASE; the best trial is the one with
 * the lowest, and it is run in full (evaluated on the test year).
 */
import { describe, expect, it } from 'vitest';
import { HPO_WORKFLOW, type HpoResult, type PipelineResult } from '../../engine/contracts.js';
import { createTestProject, uniqueId, useWorkerAndClient } from './helpers.js';

const project = createTestProject('forecast-hpo');
const env = useWorkerAndClient(project);

describe('forecast-unemployment search', () => {
  it('runs three trials with different params, each scored on the backtest mean MASE, and picks the lowest', async () => {
    const handle = await env.client.workflow.start(HPO_WORKFLOW, {
      taskQueue: project.taskQueue,
      workflowId: uniqueId('forecast-hpo'),
      args: [{ pipeline: 'forecast-unemployment', overrides: ['model.rounds=60'], trials: 3, parallel: 1 }],
      workflowRunTimeout: '10 minutes',
    });
    const r = (await handle.result()) as HpoResult;
    expect(r.metric).toMatchObject({ step: 'backtest', key: 'mase', goal: 'minimize' });
    expect(r.trials).toBe(3);
    expect(r.failed).toBe(0);
    expect(new Set(r.results.map((t) => t.overrides.join(' '))).size).toBe(3);
    for (const t of r.results) {
      expect(t.status).toBe('succeeded');
      expect(Number.isFinite(t.value)).toBe(true);
      // The trial's value is its backtest's mean MASE over the three folds (as rounded in the step's metrics).
      const trial = (await env.client.workflow.getHandle(t.workflowId).result()) as PipelineResult;
      const backtest = trial.outputs['backtest']!['backtest'] as { folds: { mase: number }[] };
      expect(backtest.folds).toHaveLength(3);
      expect(t.value).toBeCloseTo(backtest.folds.reduce((a, f) => a + f.mase, 0) / 3, 4);
      expect(trial.steps['evaluate']).toBeUndefined();
    }
    const lowest = Math.min(...r.results.map((t) => t.value!));
    expect(r.best.value).toBe(lowest);
    expect(r.final?.evaluations?.['evaluate']).toBeDefined();
    console.info(
      `forecast search: ${r.results.map((t) => `${t.overrides.join(' ')} -> ${t.value!.toFixed(3)}`).join('; ')}; best ${r.best.index}`,
    );
  }, 600_000);
});
