/**
 * train.xgboost and train.lightgbm — gradient-boosted trees from the real libraries (libxgboost,
 * lib_lightgbm through adapters/boosting), for regression and binary / multiclass classification,
 * on the `train` dataset (numeric feature columns, e.g. process.transform's output), watching the
 * `validation` dataset when bound (per-round metrics; early stopping on its first metric). The
 * matrices go to the library as float32 arrays filled from the dataset's columns.
 *
 * Durable: every `checkpoint.everyRounds` rounds (and/or `everyMinutes`) the model so far (the
 * library's native format) and the progress are saved to the artifact store, keeping the newest
 * `keep`; a retry after a crash loads the newest and boosts on from its round. Without row or
 * column sampling (subsample and colsample 1) the resumed model is the uninterrupted one exactly;
 * with sampling the library's sampler starts afresh at the resumed round, so the rounds after it
 * draw other samples (the same distribution, not the same trees).
 *
 * The model artifact is lib/boosted-model.ts's document (mlpipe.boosted-trees/1).
 */
import { z } from 'zod';
import { PipelineError } from '../../engine/errors.js';
import { lightgbm } from '../../adapters/boosting/lightgbm.js';
import { xgboost } from '../../adapters/boosting/xgboost.js';
import type { BoosterSession, BoostingLibrary, LabelledMatrix, NativeModel, RoundMetrics } from '../../adapters/boosting/types.js';
import { BOOSTED_FORMAT, BOOSTED_MEDIA_TYPE, type BoostedModelDocument, type BoostedTask } from '../../lib/boosted-model.js';
import { datasetFile } from '../../lib/dataset.js';
import { loadMatrix, type Matrix } from '../../lib/model.js';
import { watchSystem } from '../../lib/system-metrics.js';
import { definePlugin, type OutputsOf, type StepContext } from '../sdk.js';

/** When to checkpoint: every `everyRounds` rounds and/or every `everyMinutes` minutes (neither given: every minute); the newest `keep` kept. */
export const boostingCheckpoint = z
  .object({
    everyRounds: z.number().int().min(1).optional(),
    everyMinutes: z.number().positive().optional(),
    keep: z.number().int().min(1).default(3),
  })
  .strict()
  .default({ keep: 3 });

const common = {
  target: z.string().min(1),
  task: z.enum(['regression', 'classification']).default('regression'),
  /** Feature columns; default: every numeric column except the target. */
  features: z.array(z.string()).optional(),
  /** Boosting rounds (at most; early stopping may stop sooner). */
  rounds: z.number().int().min(1).max(100_000).default(100),
  learningRate: z.number().positive().max(10).default(0.1),
  /** Maximum tree depth (XGBoost default 6; LightGBM default no limit). */
  maxDepth: z.number().int().min(0).max(64).optional(),
  /** Maximum leaves per tree (LightGBM num_leaves, default 31; XGBoost max_leaves, default no limit). */
  numLeaves: z.number().int().min(2).max(131_072).optional(),
  /** Minimum sum of hessians in a leaf (XGBoost min_child_weight; LightGBM min_sum_hessian_in_leaf). */
  minChildWeight: z.number().min(0).optional(),
  /** Share of rows sampled per round (LightGBM bagging with bagging_freq 1). */
  subsample: z.number().gt(0).max(1).default(1),
  /** Share of columns sampled per tree. */
  colsample: z.number().gt(0).max(1).default(1),
  /** L2 and L1 regularisation of the leaf weights. */
  lambda: z.number().min(0).optional(),
  alpha: z.number().min(0).optional(),
  /** Histogram bins per feature (XGBoost max_bin, default 256; LightGBM max_bin, default 255). */
  maxBins: z.number().int().min(2).max(65_535).optional(),
  /** Stop when the validation metric (the first one) has not improved for this many rounds; keep the best rounds. */
  earlyStoppingRounds: z.number().int().min(1).optional(),
  seed: z.number().int().min(0).max(2_147_483_647).default(42),
  /** Library threads (0: the library's default, all cores). */
  threads: z.number().int().min(0).max(1024).default(0),
  checkpoint: boostingCheckpoint,
};

