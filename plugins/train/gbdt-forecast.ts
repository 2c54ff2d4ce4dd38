/**
 * train.gbdt-forecast — gradient-boosted trees on lag features, a forecasting model over window
 * sets (lib/windows.ts). Each window gives one row per horizon step: the last `lags` values of the
 * scaled target, the last `covariateLags` values of the other lookback inputs (calendar features
 * left out: the step's own are there), the known-future features of that step, the step number,
 * the value one season before the step, and the lookback's mean. One model forecasts every step
 * (the step is a feature). The label is the target relative to a base of the window's lookback
 * (lib/forecast-base.ts): the last value (`relativeTo: last`, the default), the value a season
 * before (`season`), the seasonal random walk's forecast (`seasonalLast`), or the target itself
 * (`none`). With `refit`, the model that forecasts `predict` is trained again on train + validation
 * for the round count early stopping chose.
 *
 * Trained with the boosting loop of train.xgboost / train.lightgbm (plugins/train/boosting.ts:
 * per-round metrics, early stopping on `validation`, checkpoints). Forecasts the `predict` set
 * (scaled units, `mlpipe.forecasts/1`), and with `folds` (process.window's walk-forward folds)
 * trains one model per fold on its train windows, with the main model's number of rounds, and
 * forecasts its test windows: `foldForecasts`, for evaluate.forecast's backtest.
 */
import { z } from 'zod';
import { lightgbm } from '../../adapters/boosting/lightgbm.js';
import type { BoostingLibrary, DenseMatrix, LabelledMatrix } from '../../adapters/boosting/types.js';
import { xgboost } from '../../adapters/boosting/xgboost.js';
import { PipelineError } from '../../engine/errors.js';
import { isArtifactRef, type ArtifactRef } from '../../engine/types.js';
import { BOOSTED_FORMAT, GBDT_FORECAST_FORMAT, type BoostedModelDocument } from '../../lib/boosted-model.js';
import { RELATIVE_TO, windowBase, type RelativeTo } from '../../lib/forecast-base.js';
import { watchSystem } from '../../lib/system-metrics.js';
import { decodeWindows, encodeForecasts, FORECASTS_MEDIA_TYPE, type WindowSet } from '../../lib/windows.js';
import { definePlugin, type StepContext } from '../sdk.js';
import { resumeFolds, type FoldsCheckpoint } from './fold-checkpoints.js';
import {
  boost,
  boostingCheckpoint,
  libraryFeatureNames,
  lightgbmParams,
  xgboostParams,
  type LightgbmParams,
  type XgboostParams,
} from './boosting.js';

export { GBDT_FORECAST_FORMAT };

const params = z
  .object({
    library: z.enum(['lightgbm', 'xgboost']).default('lightgbm'),
    /** Lookback values of the target used as features (default: the whole lookback). */
    lags: z.number().int().min(1).max(10_000).optional(),
    /** Lookback values of each other input (observed and known covariates) used as features. */
    covariateLags: z.number().int().min(0).max(10_000).default(1),
    /** What the labels are relative to (lib/forecast-base.ts): last, season, seasonalLast or none (the level). */
    relativeTo: z.enum(RELATIVE_TO).default('last'),
    rounds: z.number().int().min(1).max(100_000).default(300),
    learningRate: z.number().positive().max(10).default(0.05),
    maxDepth: z.number().int().min(0).max(64).optional(),
    numLeaves: z.number().int().min(2).max(131_072).optional(),
    minChildWeight: z.number().min(0).optional(),
    /** LightGBM only: minimum rows in a leaf (default 20). */
    minDataInLeaf: z.number().int().min(1).optional(),
    subsample: z.number().gt(0).max(1).default(1),
    colsample: z.number().gt(0).max(1).default(1),
    lambda: z.number().min(0).optional(),
    alpha: z.number().min(0).optional(),
    earlyStoppingRounds: z.number().int().min(1).optional(),
    /**
     * After early stopping on `validation`, train the model again on the train and validation
     * windows together for the best round count, and forecast `predict` with (and output) that one:
     * the year before the forecast is then in the model, as it is in each fold's.
     */
    refit: z.boolean().default(false),
    seed: z.number().int().min(0).max(2_147_483_647).default(42),
    /** Library threads (0: all cores; small window sets train fastest on one, and OpenMP spins badly on a busy machine). */
    threads: z.number().int().min(0).max(1024).default(1),
    checkpoint: boostingCheckpoint,
  })
  .strict();

