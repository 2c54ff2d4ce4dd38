import { z } from 'zod';
import { PipelineError } from '../../engine/errors.js';
import { isArtifactRef, type ArtifactRef } from '../../engine/types.js';
import { definePlugin, type Checkpoints, type OutputsOf, type StepContext } from '../sdk.js';
import { watchSystem } from '../../lib/system-metrics.js';
import { loadTf, type BackendName, type Tf } from '../../lib/tf.js';
import { decodeForecasts, decodeWindows, encodeForecasts, FORECASTS_MEDIA_TYPE, type WindowSet } from '../../lib/windows.js';
import {
  buildSequenceModel,
  deserializeSequenceModel,
  ensembleDocument,
  meanForecasts,
  networkInputs,
  networkLabels,
  outputWidth,
  pinballLoss,
  pointForecasts,
  predictMembers,
  predictSequence,
  serializeSequenceModel,
  trainingTarget,
  SEQUENCE_MODEL_KIND,
  type SequenceMeta,
  type SequenceModelDocument,
  type SequenceSpec,
} from '../../lib/sequence-model.js';
import { RELATIVE_TO } from '../../lib/forecast-base.js';
import {
  backendParam,
  epochCheckpointParam,
  optimizerState,
  parseCheckpoint,
  permutation,
  restoreOptimizer,
  type OptimizerSlots,
} from './mlp.js';
import { resumeFolds, type FoldsCheckpoint } from './fold-checkpoints.js';

type LayersModel = import('@tensorflow/tfjs-layers').LayersModel;
type Optimizer = import('@tensorflow/tfjs-core').Optimizer;
type Tensor = import('@tensorflow/tfjs-core').Tensor;

const params = z
  .object({
    /** lstm, gru, or tcn (dilated causal convolutions without padding, then a dense read-out). */
    model: z.enum(['lstm', 'gru', 'tcn']).default('lstm'),
    /** Units per recurrent layer, or filters per convolution. */
    units: z.number().int().min(1).max(1024).default(32),
    /** Stacked recurrent layers (lstm, gru). */
    layers: z.number().int().min(1).max(8).default(1),
    /** Dropout before the read-out. Above 0, runs are not bit-reproducible (masks are unseeded). */
    dropout: z.number().min(0).lt(1).default(0),
    /** TCN: kernel width, and one convolution per dilation; lookback must exceed sum((kernel - 1) * dilation). */
    tcn: z
      .object({
        kernelSize: z.number().int().min(1).max(64).default(3),
        dilations: z.array(z.number().int().min(1).max(512)).min(1).max(16).default([1, 2, 4]),
      })
      .strict()
      .default({ kernelSize: 3, dilations: [1, 2, 4] }),
    epochs: z.number().int().min(1).max(100_000).default(50),
    batchSize: z.number().int().min(1).default(64),
    learningRate: z.number().positive().default(0.003),
    seed: z.number().int().default(42),
    /**
     * Seed ensemble: this many networks trained on the same windows with seeds seed, seed + 1, ...,
     * each with its own early stopping and its own backtest fold models; the forecasts (test
     * windows, folds, ONNX export) are the mean of the members'. 1: one model.
     */
    ensemble: z.number().int().min(1).max(32).default(1),
    /** Stop when the validation loss has not improved by `minDelta` for `patience` epochs; keep the best weights. */
    earlyStopping: z
      .object({ patience: z.number().int().min(1), minDelta: z.number().min(0).default(0) })
      .strict()
      .optional(),
    /**
     * Stop when, from epoch `afterEpochs` on, the best loss so far (validation loss when bound) is
     * above `curve[epoch - 1]` (null: no bar at that epoch): a hyperparameter search's median stopping rule.
     */
    stopIfWorseThan: z
      .object({ curve: z.array(z.number().nullable()).max(100_000), afterEpochs: z.number().int().min(1).default(5) })
      .strict()
      .optional(),
    /**
     * Quantile levels (ascending, in (0, 1), including 0.5): the model is trained with the pinball
     * loss and forecasts every level of every step; the point forecast is the 0.5 level. Without
     * them, one forecast per step, trained with the mean squared error.
     */
    quantiles: z
      .array(z.number().gt(0).lt(1))
      .min(1)
      .max(99)
      .refine((q) => q.every((v, i) => i === 0 || v > q[i - 1]!), 'quantiles must be strictly ascending')
      .refine((q) => q.includes(0.5), 'quantiles must include 0.5 (the point forecast)')
      .optional(),
    /**
     * What the network forecasts (lib/forecast-base.ts): `none`, the scaled level; `last`, `season`
     * or `seasonalLast`, the change from that base of the window's lookback (added back to every
     * forecast, in tfjs and in the ONNX export), with the target input read relative to the
     * window's last value, so a level the training years never reached is still in range.
     */
    relativeTo: z.enum(RELATIVE_TO).default('none'),
    checkpoint: epochCheckpointParam,
    backend: backendParam,
  })
  .strict();