const xgboostParamsSchema = z
  .object({
    ...common,
    /** cuda needs the CUDA build of libxgboost (the xgboost-cu12 wheel, through MLPIPE_XGBOOST_LIB). */
    device: z.enum(['cpu', 'cuda']).default('cpu'),
  })
  .strict();

const lightgbmParamsSchema = z
  .object({
    ...common,
    /** Minimum rows in a leaf (LightGBM min_data_in_leaf, default 20). */
    minDataInLeaf: z.number().int().min(1).optional(),
  })
  .strict();

export type XgboostParams = z.infer<typeof xgboostParamsSchema>;
export type LightgbmParams = z.infer<typeof lightgbmParamsSchema>;
type CommonParams = XgboostParams | LightgbmParams;

/** The task as the libraries see it: regression, binary, or multiclass with `numClass` classes. */
export function boostedTask(p: Pick<CommonParams, 'task'>, numClass: number): BoostedTask {
  return p.task === 'regression' ? 'regression' : numClass === 2 ? 'binary' : 'multiclass';
}

const num = (v: number): string => String(v);

/** The params of train.xgboost as libxgboost spells them (XGBoosterSetParam). */
export function xgboostParams(p: XgboostParams, numClass: number): Record<string, string> {
  const task = boostedTask(p, numClass);
  const out: Record<string, string> = {
    objective: task === 'regression' ? 'reg:squarederror' : task === 'binary' ? 'binary:logistic' : 'multi:softprob',
    eval_metric: task === 'regression' ? 'rmse' : task === 'binary' ? 'logloss,error' : 'mlogloss,merror',
    tree_method: 'hist',
    device: p.device,
    eta: num(p.learningRate),
    subsample: num(p.subsample),
    colsample_bytree: num(p.colsample),
    seed: num(p.seed),
    nthread: num(p.threads),
    verbosity: '0',
  };
  if (task === 'multiclass') out['num_class'] = num(numClass);
  if (p.maxDepth !== undefined) out['max_depth'] = num(p.maxDepth);
  if (p.numLeaves !== undefined) out['max_leaves'] = num(p.numLeaves);
  if (p.minChildWeight !== undefined) out['min_child_weight'] = num(p.minChildWeight);
  if (p.lambda !== undefined) out['lambda'] = num(p.lambda);
  if (p.alpha !== undefined) out['alpha'] = num(p.alpha);
  if (p.maxBins !== undefined) out['max_bin'] = num(p.maxBins);
  return out;
}

/** The params of train.lightgbm as lib_lightgbm spells them (its `key=value` parameter string). */
export function lightgbmParams(p: LightgbmParams, numClass: number): Record<string, string> {
  const task = boostedTask(p, numClass);
  const out: Record<string, string> = {
    objective: task,
    metric: task === 'regression' ? 'rmse' : task === 'binary' ? 'binary_logloss,binary_error' : 'multi_logloss,multi_error',
    learning_rate: num(p.learningRate),
    feature_fraction: num(p.colsample),
    seed: num(p.seed),
    num_threads: num(p.threads),
    is_provide_training_metric: 'true',
    verbosity: '-1',
  };
  if (p.subsample < 1) Object.assign(out, { bagging_fraction: num(p.subsample), bagging_freq: '1' });
  if (task === 'multiclass') out['num_class'] = num(numClass);
  if (p.maxDepth !== undefined) out['max_depth'] = num(p.maxDepth === 0 ? -1 : p.maxDepth);
  if (p.numLeaves !== undefined) out['num_leaves'] = num(p.numLeaves);
  if (p.minChildWeight !== undefined) out['min_sum_hessian_in_leaf'] = num(p.minChildWeight);
  if (p.minDataInLeaf !== undefined) out['min_data_in_leaf'] = num(p.minDataInLeaf);
  if (p.lambda !== undefined) out['lambda_l2'] = num(p.lambda);
  if (p.alpha !== undefined) out['lambda_l1'] = num(p.alpha);
  if (p.maxBins !== undefined) out['max_bin'] = num(p.maxBins);
  return out;
}

interface HistoryRow {
  round: number;
  train: Record<string, number>;
  valid?: Record<string, number>;
  /** When the round ended (ms), so tracked curves keep their real times across a resume. */
  at: number;
}

