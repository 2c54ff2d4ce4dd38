/** Every example pipeline in pipelines/ compiles against the built-in plugins and its conf/ (app/load-pipeline.ts). */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadPipeline } from '../../app/load-pipeline.js';
import { DEFAULT_TASK_QUEUE } from '../../engine/contracts.js';
import { createDefaultRegistry } from '../../plugins/index.js';

const REPO = join(import.meta.dirname, '..', '..');
const registry = createDefaultRegistry();
const examples = readdirSync(join(REPO, 'pipelines')).filter((f) => f.endsWith('.yaml'));

describe('example pipelines', () => {
  it.each(examples)('%s compiles', (file) => {
    const compiled = loadPipeline(REPO, file.replace(/\.yaml$/, ''), registry);
    expect(Object.keys(compiled.steps).length).toBeGreaterThan(0);
  });

  it('housing-gpu sends train, and only train, to the gpu task queue; overrides still apply', () => {
    const compiled = loadPipeline(REPO, 'housing-gpu', registry, ['training.epochs=3']);
    const queues = Object.fromEntries(Object.entries(compiled.steps).map(([id, s]) => [id, s.taskQueue ?? DEFAULT_TASK_QUEUE]));
    expect(queues).toEqual({
      ingest: DEFAULT_TASK_QUEUE,
      split: DEFAULT_TASK_QUEUE,
      transform: DEFAULT_TASK_QUEUE,
      train: 'gpu',
      evaluate: DEFAULT_TASK_QUEUE,
    });
    expect(compiled.steps['train']!.with).toMatchObject({ epochs: 3, backend: 'auto' });
  });

  it('forecast-unemployment windows the BLS series with the window group and trains the gbdt model by default', () => {
    const compiled = loadPipeline(REPO, 'forecast-unemployment', registry);
    expect(compiled.steps['window']!.with).toMatchObject({
      lookback: 24,
      horizon: 6,
      testSteps: 12,
      folds: 3,
      fill: 'median',
      calendar: ['month'],
    });
    expect(compiled.steps['train']!.uses).toBe('train.gbdt-forecast');
    expect(compiled.steps['train']!.with).toMatchObject({ library: 'lightgbm', numLeaves: 7, relativeTo: 'last' });
    expect(compiled.steps['evaluate']!.with).toMatchObject({ gate: { maxRatioToBaseline: { mase: 0.9 } } });
    const longer = loadPipeline(REPO, 'forecast-unemployment', registry, ['window.lookback=36', 'model.num_leaves=15']);
    expect(longer.steps['window']!.with).toMatchObject({ lookback: 36 });
    expect(longer.steps['train']!.with).toMatchObject({ numLeaves: 15 });
  });

  it('forecast-unemployment trains a sequence model instead with model=lstm|gru|tcn', () => {
    for (const cell of ['lstm', 'gru', 'tcn']) {
      const compiled = loadPipeline(REPO, 'forecast-unemployment', registry, [`model=${cell}`]);
      expect(compiled.steps['train_sequence']!.uses).toBe('train.tfjs-sequence');
      expect(compiled.steps['train_sequence']!.when).toBe(true);
      expect(compiled.steps['train']!.when).toBe(false);
      expect(compiled.steps['train_sequence']!.with).toMatchObject({ model: cell, units: 32, epochs: 60, earlyStopping: { patience: 10 } });
    }
    expect(loadPipeline(REPO, 'forecast-unemployment', registry, ['model=tcn']).steps['train_sequence']!.with).toMatchObject({
      ensemble: 1,
    });
    expect(
      loadPipeline(REPO, 'forecast-unemployment', registry, ['model=tcn', 'model.ensemble=5']).steps['train_sequence']!.with,
    ).toMatchObject({ model: 'tcn', ensemble: 5 });
    expect(loadPipeline(REPO, 'forecast-unemployment', registry).steps['train_sequence']!.when).toBe(false);
  });
});
