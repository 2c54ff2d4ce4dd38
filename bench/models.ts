/**
 * Model quality side by side (npm run bench:models): on the housing pipeline's own train /
 * validation / test rows (its split and transform steps, compiled from
 * pipelines/california-housing-models.yaml with params.seed set), for seeds 42, 7, 11 and 123:
 *
 * - mlpipe's MLP, XGBoost and LightGBM: the pipeline's train, train_xgboost and train_lightgbm
 *   steps with their params (early stopping on the validation split), scored by evaluate.model,
 *   and the one evaluate.select picks by validation RMSE;
 * - scikit-learn's HistGradientBoosting tuned on the validation split (a grid), and the Python
 *   xgboost and lightgbm packages with the library params mlpipe's steps pass (bench/models.py).
 *
 * Test RMSE of each; the goal is that the selected mlpipe model beats tuned HistGradientBoosting on
 * every seed. Results: bench/results/models-<date>.json.
 *
 *   npm run bench:models                   # provisions the libraries and the Python packages first
 *   BENCH_SEEDS=42 node --import tsx bench/models.ts
 *   BENCH_SEEDS=42 BENCH_OVERRIDES=training.epochs=2,boosting.rounds=20 BENCH_HGB_MAX_ITER=100 node --import tsx bench/models.ts
 */
import { execFile } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { testContext } from '../api/testing.js';
import type { AnyPlugin, StepContext } from '../plugins/sdk.js';
import { boostingCacheDir } from '../adapters/boosting/library.js';
import { loadPipeline } from '../app/load-pipeline.js';
import type { ArtifactRef } from '../engine/types.js';
import { createDefaultRegistry } from '../plugins/index.js';
import { evaluateModel } from '../plugins/evaluate/model.js';
import { evaluateSelect } from '../plugins/evaluate/select.js';
import { ingestFile } from '../plugins/ingest/file.js';
import { split } from '../plugins/process/split.js';
import { transform } from '../plugins/process/transform.js';
import { trainMlp } from '../plugins/train/mlp.js';
import {
  lightgbmParams,
  trainLightgbm,
  trainXgboost,
  xgboostParams,
  type LightgbmParams,
  type XgboostParams,
} from '../plugins/train/boosting.js';
import { mlpipeCacheDir } from '../engine/cache-dir.js';
import { benchDir } from './tmp.js';

const REPO = join(dirname(fileURLToPath(import.meta.url)), '..');
const CACHE = mlpipeCacheDir();
const PYTHON = join(CACHE, 'boosting-bench-venv', 'bin', 'python');
const SEEDS = (process.env['BENCH_SEEDS'] ?? '42,7,11,123').split(',').map(Number);
/** More pipeline overrides (comma-separated), e.g. a quick check: training.epochs=2,boosting.rounds=20 with BENCH_HGB_MAX_ITER=100. */
const OVERRIDES = (process.env['BENCH_OVERRIDES'] ?? '').split(',').filter(Boolean);
const HGB_MAX_ITER = Number(process.env['BENCH_HGB_MAX_ITER'] ?? 1000);