interface TrainState {
  round: number;
  bestRound: number;
  bestScore: number;
  wait: number;
  history: HistoryRow[];
  /** Boosting is over (the last round, or early stopping): a resumed run boosts no further. */
  finished?: boolean;
}

interface CheckpointDoc {
  library: 'xgboost' | 'lightgbm';
  /** What the model was trained for (library params, features, classes): a checkpoint of anything else is not resumed. */
  signature: string;
  native: NativeModel;
  state: TrainState;
}

/** A checkpoint's bytes: a 4-byte length, the JSON header, then the native model's own bytes (no base64). */
export function encodeCheckpoint(doc: CheckpointDoc): Buffer {
  const { native, ...rest } = doc;
  const header = Buffer.from(JSON.stringify({ ...rest, encoding: native.encoding }));
  const size = Buffer.alloc(4);
  size.writeUInt32BE(header.length);
  return Buffer.concat([size, header, Buffer.from(native.data, native.encoding)]);
}

export function decodeCheckpoint(bytes: Buffer): CheckpointDoc | undefined {
  if (bytes.length < 4) return undefined;
  const size = bytes.readUInt32BE(0);
  if (4 + size > bytes.length) return undefined;
  try {
    const head = JSON.parse(bytes.subarray(4, 4 + size).toString('utf8')) as Omit<CheckpointDoc, 'native'> & {
      encoding: NativeModel['encoding'];
    };
    const { encoding, ...rest } = head;
    return { ...rest, native: { encoding, data: bytes.subarray(4 + size).toString(encoding) } };
  } catch {
    return undefined;
  }
}

/** The labels as the library wants them: the target (regression) or the class index, with the classes. */
export function labels(
  task: CommonParams['task'],
  y: (number | string)[],
  where: string,
  target: string,
  classes?: (string | number)[],
): { label: Float32Array; classes?: (string | number)[] } {
  if (task === 'regression') {
    if (y.some((v) => typeof v !== 'number' || !Number.isFinite(v))) {
      throw new PipelineError(
        'DATA_INVALID',
        `${where}: the target '${target}' is not a finite number on every row; use task: classification for labels.`,
      );
    }
    return { label: Float32Array.from(y as number[]) };
  }
  const known =
    classes ?? [...new Set(y)].sort((a, b) => (typeof a === 'number' && typeof b === 'number' ? a - b : String(a) < String(b) ? -1 : 1));
  if (known.length < 2)
    throw new PipelineError('DATA_INVALID', `${where}: the target '${target}' has a single class (${String(known[0])}).`);
  const index = new Map(known.map((c, i) => [String(c), i]));
  const label = new Float32Array(y.length);
  y.forEach((v, i) => {
    const k = index.get(String(v));
    if (k === undefined) {
      throw new PipelineError(
        'DATA_INVALID',
        `${where}: the target '${target}' has the class ${JSON.stringify(v)}, which the train data does not have.`,
        {
          hint: 'Split so that every class is in the train rows (process.split stratify), or drop the rare class.',
        },
      );
    }
    label[i] = k;
  });
  return { label, classes: known };
}

/** What one boosting run needs: the library params, the matrices, when to stop and checkpoint. */
export interface BoostOptions {
  params: Record<string, string>;
  train: LabelledMatrix;
  valid?: LabelledMatrix;
  featureNames: string[];
  rounds: number;
  earlyStoppingRounds?: number;
  /** Checkpoint settings (train.xgboost's `checkpoint` param); false: no checkpoints and no resume. */
  checkpoint: { everyRounds?: number; everyMinutes?: number; keep: number } | false;
  /** What the model is trained for: a checkpoint with another signature is not resumed. */
  signature: string;
  /**
   * Checkpoint the finished model too (marked finished), for a step with more work after boosting
   * (train.gbdt-forecast's folds): a retry then resumes with that work, not with boosting.
   */
  checkpointWhenDone?: boolean;
}

/**
 * The boosting loop of train.xgboost, train.lightgbm and train.gbdt-forecast: resumes from the
 * step's newest checkpoint of the same signature, boosts round by round (metrics, progress, early
 * stopping on the first validation metric), checkpoints, and yields between rounds. Returns the
 * open session (the caller frees it) and the training state.
 */
