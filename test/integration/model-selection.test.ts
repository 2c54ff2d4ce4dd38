/**
 * Model selection end to end on a real Temporal dev server: pipelines/california-housing-models.yaml
 * trains the MLP, XGBoost and LightGBM (the real libraries), scores each on the validation split,
 * evaluate.select picks the lowest validation RMSE, and the winner is evaluated on test and exported
 * to ONNX with parity against its own runtime.
 */
import { describe, expect, it } from 'vitest';
import { PIPELINE_WORKFLOW, type PipelineResult } from '../../engine/contracts.js';
import type { ArtifactRef } from '../../engine/types.js';
import { LocalArtifactStore } from '../../adapters/local-store.js';
import { createTestProject, uniqueId, useWorkerAndClient } from './helpers.js';

const project = createTestProject('selection');
const env = useWorkerAndClient(project);

describe('model selection', () => {
  it('trains three model families, selects the best on validation, evaluates and exports the winner', async () => {
    const handle = await env.client.workflow.start(PIPELINE_WORKFLOW, {
      taskQueue: project.taskQueue,
      workflowId: uniqueId('selection'),
      args: [{ pipeline: 'california-housing-models', overrides: ['params.seed=3', 'training.epochs=4', 'boosting.rounds=60'] }],
      workflowRunTimeout: '5 minutes',
    });
    const r = (await handle.result()) as PipelineResult;
    expect(Object.values(r.steps).every((s) => s.status === 'succeeded')).toBe(true);
    const validation = {
      mlp: (r.outputs['tune']!['metrics'] as Record<string, number>)['rmse']!,
      xgboost: (r.outputs['tune_xgboost']!['metrics'] as Record<string, number>)['rmse']!,
      lightgbm: (r.outputs['tune_lightgbm']!['metrics'] as Record<string, number>)['rmse']!,
    };
    const best = (Object.entries(validation) as [keyof typeof validation, number][]).sort((a, b) => a[1] - b[1])[0]![0];
    const select = r.outputs['select']!;
    expect(select['winner']).toBe(best);
    const trainStep = { mlp: 'train', xgboost: 'train_xgboost', lightgbm: 'train_lightgbm' }[best];
    expect((select['model'] as ArtifactRef).sha256).toBe((r.outputs[trainStep]!['model'] as ArtifactRef).sha256);
    expect(select['comparison']).toMatchObject({ mlp: { rmse: validation.mlp }, xgboost: { rmse: validation.xgboost } });
    // The table is an artifact in the run's store, best first.
    const table = (await new LocalArtifactStore(project.settings.artifactsDir).get(select['table'] as ArtifactRef)).toString('utf8');
    expect(table.split('\n')[2]).toContain(`**${best}**`);
    expect(table).toContain('lightgbm');
    // The winner goes on: test evaluation (gate passed) and an ONNX file matching its runtime.
    const test = r.outputs['evaluate']!['metrics'] as Record<string, number>;
    expect(test['rmse']).toBeLessThan(0.6 * (r.outputs['evaluate']!['baseline'] as Record<string, number>)['rmse']!);
    const parity = r.outputs['export']!['parity'] as { rows: number; maxRelativeError: number };
    expect(parity.rows).toBe(4120);
    expect(parity.maxRelativeError).toBeLessThan(1e-4);
  }, 300_000);
});
