/**
 * Model quality side by side (npm run bench:models): on the housing pipeline's own train /
 * validation / test rows (its split and transform steps, compiled from
 * pipelines/california-housing.yaml with params.seed set), for seeds 42, 7, 11 and 123:
 *
 * - mlpipe's MLP (the pipeline's train step), XGBoost and LightGBM (libxgboost / lib_lightgbm through
 *   koffi, early stopping on the validation split), and the model evaluate.select picks by
 *   validation RMSE;
 * - scikit-learn's HistGradientBoosting tuned on the validation split, and the Python xgboost and
 *   lightgbm packages with the same params (bench/models.py).
 *
 * Test RMSE of each; the goal is that the selected mlpipe model beats tuned HistGradientBoosting on
 * every seed. Results: bench/results/models-<date>.json.
 *
 *   npm run bench:models                   # provisions the libraries and the Python packages first
 *   BENCH_SEEDS=42 node --import tsx bench/models.ts
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { testContext } from '../api/testing.js';
import type { AnyPlugin, StepContext } from '../plugins/sdk.js';
import { lightgbm } from '../adapters/boosting/lightgbm.js';
import { boostingCacheDir } from '../adapters/boosting/library.js';
import type { BoostingLibrary, LabelledMatrix } from '../adapters/boosting/types.js';
import { xgboost } from '../adapters/boosting/xgboost.js';
import { loadPipeline } from '../app/load-pipeline.js';
import type { ArtifactRef } from '../engine/types.js';
import { loadMatrix } from '../lib/model.js';
import { createDefaultRegistry } from '../plugins/index.js';
import { evaluateModel } from '../plugins/evaluate/model.js';
import { evaluateSelect } from '../plugins/evaluate/select.js';
import { ingestFile } from '../plugins/ingest/file.js';
import { split } from '../plugins/process/split.js';
import { transform } from '../plugins/process/transform.js';
import { trainMlp } from '../plugins/train/mlp.js';

const REPO = join(dirname(fileURLToPath(import.meta.url)), '..');
const CACHE = process.env['MLPIPE_CACHE_DIR'] ?? join(process.env['HOME'] ?? '', '.cache', 'mlpipe');
const PYTHON = join(CACHE, 'boosting-bench-venv', 'bin', 'python');
const SEEDS = (process.env['BENCH_SEEDS'] ?? '42,7,11,123').split(',').map(Number);
const THREADS = 2;

/** The boosting params of both sides (library spellings). */
const XGB = {
  params: {
    objective: 'reg:squarederror',
    eta: '0.03',
    max_depth: '7',
    min_child_weight: '3',
    subsample: '0.8',
    colsample_bytree: '0.7',
    lambda: '1',
    max_bin: '256',
    eval_metric: 'rmse',
    nthread: String(THREADS),
  },
  rounds: 3000,
  earlyStopping: 100,
};
const LGB = {
  params: {
    objective: 'regression',
    learning_rate: '0.03',
    num_leaves: '63',
    min_data_in_leaf: '20',
    feature_fraction: '0.7',
    bagging_fraction: '0.8',
    bagging_freq: '1',
    lambda_l2: '1',
    max_bin: '255',
    metric: 'rmse',
    num_threads: String(THREADS),
    verbose: '-1',
  },
  rounds: 3000,
  earlyStopping: 100,
};

const rmse = (y: ArrayLike<number>, p: ArrayLike<number>): number => {
  let s = 0;
  for (let i = 0; i < y.length; i++) s += (p[i]! - y[i]!) ** 2;
  return Math.sqrt(s / y.length);
};

interface Fit {
  validation_rmse: number;
  test_rmse: number;
  rounds?: number;
  seconds: number;
}

/** Boosts with early stopping on the validation split (patience `earlyStopping`), keeps the best rounds. */
function boost(
  lib: BoostingLibrary,
  cfg: typeof XGB | typeof LGB,
  seed: number,
  train: LabelledMatrix,
  valid: LabelledMatrix,
  test: LabelledMatrix,
  features: string[],
): Fit {
  const start = Date.now();
  const params: Record<string, string> = { ...cfg.params, seed: String(seed) };
  const session = lib.open({ params, train, valid, featureNames: features });
  try {
    let best = Infinity;
    let bestRound = 0;
    for (let r = 1; r <= cfg.rounds; r++) {
      const m = session.boostOneRound();
      const v = m.valid?.['rmse'] ?? m.valid?.['l2'];
      if (v === undefined) throw new Error(`${lib.name}: no validation rmse in ${JSON.stringify(m)}`);
      if (v < best) {
        best = v;
        bestRound = r;
      } else if (r - bestRound >= cfg.earlyStopping) break;
    }
    return {
      validation_rmse: rmse(valid.label, session.predict(valid, bestRound)),
      test_rmse: rmse(test.label, session.predict(test, bestRound)),
      rounds: bestRound,
      seconds: (Date.now() - start) / 1000,
    };
  } finally {
    session.free();
  }
}

async function labelled(file: string, target: string, features: string[]): Promise<LabelledMatrix> {
  const m = await loadMatrix(file, { target, features, label: 'bench' });
  return { x: m.x, rows: m.rows, cols: features.length, label: Float32Array.from(m.y as number[]) };
}