type Params = z.infer<typeof params>;

interface HistoryRow {
  epoch: number;
  loss: number;
  valLoss?: number;
  /** When the epoch ended (ms), so tracked curves keep their real times across a resume. */
  at?: number;
}

interface TrainState {
  epoch: number;
  bestLoss: number;
  bestEpoch: number;
  wait: number;
  history: HistoryRow[];
  /** Training is over (the last epoch, or early stopping): a retry goes on with what follows (the folds). */
  finished?: boolean;
}

interface CheckpointDoc {
  model: SequenceModelDocument;
  optimizer: OptimizerSlots;
  best?: SequenceModelDocument;
  state: TrainState;
  /** Adam's running beta powers: restored as they were (setWeights recomputes them with pow, a rounding apart). */
  adam?: number[];
}

/**
 * The `folds` checkpoint stream of a backtest: each finished fold's forecasts, and the fold being
 * trained with its newest epoch (model, optimizer). A retry keeps the finished folds and goes on
 * from there.
 */
interface FoldsCheckpointDoc extends FoldsCheckpoint {
  /** Epochs per fold (the main run's best count): another backtest is not resumed. */
  epochs: number;
  current?: { fold: number; epoch: number; model: SequenceModelDocument; optimizer: OptimizerSlots; adam?: number[] };
}

const outputs = {
  model: 'model',
  history: 'artifact',
  forecasts: 'artifact',
  foldForecasts: 'json',
  metrics: 'metrics',
  backend: 'json',
  curve: 'json',
} as const;

function stepError(message: string, hint?: string): PipelineError {
  return new PipelineError('PLUGIN_INPUT', `train.tfjs-sequence: ${message}`, hint ? { hint } : {});
}

/** A window set input, decoded (lib/windows.ts checks the blob). */
async function windowsInput(ctx: StepContext, ref: unknown, name: string): Promise<WindowSet> {
  if (!isArtifactRef(ref)) throw stepError(`input '${name}' must be a window set artifact (process.window's ${name} output).`);
  return decodeWindows(await ctx.store.get(ref));
}

/** Windows usable for training: every x and y value finite (a gap with no fill rule leaves NaN). */
function usable(w: WindowSet): { x: Float32Array; xf: Float32Array; y: Float32Array; count: number; dropped: number } {
  const L = w.lookback * w.inputs.length;
  const HG = w.horizon * w.future.length;
  const H = w.horizon;
  const keep: number[] = [];
  for (let i = 0; i < w.count; i++) {
    let ok = true;
    for (let k = i * L; ok && k < (i + 1) * L; k++) ok = Number.isFinite(w.x[k]);
    for (let k = i * HG; ok && k < (i + 1) * HG; k++) ok = Number.isFinite(w.xf[k]);
    for (let k = i * H; ok && k < (i + 1) * H; k++) ok = Number.isFinite(w.y[k]);
    if (ok) keep.push(i);
  }
  if (keep.length === w.count) return { x: w.x, xf: w.xf, y: w.y, count: w.count, dropped: 0 };
  const x = new Float32Array(keep.length * L);
  const xf = new Float32Array(keep.length * HG);
  const y = new Float32Array(keep.length * H);
  keep.forEach((i, j) => {
    x.set(w.x.subarray(i * L, (i + 1) * L), j * L);
    xf.set(w.xf.subarray(i * HG, (i + 1) * HG), j * HG);
    y.set(w.y.subarray(i * H, (i + 1) * H), j * H);
  });
  return { x, xf, y, count: keep.length, dropped: w.count - keep.length };
}

/** The same lookback, horizon and features as the train set, or a clear error. */
function sameShape(train: WindowSet, other: WindowSet, name: string): void {
  const same =
    other.lookback === train.lookback &&
    other.horizon === train.horizon &&
    other.inputs.join('\u0000') === train.inputs.join('\u0000') &&
    other.future.join('\u0000') === train.future.join('\u0000');
  if (!same)
    throw stepError(
      `the '${name}' windows (lookback ${other.lookback}, horizon ${other.horizon}, inputs ${other.inputs.join(', ')}) do not match the train windows (lookback ${train.lookback}, horizon ${train.horizon}, inputs ${train.inputs.join(', ')}).`,
      'Bind window sets from the same process.window step.',
    );
}

/** One training attempt. */
interface Training {
  tf: Tf;
  ctx: StepContext;
  p: Params;
  spec: SequenceSpec;
  meta: SequenceMeta;
  optimizer: Optimizer;
  model: LayersModel;
  state: TrainState;
  best: SequenceModelDocument | undefined;
  resumedFromEpoch: number;
  epochsRun: number;
  /** The epoch the median stopping rule stopped at (0: it did not). */
  stoppedByRule: number;
  lastCheckpointAt: number;
  backend: BackendName;
  /** Which member of the ensemble (0-based; 0 for a single model) out of `members`. */
  member: number;
  members: number;
  /** The member's checkpoints: the step's own sequence for the first, `member<k>` for the k-th. */
  stream: Checkpoints;
}

