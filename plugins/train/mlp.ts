import { z } from 'zod';
import { prng } from '../../engine/random.js'; // seeded shuffling: tfjs's own shuffle is not seedable
import { PipelineError } from '../../engine/errors.js';
import { datasetFile } from '../../lib/dataset.js';
import { definePlugin, type OutputsOf, type StepContext } from '../sdk.js';
import { watchSystem } from '../../lib/system-metrics.js';
import { loadTf, type BackendName, type Tf } from '../../lib/tf.js';
import { deserializeModel, loadMatrix, serializeModel, type Matrix, type ModelDocument, type ModelMeta } from '../../lib/model.js';

type LayersModel = import('@tensorflow/tfjs-layers').LayersModel;
type Optimizer = import('@tensorflow/tfjs-core').Optimizer;

/** Checkpoints of an epoch-based trainer: every N epochs and/or M minutes, the newest K kept (also train.tfjs-sequence's). */
export const epochCheckpointParam = z
  .object({
    everyEpochs: z.number().int().min(1).default(5),
    everyMinutes: z.number().positive().optional(),
    keep: z.number().int().min(1).default(3),
  })
  .strict()
  .default({ everyEpochs: 5, keep: 3 });

/** The tfjs backend a trainer asks for (lib/tf.ts chooses for `auto`). */
export const backendParam = z.enum(['auto', 'tfjs-node-gpu', 'tfjs-node', 'wasm', 'cpu']).default('auto');

const params = z
  .object({
    target: z.string().min(1),
    task: z.enum(['regression', 'classification']).default('regression'),
    /** Feature columns; default: every numeric column except the target. */
    features: z.array(z.string()).optional(),
    hidden: z.array(z.number().int().min(1).max(4096)).min(1).default([64, 32]),
    activation: z.enum(['relu', 'elu', 'tanh', 'selu']).default('relu'),
    /** Dropout rate after each hidden layer. Above 0, runs are not bit-reproducible (masks are unseeded). */
    dropout: z.number().min(0).lt(1).default(0),
    epochs: z.number().int().min(1).max(100_000).default(100),
    batchSize: z.number().int().min(1).default(256),
    learningRate: z.number().positive().default(0.003),
    /** constant; step (multiply by `factor` every `every` epochs); cosine (down to `minLearningRate`). */
    lrSchedule: z
      .discriminatedUnion('type', [
        z.object({ type: z.literal('constant') }).strict(),
        z.object({ type: z.literal('step'), every: z.number().int().min(1), factor: z.number().gt(0).max(1) }).strict(),
        z.object({ type: z.literal('cosine'), minLearningRate: z.number().min(0).default(0) }).strict(),
      ])
      .default({ type: 'constant' }),
    /** Stop when the validation loss has not improved by `minDelta` for `patience` epochs; keep the best weights. */
    earlyStopping: z
      .object({ patience: z.number().int().min(1), minDelta: z.number().min(0).default(0) })
      .strict()
      .optional(),
    seed: z.number().int().default(42),
    /**
     * Stop when, from epoch `afterEpochs` on, the best loss so far (validation loss when bound) is
     * above `curve[epoch - 1]` (null: no bar at that epoch). Hyperparameter search sets it from
     * the trials finished before (the median stopping rule).
     */
    stopIfWorseThan: z
      .object({ curve: z.array(z.number().nullable()).max(100_000), afterEpochs: z.number().int().min(1).default(5) })
      .strict()
      .optional(),
    checkpoint: epochCheckpointParam,
    backend: backendParam,
  })
  .strict();

type Params = z.infer<typeof params>;

/** 0..n-1 shuffled by a seeded generator (shared with train.tfjs-sequence). */
export function permutation(n: number, seed: number): Int32Array {
  const p = new Int32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  const r = prng(seed);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [p[i], p[j]] = [p[j]!, p[i]!];
  }
  return p;
}

export function learningRateAt(p: Pick<Params, 'learningRate' | 'lrSchedule' | 'epochs'>, epoch: number): number {
  const s = p.lrSchedule;
  if (s.type === 'step') return p.learningRate * s.factor ** Math.floor((epoch - 1) / s.every);
  if (s.type === 'cosine')
    return s.minLearningRate + 0.5 * (p.learningRate - s.minLearningRate) * (1 + Math.cos((Math.PI * (epoch - 1)) / p.epochs));
  return p.learningRate;
}

