/**
 * train.xgboost and train.lightgbm called directly, on the real libraries (provision.sh
 * --with-boosting), real DuckDB and a real local store: param mapping, errors, learning,
 * early stopping, and resuming from a checkpoint to the same model as an uninterrupted run.
 */
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { boostingCacheDir, LIGHTGBM_VERSION, libraryPath, XGBOOST_VERSION } from '../../adapters/boosting/library.js';
import { parseEval } from '../../adapters/boosting/xgboost.js';
import { lightgbmVersion, paramString } from '../../adapters/boosting/lightgbm.js';
import { LocalArtifactStore } from '../../adapters/local-store.js';
import { parseBoostedModel, BOOSTED_FORMAT } from '../../lib/boosted-model.js';
import type { ArtifactRef } from '../../engine/types.js';
import { stepProgressOf } from '../../engine/progress.js';
import { ingestFile } from '../../plugins/ingest/file.js';
import { predictBoosted } from '../../lib/boosted-predict.js';
import { datasetFile } from '../../lib/dataset.js';
import { loadMatrix } from '../../lib/model.js';
import {
  labels,
  libraryFeatureNames,
  lightgbmParams,
  trainLightgbm,
  trainXgboost,
  xgboostParams,
  type LightgbmParams,
  type XgboostParams,
} from '../../plugins/train/boosting.js';
import { failure, runPlugin, testContext } from './step-context.js';

const xgbDefaults = (over: Partial<XgboostParams> = {}): XgboostParams =>
  trainXgboost.params.parse({ target: 'y', ...over }) as XgboostParams;
const lgbDefaults = (over: Partial<LightgbmParams> = {}): LightgbmParams =>
  trainLightgbm.params.parse({ target: 'y', ...over }) as LightgbmParams;