type Params = z.infer<typeof params>;

/** How windows become rows: fixed by the train windows and the params, kept in the model document. */
export interface LagSpec {
  lookback: number;
  horizon: number;
  season: number;
  inputs: string[];
  future: string[];
  lags: number;
  covariateLags: number;
  relativeTo: RelativeTo;
}

export function lagSpec(set: WindowSet, p: Pick<Params, 'lags' | 'covariateLags' | 'relativeTo'>): LagSpec {
  return {
    lookback: set.lookback,
    horizon: set.horizon,
    season: set.season,
    inputs: set.inputs,
    future: set.future,
    lags: Math.min(p.lags ?? set.lookback, set.lookback),
    covariateLags: Math.min(p.covariateLags, set.lookback),
    relativeTo: p.relativeTo,
  };
}

/** The other lookback inputs that become features: not the target, not a future feature (its step value is there). */
function covariateInputs(spec: LagSpec): number[] {
  const future = new Set(spec.future);
  return spec.inputs.map((_, i) => i).filter((i) => i > 0 && !future.has(spec.inputs[i]!));
}

export function lagFeatureNames(spec: LagSpec): string[] {
  const names: string[] = [];
  for (let j = 1; j <= spec.lags; j++) names.push(`lag${j}`);
  for (const c of covariateInputs(spec)) for (let j = 1; j <= spec.covariateLags; j++) names.push(`${spec.inputs[c]}_lag${j}`);
  for (const f of spec.future) names.push(`future_${f}`);
  names.push('step', 'season_ref', 'lookback_mean');
  return names;
}

/** The value one season before step h (0-based) in the lookback; NaN when the lookback is shorter than a season. */
function seasonRef(set: WindowSet, i: number, h: number): number {
  const { lookback: L, season: m } = set;
  const F = set.inputs.length;
  const l = L + h - m * Math.ceil((h + 1) / m);
  return l >= 0 ? set.x[(i * L + l) * F]! : NaN;
}

/** The base a label is relative to, for window i and step h (lib/forecast-base.ts). */
function base(set: WindowSet, spec: LagSpec, i: number, h: number): number {
  const F = set.inputs.length;
  const L = set.lookback;
  return windowBase(spec.relativeTo, L, set.season, h, (l) => set.x[(i * L + l) * F]!);
}

export function checkCompatible(spec: LagSpec, set: WindowSet, name: string): void {
  const same =
    set.lookback === spec.lookback &&
    set.horizon === spec.horizon &&
    set.season === spec.season &&
    JSON.stringify(set.inputs) === JSON.stringify(spec.inputs) &&
    JSON.stringify(set.future) === JSON.stringify(spec.future);
  if (!same) {
    throw new PipelineError(
      'PLUGIN_INPUT',
      `train.gbdt-forecast: the '${name}' windows (L=${set.lookback}, H=${set.horizon}, inputs ${set.inputs.join(',')}) do not match the train windows (L=${spec.lookback}, H=${spec.horizon}, inputs ${spec.inputs.join(',')}).`,
      { hint: 'Bind window sets of the same process.window step.' },
    );
  }
}

/**
 * One row per (window, horizon step), row-major float32, and the labels (NaN where the truth is
 * missing; `labelled` drops those rows).
 */