interface TrainState {
  epoch: number;
  bestLoss: number;
  bestEpoch: number;
  wait: number;
  /** `at`: when the epoch ended (ms), so tracked curves keep their real times across a resume. */
  history: { epoch: number; loss: number; valLoss?: number; lr: number; at?: number }[];
}

/** Optimizer slots in order (Adam: iterations, first moments, second moments), base64. */
export type OptimizerSlots = { name: string; shape: number[]; dtype: 'float32' | 'int32'; data: string }[];

interface CheckpointDoc {
  model: ModelDocument;
  optimizer: OptimizerSlots;
  best?: ModelDocument;
  state: TrainState;
}

function buildModel(tf: Tf, p: Params, inputs: number, outputs: number): LayersModel {
  const model = tf.sequential();
  p.hidden.forEach((units, i) => {
    model.add(
      tf.layers.dense({
        units,
        activation: p.activation,
        inputShape: i === 0 ? [inputs] : undefined,
        kernelInitializer: tf.initializers.glorotUniform({ seed: p.seed + i }),
      }),
    );
    // No seed: tfjs draws a seeded dropout mask afresh from the same seed on every call, so every
    // batch would drop the same units. Unseeded masks are real dropout, but not bit-reproducible.
    if (p.dropout > 0) model.add(tf.layers.dropout({ rate: p.dropout }));
  });
  const activation = p.task === 'regression' ? 'linear' : outputs === 1 ? 'sigmoid' : 'softmax';
  model.add(tf.layers.dense({ units: outputs, activation, kernelInitializer: tf.initializers.glorotUniform({ seed: p.seed + 99 }) }));
  return model;
}

/** Targets as a tensor-ready Float32Array: scaled values (regression) or class indices / one-hot. */
function targets(task: Params['task'], y: (number | string)[], meta: ModelMeta): { data: Float32Array; width: number } {
  if (task === 'regression') {
    return { data: Float32Array.from(y, (v) => ((v as number) - meta.targetMean!) / meta.targetStd!), width: 1 };
  }
  const classes = meta.classes!;
  const index = new Map(classes.map((c, i) => [String(c), i]));
  if (classes.length === 2) return { data: Float32Array.from(y, (v) => index.get(String(v)) ?? 0), width: 1 };
  const data = new Float32Array(y.length * classes.length);
  y.forEach((v, i) => (data[i * classes.length + (index.get(String(v)) ?? 0)] = 1));
  return { data, width: classes.length };
}

/** The optimizer's slots as JSON-safe base64 blocks, for a checkpoint. */
export async function optimizerState(tf: Tf, optimizer: Optimizer): Promise<OptimizerSlots> {
  const weights = await optimizer.getWeights();
  return Promise.all(
    weights.map(async (w) => {
      const data = await w.tensor.data();
      return {
        name: w.name,
        shape: w.tensor.shape,
        dtype: w.tensor.dtype === 'int32' ? 'int32' : 'float32',
        data: Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('base64'),
      } as const;
    }),
  );
}

/**
 * A JSON checkpoint document of a tfjs trainer, or undefined when the bytes are not one (another
 * trainer's, or no JSON at all) or lack a field in `required`: the caller starts fresh and says so.
 */
export function parseCheckpoint<T>(data: Buffer, required: readonly string[]): T | undefined {
  try {
    const doc = JSON.parse(data.toString('utf8')) as unknown;
    return typeof doc === 'object' && doc !== null && required.every((k) => k in doc) ? (doc as T) : undefined;
  } catch {
    return undefined;
  }
}

/** Puts a checkpoint's optimizer slots back. */
export function restoreOptimizer(tf: Tf, optimizer: Optimizer, saved: OptimizerSlots): Promise<void> {
  return optimizer.setWeights(
    saved.map((w) => {
      const b = Buffer.from(w.data, 'base64');
      const copy = new Uint8Array(b).buffer; // aligned copy
      // Adam's iteration counter is int32: its bytes must not be read as floats.
      const values = w.dtype === 'int32' ? new Int32Array(copy) : new Float32Array(copy);
      return { name: w.name, tensor: tf.tensor(values, w.shape, w.dtype) };
    }),
  );
}