interface Batches {
  x: Tensor[];
  y: Tensor;
  vx?: Tensor[];
  vy?: Tensor;
  rows: number;
}

function compile(t: Pick<Training, 'tf' | 'spec' | 'model' | 'optimizer'>): void {
  const loss = t.spec.quantiles.length ? pinballLoss(t.tf, t.spec.quantiles) : 'meanSquaredError';
  t.model.compile({ optimizer: t.optimizer, loss });
}

async function docOf(t: Training): Promise<SequenceModelDocument> {
  return JSON.parse((await serializeSequenceModel(t.tf, t.model, t.meta)).toString('utf8')) as SequenceModelDocument;
}

async function resume(t: Training): Promise<void> {
  const resumed = await t.stream.latest<{ epoch: number; backend?: BackendName }>();
  if (!resumed) return;
  const doc = parseCheckpoint<CheckpointDoc>(resumed.data, ['model', 'state']);
  if (!doc) return void t.ctx.logger.warn({}, `the checkpoint is not one of train.tfjs-sequence; ${memberName(t)}starting from epoch 1`);
  if (!sameNetwork(doc.model, t.spec))
    return void t.ctx.logger.warn(
      { arch: doc.model.arch, seed: doc.model.seed },
      `${memberName(t)}the checkpoint is of another network (architecture, sizes, features or seed); starting from epoch 1`,
    );
  const restored = await deserializeSequenceModel(t.tf, doc.model);
  t.model.dispose();
  t.model = restored;
  compile(t);
  await restoreOptimizer(t.tf, t.optimizer, doc.optimizer);
  restoreAdam(t.tf, t.optimizer, doc.adam);
  t.state = doc.state;
  t.best = doc.best;
  t.resumedFromEpoch = t.state.epoch;
  for (const h of t.state.history) logEpoch(t, h);
  const from = resumed.meta.backend;
  t.ctx.logger.info(
    { epoch: t.state.epoch, from, ...(t.members > 1 ? { member: t.member + 1, finished: t.state.finished === true } : {}) },
    `${memberName(t)}resumed from the checkpoint of epoch ${t.state.epoch}${from ? ` (written on ${from})` : ''}${t.state.finished ? ', training finished' : ''}`,
  );
}

/** The checkpoint's network is the one this member trains: same shape, features, target and seed. */
function sameNetwork(doc: SequenceModelDocument, spec: SequenceSpec): boolean {
  if (typeof doc !== 'object' || doc === null) return false;
  const keys = [
    'arch',
    'units',
    'layers',
    'kernelSize',
    'dilations',
    'lookback',
    'horizon',
    'inputs',
    'future',
    'quantiles',
    'seed',
  ] as const;
  return (
    keys.every((k) => JSON.stringify(doc[k]) === JSON.stringify(spec[k])) && (doc.relativeTo ?? 'none') === (spec.relativeTo ?? 'none')
  );
}

async function saveCheckpoint(t: Training): Promise<void> {
  const doc: CheckpointDoc = {
    model: await docOf(t),
    optimizer: await optimizerState(t.tf, t.optimizer),
    best: t.best,
    state: t.state,
    adam: adamPowers(t.optimizer),
  };
  await t.stream.save(
    JSON.stringify(doc),
    {
      epoch: t.state.epoch,
      backend: t.backend,
      ...(t.members > 1 ? { member: t.member + 1, members: t.members } : {}),
      ...(t.state.finished ? { finished: true } : {}),
    },
    { keep: t.p.checkpoint.keep },
  );
  t.lastCheckpointAt = Date.now();
}

type AdamInternals = { accBeta1?: { dataSync(): ArrayLike<number>; assign(v: Tensor): void }; accBeta2?: AdamInternals['accBeta1'] };

/** Adam's running powers of beta1 and beta2 (undefined for another optimizer). */
function adamPowers(optimizer: Optimizer): number[] | undefined {
  const o = optimizer as unknown as AdamInternals;
  return o.accBeta1 && o.accBeta2 ? [o.accBeta1.dataSync()[0]!, o.accBeta2.dataSync()[0]!] : undefined;
}

/** Puts Adam's running powers back exactly, after restoreOptimizer (which recomputes them as pow(beta, t + 1)). */
function restoreAdam(tf: Tf, optimizer: Optimizer, saved: number[] | undefined): void {
  const o = optimizer as unknown as AdamInternals;
  if (!saved || saved.length !== 2 || !o.accBeta1 || !o.accBeta2) return;
  const [b1, b2] = [tf.scalar(saved[0]!), tf.scalar(saved[1]!)];
  o.accBeta1.assign(b1);
  o.accBeta2.assign(b2);
  tf.dispose([b1, b2]);
}

/** `member k/N: ` in an ensemble's messages, '' for a single model. */
function memberName(t: Pick<Training, 'member' | 'members'>): string {
  return t.members > 1 ? `member ${t.member + 1}/${t.members}: ` : '';
}