export async function boost(
  ctx: StepContext,
  name: string,
  lib: BoostingLibrary,
  o: BoostOptions,
): Promise<{
  session: BoosterSession;
  state: TrainState;
  best: number;
  started: number;
  roundsThisAttempt: number;
  resumedFromRound: number;
}> {
  const { signature } = o;
  const resumed = o.checkpoint === false ? undefined : await ctx.checkpoint.latest<{ round: number }>();
  let doc = resumed ? decodeCheckpoint(resumed.data) : undefined;
  if (resumed && !doc) ctx.logger.warn({}, 'the checkpoint is not a boosting checkpoint; starting from round 1');
  if (doc && doc.signature !== signature) {
    ctx.logger.warn({ round: doc.state?.round }, 'the checkpoint was written for other params or data; starting from round 1');
    doc = undefined;
  }
  const state: TrainState = doc?.state ?? { round: 0, bestRound: 0, bestScore: Infinity, wait: 0, history: [] };
  const started = Date.now();
  const session = lib.open({ params: o.params, train: o.train, valid: o.valid, featureNames: o.featureNames, resumeFrom: doc?.native });
  if (doc) ctx.logger.info({ round: state.round }, `resumed from the checkpoint of round ${state.round}`);
  const resumedFromRound = state.round;
  if (session.rounds !== state.round) {
    session.free();
    throw new PipelineError('STEP_FAILED', `${name}: the checkpoint holds ${session.rounds} rounds, its progress says ${state.round}.`);
  }
  let roundsThisAttempt = 0;
  try {
    let lastCheckpointAt = Date.now();
    const everyRounds = o.checkpoint === false ? undefined : o.checkpoint.everyRounds;
    const everyMinutes = o.checkpoint === false ? undefined : (o.checkpoint.everyMinutes ?? (everyRounds === undefined ? 1 : undefined));
    for (let round = state.round + 1; round <= o.rounds && !state.finished; round++) {
      if (ctx.signal.aborted) throw ctx.signal.reason as Error;
      const m: RoundMetrics = session.boostOneRound();
      roundsThisAttempt++;
      state.round = round;
      state.history.push({ round, train: m.train, ...(m.valid ? { valid: m.valid } : {}), at: Date.now() });
      const watched = Object.values(m.valid ?? m.train)[0] ?? NaN;
      if (!Number.isFinite(watched)) {
        throw new PipelineError('STEP_FAILED', `${name}: the metric is ${String(watched)} at round ${round}.`, {
          retryable: false,
          hint: 'Lower learningRate, or check the data for extreme values.',
        });
      }
      if (watched < state.bestScore) Object.assign(state, { bestScore: watched, bestRound: round, wait: 0 });
      else state.wait++;
      ctx.progress({
        done: round,
        total: o.rounds,
        unit: 'round',
        metrics: { ...prefixed('train_', m.train), ...(m.valid ? prefixed('val_', m.valid) : {}) },
      });
      const stop = o.earlyStoppingRounds !== undefined && state.wait >= o.earlyStoppingRounds;
      if (stop) {
        ctx.logger.info({ round, bestRound: state.bestRound }, 'early stopping');
        break;
      }
      const due =
        (everyRounds !== undefined && round % everyRounds === 0) ||
        (everyMinutes !== undefined && Date.now() - lastCheckpointAt >= everyMinutes * 60_000);
      if (due && round < o.rounds && o.checkpoint !== false) {
        const ckpt: CheckpointDoc = { library: lib.name, signature, native: session.saveNative(), state };
        await ctx.checkpoint.save(encodeCheckpoint(ckpt), { round }, { keep: o.checkpoint.keep });
        lastCheckpointAt = Date.now();
      }
      // Let heartbeats, cancellation and I/O through between the library's synchronous rounds.
      await new Promise((r) => setImmediate(r));
    }
    if (o.checkpointWhenDone && o.checkpoint !== false && !state.finished) {
      state.finished = true;
      const ckpt: CheckpointDoc = { library: lib.name, signature, native: session.saveNative(), state };
      await ctx.checkpoint.save(encodeCheckpoint(ckpt), { round: state.round, finished: true }, { keep: o.checkpoint.keep });
    }
  } catch (e) {
    session.free();
    throw e;
  }
  const best = o.earlyStoppingRounds !== undefined ? state.bestRound : state.round;
  return { session, state, best, started, roundsThisAttempt, resumedFromRound };
}