/**
 * train.tfjs-mlp — trains a multi-layer perceptron with tfjs for regression (MSE on a standardized
 * target) or classification (binary or softmax cross-entropy) on the `train` dataset, watching the
 * `validation` dataset when bound. Seeded initialisation and shuffling; a learning-rate schedule;
 * early stopping that keeps the best weights. The backend is tfjs-node-gpu, tfjs-node, wasm or cpu,
 * the first that loads (or `backend`), and is reported. Every `checkpoint.everyEpochs` epochs (and/or
 * `everyMinutes`) the model, optimizer state and progress are saved to the artifact store, keeping
 * the newest `keep`; a retry after a crash resumes from the newest checkpoint instead of epoch 1.
 */
/** What a training step returns (the tracked run's model, its metrics and curves). */
const trainOutputs = { model: 'model', metrics: 'metrics', history: 'artifact', backend: 'json', curve: 'json' } as const;

export const trainMlp = definePlugin({
  name: 'train.tfjs-mlp',
  version: '3',
  description: 'tfjs MLP (regression / classification) with early stopping, LR schedule, seeded init and checkpoint-resume.',
  // tfjs yields to the event loop between batches; one batch on the cpu backend is well under this.
  heartbeat: { blocksEventLoopMs: 5_000 },
  params,
  inputs: { train: 'dataset', 'validation?': 'dataset' },
  outputs: trainOutputs,
  async run(ctx, p, inputs) {
    const { tf, backend, tried } = await loadTf(p.backend as BackendName | 'auto');
    ctx.logger.info({ backend, tried }, `training with tfjs backend ${backend}`);
    const { train, validation } = await loadInputs(ctx, p, inputs);
    const features = train.features;
    const meta = modelMeta(p, train);
    const outputsWidth = p.task === 'regression' || meta.classes!.length === 2 ? 1 : meta.classes!.length;
    const loss = p.task === 'regression' ? 'meanSquaredError' : outputsWidth === 1 ? 'binaryCrossentropy' : 'categoricalCrossentropy';

    const model = buildModel(tf, p, features.length, outputsWidth);
    const optimizer = tf.train.adam(p.learningRate);
    model.compile({ optimizer, loss });
    const t: Training = {
      tf,
      ctx,
      p,
      meta,
      optimizer,
      loss,
      model,
      state: { epoch: 0, bestLoss: Infinity, bestEpoch: 0, wait: 0, history: [] },
      best: undefined,
      resumedFromEpoch: 0,
      lastCheckpointAt: 0,
      epochsRun: 0,
      stoppedByRule: 0,
      backend,
    };
    await resume(t);

    const data = tensors(t, train, validation);
    // CPU, memory and GPU use while training, as MLflow system/ metrics (lib/system-metrics.ts).
    const system = watchSystem(ctx);
    const started = Date.now();
    t.lastCheckpointAt = Date.now();
    try {
      await fitEpochs(t, train.rows, data);
      return await trainedOutputs(t, backend, train.rows, started);
    } finally {
      await system.stop();
      tf.dispose([data.xAll, data.yAll, ...(data.vx ? [data.vx] : []), ...(data.vy ? [data.vy] : [])]);
      t.model.dispose();
    }
  },
});

/** One training attempt: the model being trained, its progress, and what every part of it reads. */
interface Training {
  tf: Tf;
  ctx: StepContext;
  p: Params;
  meta: ModelMeta;
  optimizer: Optimizer;
  loss: string;
  model: LayersModel;
  state: TrainState;
  /** The best weights so far (with early stopping). */
  best: ModelDocument | undefined;
  resumedFromEpoch: number;
  lastCheckpointAt: number;
  epochsRun: number;
  /** The epoch the median stopping rule stopped at (0: it did not). */
  stoppedByRule: number;
  /** The tfjs backend training runs on; checkpoints record it. */
  backend: BackendName;
}

