/** The boosted-tree fixtures (test/tools/boosting_fixtures.py): models made by the Python packages, held-out rows, their predictions. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BOOSTED_FORMAT, type BoostedModelDocument } from '../../lib/boosted-model.js';
import type { FittedTransform } from '../../lib/fitted-transform.js';
import { REPO_ROOT } from './paths.js';

const DIR = join(REPO_ROOT, 'test', 'fixtures', 'boosting');

export const BOOSTING_FIXTURES = [
  'xgboost-regression',
  'xgboost-binary',
  'xgboost-multiclass',
  'lightgbm-regression',
  'lightgbm-binary',
  'lightgbm-multiclass',
  'lightgbm-regression-no-missing',
];

/** The held-out rows (null: missing) and the feature names. */
export const fixtureRows = JSON.parse(readFileSync(join(DIR, 'rows.json'), 'utf8')) as { features: string[]; rows: (number | null)[][] };

export interface Fixture extends BoostedModelDocument {
  targetStd: number;
  /** The library's predictions of the rows: one list per row (probabilities for classification). */
  predictions: number[][];
}

export function fixture(name: string): Fixture {
  const f = JSON.parse(readFileSync(join(DIR, `${name}.json`), 'utf8')) as Omit<Fixture, 'format'>;
  return {
    ...f,
    format: BOOSTED_FORMAT,
    bestIteration: 1,
    roundsTrained: 1,
    params: {},
    native: { encoding: 'utf8', data: '' },
  } as Fixture;
}

/** No preprocessing: the raw columns are the model's features. */
export const identityTransform: FittedTransform = {
  kind: 'mlpipe.transform',
  version: 1,
  exclude: [],
  inputs: fixtureRows.features.map((name) => ({ name, type: 'number' })),
  ops: [],
};
