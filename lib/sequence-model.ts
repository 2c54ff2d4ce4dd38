/**
 * The sequence forecasters of train.tfjs-sequence: an LSTM, a GRU or a temporal convolution network
 * over a window of L past steps (F features per step, index 0 the scaled target), optionally joined
 * with the H known-future steps (G features each), read out by one Dense layer into H forecasts (or
 * H x Q quantiles, h-major). Everything is in the window set's scaled units; unscaling belongs to the
 * window state (lib/windows.ts) and, in a served model, to the ONNX graph.
 *
 * The model document (`mlpipe.tfjs-sequence`) is one JSON document like train.tfjs-mlp's: the Keras
 * topology, the weights (base64) and what prediction and export need. Layer names are fixed
 * (`enc0..`, `head`) so that lib/onnx-sequence.ts finds the weights.
 *
 * A seed ensemble (train.tfjs-sequence `ensemble` above 1) is the same document with `members`: the
 * weights of the other networks, same topology, trained with seeds seed + 1, seed + 2, ...; the
 * document's own weights are the first member's. Its forecast is the mean of the members' forecasts
 * (predictMembers here, a Mean node in the ONNX export). A document without `members` is one model.
 */
import { PipelineError } from '../engine/errors.js';
import { RELATIVE_TO, windowBases, type RelativeTo } from './forecast-base.js';
import type { Tf } from './tf.js';

type LayersModel = import('@tensorflow/tfjs-layers').LayersModel;
type SymbolicTensor = import('@tensorflow/tfjs-layers').SymbolicTensor;
type Tensor = import('@tensorflow/tfjs-core').Tensor;

export const SEQUENCE_MODEL_KIND = 'mlpipe.tfjs-sequence';

export type SequenceArch = 'lstm' | 'gru' | 'tcn';

/** The network's shape: what buildSequenceModel builds and the exporter reads back. */
export interface SequenceSpec {
  arch: SequenceArch;
  /** Units per recurrent layer, filters per convolution. */
  units: number;
  /** Recurrent layers (lstm, gru); the TCN has one convolution per dilation. */
  layers: number;
  dropout: number;
  /** TCN: kernel width and the dilation of each convolution. */
  kernelSize: number;
  dilations: number[];
  lookback: number;
  horizon: number;
  /** Per-step input features (index 0: the scaled target). */
  inputs: string[];
  /** Known-future features per horizon step (may be empty). */
  future: string[];
  /** Quantile levels, ascending; empty: one point forecast per step (MSE). */
  quantiles: number[];
  seed: number;
  /**
   * What the network forecasts (lib/forecast-base.ts): the scaled level (`none`, or absent in a
   * document written before the option), or the change from a base of the window's own lookback;
   * with a base, the target input is also read relative to the window's last value.
   */
  relativeTo?: RelativeTo;
  /** The seasonal period of the data (from the window set): the `season` and `seasonalLast` bases use it. */
  season?: number;
}

export interface SequenceMeta extends SequenceSpec {
  kind: typeof SEQUENCE_MODEL_KIND;
  version: 1;
  /** The series the model was trained on (the window set's seriesIds). */
  seriesIds: string[];
}

export interface SequenceModelDocument extends SequenceMeta {
  modelTopology: unknown;
  weightSpecs: { name: string; shape: number[]; dtype: string }[];
  weightData: string;
  /** The other members of a seed ensemble (the document's own weights are the first's); absent: one model. */
  members?: SequenceMemberWeights[];
}

/** One more member of a seed ensemble: the document's network with its own seed and weights. */
export interface SequenceMemberWeights {
  seed: number;
  weightSpecs: SequenceModelDocument['weightSpecs'];
  weightData: string;
}

/** Output columns per window: H, or H x Q (h-major). */
export const outputWidth = (s: Pick<SequenceSpec, 'horizon' | 'quantiles'>): number => s.horizon * Math.max(1, s.quantiles.length);