interface Fit {
  validation_rmse: number;
  test_rmse: number;
  rounds?: number;
  seconds: number;
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
  // Each training gets a context of its own (over the same store), as each step of a run does: a
  // checkpoint is the step's own, so one seed's MLP never sees another step's checkpoint.
  const stepContext = (id: string, seed: number) => testContext({ projectDir: REPO, store: ctx.store, stepId: `${id}-${seed}` });
  const loadBefore = loadavg();
  const results: Record<string, unknown>[] = [];
  let ingested: ArtifactRef | undefined;
  const date = new Date().toISOString();
  const file = join(REPO, 'bench', 'results', `models-${date.slice(0, 10)}-seeds-${SEEDS.join('-')}.json`);
  /** The results so far, after every seed (a run stopped part way keeps the seeds it finished). */
  const write = (complete: boolean): void => {
    const out = {
      date,
      complete,
      machine: { cpus: cpus().length, model: cpus()[0]?.model, loadBefore, loadAfter: loadavg() },
      libraries: boostingCacheDir(),
      pipeline: 'pipelines/california-housing-models.yaml',
      results,
    };
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, JSON.stringify(out, null, 2));
    if (complete) console.log(`wrote ${file}`);
  };
  for (const seed of SEEDS) {
    const compiled = loadPipeline(REPO, 'california-housing-models', registry, [`params.seed=${seed}`, ...OVERRIDES]);
    const step = (id: string) => compiled.steps[id]!.with;
    const target = compiled.params['target'] as string;
    ingested ??= (await run(ctx, ingestFile, step('ingest')))['dataset'] as ArtifactRef;
    const parts = (await run(ctx, split, step('split'), { dataset: ingested })) as Record<string, ArtifactRef>;
    const t = await run(ctx, transform, step('transform'), { train: parts['train'], validation: parts['validation'], test: parts['test'] });
    const features = t['features'] as string[];
    const [trainFile, validFile, testFile] = await Promise.all(
      ['train', 'validation', 'test'].map((k) => ctx.store.getFile(t[k] as ArtifactRef)),
    );

    // mlpipe's three candidates: the pipeline's own train steps, scored like its tune and evaluate steps.
    const mine: Record<string, Fit> = {};
    const models: Record<string, unknown> = {};
    for (const [name, plugin, id] of [
      ['mlp', trainMlp, 'train'],
      ['xgboost', trainXgboost, 'train_xgboost'],
      ['lightgbm', trainLightgbm, 'train_lightgbm'],
    ] as const) {
      const start = Date.now();
      const trained = await run(stepContext(id, seed), plugin, step(id), { train: t['train'], validation: t['validation'] });
      const seconds = (Date.now() - start) / 1000;
      const score = async (test: unknown) =>
        ((await run(ctx, evaluateModel, {}, { model: trained['model'], test }))['metrics'] as Record<string, number>)['rmse']!;
      const metrics = trained['metrics'] as Record<string, number>;
      models[name] = trained['model'];
      mine[name] = {
        validation_rmse: await score(t['validation']),
        test_rmse: await score(t['test']),
        ...(metrics['bestIteration'] !== undefined ? { rounds: metrics['bestIteration'] } : {}),
        seconds,
      };
    }

    // The selection the pipeline makes: evaluate.select on validation RMSE.
    const names = Object.keys(mine);
    const selectInputs: Record<string, unknown> = {};
    for (const n of names) {
      selectInputs[`${n}_model`] = models[n];
      selectInputs[`${n}_metrics`] = { rmse: mine[n]!.validation_rmse };
    }
    const selected = (await run(ctx, evaluateSelect, { candidates: names, metric: { key: 'rmse', goal: 'minimize' } }, selectInputs))[
      'winner'
    ] as string;

    // Python on the same rows.
    // The same library params as mlpipe's steps (their own mapping), rounds and early stopping.
    const xp = trainXgboost.params.parse(step('train_xgboost')) as XgboostParams;
    const lp = trainLightgbm.params.parse(step('train_lightgbm')) as LightgbmParams;
    const dir = benchDir('models');
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
        hgb_max_iter: HGB_MAX_ITER,
        xgboost: { params: xgboostParams(xp, 1), rounds: xp.rounds, early_stopping: xp.earlyStoppingRounds },
        lightgbm: { params: lightgbmParams(lp, 1), rounds: lp.rounds, early_stopping: lp.earlyStoppingRounds },
      }),
    );
    const { stdout } = await promisify(execFile)(PYTHON, [join(REPO, 'bench', 'models.py'), cfg], { maxBuffer: 16 * 2 ** 20 });
    const python = JSON.parse(stdout) as Record<string, Fit & { params?: unknown }>;
    const row = {
      seed,
      rows: parts['counts'],
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
    write(false);
  }
  write(true);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