/** The data as tensors: all of train, and validation when bound. */
interface TrainTensors {
  xAll: import('@tensorflow/tfjs-core').Tensor2D;
  yAll: import('@tensorflow/tfjs-core').Tensor2D;
  vx: import('@tensorflow/tfjs-core').Tensor2D | undefined;
  vy: import('@tensorflow/tfjs-core').Tensor2D | undefined;
}

/** The train and validation matrices (validation with train's features), checked for what training needs. */
async function loadInputs(
  ctx: StepContext,
  p: Params,
  inputs: Record<string, unknown>,
): Promise<{ train: Matrix; validation: Matrix | undefined }> {
  const train = await loadMatrix(await datasetFile(ctx, inputs, 'train'), { target: p.target, features: p.features, label: 'train' });
  const features = train.features;
  const validation: Matrix | undefined = inputs['validation']
    ? await loadMatrix(await datasetFile(ctx, inputs, 'validation'), { target: p.target, features, label: 'validation' })
    : undefined;
  if (train.rows === 0) throw new PipelineError('DATA_INVALID', 'train: the dataset has no rows.');
  if (p.earlyStopping && !validation) {
    throw new PipelineError('PLUGIN_PARAMS', 'train.tfjs-mlp: earlyStopping needs a `validation` input.', {
      hint: 'Bind inputs.validation, or remove earlyStopping.',
    });
  }
  return { train, validation };
}

/** What the model document records about the task: the target's scale (regression) or its classes and their priors. */
function modelMeta(p: Params, train: Matrix): ModelMeta {
  const features = train.features;
  const meta: ModelMeta = { kind: 'mlpipe.tfjs-mlp', version: 1, task: p.task, features, target: p.target };
  if (p.task === 'regression') {
    const ys = train.y as number[];
    if (ys.some((v) => typeof v !== 'number'))
      throw new PipelineError('DATA_INVALID', `train: the target '${p.target}' is not numeric; use task: classification for labels.`);
    const mean = ys.reduce((a, b) => a + b, 0) / ys.length;
    const std = Math.sqrt(ys.reduce((a, b) => a + (b - mean) ** 2, 0) / ys.length) || 1;
    Object.assign(meta, { targetMean: mean, targetStd: std });
  } else {
    meta.classes = [...new Set(train.y!.map((v) => v as string | number))].sort();
    meta.classPriors = meta.classes.map((c) => train.y!.filter((v) => String(v) === String(c)).length / train.rows);
    if (meta.classes.length < 2)
      throw new PipelineError('DATA_INVALID', `train: the target '${p.target}' has a single class (${String(meta.classes[0])}).`);
  }
  return meta;
}

/** Continues from the newest checkpoint, when there is one: its model, optimizer state, best weights and progress. */
async function resume(t: Training): Promise<void> {
  const { tf, ctx, optimizer, loss } = t;
  const resumed = await ctx.checkpoint.latest<{ epoch: number; backend?: BackendName }>();
  const doc = resumed ? parseCheckpoint<CheckpointDoc>(resumed.data, ['model', 'state']) : undefined;
  if (resumed && !doc) ctx.logger.warn({}, 'the checkpoint is not one of train.tfjs-mlp; starting from epoch 1');
  if (resumed && doc) {
    const restored = await deserializeModel(tf, Buffer.from(JSON.stringify(doc.model)));
    t.model.dispose();
    t.model = restored.model;
    t.model.compile({ optimizer, loss });
    await restoreOptimizer(tf, optimizer, doc.optimizer);
    t.state = doc.state;
    t.best = doc.best;
    t.resumedFromEpoch = t.state.epoch;
    // The curve so far, as the checkpoint recorded it: tracking gets each epoch once (same timestamps).
    for (const h of t.state.history) logEpoch(ctx, h);
    const from = resumed.meta.backend;
    ctx.logger.info(
      { epoch: t.state.epoch, from },
      `resumed from the checkpoint of epoch ${t.state.epoch}${from ? ` (written on ${from})` : ''}`,
    );
  }
}