const trainOutputs = { model: 'model', metrics: 'metrics', history: 'artifact', backend: 'json', curve: 'json' } as const;

interface Flavour<P extends CommonParams> {
  name: 'train.xgboost' | 'train.lightgbm';
  library: () => BoostingLibrary;
  params: (p: P, numClass: number) => Record<string, string>;
  /** Refuses what the loaded library cannot do (before any data is read). */
  check?: (p: P, lib: BoostingLibrary) => void;
}

const xgboostFlavour: Flavour<XgboostParams> = {
  name: 'train.xgboost',
  library: xgboost,
  params: xgboostParams,
  check(p, lib) {
    if (p.device === 'cuda' && !lib.cuda) {
      throw new PipelineError(
        'PLUGIN_PARAMS',
        `train.xgboost: device: cuda, but the XGBoost library at ${lib.path} was built without CUDA.`,
        {
          hint: 'Use the CUDA build (the xgboost-cu12 wheel: set MLPIPE_XGBOOST_LIB to its xgboost/lib/libxgboost.so) on a GPU worker, or set device: cpu.',
        },
      );
    }
  },
};

const lightgbmFlavour: Flavour<LightgbmParams> = {
  name: 'train.lightgbm',
  library: () => lightgbm(),
  params: lightgbmParams,
};

async function loadInputs(
  ctx: StepContext,
  name: string,
  p: CommonParams,
  inputs: Record<string, unknown>,
): Promise<{ train: Matrix; validation: Matrix | undefined }> {
  const train = await loadMatrix(await datasetFile(ctx, inputs, 'train'), { target: p.target, features: p.features, label: 'train' });
  if (train.rows === 0) throw new PipelineError('DATA_INVALID', 'train: the dataset has no rows.');
  if (train.features.length === 0) {
    throw new PipelineError('DATA_INVALID', 'train: no numeric feature columns.', {
      hint: 'One-hot encode categorical columns with process.transform.',
    });
  }
  const validation = inputs['validation']
    ? await loadMatrix(await datasetFile(ctx, inputs, 'validation'), { target: p.target, features: train.features, label: 'validation' })
    : undefined;
  if (p.earlyStoppingRounds !== undefined && !validation) {
    throw new PipelineError('PLUGIN_PARAMS', `${name}: earlyStoppingRounds needs a \`validation\` input.`, {
      hint: 'Bind inputs.validation, or remove earlyStoppingRounds.',
    });
  }
  return { train, validation };
}

/** One metric name the library reports, as an output metric name: rmse -> Rmse, binary_logloss -> Logloss. */
function metricKey(prefix: string, metric: string): string {
  const base = metric.replace(/^(binary|multi)_/, '').replace(/^m(logloss|error)$/, '$1');
  return prefix + base.charAt(0).toUpperCase() + base.slice(1);
}

