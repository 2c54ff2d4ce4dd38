/**
 * ONNX export: a real fitted transform and a real tfjs model exported to one file, predicted by
 * onnxruntime-node against tfjs on held-out rows, checked by the official ONNX checker and re-run by
 * onnx's reference evaluator (Python, from the onnx-venv that provision.sh --with-onnx builds).
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { withDuckDB } from '../../adapters/duckdb.js';
import { encodeModel } from '../../adapters/onnx/proto.js';
import { buildOnnxModel } from '../../lib/onnx-graph.js';
import { fixture, fixtureRows, identityTransform } from '../unit/boosting-fixtures.js';
import { lightgbm } from '../../adapters/boosting/lightgbm.js';
import { xgboost } from '../../adapters/boosting/xgboost.js';
import type { BoostingLibrary } from '../../adapters/boosting/types.js';
import { BOOSTED_FORMAT, type BoostedModelDocument } from '../../lib/boosted-model.js';
import { loadMatrix } from '../../lib/model.js';
import { loadOnnxModel } from '../../adapters/onnx/runtime.js';
import { PipelineError } from '../../engine/errors.js';
import type { ArtifactRef } from '../../engine/types.js';
import { exportOnnx } from '../../plugins/export/onnx.js';
import { ingestFile } from '../../plugins/ingest/file.js';
import { split } from '../../plugins/process/split.js';
import { gridCenters } from '../../lib/fitted-transform.js';
import { transform } from '../../plugins/process/transform.js';
import { trainMlp } from '../../plugins/train/mlp.js';
import { runPlugin, testContext } from '../unit/step-context.js';
import { REPO } from './helpers.js';
import { mlpipeCacheDir } from '../../engine/cache-dir.js';

const CACHE = mlpipeCacheDir();
const PYTHON = join(CACHE, 'onnx-venv', 'bin', 'python');
const DATA = join(REPO, 'pipelines', 'data', 'california-housing.csv');

/** Every transform op that exports, on the housing columns (total_bedrooms has nulls). */
const TRANSFORM = {
  exclude: ['median_house_value', 'expensive'],
  steps: [
    { op: 'derive', name: 'rooms_per_household', expr: 'total_rooms / households' },
    { op: 'derive', name: 'bedrooms_per_room', expr: 'total_bedrooms / total_rooms' },
    { op: 'derive', name: 'dist_sf', expr: 'sqrt((latitude - 37.77) ^ 2 + (longitude + 122.42) ^ 2)' },
    { op: 'derive', name: 'odd', expr: '-abs(housing_median_age - 30) * exp(-median_income / 10) + ln(households + 1)' },
    {
      op: 'rbf',
      name: 'geo',
      columns: ['latitude', 'longitude'],
      grid: [
        [33, 40, 3],
        [-123, -116, 3],
      ],
      gamma: 1.5,
    },
    { op: 'impute', columns: ['total_bedrooms', 'bedrooms_per_room'], strategy: 'median' },
    { op: 'log', columns: ['total_rooms', 'total_bedrooms', 'population', 'households'] },
    { op: 'clip', columns: ['rooms_per_household'], quantiles: [0.01, 0.99] },
    { op: 'clip', columns: ['median_income'], min: 0.5, max: 12 },
    { op: 'onehot', columns: ['ocean_proximity'] },
    { op: 'standardize', columns: 'numeric' },
  ],
};

async function python(args: string[]): Promise<Record<string, unknown>> {
  const { stdout } = await promisify(execFile)(PYTHON, [join(REPO, 'test', 'tools', 'onnx_check.py'), ...args], {
    maxBuffer: 64 * 2 ** 20,
  });
  return JSON.parse(stdout) as Record<string, unknown>;
}

/** Raw rows of a dataset artifact as records (what a client would send). */
async function records(file: string, limit: number): Promise<Record<string, unknown>[]> {
  return withDuckDB((db) =>
    db.rows(
      `SELECT * EXCLUDE (median_house_value, expensive) FROM read_parquet('${file}') ORDER BY longitude, latitude, median_income LIMIT ${limit}`,
    ),
  );
}