/** Time steps the TCN's valid dilated convolutions consume: L must exceed it. */
export const tcnReach = (s: Pick<SequenceSpec, 'kernelSize' | 'dilations'>): number =>
  s.dilations.reduce((a, d) => a + (s.kernelSize - 1) * d, 0);

interface DilatedConvArgs {
  name: string;
  filters: number;
  kernelSize: number;
  dilation: number;
  seed: number;
}

/** One class per tfjs copy (tfjs-node brings its own): the layer must extend that copy's Layer. */
const convClasses = new WeakMap<object, new (args: DilatedConvArgs) => import('@tensorflow/tfjs-layers').layers.Layer>();

/**
 * A dilated causal convolution without padding, ReLU after: out[t] = relu(b + sum_j x[t + j*d] W_j)
 * over the positions where the whole kernel fits (L - (k - 1) d of them). Written with slices and
 * matrix products because tfjs has no gradient for conv1d with a dilation above 1. Its weights are
 * a Keras Conv1D's (`kernel` [k, in, out], `bias` [out]), so the ONNX export is one Conv node.
 */
export function dilatedConvLayer(tf: Tf): new (args: DilatedConvArgs) => import('@tensorflow/tfjs-layers').layers.Layer {
  const known = convClasses.get(tf);
  if (known) return known;
  type LayerArgs = ConstructorParameters<typeof tf.layers.Layer>[0];
  type Shape = (number | null)[];
  class DilatedCausalConv1D extends tf.layers.Layer {
    static className = 'MlpipeDilatedCausalConv1D';
    readonly filters: number;
    readonly kernelSize: number;
    readonly dilation: number;
    readonly seed: number;
    kernel: import('@tensorflow/tfjs-layers').LayerVariable | undefined;
    bias: import('@tensorflow/tfjs-layers').LayerVariable | undefined;
    constructor(args: DilatedConvArgs & LayerArgs) {
      super(args);
      this.filters = args.filters;
      this.kernelSize = args.kernelSize;
      this.dilation = args.dilation;
      this.seed = args.seed;
    }
    override build(inputShape: Shape | Shape[]): void {
      const shape = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as Shape;
      const channels = shape[shape.length - 1]!;
      this.kernel = this.addWeight(
        'kernel',
        [this.kernelSize, channels, this.filters],
        'float32',
        tf.initializers.glorotUniform({ seed: this.seed }),
      );
      this.bias = this.addWeight('bias', [this.filters], 'float32', tf.initializers.zeros());
      this.built = true;
    }
    override computeOutputShape(inputShape: Shape | Shape[]): Shape {
      const shape = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as Shape;
      const steps = shape[1] === null || shape[1] === undefined ? null : shape[1] - (this.kernelSize - 1) * this.dilation;
      return [shape[0] ?? null, steps, this.filters];
    }
    override call(inputs: Tensor | Tensor[]): Tensor {
      return tf.tidy(() => {
        const x = (Array.isArray(inputs) ? inputs[0]! : inputs) as import('@tensorflow/tfjs-core').Tensor3D;
        const [n, steps, channels] = x.shape;
        const out = steps - (this.kernelSize - 1) * this.dilation;
        const kernel = this.kernel!.read();
        let sum: Tensor | undefined;
        for (let j = 0; j < this.kernelSize; j++) {
          const part = tf.reshape(tf.slice(x, [0, j * this.dilation, 0], [n, out, channels]), [n * out, channels]);
          const w = tf.reshape(tf.slice(kernel, [j, 0, 0], [1, channels, this.filters]), [channels, this.filters]);
          const term = tf.matMul(part, w);
          sum = sum ? tf.add(sum, term) : term;
        }
        return tf.relu(tf.reshape(tf.add(sum!, this.bias!.read()), [n, out, this.filters]));
      });
    }
    override getConfig(): import('@tensorflow/tfjs-core').serialization.ConfigDict {
      return { ...super.getConfig(), filters: this.filters, kernelSize: this.kernelSize, dilation: this.dilation, seed: this.seed };
    }
  }
  tf.serialization.registerClass(DilatedCausalConv1D);
  convClasses.set(tf, DilatedCausalConv1D);
  return DilatedCausalConv1D;
}