describe('param mapping', () => {
  it('maps the common params onto XGBoost names, per task', () => {
    const p = xgbDefaults({
      rounds: 50,
      learningRate: 0.05,
      maxDepth: 4,
      numLeaves: 15,
      minChildWeight: 2,
      subsample: 0.8,
      colsample: 0.7,
      lambda: 3,
      alpha: 0.5,
      maxBins: 64,
      seed: 9,
      threads: 1,
    });
    expect(xgboostParams(p, 1)).toEqual({
      objective: 'reg:squarederror',
      eval_metric: 'rmse',
      tree_method: 'hist',
      device: 'cpu',
      eta: '0.05',
      max_depth: '4',
      max_leaves: '15',
      min_child_weight: '2',
      subsample: '0.8',
      colsample_bytree: '0.7',
      lambda: '3',
      alpha: '0.5',
      max_bin: '64',
      seed: '9',
      nthread: '1',
      verbosity: '0',
    });
    const binary = xgboostParams(xgbDefaults({ task: 'classification' }), 2);
    expect(binary).toMatchObject({ objective: 'binary:logistic', eval_metric: 'logloss,error' });
    expect(binary['num_class']).toBeUndefined();
    expect(xgboostParams(xgbDefaults({ task: 'classification' }), 4)).toMatchObject({ objective: 'multi:softprob', num_class: '4' });
  });

  it('maps the common params onto LightGBM names; bagging only when subsample < 1', () => {
    const p = lgbDefaults({
      maxDepth: 0,
      numLeaves: 63,
      minChildWeight: 1e-3,
      minDataInLeaf: 5,
      lambda: 1,
      alpha: 2,
      maxBins: 127,
      threads: 2,
    });
    const m = lightgbmParams(p, 1);
    expect(m).toMatchObject({
      objective: 'regression',
      metric: 'rmse',
      learning_rate: '0.1',
      max_depth: '-1',
      num_leaves: '63',
      min_sum_hessian_in_leaf: '0.001',
      min_data_in_leaf: '5',
      lambda_l2: '1',
      lambda_l1: '2',
      max_bin: '127',
      num_threads: '2',
      feature_fraction: '1',
      seed: '42',
    });
    expect(m['bagging_fraction']).toBeUndefined();
    expect(lightgbmParams(lgbDefaults({ subsample: 0.5 }), 1)).toMatchObject({ bagging_fraction: '0.5', bagging_freq: '1' });
    expect(lightgbmParams(lgbDefaults({ task: 'classification' }), 3)).toMatchObject({ objective: 'multiclass', num_class: '3' });
    expect(lightgbmParams(lgbDefaults({ task: 'classification' }), 2)).toMatchObject({
      objective: 'binary',
      metric: 'binary_logloss,binary_error',
    });
    // Every value is a number or a fixed word: nothing can add another parameter to LightGBM's string.
    expect(paramString(m).split(' ')).toHaveLength(Object.keys(m).length);
    for (const v of Object.values(m)) expect(v).toMatch(/^[\w.,:-]+$/);
  });

  it('rejects bad params before anything runs', () => {
    expect(() => trainXgboost.params.parse({ target: 'y', subsample: 0 })).toThrow();
    expect(() => trainXgboost.params.parse({ target: 'y', device: 'tpu' })).toThrow();
    expect(() => trainXgboost.params.parse({ target: 'y', minDataInLeaf: 3 })).toThrow(); // LightGBM's, not XGBoost's
    expect(() => trainLightgbm.params.parse({ target: 'y', device: 'cuda' })).toThrow();
    expect(() => trainLightgbm.params.parse({ target: 'y', rounds: 0 })).toThrow();
    expect(() => trainLightgbm.params.parse({ target: 'y', extra: 'objective=x' })).toThrow();
  });

  it('labels: class indices in sorted order; an unknown validation class is a clear error', () => {
    const t = labels('classification', ['b', 'a', 'c', 'a'], 'train', 'y');
    expect(t.classes).toEqual(['a', 'b', 'c']);
    expect([...t.label]).toEqual([1, 0, 2, 0]);
    expect(() => labels('classification', ['a', 'z'], 'validation', 'y', t.classes)).toThrow(
      /class "z", which the train data does not have/,
    );
    expect(() => labels('classification', ['a', 'a'], 'train', 'y')).toThrow(/single class/);
    expect(() => labels('regression', [1, 'x'], 'train', 'y')).toThrow(/not a finite number/);
  });

  it('feature names the libraries accept', () => {
    expect(libraryFeatureNames(['a', 'ocean_proximity=NEAR BAY', 'x[1]'])).toEqual(['a', 'ocean_proximity=NEAR_BAY', 'x_1_']);
    expect(libraryFeatureNames(['a b', 'a_b'])).toEqual(['f0', 'f1']);
  });

  it('parses XGBoost evaluation lines', () => {
    expect(parseEval('[3]\ttrain-rmse:0.51\tvalid-rmse:0.62')).toEqual({ train: { rmse: 0.51 }, valid: { rmse: 0.62 } });
    expect(parseEval('[0]\ttrain-mlogloss:1.0\ttrain-merror:0.25')).toEqual({ train: { mlogloss: 1, merror: 0.25 } });
  });
});

describe('missing library', () => {
  it('is TOOL_MISSING with the install line', async () => {
    expect(() => libraryPath('xgboost', { ...process.env, MLPIPE_XGBOOST_LIB: '/nonexistent/libxgboost.so' })).toThrow(/no such file/);
    expect(() => libraryPath('lightgbm', { HOME: '/nonexistent', MLPIPE_CACHE_DIR: '/nonexistent/cache' })).toThrow(
      /lightgbm shared library is not installed/,
    );
    try {
      libraryPath('lightgbm', { MLPIPE_CACHE_DIR: '/nonexistent/cache' });
    } catch (e) {
      expect((e as { code: string }).code).toBe('TOOL_MISSING');
      expect((e as { hint: string }).hint).toMatch(/provision\.sh --with-boosting/);
    }
  });
});

/** y = 3 a - 2 b + sin(3 c) + noise; label = y > 1 ('high'/'low'); k = one of three bands of y. */
function synthetic(rows: number, seed: number): string {
  let s = seed;
  const r = (): number => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * 2 - 1;
  const lines = ['a,b,c,y,label,k'];
  for (let i = 0; i < rows; i++) {
    const [a, b, c] = [r(), r(), r()];
    const y = 3 * a - 2 * b + Math.sin(3 * c) + 0.05 * r();
    lines.push(`${a},${b},${c},${y},${y > 1 ? 'high' : 'low'},${y < -1 ? 0 : y < 1 ? 1 : 2}`);
  }
  const dir = mkdtempSync(join(tmpdir(), 'mlpipe-boost-'));
  writeFileSync(join(dir, 'd.csv'), `${lines.join('\n')}\n`);
  return join(dir, 'd.csv');
}