function tensors({ tf, p, meta }: Training, train: Matrix, validation: Matrix | undefined): TrainTensors {
  const features = train.features;
  const y = targets(p.task, train.y!, meta);
  const xAll = tf.tensor2d(train.x, [train.rows, features.length]);
  const yAll = tf.tensor2d(y.data, [train.rows, y.width]);
  const vx = validation ? tf.tensor2d(validation.x, [validation.rows, features.length]) : undefined;
  const vyData = validation ? targets(p.task, validation.y!, meta) : undefined;
  const vy = vyData && validation ? tf.tensor2d(vyData.data, [validation.rows, vyData.width]) : undefined;
  return { xAll, yAll, vx, vy };
}

/** Saves the model, the optimizer state, the best weights and the progress, keeping the newest `checkpoint.keep`. */
async function saveCheckpoint(t: Training): Promise<void> {
  const { tf, ctx, p, meta, optimizer } = t;
  const doc: CheckpointDoc = {
    model: JSON.parse((await serializeModel(tf, t.model, meta)).toString('utf8')) as ModelDocument,
    optimizer: await optimizerState(tf, optimizer),
    best: t.best,
    state: t.state,
  };
  await ctx.checkpoint.save(JSON.stringify(doc), { epoch: t.state.epoch, backend: t.backend }, { keep: p.checkpoint.keep });
  t.lastCheckpointAt = Date.now();
}

/** One epoch of the training curve, to tracking. */
function logEpoch(ctx: StepContext, h: { epoch: number; loss: number; valLoss?: number; lr: number; at?: number }): void {
  ctx.logMetrics(
    { loss: h.loss, ...(h.valLoss !== undefined ? { val_loss: h.valLoss } : {}), learning_rate: h.lr },
    { step: h.epoch, timestamp: h.at },
  );
}

/** The epochs left, until `epochs`, early stopping or the median stopping rule; checkpoints when due. */
async function fitEpochs(t: Training, rows: number, data: TrainTensors): Promise<void> {
  const { ctx, p, state } = t;
  for (let epoch = state.epoch + 1; epoch <= p.epochs; epoch++) {
    if (ctx.signal.aborted) throw ctx.signal.reason as Error;
    const { trainLoss, valLoss, lr } = await fitEpoch(t, rows, data, epoch);
    state.epoch = epoch;
    const row = { epoch, loss: trainLoss, valLoss, lr, at: Date.now() };
    state.history.push(row);
    // Each epoch goes to tracking as it ends: the step's MLflow run shows the curve growing.
    logEpoch(ctx, row);
    t.epochsRun++;
    await watchLoss(t, epoch, valLoss ?? trainLoss);
    ctx.progress({
      done: epoch,
      total: p.epochs,
      unit: 'epoch',
      metrics: { loss: trainLoss, ...(valLoss !== undefined ? { val_loss: valLoss } : {}) },
    });
    const stop = stopsAt(t, epoch);
    const due =
      epoch % p.checkpoint.everyEpochs === 0 ||
      (p.checkpoint.everyMinutes !== undefined && Date.now() - t.lastCheckpointAt >= p.checkpoint.everyMinutes * 60_000);
    if (due && !stop && epoch < p.epochs) await saveCheckpoint(t);
    if (stop) {
      ctx.logger.info({ epoch, bestEpoch: state.bestEpoch }, 'early stopping');
      break;
    }
  }
}

/** One epoch over the shuffled train data (seeded by `seed` and the epoch), then the validation loss. Divergence fails the step. */
async function fitEpoch(
  { tf, p, model, optimizer }: Training,
  rows: number,
  { xAll, yAll, vx, vy }: TrainTensors,
  epoch: number,
): Promise<{ trainLoss: number; valLoss: number | undefined; lr: number }> {
  const lr = learningRateAt(p, epoch);
  (optimizer as unknown as { learningRate: number }).learningRate = lr;
  const order = tf.tensor1d(permutation(rows, p.seed * 100_003 + epoch), 'int32');
  const xs = tf.gather(xAll, order);
  const ys = tf.gather(yAll, order);
  const h = await model.fit(xs, ys, { epochs: 1, batchSize: p.batchSize, shuffle: false, verbose: 0 });
  tf.dispose([order, xs, ys]);
  const trainLoss = h.history['loss']![0] as number;
  if (!Number.isFinite(trainLoss)) {
    throw new PipelineError('STEP_FAILED', `train.tfjs-mlp: training diverged at epoch ${epoch} (loss ${String(trainLoss)}).`, {
      retryable: false,
      hint: 'Lower learningRate, standardize the features (process.transform), or check the data for extreme values.',
    });
  }
  let valLoss: number | undefined;
  if (vx && vy) {
    const r = model.evaluate(vx, vy, { batchSize: 4096 }) as import('@tensorflow/tfjs-core').Scalar;
    valLoss = (await r.data())[0]!;
    r.dispose();
  }
  return { trainLoss, valLoss, lr };
}