/** Builds the (untrained, seeded) network. Inputs: `x` [L, F], and `xf` [H, G] when G > 0. */
export function buildSequenceModel(tf: Tf, s: SequenceSpec): LayersModel {
  const F = s.inputs.length;
  const G = s.future.length;
  const x = tf.input({ shape: [s.lookback, F], name: 'x' });
  const glorot = (k: number) => tf.initializers.glorotUniform({ seed: s.seed + k });
  let h: SymbolicTensor;
  if (s.arch === 'tcn') {
    if (tcnReach(s) >= s.lookback) {
      throw new PipelineError(
        'PLUGIN_PARAMS',
        `train.tfjs-sequence: the TCN's convolutions (kernel ${s.kernelSize}, dilations ${s.dilations.join(', ')}) reach back ${tcnReach(s)} steps, not less than the lookback ${s.lookback}.`,
        { hint: 'Use fewer or smaller dilations, a smaller kernel, or a longer lookback in process.window.' },
      );
    }
    const Conv = dilatedConvLayer(tf);
    h = x;
    s.dilations.forEach((d, i) => {
      h = new Conv({ name: `enc${i}`, filters: s.units, kernelSize: s.kernelSize, dilation: d, seed: s.seed + i }).apply(
        h,
      ) as SymbolicTensor;
    });
    h = tf.layers.flatten({ name: 'enc_flat' }).apply(h) as SymbolicTensor;
  } else {
    h = x;
    for (let i = 0; i < s.layers; i++) {
      const args = {
        name: `enc${i}`,
        units: s.units,
        returnSequences: i < s.layers - 1,
        // ONNX's LSTM/GRU default gate activation is the logistic sigmoid (tfjs defaults to hardSigmoid).
        recurrentActivation: 'sigmoid' as const,
        kernelInitializer: glorot(i),
        // glorot, not tfjs's orthogonal: that one needs tfjs's chained tensor methods, absent without the umbrella package.
        recurrentInitializer: glorot(50 + i),
      };
      h = (s.arch === 'lstm' ? tf.layers.lstm(args) : tf.layers.gru(args)).apply(h) as SymbolicTensor;
    }
  }
  // Unseeded, as in train.tfjs-mlp: a seeded tfjs dropout draws the same mask on every call.
  if (s.dropout > 0) h = tf.layers.dropout({ name: 'enc_dropout', rate: s.dropout }).apply(h) as SymbolicTensor;
  const inputs = [x];
  if (G > 0) {
    const xf = tf.input({ shape: [s.horizon, G], name: 'xf' });
    inputs.push(xf);
    const flat = tf.layers.flatten({ name: 'future_flat' }).apply(xf) as SymbolicTensor;
    h = tf.layers.concatenate({ name: 'join' }).apply([h, flat]) as SymbolicTensor;
  }
  const out = tf.layers.dense({ name: 'head', units: outputWidth(s), kernelInitializer: glorot(99) }).apply(h) as SymbolicTensor;
  return tf.model({ inputs, outputs: out, name: 'forecaster' });
}

/** The pinball (quantile) loss, averaged over windows, steps and levels; `yTrue` holds each step's value once per level. */
export function pinballLoss(tf: Tf, quantiles: number[]): (yTrue: Tensor, yPred: Tensor) => Tensor {
  return (yTrue, yPred) =>
    tf.tidy(() => {
      const width = yPred.shape[1]!;
      const q = tf.tensor1d(Array.from({ length: width }, (_, k) => quantiles[k % quantiles.length]!));
      const e = tf.sub(yTrue, yPred);
      return tf.mean(tf.maximum(tf.mul(q, e), tf.mul(tf.sub(q, 1), e)));
    });
}