async function datasets(ctx: ReturnType<typeof testContext>) {
  const train = (await runPlugin(ingestFile, ctx, { path: synthetic(800, 1) }))['dataset'] as ArtifactRef;
  const validation = (await runPlugin(ingestFile, ctx, { path: synthetic(300, 2) }))['dataset'] as ArtifactRef;
  return { train, validation };
}

const BASE = {
  target: 'y',
  features: ['a', 'b', 'c'],
  rounds: 60,
  learningRate: 0.2,
  seed: 3,
  threads: 1,
  checkpoint: { everyRounds: 10, keep: 2 },
};

for (const plugin of [trainXgboost, trainLightgbm]) {
  describe(plugin.name, () => {
    it('learns a regression, tracks per-round metrics, and writes the boosted-trees document', async () => {
      const ctx = testContext();
      const { train, validation } = await datasets(ctx);
      const out = await runPlugin(plugin, ctx, BASE, { train, validation });
      const m = out['metrics'] as Record<string, number>;
      expect(m).toMatchObject({ rounds: 60, roundsThisAttempt: 60, resumedFromRound: 0, bestIteration: 60, features: 3, rows: 800 });
      // The target's standard deviation is about 2.2: the trees get well under a tenth of it.
      expect(m['valRmse']!).toBeLessThan(0.25);
      expect(m['trainRmse']!).toBeLessThan(m['valRmse']! + 0.05);
      const doc = parseBoostedModel(JSON.parse((await ctx.store.get(out['model'] as ArtifactRef)).toString('utf8')), 'test');
      expect(doc).toMatchObject({
        format: BOOSTED_FORMAT,
        library: plugin.name === 'train.xgboost' ? 'xgboost' : 'lightgbm',
        task: 'regression',
        numClass: 1,
        features: ['a', 'b', 'c'],
        target: 'y',
        bestIteration: 60,
      });
      const trees =
        doc.library === 'xgboost'
          ? (doc.model as { learner: { gradient_booster: { model: { trees: unknown[] } } } }).learner.gradient_booster.model.trees
          : (doc.model as { tree_info: unknown[] }).tree_info;
      expect(trees).toHaveLength(60);
      const valSeries = ctx.series.filter((s) => s.key === 'val_rmse');
      expect(valSeries.map((s) => s.step)).toEqual(Array.from({ length: 60 }, (_, i) => i + 1));
      expect(valSeries[59]!.value).toBeLessThan(valSeries[0]!.value);
    });

    it('classifies (binary and multiclass) and stops early, keeping the best rounds', async () => {
      const ctx = testContext();
      const { train, validation } = await datasets(ctx);
      const bin = await runPlugin(plugin, ctx, { ...BASE, target: 'label', task: 'classification' }, { train, validation });
      const bm = bin['metrics'] as Record<string, number>;
      expect(bm['valAccuracy']!).toBeGreaterThan(0.9);
      const bdoc = parseBoostedModel(JSON.parse((await ctx.store.get(bin['model'] as ArtifactRef)).toString('utf8')), 'test');
      expect(bdoc).toMatchObject({ task: 'binary', numClass: 1, classes: ['high', 'low'] });
      const multi = await runPlugin(
        plugin,
        testContext(process.cwd(), ctx.store),
        { ...BASE, target: 'k', task: 'classification', rounds: 400, learningRate: 0.5, earlyStoppingRounds: 5 },
        { train, validation },
      );
      const mm = multi['metrics'] as Record<string, number>;
      expect(mm['valAccuracy']!).toBeGreaterThan(0.85);
      expect(mm['rounds']!).toBeLessThan(400);
      expect(mm['bestIteration']).toBe(mm['rounds']! - 5);
      const mdoc = parseBoostedModel(JSON.parse((await ctx.store.get(multi['model'] as ArtifactRef)).toString('utf8')), 'test');
      expect(mdoc).toMatchObject({ task: 'multiclass', numClass: 3, classes: [0, 1, 2], bestIteration: mm['bestIteration'] });
      expect(mdoc.roundsTrained).toBe(mm['rounds']);
      const trees =
        mdoc.library === 'xgboost'
          ? (mdoc.model as { learner: { gradient_booster: { model: { trees: unknown[] } } } }).learner.gradient_booster.model.trees
          : (mdoc.model as { tree_info: unknown[] }).tree_info;
      expect(trees).toHaveLength(3 * mm['bestIteration']!);
    });

    it('resumes from the newest checkpoint after an interruption and ends with the uninterrupted model', async () => {
      const store = new LocalArtifactStore(mkdtempSync(join(tmpdir(), 'mlpipe-boost-resume-')));
      const { train, validation } = await datasets(testContext(process.cwd(), store));
      const whole = await runPlugin(plugin, testContext(process.cwd(), store), BASE, { train, validation });
      const abort = new AbortController();
      const first = testContext(process.cwd(), store, {
        signal: abort.signal,
        onHeartbeat: (d) => stepProgressOf(d)?.done === 25 && abort.abort(new Error('worker lost')),
      });
      await expect(runPlugin(plugin, first, BASE, { train, validation })).rejects.toThrow('worker lost');
      const second = { ...first, attempt: 2, signal: new AbortController().signal, heartbeat: () => undefined };
      const resumed = await runPlugin(plugin, second, BASE, { train, validation });
      expect(resumed['metrics']).toMatchObject({ rounds: 60, resumedFromRound: 20, roundsThisAttempt: 40 });
      const a = parseBoostedModel(JSON.parse((await store.get(whole['model'] as ArtifactRef)).toString('utf8')), 'whole');
      const b = parseBoostedModel(JSON.parse((await store.get(resumed['model'] as ArtifactRef)).toString('utf8')), 'resumed');
      // The same trees: the same predictions, to the bit (LightGBM's text format rounds split gains, not thresholds or leaves).
      const rows = await loadMatrix(await datasetFile(second, { validation }, 'validation'), { features: a.features, label: 'validation' });
      const m = { x: rows.x, rows: rows.rows, cols: a.features.length };
      const pa = predictBoosted(a, m, 1);
      expect(pa).toHaveLength(300);
      expect(predictBoosted(b, m, 1)).toEqual(pa);
      expect(b).toMatchObject({ bestIteration: 60, roundsTrained: 60 });
      expect((resumed['metrics'] as Record<string, number>)['valRmse']).toBe((whole['metrics'] as Record<string, number>)['valRmse']);
    });

    it('does not resume a checkpoint written for other params', async () => {
      const ctx = testContext();
      const { train, validation } = await datasets(ctx);
      const abort = new AbortController();
      const first = testContext(process.cwd(), ctx.store, {
        signal: abort.signal,
        onHeartbeat: (d) => stepProgressOf(d)?.done === 25 && abort.abort(new Error('worker lost')),
      });
      await expect(runPlugin(plugin, first, BASE, { train, validation })).rejects.toThrow('worker lost');
      const second = { ...first, attempt: 2, signal: new AbortController().signal, heartbeat: () => undefined };
      const other = await runPlugin(plugin, second, { ...BASE, learningRate: 0.1 }, { train, validation });
      expect(other['metrics']).toMatchObject({ rounds: 60, resumedFromRound: 0, roundsThisAttempt: 60 });
      expect(first.logs.some((l) => l.level === 'warn' && /written for other params/.test(l.message))).toBe(true);
    });

    it('explains bad input: early stopping without validation, a non-numeric target, an unknown column', async () => {
      const ctx = testContext();
      const { train } = await datasets(ctx);
      const e1 = await failure(runPlugin(plugin, ctx, { ...BASE, earlyStoppingRounds: 3 }, { train }));
      expect(e1.code).toBe('PLUGIN_PARAMS');
      expect(e1.message).toMatch(/earlyStoppingRounds needs a `validation` input/);
      const e2 = await failure(runPlugin(plugin, ctx, { ...BASE, target: 'label' }, { train }));
      expect(e2.code).toBe('DATA_INVALID');
      const e3 = await failure(runPlugin(plugin, ctx, { ...BASE, features: ['a', 'nope'] }, { train }));
      expect(e3.message).toMatch(/missing feature column\(s\) nope/);
    });
  });
}