/** Tracks the best loss (validation loss when bound) and, with early stopping, the best weights. */
async function watchLoss(t: Training, epoch: number, watched: number): Promise<void> {
  const { tf, p, meta, state } = t;
  if (watched < state.bestLoss - (p.earlyStopping?.minDelta ?? 0)) {
    state.bestLoss = watched;
    state.bestEpoch = epoch;
    state.wait = 0;
    if (p.earlyStopping) t.best = JSON.parse((await serializeModel(tf, t.model, meta)).toString('utf8')) as ModelDocument;
  } else state.wait++;
}

/** Whether training stops after `epoch`: the median stopping rule's bar, or early stopping's patience. */
function stopsAt(t: Training, epoch: number): boolean {
  const { ctx, p, state } = t;
  const bar = p.stopIfWorseThan && epoch >= p.stopIfWorseThan.afterEpochs ? p.stopIfWorseThan.curve[epoch - 1] : null;
  const belowMedian = bar !== null && bar !== undefined && state.bestLoss > bar;
  if (belowMedian) {
    t.stoppedByRule = epoch;
    ctx.logger.info(
      { epoch, bestLoss: state.bestLoss, bar },
      `stopped: best loss ${state.bestLoss.toPrecision(4)} is worse than the median ${bar.toPrecision(4)} of earlier trials at epoch ${epoch}`,
    );
  }
  const stop = belowMedian || (p.earlyStopping !== undefined && state.wait >= p.earlyStopping.patience);
  return stop;
}

/** The trained model (the best weights when early stopping kept them), its history, curve and metrics; the curves go to tracking. */
async function trainedOutputs(t: Training, backend: string, rows: number, started: number): Promise<OutputsOf<typeof trainOutputs>> {
  const { tf, ctx, p, meta, state, best } = t;
  if (best) {
    const restored = await deserializeModel(tf, Buffer.from(JSON.stringify(best)));
    t.model.dispose();
    t.model = restored.model;
  }
  const bytes = await serializeModel(tf, t.model, meta);
  const modelRef = await ctx.store.put(bytes, { name: 'model.json', mediaType: 'application/vnd.mlpipe.tfjs-mlp+json' });
  const historyRef = await ctx.store.put(JSON.stringify(state.history), { name: 'history.json', mediaType: 'application/json' });
  const last = state.history[state.history.length - 1]!;
  const scale = p.task === 'regression' ? meta.targetStd! : 1;
  const bestRow = state.history.find((h) => h.epoch === state.bestEpoch) ?? last;
  // Best loss so far per epoch: what a search's median stopping rule compares trials by.
  let running = Infinity;
  const curve = state.history.map((h) => (running = Math.min(running, h.valLoss ?? h.loss)));
  const epochsRun = t.epochsRun;
  return {
    model: modelRef,
    history: historyRef,
    backend,
    curve: curve.map((v) => Number(v.toPrecision(6))),
    metrics: {
      epochs: state.epoch,
      epochsThisAttempt: epochsRun,
      resumedFromEpoch: t.resumedFromEpoch,
      bestEpoch: state.bestEpoch,
      trainLoss: last.loss,
      ...(bestRow.valLoss !== undefined ? { valLoss: bestRow.valLoss } : {}),
      ...(p.task === 'regression' && bestRow.valLoss !== undefined ? { valRmse: Math.sqrt(bestRow.valLoss) * scale } : {}),
      secondsPerEpoch: epochsRun ? (Date.now() - started) / 1000 / epochsRun : 0,
      features: meta.features.length,
      rows,
      stoppedByMedianRule: t.stoppedByRule,
    },
  };
}