/** The training target: y [N, H] as it is (point), or each value repeated for every quantile level. */
export function trainingTarget(y: Float32Array, n: number, s: Pick<SequenceSpec, 'horizon' | 'quantiles'>): Float32Array {
  const Q = s.quantiles.length;
  if (!Q) return y.subarray(0, n * s.horizon);
  const out = new Float32Array(n * s.horizon * Q);
  for (let i = 0; i < n * s.horizon; i++) out.fill(y[i]!, i * Q, (i + 1) * Q);
  return out;
}

export async function serializeSequenceModel(tf: Tf, model: LayersModel, meta: SequenceMeta): Promise<Buffer> {
  let saved: import('@tensorflow/tfjs-core').io.ModelArtifacts | undefined;
  await model.save(
    tf.io.withSaveHandler(async (artifacts) => {
      saved = artifacts;
      return { modelArtifactsInfo: { dateSaved: new Date(0), modelTopologyType: 'JSON' } };
    }),
  );
  const doc: SequenceModelDocument = {
    ...meta,
    modelTopology: saved!.modelTopology,
    weightSpecs: saved!.weightSpecs as SequenceModelDocument['weightSpecs'],
    weightData: Buffer.from(saved!.weightData as ArrayBuffer).toString('base64'),
  };
  return Buffer.from(JSON.stringify(doc));
}

export function isSequenceModel(value: unknown): value is SequenceModelDocument {
  return typeof value === 'object' && value !== null && (value as { kind?: unknown }).kind === SEQUENCE_MODEL_KIND;
}

/** A model document read back from the store (an untrusted step output): its shape checked before use. */
export function parseSequenceModel(value: unknown, where: string): SequenceModelDocument {
  const bad = (what: string): PipelineError =>
    new PipelineError('PLUGIN_INPUT', `${where}: the model is not a valid train.tfjs-sequence model (${what}).`, {
      hint: 'Bind the `model` output of a train.tfjs-sequence step.',
    });
  if (!isSequenceModel(value)) throw bad('wrong kind');
  const d = value;
  const int = (v: unknown, min: number): boolean => Number.isInteger(v) && (v as number) >= min;
  if (!['lstm', 'gru', 'tcn'].includes(d.arch)) throw bad('arch');
  if (!int(d.lookback, 1) || !int(d.horizon, 1) || !int(d.units, 1) || !int(d.layers, 1)) throw bad('sizes');
  if (!Array.isArray(d.inputs) || !d.inputs.length || !Array.isArray(d.future) || !Array.isArray(d.quantiles)) throw bad('features');
  if (!Array.isArray(d.dilations) || !int(d.kernelSize, 1) || !Array.isArray(d.seriesIds)) throw bad('tcn or series');
  if (!d.quantiles.every((q, i) => typeof q === 'number' && q > 0 && q < 1 && (i === 0 || q > d.quantiles[i - 1]!))) throw bad('quantiles');
  if (d.relativeTo !== undefined && !RELATIVE_TO.includes(d.relativeTo)) throw bad('relativeTo');
  if (d.season !== undefined && !int(d.season, 1)) throw bad('season');
  if (d.relativeTo !== undefined && d.relativeTo !== 'none' && d.season === undefined) throw bad('relativeTo without season');
  if (typeof d.weightData !== 'string' || !Array.isArray(d.weightSpecs)) throw bad('weights');
  if (d.members !== undefined) {
    if (!Array.isArray(d.members)) throw bad('members');
    for (const m of d.members as unknown[]) {
      const w = m as Partial<SequenceMemberWeights> | null;
      if (
        typeof w !== 'object' ||
        w === null ||
        !Number.isInteger(w.seed) ||
        typeof w.weightData !== 'string' ||
        !Array.isArray(w.weightSpecs)
      )
        throw bad('members');
    }
  }
  return d;
}