export function lagMatrix(set: WindowSet, spec: LagSpec, labelled: boolean): { m: DenseMatrix; label: Float32Array; rows: Int32Array } {
  const { lookback: L, horizon: H } = set;
  const F = set.inputs.length;
  const G = set.future.length;
  const covs = covariateInputs(spec);
  const cols = lagFeatureNames(spec).length;
  const x = new Float32Array(set.count * H * cols);
  const label = new Float32Array(set.count * H);
  const rows = new Int32Array(set.count * H);
  let r = 0;
  for (let i = 0; i < set.count; i++) {
    let mean = 0;
    let n = 0;
    for (let l = 0; l < L; l++) {
      const v = set.x[(i * L + l) * F]!;
      if (Number.isFinite(v)) {
        mean += v;
        n++;
      }
    }
    mean = n ? mean / n : NaN;
    for (let h = 0; h < H; h++) {
      const y = set.y[i * H + h]!;
      if (labelled && !Number.isFinite(y)) continue;
      const b = base(set, spec, i, h);
      let c = r * cols;
      for (let j = 1; j <= spec.lags; j++) x[c++] = set.x[(i * L + L - j) * F]! - b;
      for (const ci of covs) for (let j = 1; j <= spec.covariateLags; j++) x[c++] = set.x[(i * L + L - j) * F + ci]!;
      for (let g = 0; g < G; g++) x[c++] = set.xf[(i * H + h) * G + g]!;
      x[c++] = h + 1;
      x[c++] = seasonRef(set, i, h) - b;
      x[c++] = mean - b;
      label[r] = y - b;
      rows[r] = i * H + h;
      r++;
    }
  }
  return { m: { x: x.subarray(0, r * cols), rows: r, cols }, label: label.subarray(0, r), rows: rows.subarray(0, r) };
}

/** Predictions back into [N, H] scaled target units. */
export function toForecasts(set: WindowSet, spec: LagSpec, predicted: Float64Array, rows: Int32Array): Float32Array {
  const out = new Float32Array(set.count * set.horizon).fill(NaN);
  for (let r = 0; r < rows.length; r++) {
    const k = rows[r]!;
    const i = Math.floor(k / set.horizon);
    out[k] = predicted[r]! + base(set, spec, i, k % set.horizon);
  }
  return out;
}

function libraryOf(p: Params): { lib: BoostingLibrary; params: Record<string, string> } {
  const common = { ...p, task: 'regression' as const, target: 'y' };
  if (p.library === 'xgboost') {
    return { lib: xgboost(), params: xgboostParams({ ...common, device: 'cpu' } as XgboostParams, 1) };
  }
  return { lib: lightgbm(), params: lightgbmParams(common as LightgbmParams, 1) };
}

async function windowsOf(ctx: StepContext, ref: unknown, name: string): Promise<{ set: WindowSet; ref: ArtifactRef }> {
  if (!isArtifactRef(ref)) {
    throw new PipelineError(
      'PLUGIN_INPUT',
      `train.gbdt-forecast: '${name}' must be a window set artifact, got ${JSON.stringify(ref)?.slice(0, 80)}.`,
      {
        hint: "Bind a window set of process.window (train, validation, test, or a fold's).",
      },
    );
  }
  return { set: decodeWindows(await ctx.store.get(ref)), ref };
}

const outputs = {
  model: 'model',
  history: 'artifact',
  metrics: 'metrics',
  forecasts: 'artifact',
  foldForecasts: 'json',
  backend: 'json',
} as const;

