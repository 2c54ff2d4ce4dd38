/**
 * Model selection end to end on a real Temporal dev server: pipelines/california-housing-models.yaml
 * trains the MLP, XGBoost and LightGBM (the real libraries), scores each on the validation split,
 * evaluate.select picks the lowest validation RMSE, and the winner is evaluated on test and exported
 * to ONNX with parity against its own runtime. Its hpo: space searches the boosting params too: trials
 * run as child workflows up to the select step, each with its own learning rate, leaves and depth.
 */
import { describe, expect, it } from 'vitest';
import { HPO_WORKFLOW, PIPELINE_WORKFLOW, type HpoResult, type PipelineResult } from '../../engine/contracts.js';
import type { ArtifactRef } from '../../engine/types.js';
import { LocalArtifactStore } from '../../adapters/local-store.js';
import { parseBoostedModel } from '../../lib/boosted-model.js';
import { createTestProject, uniqueId, useWorkerAndClient } from './helpers.js';

const project = createTestProject('selection');
const env = useWorkerAndClient(project);
const store = new LocalArtifactStore(project.settings.artifactsDir);

/** The library params a boosted model was trained with, from its artifact. */
async function libraryParams(model: unknown): Promise<Record<string, string>> {
  return parseBoostedModel(JSON.parse((await store.get(model as ArtifactRef)).toString('utf8')), 'model').params;
}

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
    const table = (await store.get(select['table'] as ArtifactRef)).toString('utf8');
    expect(table.split('\n')[2]).toContain(`**${best}**`);
    expect(table).toContain('lightgbm');
    // The winner goes on: test evaluation (gate passed) and an ONNX file matching its runtime.
    const test = r.outputs['evaluate']!['metrics'] as Record<string, number>;
    expect(test['rmse']).toBeLessThan(0.6 * (r.outputs['evaluate']!['baseline'] as Record<string, number>)['rmse']!);
    const parity = r.outputs['export']!['parity'] as { rows: number; maxRelativeError: number };
    expect(parity.rows).toBe(4120);
    expect(parity.maxRelativeError).toBeLessThan(1e-4);
  }, 300_000);

  it('searches boosting params with hpoWorkflow: each trial trains XGBoost and LightGBM with its own values, the best runs in full', async () => {
    const r = (await env.client.workflow.execute(HPO_WORKFLOW, {
      taskQueue: project.taskQueue,
      workflowId: uniqueId('selection-hpo'),
      args: [
        {
          pipeline: 'california-housing-models',
          overrides: ['params.seed=3', 'training.epochs=2', 'boosting.rounds=150'],
          trials: 2,
          parallel: 2,
        },
      ],
      workflowRunTimeout: '8 minutes',
    })) as HpoResult;
    expect(r).toMatchObject({ trials: 2, failed: 0 });
    for (const t of r.results) {
      expect(t.status).toBe('succeeded');
      const value = (key: string) => Number(t.overrides.find((o) => o.startsWith(`${key}=`))!.split('=')[1]);
      const trial = (await env.client.workflow.getHandle(t.workflowId).result()) as PipelineResult;
      // The trial stops at the metric step: the candidates and the selection, no test evaluation.
      expect(Object.keys(trial.steps)).toContain('select');
      expect(Object.keys(trial.steps)).not.toContain('evaluate');
      expect(t.value).toBe((trial.outputs['select']!['metrics'] as Record<string, number>)['rmse']);
      // The trial's values reached the libraries, as their own params.
      const xgb = await libraryParams(trial.outputs['train_xgboost']!['model']);
      const lgbm = await libraryParams(trial.outputs['train_lightgbm']!['model']);
      expect(Number(xgb['eta'])).toBeCloseTo(value('boosting.learning_rate'), 12);
      expect(Number(xgb['max_depth'])).toBe(value('boosting.max_depth'));
      expect(Number(lgbm['learning_rate'])).toBeCloseTo(value('boosting.learning_rate'), 12);
      expect(Number(lgbm['num_leaves'])).toBe(value('boosting.num_leaves'));
    }
    expect(r.best.value).toBe(Math.min(...r.results.map((t) => t.value!)));
    // The best config runs in full: the same selection, then test evaluation and export.
    const best = (await env.client.workflow.getHandle(r.best.workflowId).result()) as PipelineResult;
    const final = (await env.client.workflow.getHandle(r.final!.workflowId).result()) as PipelineResult;
    expect(final.outputs['select']!['metrics']).toEqual(best.outputs['select']!['metrics']);
    expect(final.outputs['evaluate']!['passed']).toBe(true);
    expect(final.outputs['export']!['parity']).toMatchObject({ rows: 4120 });
  }, 480_000);
});