/** The members of a model document, each a one-model document (a document without `members`: itself alone). */
export function sequenceMembers(doc: SequenceModelDocument): SequenceModelDocument[] {
  const { members, ...first } = doc;
  return [first, ...(members ?? []).map((m) => ({ ...first, seed: m.seed, weightSpecs: m.weightSpecs, weightData: m.weightData }))];
}

/** One document out of one-model member documents (the first's topology and meta, the others' weights as `members`). */
export function ensembleDocument(members: SequenceModelDocument[]): SequenceModelDocument {
  const [first, ...rest] = members;
  if (!first) throw new PipelineError('PLUGIN_INPUT', 'a seed ensemble needs at least one member.');
  const { members: _, ...one } = first;
  if (!rest.length) return one;
  return { ...one, members: rest.map((m) => ({ seed: m.seed, weightSpecs: m.weightSpecs, weightData: m.weightData })) };
}

/**
 * The mean of the members' forecasts, element by element (all of one length). The ensemble's
 * forecast: tied with the median in the forecast bench (docs/forecasting.md), and a Mean node in
 * ONNX; the mean of sorted quantiles is still sorted.
 */
export function meanForecasts(values: Float32Array[]): Float32Array {
  const [first, ...rest] = values;
  if (!first) throw new PipelineError('PLUGIN_INPUT', 'no member forecasts to combine.');
  if (!rest.length) return first;
  if (rest.some((v) => v.length !== first.length)) throw new PipelineError('PLUGIN_INPUT', 'member forecasts of different lengths.');
  const out = Float32Array.from(first);
  for (const v of rest) for (let i = 0; i < out.length; i++) out[i] = out[i]! + v[i]!;
  for (let i = 0; i < out.length; i++) out[i] = out[i]! / values.length;
  return out;
}

/** Every member of a model document as a tfjs model (dispose them after use). */
export async function deserializeSequenceMembers(tf: Tf, doc: SequenceModelDocument): Promise<LayersModel[]> {
  const out: LayersModel[] = [];
  try {
    for (const m of sequenceMembers(doc)) out.push(await deserializeSequenceModel(tf, m));
  } catch (e) {
    for (const m of out) m.dispose();
    throw e;
  }
  return out;
}

/** Forecasts of an ensemble's members (predictSequence each), combined by their mean. */
export function predictMembers(tf: Tf, models: LayersModel[], s: SequenceSpec, w: WindowInputs, batchSize = 1024): Float32Array {
  return meanForecasts(models.map((m) => predictSequence(tf, m, s, w, batchSize)));
}

export async function deserializeSequenceModel(tf: Tf, doc: SequenceModelDocument): Promise<LayersModel> {
  dilatedConvLayer(tf); // registered before a TCN topology is read
  const data = Buffer.from(doc.weightData, 'base64');
  return tf.loadLayersModel(
    tf.io.fromMemory({
      modelTopology: doc.modelTopology as object,
      weightSpecs: doc.weightSpecs as import('@tensorflow/tfjs-core').io.WeightsManifestEntry[],
      weightData: data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength),
    }),
  );
}

/** The weights of a model document by name (`enc0/kernel`, `head/bias`, ...), as float32. */
export function sequenceWeights(doc: SequenceModelDocument): Map<string, { shape: number[]; data: Float32Array }> {
  const bytes = Buffer.from(doc.weightData, 'base64');
  const out = new Map<string, { shape: number[]; data: Float32Array }>();
  let offset = 0;
  for (const s of doc.weightSpecs) {
    if (s.dtype !== 'float32') throw new PipelineError('PLUGIN_INPUT', `weight ${s.name} is ${s.dtype}; only float32 weights are read.`);
    const n = s.shape.reduce((a, b) => a * b, 1);
    if (offset + n * 4 > bytes.length)
      throw new PipelineError('PLUGIN_INPUT', 'the model document has fewer weight bytes than its specs say.');
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = bytes.readFloatLE(offset + i * 4);
    offset += n * 4;
    out.set(s.name, { shape: s.shape, data });
  }
  return out;
}