export const trainGbdtForecast = definePlugin({
  name: 'train.gbdt-forecast',
  version: '1',
  description:
    'Gradient-boosted trees (LightGBM or XGBoost) on lag features of forecasting windows: one model for every horizon step; forecasts and walk-forward fold forecasts.',
  heartbeat: { blocksEventLoopMs: 20_000 },
  params,
  inputs: { train: 'artifact', 'validation?': 'artifact', 'predict?': 'artifact', 'folds?': 'json' },
  outputs,
  async run(ctx, p, inputs) {
    const { lib, params: libParams } = libraryOf(p);
    const train = (await windowsOf(ctx, inputs.train, 'train')).set;
    const spec = lagSpec(train, p);
    const features = lagFeatureNames(spec);
    const validation = inputs.validation ? (await windowsOf(ctx, inputs.validation, 'validation')).set : undefined;
    if (validation) checkCompatible(spec, validation, 'validation');
    if (p.earlyStoppingRounds !== undefined && !validation) {
      throw new PipelineError('PLUGIN_PARAMS', 'train.gbdt-forecast: earlyStoppingRounds needs a `validation` input.', {
        hint: 'Bind inputs.validation, or remove earlyStoppingRounds.',
      });
    }
    const t = lagMatrix(train, spec, true);
    if (t.m.rows === 0) throw new PipelineError('DATA_INVALID', 'train.gbdt-forecast: the train windows have no target values.');
    const v = validation ? lagMatrix(validation, spec, true) : undefined;
    const trainM: LabelledMatrix = { ...t.m, label: t.label };
    const validM: LabelledMatrix | undefined = v && v.m.rows > 0 ? { ...v.m, label: v.label } : undefined;
    const featureNames = libraryFeatureNames(features);
    const signature = JSON.stringify({ library: lib.name, params: libParams, features, spec });
    const system = watchSystem(ctx);
    const started = Date.now();
    try {
      const run = await boost(ctx, 'train.gbdt-forecast', lib, {
        params: libParams,
        train: trainM,
        valid: validM,
        featureNames,
        rounds: p.rounds,
        earlyStoppingRounds: p.earlyStoppingRounds,
        checkpoint: p.checkpoint,
        signature,
        // With folds to train after it, the finished model is checkpointed: a retry goes on with the folds.
        checkpointWhenDone: inputs.folds !== undefined && inputs.folds !== null,
      });
      const { state, best } = run;
      let session = run.session;
      let booster: BoostedModelDocument;
      let forecasts: ArtifactRef | null = null;
      let refitRows = 0;
      try {
        if (p.refit && validM) {
          // The same round count on train + validation (no early stopping: nothing is held out).
          const refit = await boost(ctx, 'train.gbdt-forecast', lib, {
            params: libParams,
            train: concatRows(trainM, validM),
            featureNames,
            rounds: best,
            checkpoint: false,
            signature,
          });
          session.free();
          session = refit.session;
          refitRows = trainM.rows + validM.rows;
        }
        const predictRounds = refitRows ? undefined : best;
        for (const h of state.history) {
          ctx.logMetrics(
            { ...prefixed('train_', h.train), ...(h.valid ? prefixed('val_', h.valid) : {}) },
            { step: h.round, timestamp: h.at },
          );
        }
        booster = {
          format: BOOSTED_FORMAT,
          library: lib.name,
          libraryVersion: lib.version,
          task: 'regression',
          numClass: 1,
          objective: libParams['objective']!,
          features,
          target: train.inputs[0]!,
          bestIteration: best,
          roundsTrained: state.round,
          params: libParams,
          model: session.dumpJson(predictRounds),
          native: session.saveNative(predictRounds),
        };
        if (inputs.predict) {
          const { set, ref } = await windowsOf(ctx, inputs.predict, 'predict');
          checkCompatible(spec, set, 'predict');
          const m = lagMatrix(set, spec, false);
          const values = toForecasts(set, spec, session.predict(m.m, predictRounds), m.rows);
          forecasts = await ctx.store.put(
            encodeForecasts({ count: set.count, horizon: set.horizon, windows: ref.sha256, values, model: 'train.gbdt-forecast' }),
            {
              name: 'forecasts',
              mediaType: FORECASTS_MEDIA_TYPE,
            },
          );
        }
      } finally {
        session.free();
      }
      let foldForecasts: ArtifactRef[] | null = null;
      const foldMetrics: Record<string, number> = {};
      if (inputs.folds !== undefined && inputs.folds !== null) {
        if (!Array.isArray(inputs.folds)) {
          throw new PipelineError('PLUGIN_INPUT', "train.gbdt-forecast: 'folds' must be process.window's folds output (a list).");
        }
        const list = inputs.folds as { train?: unknown; test?: unknown }[];
        // The `folds` checkpoint stream: the finished folds' forecasts, kept by a retry.
        const tests = list.map((f) => (isArtifactRef(f?.test) ? f.test.sha256 : ''));
        const stream = ctx.checkpoint.stream('folds');
        foldForecasts = [...((await resumeFolds<FoldsCheckpointDoc>(ctx, stream, tests, (d) => d.rounds === best))?.done ?? [])];
        const kept = foldForecasts.length;
        Object.assign(foldMetrics, { foldRounds: best, foldsResumed: kept, foldsTrainedThisAttempt: list.length - kept });
        for (const [k, fold] of list.entries()) {
          if (k < kept) continue;
          const ft = (await windowsOf(ctx, fold?.train, `folds[${k}].train`)).set;
          const { set: fs, ref: fsRef } = await windowsOf(ctx, fold?.test, `folds[${k}].test`);
          checkCompatible(spec, ft, `folds[${k}].train`);
          checkCompatible(spec, fs, `folds[${k}].test`);
          const fm = lagMatrix(ft, spec, true);
          const fr = await boost(ctx, 'train.gbdt-forecast', lib, {
            params: libParams,
            train: { ...fm.m, label: fm.label },
            featureNames,
            rounds: best,
            checkpoint: false,
            signature,
          });
          try {
            const m = lagMatrix(fs, spec, false);
            const values = toForecasts(fs, spec, fr.session.predict(m.m), m.rows);
            foldForecasts.push(
              await ctx.store.put(
                encodeForecasts({ count: fs.count, horizon: fs.horizon, windows: fsRef.sha256, values, model: 'train.gbdt-forecast' }),
                {
                  name: `fold${k + 1}-forecasts`,
                  mediaType: FORECASTS_MEDIA_TYPE,
                },
              ),
            );
          } finally {
            fr.session.free();
          }
          // Every fold, the last one too: a worker lost before the step returns leaves no fold to train again.
          const doc: FoldsCheckpointDoc = { rounds: best, tests, done: foldForecasts };
          await stream.save(JSON.stringify(doc), { fold: k + 1, foldsDone: foldForecasts.length }, { keep: p.checkpoint.keep });
          ctx.progress({
            done: k + 1,
            total: list.length,
            unit: 'fold',
            message: `backtest fold ${k + 1}/${list.length} (${best} rounds)`,
          });
        }
      }
      const modelDoc = { format: GBDT_FORECAST_FORMAT, spec, booster };
      const bestRow = state.history.find((h) => h.round === best) ?? state.history[state.history.length - 1]!;
      const metrics: Record<string, number> = {
        rounds: state.round,
        bestIteration: best,
        features: features.length,
        rows: t.m.rows,
        refitRows,
        trainSeconds: (Date.now() - started) / 1000,
        roundsThisAttempt: run.roundsThisAttempt,
        resumedFromRound: run.resumedFromRound,
        ...foldMetrics,
      };
      for (const [k, val] of Object.entries(bestRow.train)) metrics[`train_${k}`] = val;
      for (const [k, val] of Object.entries(bestRow.valid ?? {})) metrics[`val_${k}`] = val;
      return {
        model: await ctx.store.put(JSON.stringify(modelDoc), { name: 'gbdt-forecast.json', mediaType: 'application/json' }),
        history: await ctx.store.put(JSON.stringify(state.history), { name: 'history.json', mediaType: 'application/json' }),
        metrics,
        forecasts,
        foldForecasts,
        backend: `${lib.name} ${lib.version}`,
      };
    } finally {
      await system.stop();
    }
  },
});

/** The `folds` checkpoint stream's record: rounds per fold, the folds' test window digests, the finished folds' forecasts. */
interface FoldsCheckpointDoc extends FoldsCheckpoint {
  rounds: number;
}

/** Two labelled matrices of the same columns, one after the other. */
export function concatRows(a: LabelledMatrix, b: LabelledMatrix): LabelledMatrix {
  const x = new Float32Array((a.rows + b.rows) * a.cols);
  x.set(a.x.subarray(0, a.rows * a.cols));
  x.set(b.x.subarray(0, b.rows * b.cols), a.rows * a.cols);
  const label = new Float32Array(a.rows + b.rows);
  label.set(a.label.subarray(0, a.rows));
  label.set(b.label.subarray(0, b.rows), a.rows);
  return { x, rows: a.rows + b.rows, cols: a.cols, label };
}

function prefixed(prefix: string, values: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(values).map(([k, v]) => [prefix + k, v]));
}