/** The tracked curve of an epoch: `loss`, `val_loss` (the first member's in an ensemble), `member<k>_loss`, ... for the others. */
function logEpoch(t: Pick<Training, 'ctx' | 'member'>, h: HistoryRow): void {
  const pre = t.member > 0 ? `member${t.member + 1}_` : '';
  t.ctx.logMetrics(
    { [`${pre}loss`]: h.loss, ...(h.valLoss !== undefined ? { [`${pre}val_loss`]: h.valLoss } : {}) },
    { step: h.epoch, timestamp: h.at },
  );
}

async function fitEpoch(t: Training, b: Batches, epoch: number): Promise<{ loss: number; valLoss?: number }> {
  const { tf, p, model } = t;
  const order = tf.tensor1d(permutation(b.rows, p.seed * 100_003 + epoch), 'int32');
  const xs = b.x.map((x) => tf.gather(x, order));
  const ys = tf.gather(b.y, order);
  const h = await model.fit(xs.length === 1 ? xs[0]! : xs, ys, { epochs: 1, batchSize: p.batchSize, shuffle: false, verbose: 0 });
  tf.dispose([order, ...xs, ys]);
  const loss = h.history['loss']![0] as number;
  if (!Number.isFinite(loss)) {
    throw new PipelineError('STEP_FAILED', `train.tfjs-sequence: training diverged at epoch ${epoch} (loss ${String(loss)}).`, {
      retryable: false,
      hint: 'Lower learningRate, or check the windows for extreme values (process.window scales the target per series).',
    });
  }
  if (!b.vx || !b.vy) return { loss };
  const r = model.evaluate(b.vx.length === 1 ? b.vx[0]! : b.vx, b.vy, { batchSize: 4096 }) as import('@tensorflow/tfjs-core').Scalar;
  const valLoss = (await r.data())[0]!;
  r.dispose();
  return { loss, valLoss };
}

async function fitEpochs(t: Training, b: Batches): Promise<void> {
  const { ctx, p, state } = t;
  if (state.finished) return;
  for (let epoch = state.epoch + 1; epoch <= p.epochs; epoch++) {
    if (ctx.signal.aborted) throw ctx.signal.reason as Error;
    const { loss, valLoss } = await fitEpoch(t, b, epoch);
    state.epoch = epoch;
    const row: HistoryRow = { epoch, loss, ...(valLoss !== undefined ? { valLoss } : {}), at: Date.now() };
    state.history.push(row);
    logEpoch(t, row);
    t.epochsRun++;
    const watched = valLoss ?? loss;
    if (watched < state.bestLoss - (p.earlyStopping?.minDelta ?? 0)) {
      state.bestLoss = watched;
      state.bestEpoch = epoch;
      state.wait = 0;
      if (p.earlyStopping) t.best = await docOf(t);
    } else state.wait++;
    ctx.progress({
      done: epoch,
      total: p.epochs,
      unit: 'epoch',
      metrics: { loss, ...(valLoss !== undefined ? { val_loss: valLoss } : {}) },
      ...(t.members > 1 ? { message: `member ${t.member + 1}/${t.members}` } : {}),
    });
    const bar = p.stopIfWorseThan && epoch >= p.stopIfWorseThan.afterEpochs ? p.stopIfWorseThan.curve[epoch - 1] : null;
    const belowMedian = bar !== null && bar !== undefined && state.bestLoss > bar;
    if (belowMedian) {
      t.stoppedByRule = epoch;
      ctx.logger.info(
        { epoch, bestLoss: state.bestLoss, bar },
        `${memberName(t)}stopped: best loss ${state.bestLoss.toPrecision(4)} is worse than the median ${bar.toPrecision(4)} of earlier trials at epoch ${epoch}`,
      );
    }
    const stop = belowMedian || (p.earlyStopping !== undefined && state.wait >= p.earlyStopping.patience);
    const due =
      epoch % p.checkpoint.everyEpochs === 0 ||
      (p.checkpoint.everyMinutes !== undefined && Date.now() - t.lastCheckpointAt >= p.checkpoint.everyMinutes * 60_000);
    if (due && !stop && epoch < p.epochs) await saveCheckpoint(t);
    if (stop) {
      ctx.logger.info({ epoch, bestEpoch: state.bestEpoch }, `${memberName(t)}early stopping`);
      break;
    }
  }
}

function tensors(tf: Tf, spec: SequenceSpec, w: { x: Float32Array; xf: Float32Array; y: Float32Array; count: number }): Tensor[] {
  const n = w.count;
  const x = [tf.tensor3d(networkInputs(spec, w.x, n), [n, spec.lookback, spec.inputs.length])];
  if (spec.future.length) x.push(tf.tensor3d(w.xf, [n, spec.horizon, spec.future.length]));
  return [...x, tf.tensor2d(trainingTarget(networkLabels(spec, w), n, spec), [n, outputWidth(spec)])];
}

