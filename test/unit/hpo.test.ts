import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createHpoActivities } from '../../activities/hpo.js';
import { MlflowFileStore } from '../../adapters/mlflow/file-store.js';
import { projectPipelines } from '../../app/load-pipeline.js';
import { generateTrials, hpoSchema, isBetter, median, medianCurve, validateSpace } from '../../engine/hpo.js';
import { registry } from './fakes.js';

describe('trial generation', () => {
  const space = hpoSchema.parse({
    metric: { step: 'e', key: 'rmse', goal: 'minimize' },
    space: {
      lr: { type: 'double', min: 0.001, max: 0.1, scale: 'log' },
      layers: { type: 'int', min: 1, max: 4 },
      act: { type: 'categorical', values: ['relu', 'tanh'] },
      batch: { type: 'discrete', values: [64, 128] },
    },
  }).space;

  it('random: seeded, reproducible, within bounds, log-uniform for log scales', () => {
    const a = generateTrials(space, 400, 'random', 7);
    expect(generateTrials(space, 400, 'random', 7)).toEqual(a);
    expect(generateTrials(space, 400, 'random', 8)).not.toEqual(a);
    for (const t of a) {
      expect(t.values['lr']).toBeGreaterThanOrEqual(0.001);
      expect(t.values['lr']).toBeLessThanOrEqual(0.1);
      expect([1, 2, 3, 4]).toContain(t.values['layers']);
      expect(['relu', 'tanh']).toContain(t.values['act']);
      expect(t.overrides).toEqual([
        `lr=${t.values['lr']}`,
        `layers=${t.values['layers']}`,
        `act=${t.values['act']}`,
        `batch=${t.values['batch']}`,
      ]);
    }
    // Log-uniform: about half the draws below the geometric middle (0.01), not 9%.
    const below = a.filter((t) => (t.values['lr'] as number) < 0.01).length / a.length;
    expect(below).toBeGreaterThan(0.4);
    expect(below).toBeLessThan(0.6);
    expect(new Set(a.map((t) => t.values['layers'])).size).toBe(4);
  });

  it('grid: the cartesian product in order, capped at the trial count', () => {
    const g = generateTrials(
      { a: { type: 'discrete', values: [1, 2] }, b: { type: 'categorical', values: ['x', 'y', 'z'] } },
      100,
      'grid',
      1,
    );
    expect(g.map((t) => t.overrides.join(' '))).toEqual(['a=1 b=x', 'a=1 b=y', 'a=1 b=z', 'a=2 b=x', 'a=2 b=y', 'a=2 b=z']);
    expect(
      generateTrials({ a: { type: 'double', min: 1, max: 100, scale: 'log', gridPoints: 3 } }, 10, 'grid', 1).map((t) => t.values['a']),
    ).toEqual([1, 10, 100]);
    expect(generateTrials(space, 5, 'grid', 1)).toHaveLength(5);
  });

  it('checks the space, compares results, takes medians', () => {
    expect(
      validateSpace({
        x: { type: 'double', min: 1, max: 1, scale: 'linear', gridPoints: 3 },
        y: { type: 'int', min: 0, max: 5, scale: 'log' },
      }),
    ).toEqual(['x: min must be below max', 'y: a log scale needs min > 0']);
    expect(isBetter(1, 2, 'minimize')).toBe(true);
    expect(isBetter(1, 2, 'maximize')).toBe(false);
    expect(isBetter(NaN, undefined, 'minimize')).toBe(false);
    expect(median([3, 1, 2, NaN])).toBe(2);
    expect(median([])).toBeUndefined();
  });
});

describe('Vertex trials into MLflow', () => {
  it('become nested runs under the search run with their params and metric, once, on retry too', async () => {
    const store = new MlflowFileStore(mkdtempSync(join(tmpdir(), 'mlpipe-mlruns-')));
    const acts = createHpoActivities({ registry, project: projectPipelines(process.cwd(), registry), tracking: () => store });
    const experimentId = await store.getOrCreateExperiment('vertex-search');
    const search = await store.createRun({ experimentId, runName: 'search', startTime: Date.now(), tags: [] });
    const input = {
      mlflowRunId: search.mlflowRunId,
      experimentId,
      job: 'projects/p/locations/l/hyperparameterTuningJobs/9',
      metricKey: 'rmse',
      trials: [
        { id: '1', state: 'SUCCEEDED', overrides: ['training.lr=0.004', 'model=wide'], value: 48000 },
        { id: '2', state: 'INFEASIBLE', overrides: ['training.lr=0.02', 'model=mlp'] },
      ],
    };
    await acts.trackExternalTrials(input);
    await acts.trackExternalTrials(input); // a retried activity
    const t1 = await store.findRunByTag(experimentId, 'mlpipe.run_key', `${input.job}/trial-1`);
    const t2 = await store.findRunByTag(experimentId, 'mlpipe.run_key', `${input.job}/trial-2`);
    expect(t1 && t2).toBeTruthy();
    expect((await store.metricHistory(t1!.mlflowRunId, 'rmse')).map((p) => p.value)).toEqual([48000]);
    expect(await store.metricHistory(t2!.mlflowRunId, 'rmse')).toEqual([]);
  });

  it('median stopping bar: per epoch, over the trials that reached it, once minTrials did', () => {
    expect(
      medianCurve(
        [
          [3, 2, 1],
          [5, 4],
          [1, 1, 1, 1],
        ],
        2,
      ),
    ).toEqual([3, 2, 1, null]);
    expect(
      medianCurve(
        [
          [3, 2, 1],
          [5, 4],
        ],
        3,
      ),
    ).toEqual([null, null, null]);
    expect(medianCurve([], 1)).toEqual([]);
  });
});