describe('ONNX export', () => {
  const ctx = testContext(REPO);
  let splits: Record<string, ArtifactRef>;
  let fitted: Record<string, unknown>;

  beforeAll(async () => {
    if (!existsSync(PYTHON)) throw new Error(`The ONNX checker is not installed (${PYTHON}): run 'bash deploy/provision.sh --with-onnx'.`);
    const ingested = (await runPlugin(ingestFile, ctx, { path: DATA }))['dataset'] as ArtifactRef;
    // A binary label for the classification export, made before the split.
    const file = await ctx.store.getFile(ingested);
    const labelled = join(mkdtempSync(join(tmpdir(), 'mlpipe-onnx-')), 'labelled.parquet');
    await withDuckDB((db) =>
      db.run(
        `COPY (SELECT *, CASE WHEN median_house_value > 180000 THEN 'yes' ELSE 'no' END AS expensive FROM read_parquet('${file}')) TO '${labelled}' (FORMAT parquet)`,
      ),
    );
    const dataset = await ctx.store.putFile(labelled, { name: 'labelled.parquet' });
    splits = (await runPlugin(split, ctx, { method: 'random', test: 0.2, seed: 3 }, { dataset })) as Record<string, ArtifactRef>;
    fitted = await runPlugin(transform, ctx, TRANSFORM, { train: splits['train'], test: splits['test'] });
  }, 120_000);

  it('regression: onnxruntime agrees with tfjs within 1e-4 of the target std, the checker passes, the reference evaluator agrees', async () => {
    const trained = await runPlugin(
      trainMlp,
      ctx,
      { target: 'median_house_value', hidden: [32, 16], activation: 'elu', epochs: 3, batchSize: 256, learningRate: 0.01, backend: 'cpu' },
      { train: fitted['train'] },
    );
    const out = await runPlugin(exportOnnx, ctx, {}, { model: trained['model'], state: fitted['state'], test: splits['test'] });
    const parity = out['parity'] as { rows: number; maxAbsError: number; maxRelativeError: number };
    expect(parity.rows).toBeGreaterThan(4000);
    expect(parity.maxRelativeError).toBeLessThan(1e-4);
    expect(parity.maxAbsError).toBeGreaterThanOrEqual(0);

    const onnxRef = out['onnx'] as ArtifactRef;
    const bytes = await ctx.store.get(onnxRef);
    const path = join(mkdtempSync(join(tmpdir(), 'mlpipe-onnx-')), 'model.onnx');
    writeFileSync(path, bytes);
    const rows = await records(await ctx.store.getFile(splits['test']!), 50);
    // A null in an imputed column: imputed inside the graph, as in training.
    rows[0]!['total_bedrooms'] = null;
    writeFileSync(`${path}.json`, JSON.stringify(rows));
    const checked = await python([path, `${path}.json`]);
    expect(checked['ir_version']).toBe(10);
    expect(checked['opsets']).toEqual({ 'ai.onnx': 21, 'ai.onnx.ml': 3 });
    expect(checked['op_types']).toEqual(
      expect.arrayContaining(['OneHotEncoder', 'Where', 'IsNaN', 'Log', 'Sqrt', 'Pow', 'Exp', 'Abs', 'Neg', 'MatMul', 'Elu']),
    );
    expect((checked['metadata'] as Record<string, string>)['mlpipe.contract']).toContain('"nullable":true');

    const predictor = await loadOnnxModel(bytes);
    try {
      expect(predictor.contract.inputs.map((i) => i.name).sort()).toEqual([
        'households',
        'housing_median_age',
        'latitude',
        'longitude',
        'median_income',
        'ocean_proximity',
        'population',
        'total_bedrooms',
        'total_rooms',
      ]);
      const viaOrt = await predictor.predict(rows);
      const viaRef = (checked['predictions'] as number[][]).map((p) => p[0]!);
      expect(viaRef).toHaveLength(50);
      viaRef.forEach((v, i) => expect(Math.abs(v - viaOrt[i]!)).toBeLessThan(1));
      expect(Number.isFinite(viaOrt[0])).toBe(true);
      // The prediction moves with its inputs (not a constant).
      expect(new Set(Array.from(viaOrt, (v) => Math.round(v))).size).toBeGreaterThan(40);
    } finally {
      await predictor.close();
    }
  }, 180_000);

  it('binary classification: probabilities agree within 1e-4', async () => {
    const trained = await runPlugin(
      trainMlp,
      ctx,
      {
        target: 'expensive',
        task: 'classification',
        features: fitted['features'],
        hidden: [16],
        activation: 'tanh',
        epochs: 2,
        batchSize: 256,
        backend: 'cpu',
      },
      { train: fitted['train'] },
    );
    const out = await runPlugin(exportOnnx, ctx, {}, { model: trained['model'], state: fitted['state'], test: splits['test'] });
    const parity = out['parity'] as { maxRelativeError: number };
    expect(parity.maxRelativeError).toBeLessThan(1e-4);
    const predictor = await loadOnnxModel(await ctx.store.get(out['onnx'] as ArtifactRef));
    try {
      expect(predictor.contract).toMatchObject({ task: 'classification', output: 'probabilities', classes: ['no', 'yes'] });
      const p = await predictor.predict(await records(await ctx.store.getFile(splits['test']!), 20));
      for (const v of p) {
        expect(v).toBeGreaterThanOrEqual(0);
        expect(v).toBeLessThanOrEqual(1);
      }
    } finally {
      await predictor.close();
    }
  }, 180_000);

  it('refuses what cannot be exported, saying what to write instead', async () => {
    const sqlDerived = await runPlugin(
      transform,
      ctx,
      {
        exclude: ['median_house_value', 'expensive'],
        steps: [
          { op: 'derive', name: 'r', sql: 'total_rooms / households' },
          { op: 'impute', columns: ['total_bedrooms'], strategy: 'median' },
          { op: 'onehot', columns: ['ocean_proximity'] },
        ],
      },
      { train: splits['train'] },
    );
    const trained = await runPlugin(
      trainMlp,
      ctx,
      { target: 'median_house_value', hidden: [4], epochs: 1, backend: 'cpu' },
      { train: sqlDerived['train'] },
    );
    const error = await runPlugin(exportOnnx, ctx, {}, { model: trained['model'], state: sqlDerived['state'] }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PipelineError);
    expect((error as PipelineError).message).toMatch(/derived column 'r' is written in SQL/);
    expect((error as PipelineError).hint).toMatch(/expr: <formula>/);
    // rbf: a grid per column, or centers with one coordinate per column.
    expect(() =>
      transform.params.parse({ steps: [{ op: 'rbf', name: 'g', columns: ['latitude', 'longitude'], grid: [[33, 40, 8]], gamma: 1 }] }),
    ).toThrow(/one grid entry/);
    expect(() => transform.params.parse({ steps: [{ op: 'rbf', name: 'g', columns: ['latitude'], gamma: 1 }] })).toThrow(
      /exactly one of grid or centers/,
    );
    expect(
      gridCenters([
        [0, 1, 3],
        [10, 20, 2],
      ]),
    ).toEqual([
      [0, 10],
      [0, 20],
      [0.5, 10],
      [0.5, 20],
      [1, 10],
      [1, 20],
    ]);
    // A bad formula is a params error (compile time in a pipeline), with the offending token.
    expect(() => transform.params.parse({ steps: [{ op: 'derive', name: 'x', expr: 'total_rooms // 2' }] })).toThrow(/unexpected '\/'/);
    expect(() => transform.params.parse({ steps: [{ op: 'derive', name: 'x', expr: 'log(total_rooms)' }] })).toThrow(
      /unknown function 'log'/,
    );
  }, 120_000);

  it('boosted trees: the checker passes on every XGBoost and LightGBM export, and the reference evaluator matches the library', async () => {
    const { features, rows } = fixtureRows;
    const tmp = mkdtempSync(join(tmpdir(), 'mlpipe-onnx-trees-'));
    writeFileSync(join(tmp, 'rows.json'), JSON.stringify(rows.map((r) => Object.fromEntries(features.map((f, j) => [f, r[j]])))));
    for (const name of [
      'xgboost-regression',
      'xgboost-binary',
      'xgboost-multiclass',
      'lightgbm-regression',
      'lightgbm-binary',
      'lightgbm-multiclass',
    ]) {
      const doc = fixture(name);
      const path = join(tmp, `${name}.onnx`);
      writeFileSync(path, encodeModel(buildOnnxModel(identityTransform, doc)));
      const checked = await python([path, join(tmp, 'rows.json')]);
      expect(checked['opsets']).toEqual({ 'ai.onnx': 21, 'ai.onnx.ml': 3 });
      expect(checked['op_types']).toContain('TreeEnsembleRegressor');
      const viaRef = checked['predictions'] as number[][];
      let max = 0;
      doc.predictions.forEach((p, i) => p.forEach((v, k) => (max = Math.max(max, Math.abs(v - viaRef[i]![k]!)))));
      expect(max / (doc.task === 'regression' ? doc.targetStd : 1), name).toBeLessThan(1e-4);
    }
  }, 120_000);

  /** A boosted-trees document made with the library itself (as train.xgboost / train.lightgbm make it). */
  async function boosted(
    lib: BoostingLibrary,
    params: Record<string, string>,
    task: BoostedModelDocument['task'],
    target: string,
    label: (y: number | string) => number,
  ): Promise<ArtifactRef> {
    const features = fitted['features'] as string[];
    const m = await loadMatrix(await ctx.store.getFile(fitted['train'] as ArtifactRef), { target, features, label: 'train' });
    const session = lib.open({
      params,
      train: { x: m.x, rows: m.rows, cols: features.length, label: Float32Array.from(m.y!, label) },
      featureNames: features,
    });
    try {
      for (let r = 0; r < 25; r++) session.boostOneRound();
      const doc: BoostedModelDocument = {
        format: BOOSTED_FORMAT,
        library: lib.name,
        libraryVersion: lib.version,
        task,
        numClass: 1,
        objective: params['objective']!,
        features,
        target,
        ...(task === 'binary' ? { classes: ['no', 'yes'] } : {}),
        bestIteration: 25,
        roundsTrained: 25,
        params,
        model: session.dumpJson(),
        native: session.saveNative(),
      };
      return await ctx.store.put(JSON.stringify(doc), { name: 'model.json', mediaType: 'application/json' });
    } finally {
      session.free();
    }
  }

  it('boosted trees from the libraries: export.onnx with the fitted transform agrees with the library on the raw test rows', async () => {
    const cases: [string, BoostingLibrary, Record<string, string>, BoostedModelDocument['task'], string][] = [
      [
        'xgboost regression',
        xgboost(),
        { objective: 'reg:squarederror', max_depth: '6', eta: '0.1', nthread: '1' },
        'regression',
        'median_house_value',
      ],
      [
        'lightgbm regression',
        lightgbm(),
        { objective: 'regression', num_leaves: '31', learning_rate: '0.1', num_threads: '1', verbose: '-1' },
        'regression',
        'median_house_value',
      ],
      ['xgboost binary', xgboost(), { objective: 'binary:logistic', max_depth: '4', nthread: '1' }, 'binary', 'expensive'],
      ['lightgbm binary', lightgbm(), { objective: 'binary', num_leaves: '15', num_threads: '1', verbose: '-1' }, 'binary', 'expensive'],
    ];
    for (const [name, lib, params, task, target] of cases) {
      const model = await boosted(lib, params, task, target, (y) => (task === 'binary' ? (y === 'yes' ? 1 : 0) : Number(y)));
      const out = await runPlugin(exportOnnx, ctx, {}, { model, state: fitted['state'], test: splits['test'] });
      const parity = out['parity'] as { rows: number; maxRelativeError: number; maxAbsError: number };
      expect(parity.rows, name).toBeGreaterThan(4000);
      expect(parity.maxRelativeError, name).toBeLessThan(1e-4);
      const predictor = await loadOnnxModel(await ctx.store.get(out['onnx'] as ArtifactRef));
      try {
        expect(predictor.contract, name).toMatchObject(
          task === 'binary'
            ? { task: 'classification', output: 'probabilities', classes: ['no', 'yes'] }
            : { task: 'regression', output: 'prediction' },
        );
        // The same raw-record contract as the MLP's export: serve and monitoring take it unchanged.
        expect(predictor.contract.inputs.map((i) => i.name)).toContain('ocean_proximity');
        const p = await predictor.predict(await records(await ctx.store.getFile(splits['test']!), 30));
        expect(new Set(Array.from(p, (v) => v.toFixed(4))).size, name).toBeGreaterThan(10);
      } finally {
        await predictor.close();
      }
    }
  }, 180_000);
});