/**
 * train.tfjs-sequence — trains a sequence forecaster with tfjs on process.window's window sets: an
 * LSTM or GRU (stacked `layers`) or a temporal convolution network (dilated convolutions) over the
 * lookback window, joined with the known-future features, read out into `horizon` forecasts per
 * window (or every level of `quantiles`, trained with the pinball loss). Seeded initialisation and
 * shuffling; early stopping on the `validation` windows that keeps the best weights; checkpoints
 * every `checkpoint.everyEpochs` epochs and/or `everyMinutes`, from which a retry after a crash
 * resumes; progress per epoch. With `predict` bound (the test windows, say), writes their forecasts
 * (scaled units, the window set's order and digest) for evaluate.forecast; with `folds`
 * (process.window's walk-forward folds), retrains on each fold's train windows for the best epoch
 * count and writes each fold's test forecasts (`foldForecasts`). Windows with a missing value are
 * left out of training and counted. With `ensemble` N above 1, a seed ensemble: N members (seeds
 * seed, seed + 1, ...), each trained, early-stopped, checkpointed and backtested as one model would
 * be, one after the other (a retry keeps the finished members: each has its own checkpoint
 * sequence, finished when it is done); every forecast is the members' mean, and the model document
 * holds every member (lib/sequence-model.ts), exported as one ONNX graph.
 */
export const trainSequence = definePlugin({
  name: 'train.tfjs-sequence',
  version: '1',
  description:
    'tfjs LSTM / GRU / TCN forecaster over window sets: multi-horizon, optional quantiles, seed ensembles, early stopping, checkpoint-resume.',
  heartbeat: { blocksEventLoopMs: 5_000 },
  params,
  inputs: { train: 'artifact', 'validation?': 'artifact', 'predict?': 'artifact', 'folds?': 'json' },
  outputs,
  async run(ctx, p, inputs) {
    const { tf, backend, tried } = await loadTf(p.backend as BackendName | 'auto');
    ctx.logger.info({ backend, tried }, `training with tfjs backend ${backend}`);
    const train = await windowsInput(ctx, inputs.train, 'train');
    const validation = inputs.validation ? await windowsInput(ctx, inputs.validation, 'validation') : undefined;
    if (validation) sameShape(train, validation, 'validation');
    if (p.earlyStopping && !validation) {
      throw new PipelineError('PLUGIN_PARAMS', 'train.tfjs-sequence: earlyStopping needs a `validation` input.', {
        hint: 'Bind inputs.validation to the validation windows, or remove earlyStopping.',
      });
    }
    const spec: SequenceSpec = {
      arch: p.model,
      units: p.units,
      layers: p.model === 'tcn' ? p.tcn.dilations.length : p.layers,
      dropout: p.dropout,
      kernelSize: p.tcn.kernelSize,
      dilations: p.model === 'tcn' ? p.tcn.dilations : [],
      lookback: train.lookback,
      horizon: train.horizon,
      inputs: train.inputs,
      future: train.future,
      quantiles: p.quantiles ?? [],
      seed: p.seed,
      season: train.season,
      ...(p.relativeTo !== 'none' ? { relativeTo: p.relativeTo } : {}),
    };
    const meta: SequenceMeta = { kind: SEQUENCE_MODEL_KIND, version: 1, ...spec, seriesIds: train.seriesIds };
    const trainRows = usable(train);
    if (trainRows.count === 0)
      throw stepError(
        `none of the ${train.count} train windows is complete (every one has a missing value).`,
        'Give process.window a fill rule.',
      );
    const valRows = validation ? usable(validation) : undefined;
    if (valRows && valRows.count === 0) throw stepError(`none of the ${validation!.count} validation windows is complete.`);

    const trainT = tensors(tf, spec, trainRows);
    const valT = valRows ? tensors(tf, spec, valRows) : undefined;
    const b: Batches = {
      x: trainT.slice(0, -1),
      y: trainT[trainT.length - 1]!,
      ...(valT ? { vx: valT.slice(0, -1), vy: valT[valT.length - 1]! } : {}),
      rows: trainRows.count,
    };
    const withFolds = inputs.folds !== undefined && inputs.folds !== null;
    const members: Training[] = [];
    let membersResumed = 0;
    const system = watchSystem(ctx);
    const started = Date.now();
    try {
      for (let k = 0; k < p.ensemble; k++) {
        const t = memberTraining(tf, ctx, p, spec, meta, backend, k);
        members.push(t);
        await resume(t);
        if (t.state.finished) membersResumed++;
        await fitEpochs(t, b);
        // A member is done: checkpointed as such, so a retry during a later member or the backtest
        // does not train it again.
        if ((withFolds || k < p.ensemble - 1) && !t.state.finished) {
          t.state.finished = true;
          await saveCheckpoint(t);
        }
        await restoreBest(t);
      }
      const result = await trained(members, train, trainRows.dropped, valRows?.dropped ?? 0, inputs.predict, started, valRows);
      if (p.ensemble > 1) result.metrics = { ...result.metrics, membersResumed };
      const folds = await backtestMembers(members, train, inputs.folds);
      return folds
        ? { ...result, foldForecasts: folds.forecasts, metrics: { ...result.metrics, ...folds.metrics } }
        : { ...result, foldForecasts: null };
    } finally {
      await system.stop();
      tf.dispose([...trainT, ...(valT ?? [])]);
      for (const t of members) t.model.dispose();
    }
  },
});