describe('train.xgboost device', () => {
  it('refuses device: cuda when the loaded library has no CUDA', async () => {
    const ctx = testContext();
    const { train } = await datasets(ctx);
    const e = await failure(runPlugin(trainXgboost, ctx, { ...BASE, device: 'cuda' }, { train }));
    expect(e.code).toBe('PLUGIN_PARAMS');
    expect(e.message).toMatch(/built without CUDA/);
    expect(e.hint).toMatch(/xgboost-cu12/);
  });
});

describe('LightGBM version', () => {
  it("is the wheel's VERSION.txt beside lib/, the pinned one for the provisioned file, else unknown", () => {
    const dir = mkdtempSync(join(tmpdir(), 'mlpipe-lgbm-version-'));
    const lib = join(dir, 'lightgbm', 'lib', 'lib_lightgbm.so');
    mkdirSync(join(dir, 'lightgbm', 'lib'), { recursive: true });
    writeFileSync(lib, '');
    const override = { MLPIPE_LIGHTGBM_LIB: lib };
    // An overriding library without a version file: not claimed to be the pinned version.
    expect(lightgbmVersion(lib, override)).toBe('unknown');
    // The provisioned library of an older cache (no VERSION.txt kept): the pinned version.
    expect(lightgbmVersion(lib, {})).toBe(LIGHTGBM_VERSION);
    writeFileSync(join(dir, 'lightgbm', 'VERSION.txt'), '4.6.0\n');
    expect(lightgbmVersion(lib, override)).toBe('4.6.0');
    // Anything that is not a version string is not taken as one.
    writeFileSync(join(dir, 'lightgbm', 'VERSION.txt'), '<script>\n');
    expect(lightgbmVersion(lib, override)).toBe('unknown');
  });
});