/** The windows' arrays a model reads: x [N, L, F] and, with future features, xf [N, H, G]. */
export interface WindowInputs {
  count: number;
  x: Float32Array;
  xf: Float32Array;
}

/**
 * Forecasts of `n` windows in scaled units: [N, H, Q] row-major (Q = 1 for a point model), each
 * step's quantiles sorted ascending (so they never cross).
 */
export function predictSequence(tf: Tf, model: LayersModel, s: SequenceSpec, w: WindowInputs, batchSize = 1024): Float32Array {
  const n = w.count;
  const F = s.inputs.length;
  const G = s.future.length;
  const H = s.horizon;
  const Q = Math.max(1, s.quantiles.length);
  const out = tf.tidy(() => {
    const x = tf.tensor3d(networkInputs(s, w.x, n), [n, s.lookback, F]);
    const feeds = G > 0 ? [x, tf.tensor3d(w.xf.subarray(0, n * s.horizon * G), [n, s.horizon, G])] : x;
    return Float32Array.from((model.predict(feeds, { batchSize }) as Tensor).dataSync());
  });
  const mode = s.relativeTo ?? 'none';
  if (mode !== 'none') {
    const base = windowBases(mode, { count: n, lookback: s.lookback, horizon: H, season: s.season ?? 1, x: w.x, inputs: s.inputs });
    for (let k = 0; k < n * H; k++) for (let q = 0; q < Q; q++) out[k * Q + q] = out[k * Q + q]! + base[k]!;
  }
  if (Q > 1) sortQuantiles(out, Q);
  return out;
}

/**
 * The lookback inputs [N, L, F] the network reads: the windows' own, or, with a base
 * (`relativeTo`), a copy whose target input (feature 0) is relative to each window's last value.
 */
export function networkInputs(s: Pick<SequenceSpec, 'lookback' | 'inputs' | 'relativeTo'>, x: Float32Array, n: number): Float32Array {
  const L = s.lookback;
  const F = s.inputs.length;
  const view = x.subarray(0, n * L * F);
  if ((s.relativeTo ?? 'none') === 'none') return view;
  const out = Float32Array.from(view);
  for (let i = 0; i < n; i++) {
    const last = view[(i * L + L - 1) * F]!;
    for (let l = 0; l < L; l++) out[(i * L + l) * F] = view[(i * L + l) * F]! - last;
  }
  return out;
}

/** The labels [N, H] the network learns: y itself, or y minus each window's base (`relativeTo`). */
export function networkLabels(
  s: Pick<SequenceSpec, 'lookback' | 'horizon' | 'inputs' | 'relativeTo' | 'season'>,
  w: { x: Float32Array; y: Float32Array; count: number },
): Float32Array {
  const n = w.count;
  const y = w.y.subarray(0, n * s.horizon);
  const mode = s.relativeTo ?? 'none';
  if (mode === 'none') return y;
  const base = windowBases(mode, { count: n, lookback: s.lookback, horizon: s.horizon, season: s.season ?? 1, x: w.x, inputs: s.inputs });
  return Float32Array.from(y, (v, k) => v - base[k]!);
}

/** Sorts each consecutive group of `q` values ascending, in place. */
export function sortQuantiles(values: Float32Array, q: number): void {
  for (let i = 0; i + q <= values.length; i += q) values.subarray(i, i + q).sort();
}

/** The point forecast of each step out of [N, H, Q]: the median level (0.5, required with quantiles). */
export function pointForecasts(values: Float32Array, s: Pick<SequenceSpec, 'horizon' | 'quantiles'>, n: number): Float32Array {
  const Q = s.quantiles.length;
  if (!Q) return values;
  const m = s.quantiles.indexOf(0.5);
  const out = new Float32Array(n * s.horizon);
  for (let i = 0; i < n * s.horizon; i++) out[i] = values[i * Q + m]!;
  return out;
}