/** Member k of the ensemble (0 for a single model): seed `seed + k`, a fresh network, its own checkpoint sequence. */
function memberTraining(
  tf: Tf,
  ctx: StepContext,
  p: Params,
  spec: SequenceSpec,
  meta: SequenceMeta,
  backend: BackendName,
  k: number,
): Training {
  const seed = p.seed + k;
  const own: SequenceSpec = { ...spec, seed };
  const t: Training = {
    tf,
    ctx,
    p: { ...p, seed },
    spec: own,
    meta: { ...meta, seed },
    optimizer: tf.train.adam(p.learningRate),
    model: buildSequenceModel(tf, own),
    state: { epoch: 0, bestLoss: Infinity, bestEpoch: 0, wait: 0, history: [] },
    best: undefined,
    resumedFromEpoch: 0,
    epochsRun: 0,
    stoppedByRule: 0,
    lastCheckpointAt: Date.now(),
    backend,
    member: k,
    members: p.ensemble,
    stream: k === 0 ? ctx.checkpoint : ctx.checkpoint.stream(`member${k + 1}`),
  };
  compile(t);
  return t;
}

/** The best epoch's weights (early stopping) in place of the last's. */
async function restoreBest(t: Training): Promise<void> {
  if (!t.best) return;
  const restored = await deserializeSequenceModel(t.tf, t.best);
  t.model.dispose();
  t.model = restored;
}

/**
 * The backtest of every member (each its own fold models, seed and epoch count; the first member's
 * checkpoints in `folds`, the k-th's in `member<k>-folds`), and each fold's forecasts combined by
 * their mean. A single model: its backtest as it is.
 */
async function backtestMembers(
  members: Training[],
  train: WindowSet,
  folds: unknown,
): Promise<{ forecasts: ArtifactRef[]; metrics: Record<string, number> } | null> {
  const runs: { forecasts: ArtifactRef[]; metrics: Record<string, number> }[] = [];
  for (const t of members) {
    const r = await backtest(t, train, folds);
    if (!r) return null;
    runs.push(r);
  }
  if (runs.length === 1) return runs[0]!;
  const { ctx, spec } = members[0]!;
  const forecasts: ArtifactRef[] = [];
  for (let k = 0; k < runs[0]!.forecasts.length; k++) {
    const each = [];
    for (const r of runs) each.push(decodeForecasts(await ctx.store.get(r.forecasts[k]!)));
    const first = each[0]!;
    forecasts.push(
      await ctx.store.put(
        encodeForecasts({
          count: first.count,
          horizon: first.horizon,
          values: meanForecasts(each.map((f) => f.values)),
          windows: first.windows,
          model: `train.tfjs-sequence:${spec.arch}`,
        }),
        { name: `fold${k + 1}-forecasts`, mediaType: FORECASTS_MEDIA_TYPE },
      ),
    );
  }
  const sum = (key: string): number => runs.reduce((a, r) => a + (r.metrics[key] ?? 0), 0);
  return {
    forecasts,
    metrics: {
      // The first member's; each member trains its folds for its own best epoch count.
      foldEpochs: runs[0]!.metrics['foldEpochs']!,
      foldsResumed: sum('foldsResumed'),
      foldsTrainedThisAttempt: sum('foldsTrainedThisAttempt'),
      foldResumedFromEpoch: Math.max(...runs.map((r) => r.metrics['foldResumedFromEpoch'] ?? 0)),
      foldEpochsThisAttempt: sum('foldEpochsThisAttempt'),
    },
  };
}

/**
 * Walk-forward backtest: for each of process.window's folds, a fresh model (same seed) trained on
 * the fold's train windows for the main run's best epoch count, forecasting the fold's test
 * windows. No early stopping inside a fold. The `folds` checkpoint stream keeps each finished
 * fold's forecasts and, every `checkpoint.everyEpochs` epochs (and/or `everyMinutes`), the fold in
 * training: a retry keeps the finished folds and goes on with the next, from its newest epoch.
 */