describe('provisioning', () => {
  it('deploy/provision.sh unpacks the library versions the adapters look for', () => {
    const sh = readFileSync(join(import.meta.dirname, '../../deploy/provision.sh'), 'utf8');
    expect(sh).toContain(`xgboost_version="${XGBOOST_VERSION}"`);
    expect(sh).toContain(`lightgbm_version="${LIGHTGBM_VERSION}"`);
    expect(boostingCacheDir({ MLPIPE_CACHE_DIR: '/c' })).toBe(`/c/boosting-xgboost-${XGBOOST_VERSION}-lightgbm-${LIGHTGBM_VERSION}`);
    // LightGBM's version file is kept beside its library (its C API does not report a version).
    expect(sh).toContain('n == "lightgbm/VERSION.txt"');
  });

  it('the worker images carry the same library versions and point the adapters at them', () => {
    for (const [file, xgboost] of [
      ['Dockerfile', 'xgboost-cpu'],
      ['Dockerfile.gpu', 'xgboost'],
    ] as const) {
      const text = readFileSync(join(import.meta.dirname, '../../deploy', file), 'utf8');
      expect(text, file).toContain(`"${xgboost}==${XGBOOST_VERSION}"`);
      expect(text, file).toContain(`"lightgbm==${LIGHTGBM_VERSION}"`);
      expect(text, file).toContain('COPY --from=boosting /boosting /opt/mlpipe/boosting');
      expect(text, file).toContain('n == "lightgbm/VERSION.txt"');
      expect(text, file).toContain('MLPIPE_XGBOOST_LIB=/opt/mlpipe/boosting/xgboost/lib/libxgboost.so');
      expect(text, file).toContain('MLPIPE_LIGHTGBM_LIB=/opt/mlpipe/boosting/lightgbm/lib/lib_lightgbm.so');
      // koffi's native module is an optional dependency of koffi: an install that omits optional ones cannot load it.
      expect(text, file).not.toContain('--omit=optional');
    }
  });
});
