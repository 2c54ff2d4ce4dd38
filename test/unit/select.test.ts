/** evaluate.select: ranking candidates by a declared metric, the comparison table, refusals. */
import { describe, expect, it } from 'vitest';
import type { ArtifactRef } from '../../engine/types.js';
import { evaluateSelect } from '../../plugins/evaluate/select.js';
import { failure, runPlugin, testContext } from './step-context.js';
import { loadPipeline } from '../../app/load-pipeline.js';
import { generateTrials } from '../../engine/hpo.js';
import { createDefaultRegistry } from '../../plugins/index.js';
import { REPO_ROOT } from './paths.js';

describe('evaluate.select', () => {
  const ctx = testContext();
  const model = (name: string) => ctx.store.put(JSON.stringify({ name }), { name: `${name}.json`, mediaType: 'application/json' });

  async function inputs(scores: Record<string, Record<string, number>>): Promise<Record<string, unknown>> {
    const out: Record<string, unknown> = {};
    for (const [name, metrics] of Object.entries(scores)) {
      out[`${name}_model`] = await model(name);
      out[`${name}_metrics`] = metrics;
    }
    return out;
  }

  it('outputs the best candidate by the metric and goal, with the comparison and a table best first', async () => {
    const given = await inputs({ mlp: { rmse: 45000, r2: 0.84 }, xgboost: { rmse: 43000, r2: 0.86 }, lightgbm: { rmse: 44000, r2: 0.85 } });
    const out = await runPlugin(
      evaluateSelect,
      ctx,
      { candidates: ['mlp', 'xgboost', 'lightgbm'], metric: { key: 'rmse', goal: 'minimize' } },
      given,
    );
    expect(out['winner']).toBe('xgboost');
    expect(out['model']).toEqual(given['xgboost_model']);
    expect(out['metrics']).toEqual({ rmse: 43000, r2: 0.86 });
    expect(out['comparison']).toEqual({
      mlp: { rmse: 45000, r2: 0.84 },
      xgboost: { rmse: 43000, r2: 0.86 },
      lightgbm: { rmse: 44000, r2: 0.85 },
    });
    const table = (await ctx.store.get(out['table'] as ArtifactRef)).toString('utf8');
    const lines = table.trim().split('\n');
    expect(lines[0]).toBe('| rank | candidate | **rmse** (minimize) | r2 |');
    expect(lines.slice(2)).toEqual([
      '| 1 | **xgboost** | 43,000 | 0.86 |',
      '| 2 | lightgbm | 44,000 | 0.85 |',
      '| 3 | mlp | 45,000 | 0.84 |',
    ]);

    const max = await runPlugin(
      evaluateSelect,
      ctx,
      { candidates: ['mlp', 'xgboost', 'lightgbm'], metric: { key: 'r2', goal: 'maximize' } },
      given,
    );
    expect(max['winner']).toBe('xgboost');
    const byMlp = await runPlugin(
      evaluateSelect,
      ctx,
      { candidates: ['xgboost', 'mlp'], metric: { key: 'rmse', goal: 'maximize' } },
      given,
    );
    expect(byMlp['winner']).toBe('mlp');
  });

  it('a tie goes to the candidate listed first', async () => {
    const given = await inputs({ a: { rmse: 1 }, b: { rmse: 1 } });
    expect(
      (await runPlugin(evaluateSelect, ctx, { candidates: ['b', 'a'], metric: { key: 'rmse', goal: 'minimize' } }, given))['winner'],
    ).toBe('b');
    expect(
      (await runPlugin(evaluateSelect, ctx, { candidates: ['a', 'b'], metric: { key: 'rmse', goal: 'minimize' } }, given))['winner'],
    ).toBe('a');
  });

  it('refuses a candidate without the metric, a missing model, and bad names', async () => {
    const given = await inputs({ a: { rmse: 1 }, b: { mae: 1 } });
    const e = await failure(runPlugin(evaluateSelect, ctx, { candidates: ['a', 'b'], metric: { key: 'rmse', goal: 'minimize' } }, given));
    expect(e.code).toBe('PLUGIN_INPUT');
    expect(e.message).toMatch(/candidate 'b' has no finite 'rmse' \(missing\). Its metrics: mae/);
    const nan = await failure(
      runPlugin(
        evaluateSelect,
        ctx,
        { candidates: ['a', 'b'], metric: { key: 'mae', goal: 'minimize' } },
        { ...given, a_metrics: { mae: NaN } },
      ),
    );
    expect(nan.message).toMatch(/candidate 'a' has no finite 'mae' \(NaN\)/);
    const noModel = await failure(
      runPlugin(evaluateSelect, ctx, { candidates: ['a', 'b'], metric: { key: 'rmse', goal: 'minimize' } }, { ...given, b_model: 'x' }),
    );
    expect(noModel.message).toMatch(/input 'b_model' must be a model artifact/);
    expect(() => evaluateSelect.params.parse({ candidates: ['a'], metric: { key: 'rmse', goal: 'minimize' } })).toThrow();
    expect(() => evaluateSelect.params.parse({ candidates: ['a', 'a'], metric: { key: 'rmse', goal: 'minimize' } })).toThrow(/distinct/);
    expect(() => evaluateSelect.params.parse({ candidates: ['a', 'b; rm'], metric: { key: 'rmse', goal: 'minimize' } })).toThrow(
      /letters, digits/,
    );
  });

  it('declares one model and one metrics input per candidate', () => {
    const inputsOf = evaluateSelect.inputs as (p: unknown) => Record<string, string>;
    expect(inputsOf({ candidates: ['mlp', 'xgboost'], metric: { key: 'rmse', goal: 'minimize' } })).toEqual({
      mlp_model: 'model',
      mlp_metrics: 'metrics',
      xgboost_model: 'model',
      xgboost_metrics: 'metrics',
    });
  });
});

describe('the model-selection pipeline', () => {
  it('compiles, and every trial of its HPO space (MLP and boosting params) compiles into the boosting steps', () => {
    const registry = createDefaultRegistry();
    const compiled = loadPipeline(REPO_ROOT, 'california-housing-models', registry);
    expect(compiled.steps['select']!.with).toEqual({
      candidates: ['mlp', 'xgboost', 'lightgbm'],
      metric: { key: 'rmse', goal: 'minimize' },
    });
    expect(compiled.steps['evaluate']!.inputs['model']).toBe('${steps.select.outputs.model}');
    expect(compiled.steps['export']!.inputs['model']).toBe('${steps.select.outputs.model}');
    const hpo = compiled.hpo!;
    expect(hpo.metric.step).toBe('select');
    for (const trial of generateTrials(hpo.space, 4, 'random', 7)) {
      const t = loadPipeline(REPO_ROOT, 'california-housing-models', registry, trial.overrides);
      const lr = Number(trial.overrides.find((o) => o.startsWith('boosting.learning_rate='))!.split('=')[1]);
      expect(t.steps['train_xgboost']!.with['learningRate']).toBe(lr);
      expect(t.steps['train_lightgbm']!.with['learningRate']).toBe(lr);
      expect([31, 63, 127]).toContain(t.steps['train_lightgbm']!.with['numLeaves']);
    }
  });
});