async function backtest(
  t: Training,
  train: WindowSet,
  folds: unknown,
): Promise<{ forecasts: ArtifactRef[]; metrics: Record<string, number> } | null> {
  if (folds === undefined || folds === null) return null;
  if (!Array.isArray(folds)) throw stepError("'folds' must be process.window's folds output (a list of {train, test}).");
  const { tf, ctx, p, spec } = t;
  const epochs = t.state.bestEpoch || t.state.epoch;
  const list = folds as { train?: unknown; test?: unknown }[];
  const tests = list.map((f) => (isArtifactRef(f?.test) ? f.test.sha256 : ''));
  const stream = ctx.checkpoint.stream(t.member === 0 ? 'folds' : `member${t.member + 1}-folds`);
  const saved = await resumeFolds<FoldsCheckpointDoc>(
    ctx,
    stream,
    tests,
    (d) => d.epochs === epochs,
    (d) => ({ fold: d.current ? d.current.fold + 1 : undefined, epoch: d.current?.epoch }),
  );
  const out: ArtifactRef[] = saved?.done ?? [];
  const keptFolds = out.length;
  let resumedFoldEpoch = 0;
  let epochsTrained = 0;
  for (let k = out.length; k < list.length; k++) {
    const fold = list[k];
    const ft = await windowsInput(ctx, fold?.train, `folds[${k}].train`);
    const testRef = fold?.test;
    const fs = await windowsInput(ctx, testRef, `folds[${k}].test`);
    sameShape(train, ft, `folds[${k}].train`);
    sameShape(train, fs, `folds[${k}].test`);
    const rows = usable(ft);
    if (!rows.count) throw stepError(`none of the ${ft.count} windows of folds[${k}].train is complete.`);
    let model = buildSequenceModel(tf, spec);
    const optimizer = tf.train.adam(p.learningRate);
    compile({ tf, spec, model, optimizer });
    let first = 1;
    const current = saved?.current;
    if (current && current.fold === k && current.epoch < epochs) {
      model.dispose();
      model = await deserializeSequenceModel(tf, current.model);
      compile({ tf, spec, model, optimizer });
      await restoreOptimizer(tf, optimizer, current.optimizer);
      restoreAdam(tf, optimizer, current.adam);
      first = current.epoch + 1;
      resumedFoldEpoch = current.epoch;
      ctx.logger.info(
        { fold: k + 1, epoch: current.epoch },
        `${memberName(t)}backtest fold ${k + 1}: resumed from the checkpoint of epoch ${current.epoch}`,
      );
    }
    const data = tensors(tf, spec, rows);
    try {
      const fit: Training = {
        ...t,
        model,
        optimizer,
        p: { ...p, earlyStopping: undefined, stopIfWorseThan: undefined },
        state: { epoch: 0, bestLoss: Infinity, bestEpoch: 0, wait: 0, history: [] },
      };
      const b: Batches = { x: data.slice(0, -1), y: data[data.length - 1]!, rows: rows.count };
      let lastSaved = Date.now();
      for (let epoch = first; epoch <= epochs; epoch++) {
        if (ctx.signal.aborted) throw ctx.signal.reason as Error;
        const { loss } = await fitEpoch(fit, b, epoch);
        epochsTrained++;
        ctx.progress({
          done: epoch,
          total: epochs,
          unit: 'epoch',
          metrics: { loss },
          message: `${memberName(t)}backtest fold ${k + 1}/${list.length}`,
        });
        const due =
          epoch % p.checkpoint.everyEpochs === 0 ||
          (p.checkpoint.everyMinutes !== undefined && Date.now() - lastSaved >= p.checkpoint.everyMinutes * 60_000);
        if (due && epoch < epochs) {
          const doc: FoldsCheckpointDoc = {
            epochs,
            tests,
            done: out,
            current: {
              fold: k,
              epoch,
              model: JSON.parse((await serializeSequenceModel(tf, model, t.meta)).toString('utf8')) as SequenceModelDocument,
              optimizer: await optimizerState(tf, optimizer),
              adam: adamPowers(optimizer),
            },
          };
          await stream.save(JSON.stringify(doc), { fold: k + 1, foldEpoch: epoch, foldsDone: out.length }, { keep: p.checkpoint.keep });
          lastSaved = Date.now();
        }
      }
      const values = pointForecasts(predictSequence(tf, model, spec, fs), spec, fs.count);
      out.push(
        await ctx.store.put(
          encodeForecasts({
            count: fs.count,
            horizon: fs.horizon,
            values,
            windows: (testRef as ArtifactRef).sha256,
            model: `train.tfjs-sequence:${spec.arch}`,
          }),
          { name: `fold${k + 1}-forecasts`, mediaType: FORECASTS_MEDIA_TYPE },
        ),
      );
      // Every fold, the last one too: a worker lost before the step returns leaves no fold to train again.
      const doc: FoldsCheckpointDoc = { epochs, tests, done: out };
      await stream.save(JSON.stringify(doc), { fold: k + 1, foldEpoch: epochs, foldsDone: out.length }, { keep: p.checkpoint.keep });
      ctx.progress({
        done: k + 1,
        total: list.length,
        unit: 'fold',
        message: `${memberName(t)}backtest fold ${k + 1}/${list.length} (${epochs} epochs)`,
      });
    } finally {
      tf.dispose(data);
      model.dispose();
    }
  }
  return {
    forecasts: out,
    metrics: {
      foldEpochs: epochs,
      foldsResumed: keptFolds,
      foldsTrainedThisAttempt: list.length - keptFolds,
      foldResumedFromEpoch: resumedFoldEpoch,
      foldEpochsThisAttempt: epochsTrained,
    },
  };
}