/** Runs a plugin as a step would: params through its schema, then `run`. */
async function run(
  ctx: StepContext,
  plugin: AnyPlugin,
  params: unknown,
  inputs: Record<string, unknown> = {},
): Promise<Record<string, unknown>> {
  return (await plugin.run(ctx, plugin.params.parse(params), inputs)) as Record<string, unknown>;
}

async function main(): Promise<void> {
  const registry = createDefaultRegistry();
  const ctx = testContext({ projectDir: REPO });
  const loadBefore = loadavg();
  const results: Record<string, unknown>[] = [];
  let ingested: ArtifactRef | undefined;
  for (const seed of SEEDS) {
    const compiled = loadPipeline(REPO, 'california-housing', registry, [`params.seed=${seed}`]);
    const step = (id: string) => compiled.steps[id]!.with;
    const target = compiled.params['target'] as string;
    ingested ??= (await run(ctx, ingestFile, step('ingest')))['dataset'] as ArtifactRef;
    const parts = (await run(ctx, split, step('split'), { dataset: ingested })) as Record<string, ArtifactRef>;
    const t = await run(ctx, transform, step('transform'), { train: parts['train'], validation: parts['validation'], test: parts['test'] });
    const features = t['features'] as string[];
    const [trainFile, validFile, testFile] = await Promise.all(
      ['train', 'validation', 'test'].map((k) => ctx.store.getFile(t[k] as ArtifactRef)),
    );

    // mlpipe's MLP: the pipeline's own train step, scored like its tune and evaluate steps.
    let start = Date.now();
    const mlp = await run(ctx, trainMlp, step('train'), { train: t['train'], validation: t['validation'] });
    const mlpValid = await run(ctx, evaluateModel, {}, { model: mlp['model'], test: t['validation'] });
    const mlpTest = await run(ctx, evaluateModel, {}, { model: mlp['model'], test: t['test'] });
    const mine: Record<string, Fit> = {
      mlp: {
        validation_rmse: (mlpValid['metrics'] as Record<string, number>)['rmse']!,
        test_rmse: (mlpTest['metrics'] as Record<string, number>)['rmse']!,
        seconds: (Date.now() - start) / 1000,
      },
    };
    const [train, valid, test] = await Promise.all([trainFile, validFile, testFile].map((f) => labelled(f!, target, features)));
    mine['xgboost'] = boost(xgboost(), XGB, seed, train!, valid!, test!, features);
    mine['lightgbm'] = boost(lightgbm('4.7.0'), LGB, seed, train!, valid!, test!, features);

    // The selection the pipeline makes: evaluate.select on validation RMSE.
    const names = Object.keys(mine);
    const selectInputs: Record<string, unknown> = {};
    for (const n of names) {
      selectInputs[`${n}_model`] = mlp['model'];
      selectInputs[`${n}_metrics`] = { rmse: mine[n]!.validation_rmse };
    }
    const selected = (await run(ctx, evaluateSelect, { candidates: names, metric: { key: 'rmse', goal: 'minimize' } }, selectInputs))[
      'winner'
    ] as string;

    // Python on the same rows.
    const dir = mkdtempSync(join(tmpdir(), 'mlpipe-bench-models-'));
    const cfg = join(dir, 'config.json');
    writeFileSync(
      cfg,
      JSON.stringify({
        train: trainFile,
        validation: validFile,
        test: testFile,
        target,
        features,
        seed,
        xgboost: { params: { ...XGB.params, seed }, rounds: XGB.rounds, early_stopping: XGB.earlyStopping },
        lightgbm: { params: { ...LGB.params, seed }, rounds: LGB.rounds, early_stopping: LGB.earlyStopping },
      }),
    );
    start = Date.now();
    const { stdout } = await promisify(execFile)(PYTHON, [join(REPO, 'bench', 'models.py'), cfg], { maxBuffer: 16 * 2 ** 20 });
    const python = JSON.parse(stdout) as Record<string, Fit & { params?: unknown }>;
    const row = {
      seed,
      rows: { train: train!.rows, validation: valid!.rows, test: test!.rows },
      features: features.length,
      mlpipe: mine,
      selected,
      python,
      selectedBeatsHgb: mine[selected]!.test_rmse < python['hgb']!.test_rmse,
    };
    results.push(row);
    const f = (v: number) => Math.round(v).toLocaleString('en-US');
    console.log(
      `seed ${seed}: mlpipe MLP ${f(mine['mlp']!.test_rmse)}, XGBoost ${f(mine['xgboost']!.test_rmse)} (${mine['xgboost']!.rounds} rounds), LightGBM ${f(mine['lightgbm']!.test_rmse)} (${mine['lightgbm']!.rounds}); selected ${selected} ${f(mine[selected]!.test_rmse)} | Python HGB tuned ${f(python['hgb']!.test_rmse)}, xgboost ${f(python['xgboost']!.test_rmse)}, lightgbm ${f(python['lightgbm']!.test_rmse)}`,
    );
  }
  const out = {
    date: new Date().toISOString(),
    machine: { cpus: cpus().length, model: cpus()[0]?.model, loadBefore, loadAfter: loadavg() },
    libraries: boostingCacheDir(),
    params: { xgboost: XGB, lightgbm: LGB },
    results,
  };
  const dir = join(REPO, 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `models-${out.date.slice(0, 10)}.json`);
  writeFileSync(file, JSON.stringify(out, null, 2));
  console.log(`wrote ${file}`);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