function definedBoosting<P extends CommonParams>(flavour: Flavour<P>, schema: z.ZodType<P>, description: string) {
  return definePlugin({
    name: flavour.name,
    version: '1',
    description,
    // A round on a million rows is a synchronous library call of a few seconds; the loop yields between rounds.
    heartbeat: { blocksEventLoopMs: 20_000 },
    params: schema,
    inputs: { train: 'dataset', 'validation?': 'dataset' },
    outputs: trainOutputs,
    async run(ctx, p, inputs): Promise<OutputsOf<typeof trainOutputs>> {
      const lib = flavour.library();
      flavour.check?.(p, lib);
      const loadStarted = Date.now();
      const { train, validation } = await loadInputs(ctx, flavour.name, p, inputs as Record<string, unknown>);
      const y = labels(p.task, train.y!, 'train', p.target);
      const vy = validation ? labels(p.task, validation.y!, 'validation', p.target, y.classes) : undefined;
      const numClass = y.classes ? y.classes.length : 1;
      const task = boostedTask(p, numClass);
      const params = flavour.params(p, numClass);
      const loadSeconds = (Date.now() - loadStarted) / 1000;

      const signature = JSON.stringify({ library: lib.name, params, features: train.features, classes: y.classes ?? null });
      const trainM: LabelledMatrix = { x: train.x, rows: train.rows, cols: train.features.length, label: y.label };
      const validM: LabelledMatrix | undefined =
        validation && vy ? { x: validation.x, rows: validation.rows, cols: train.features.length, label: vy.label } : undefined;
      const system = watchSystem(ctx);
      let session: BoosterSession | undefined;
      try {
        const run = await boost(ctx, flavour.name, lib, {
          params,
          train: trainM,
          valid: validM,
          featureNames: libraryFeatureNames(train.features),
          rounds: p.rounds,
          earlyStoppingRounds: p.earlyStoppingRounds,
          checkpoint: p.checkpoint,
          signature,
        });
        session = run.session;
        const { state, started, roundsThisAttempt, resumedFromRound, best } = run;
        for (const h of state.history) {
          ctx.logMetrics(
            { ...prefixed('train_', h.train), ...(h.valid ? prefixed('val_', h.valid) : {}) },
            { step: h.round, timestamp: h.at },
          );
        }
        const model: BoostedModelDocument = {
          format: BOOSTED_FORMAT,
          library: lib.name,
          libraryVersion: lib.version,
          task,
          numClass: task === 'multiclass' ? numClass : 1,
          objective: params['objective']!,
          features: train.features,
          target: p.target,
          ...(y.classes ? { classes: y.classes } : {}),
          bestIteration: best,
          roundsTrained: state.round,
          params,
          model: session.dumpJson(best),
          native: session.saveNative(best),
        };
        const modelRef = await ctx.store.put(JSON.stringify(model), { name: 'model.json', mediaType: BOOSTED_MEDIA_TYPE });
        const historyRef = await ctx.store.put(JSON.stringify(state.history), { name: 'history.json', mediaType: 'application/json' });
        const bestRow = state.history.find((h) => h.round === best) ?? state.history[state.history.length - 1]!;
        let running = Infinity;
        const curve = state.history.map((h) => (running = Math.min(running, Object.values(h.valid ?? h.train)[0] ?? Infinity)));
        const metrics: Record<string, number> = {
          rounds: state.round,
          roundsThisAttempt,
          resumedFromRound,
          bestIteration: best,
          features: train.features.length,
          rows: train.rows,
          /** Reading the datasets into float32 matrices. */
          loadSeconds,
          /** The library's datasets, the rounds (with checkpoints) and the model's dump. */
          trainSeconds: (Date.now() - started) / 1000,
          secondsPerRound: roundsThisAttempt ? (Date.now() - started) / 1000 / roundsThisAttempt : 0,
        };
        for (const [k, v] of Object.entries(bestRow.train)) metrics[metricKey('train', k)] = v;
        for (const [k, v] of Object.entries(bestRow.valid ?? {})) metrics[metricKey('val', k)] = v;
        if (metrics['valError'] !== undefined) metrics['valAccuracy'] = 1 - metrics['valError'];
        return {
          model: modelRef,
          history: historyRef,
          backend: `${lib.name} ${lib.version}${'device' in p && p.device === 'cuda' ? ' cuda' : ''}`,
          curve: curve.map((v) => Number(v.toPrecision(6))),
          metrics,
        };
      } finally {
        await system.stop();
        session?.free();
      }
    },
  });
}

/**
 * Feature names the libraries accept (XGBoost refuses `[`, `]`, `<`; LightGBM JSON characters and
 * whitespace): those characters become `_`; `f<i>` for all when that makes two equal. The model
 * document's `features` keeps the real names, in the same order.
 */
export function libraryFeatureNames(features: string[]): string[] {
  const names = features.map((f) => f.replace(/[[\]<>{}",:\s]/g, '_'));
  return new Set(names).size === names.length ? names : features.map((_, i) => `f${i}`);
}

function prefixed(prefix: string, values: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(values).map(([k, v]) => [prefix + k, v]));
}

export const trainXgboost = definedBoosting(
  xgboostFlavour,
  xgboostParamsSchema,
  'Gradient-boosted trees with libxgboost (hist): regression / binary / multiclass, early stopping on the validation split, checkpoint-resume; device cuda with the CUDA build.',
);

export const trainLightgbm = definedBoosting(
  lightgbmFlavour,
  lightgbmParamsSchema,
  'Gradient-boosted trees with lib_lightgbm: regression / binary / multiclass, early stopping on the validation split, checkpoint-resume.',
);