async function trained(
  members: Training[],
  train: WindowSet,
  droppedTrain: number,
  droppedValidation: number,
  predictRef: ArtifactRef | null | undefined,
  started: number,
  valRows: { x: Float32Array; xf: Float32Array; y: Float32Array; count: number } | undefined,
): Promise<Omit<OutputsOf<typeof outputs>, 'foldForecasts'>> {
  const t = members[0]!;
  const { tf, ctx, state, spec } = t;
  const ensemble = members.length > 1;
  // One model: its document as it always was. An ensemble: the first member's document with the
  // others' weights (lib/sequence-model.ts).
  const bytes = ensemble
    ? Buffer.from(JSON.stringify(ensembleDocument(await Promise.all(members.map(docOf)))))
    : await serializeSequenceModel(tf, t.model, t.meta);
  const model = await ctx.store.put(bytes, { name: 'model.json', mediaType: 'application/vnd.mlpipe.tfjs-sequence+json' });
  // The first member's epochs (the tracked curves hold every member's).
  const history = await ctx.store.put(JSON.stringify(state.history), { name: 'history.json', mediaType: 'application/json' });
  const models = members.map((m) => m.model);
  let forecasts: ArtifactRef | null = null;
  let predicted = 0;
  if (isArtifactRef(predictRef)) {
    const w = await windowsInput(ctx, predictRef, 'predict');
    sameShape(train, w, 'predict');
    const values = pointForecasts(predictMembers(tf, models, spec, w), spec, w.count);
    forecasts = await ctx.store.put(
      encodeForecasts({
        count: w.count,
        horizon: w.horizon,
        values,
        windows: predictRef.sha256,
        model: `train.tfjs-sequence:${spec.arch}`,
      }),
      {
        name: 'forecasts.bin',
        mediaType: FORECASTS_MEDIA_TYPE,
      },
    );
    predicted = w.count;
  }
  const last = state.history[state.history.length - 1]!;
  const bestRow = state.history.find((h) => h.epoch === state.bestEpoch) ?? last;
  let running = Infinity;
  const curve = state.history.map((h) => Number((running = Math.min(running, h.valLoss ?? h.loss)).toPrecision(6)));
  const bestEpochs = members.map((m) => m.state.bestEpoch);
  const epochsRun = members.reduce((a, m) => a + m.epochsRun, 0);
  return {
    model,
    history,
    forecasts,
    backend: t.backend,
    curve,
    metrics: {
      // In an ensemble: the first member's epochs, losses and resume point.
      epochs: state.epoch,
      epochsThisAttempt: epochsRun,
      resumedFromEpoch: t.resumedFromEpoch,
      bestEpoch: state.bestEpoch,
      trainLoss: last.loss,
      ...(bestRow.valLoss !== undefined ? { valLoss: bestRow.valLoss } : {}),
      secondsPerEpoch: epochsRun ? (Date.now() - started) / 1000 / epochsRun : 0,
      parameters: members.reduce((a, m) => a + m.model.countParams(), 0),
      windows: train.count - droppedTrain,
      droppedWindows: droppedTrain + droppedValidation,
      predicted,
      stoppedByMedianRule: t.stoppedByRule,
      ...(ensemble
        ? {
            members: members.length,
            bestEpochMin: Math.min(...bestEpochs),
            bestEpochMax: Math.max(...bestEpochs),
            ...(valRows ? { ensembleValLoss: ensembleLoss(tf, models, spec, valRows) } : {}),
          }
        : {}),
    },
  };
}

/**
 * The ensemble's loss on the validation windows: the mean squared error of the members' mean
 * forecast (the pinball loss of its quantiles), in the scaled units the members' losses are in.
 */
function ensembleLoss(
  tf: Tf,
  models: LayersModel[],
  spec: SequenceSpec,
  rows: { x: Float32Array; xf: Float32Array; y: Float32Array; count: number },
): number {
  return forecastLoss(predictMembers(tf, models, spec, rows), rows.y, rows.count, spec);
}

/** MSE of [N, H] point forecasts, or the pinball loss of [N, H, Q] quantiles, against y [N, H]. */
export function forecastLoss(values: Float32Array, y: Float32Array, n: number, s: Pick<SequenceSpec, 'horizon' | 'quantiles'>): number {
  const Q = s.quantiles.length;
  let sum = 0;
  for (let i = 0; i < n * s.horizon; i++) {
    const truth = y[i]!;
    if (!Q) sum += (truth - values[i]!) ** 2;
    else
      for (let q = 0; q < Q; q++) {
        const e = truth - values[i * Q + q]!;
        sum += Math.max(s.quantiles[q]! * e, (s.quantiles[q]! - 1) * e);
      }
  }
  return sum / Math.max(1, n * s.horizon * Math.max(1, Q));
}
