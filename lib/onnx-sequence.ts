/**
 * The ONNX graph of a train.tfjs-sequence forecaster together with its window transform: raw target
 * values of the last L steps (and raw observed covariates) of one series in, H forecasts (or H x Q
 * quantiles) of that series out, in the target's units. Pure: no I/O, no tfjs.
 *
 * Inside: the per-series scaling fitted by process.window (a table of means and standard deviations
 * gathered by the series index), the covariate scalings, the network (ONNX LSTM / GRU ops, or Conv
 * for the TCN, then the dense read-out), the sorting of each step's quantiles (TopK), and the
 * unscaling of the outputs; a seed ensemble has every member's network side by side and their Mean.
 * Calendar features of the window and of the forecast steps are computed
 * from timestamps by the client side (the prediction server, lib/windows.ts's calendar code), and
 * come in as ready features.
 */
import { PipelineError } from '../engine/errors.js';
import type { OnnxForecastContract } from '../adapters/onnx/contract.js';
import { DataType, type ModelProto, type ValueInfoProto } from '../adapters/onnx/proto.js';
import { attrInt, attrInts, Graph, ONNX_IR_VERSION, ONNX_OPSET, valueInfo, type ExportOptions } from './onnx-graph.js';
import { baseMatrix } from './forecast-base.js';
import { outputWidth, sequenceMembers, sequenceWeights, type SequenceModelDocument } from './sequence-model.js';

function exportError(message: string, hint?: string): PipelineError {
  return new PipelineError('PLUGIN_PARAMS', `export.onnx: ${message}`, hint ? { hint } : {});
}

type Weights = ReturnType<typeof sequenceWeights>;

function weight(w: Weights, name: string): { shape: number[]; data: Float32Array } {
  const v = w.get(name);
  if (!v) throw exportError(`the model has no weight '${name}'.`);
  return v;
}

/**
 * Keras gate blocks (columns of a [in, G*units] kernel) to ONNX's [1, G*units, in] with the gates
 * in ONNX's order: `order[g]` is the Keras block of ONNX gate g.
 */
function gates(kernel: { shape: number[]; data: Float32Array }, units: number, order: number[]): Float32Array {
  const [inputs, cols] = kernel.shape as [number, number];
  const out = new Float32Array(cols * inputs);
  order.forEach((k, g) => {
    for (let u = 0; u < units; u++)
      for (let j = 0; j < inputs; j++) out[(g * units + u) * inputs + j] = kernel.data[j * cols + k * units + u]!;
  });
  return out;
}

function gateBias(bias: Float32Array | undefined, units: number, order: number[]): Float32Array {
  // ONNX B is [Wb, Rb]; tfjs has one bias per gate (the input side): Rb stays zero.
  const out = new Float32Array(2 * order.length * units);
  if (bias) order.forEach((k, g) => out.set(bias.subarray(k * units, (k + 1) * units), g * units));
  return out;
}

/**
 * The network on float x [N, L, F] (and xf [N, H, G]): [N, H*Q] in scaled units. `prefix` names its
 * weights apart from another member's in the same graph.
 */
export function sequenceNetwork(g: Graph, x: string, xf: string | undefined, doc: SequenceModelDocument, prefix = ''): string {
  const w = sequenceWeights(doc);
  let h: string;
  if (doc.arch === 'tcn') {
    // [N, L, F] -> [N, F, L] for Conv; each valid dilated convolution shortens the sequence.
    h = g.one('Transpose', [x], [attrInts('perm', [0, 2, 1])]);
    doc.dilations.forEach((d, i) => {
      const k = weight(w, `enc${i}/kernel`);
      const [width, cin, cout] = k.shape as [number, number, number];
      // Keras [k, in, out] -> ONNX [out, in, k].
      const kw = new Float32Array(cout * cin * width);
      for (let t = 0; t < width; t++)
        for (let c = 0; c < cin; c++) for (let o = 0; o < cout; o++) kw[(o * cin + c) * width + t] = k.data[(t * cin + c) * cout + o]!;
      const bias = w.get(`enc${i}/bias`);
      const inputs = [h, g.tensor(`${prefix}enc${i}_w`, DataType.FLOAT, [cout, cin, width], kw)];
      if (bias) inputs.push(g.tensor(`${prefix}enc${i}_b`, DataType.FLOAT, [cout], bias.data));
      h = g.one('Relu', [g.one('Conv', inputs, [attrInts('dilations', [d]), attrInts('kernel_shape', [width]), attrInts('strides', [1])])]);
    });
    // Back to [N, L', C], flattened row-major as Keras's Flatten does.
    h = g.one('Flatten', [g.one('Transpose', [h], [attrInts('perm', [0, 2, 1])])], [attrInt('axis', 1)]);
  } else {
    const lstm = doc.arch === 'lstm';
    // Keras LSTM gates i f c o -> ONNX i o f c; GRU z r h in both.
    const order = lstm ? [0, 3, 1, 2] : [0, 1, 2];
    const op = lstm ? 'LSTM' : 'GRU';
    let seq = g.one('Transpose', [x], [attrInts('perm', [1, 0, 2])]); // [L, N, F]
    h = seq;
    for (let i = 0; i < doc.layers; i++) {
      const units = doc.units;
      const k = weight(w, `enc${i}/kernel`);
      const r = weight(w, `enc${i}/recurrent_kernel`);
      const bias = w.get(`enc${i}/bias`)?.data;
      const G = order.length;
      const W = g.tensor(`${prefix}enc${i}_W`, DataType.FLOAT, [1, G * units, k.shape[0]!], gates(k, units, order));
      const R = g.tensor(`${prefix}enc${i}_R`, DataType.FLOAT, [1, G * units, units], gates(r, units, order));
      const B = g.tensor(`${prefix}enc${i}_B`, DataType.FLOAT, [1, 2 * G * units], gateBias(bias, units, order));
      const attrs = [attrInt('hidden_size', units), ...(lstm ? [] : [attrInt('linear_before_reset', 0)])];
      const [y, yh] = g.node(op, [seq, W, R, B], attrs, undefined, lstm ? 3 : 2) as [string, string];
      if (i < doc.layers - 1)
        seq = g.one('Squeeze', [y, g.int64s([1])]); // [L, 1, N, U] -> [L, N, U]
      else h = g.one('Squeeze', [yh, g.int64s([0])]); // [1, N, U] -> [N, U]
    }
  }
  if (xf) h = g.one('Concat', [h, g.one('Flatten', [xf], [attrInt('axis', 1)])], [attrInt('axis', 1)]);
  const kernel = weight(w, 'head/kernel');
  const bias = w.get('head/bias');
  if (kernel.shape[1] !== outputWidth(doc)) throw exportError(`the read-out has ${kernel.shape[1]} outputs, not ${outputWidth(doc)}.`);
  h = g.one('MatMul', [h, g.tensor(`${prefix}head_kernel`, DataType.FLOAT, kernel.shape, kernel.data)]);
  if (bias) h = g.one('Add', [h, g.tensor(`${prefix}head_bias`, DataType.FLOAT, bias.shape, bias.data)]);
  return h;
}

/** How process.window scaled what the model reads: the target per series, and each scaled covariate. */
export interface SequenceScaling {
  /** Per series, in the model's seriesIds order. */
  target: { mean: number; std: number }[];
  /** Covariates the graph scales ((v - mean) / std), observed and known-future, by feature name. */
  covariates: Record<string, { mean: number; std: number }>;
}

/** The window contract's feature lists of a forecaster graph (see OnnxForecastContract). */
export type ForecastFeatures = Pick<OnnxForecastContract, 'covariates' | 'calendar' | 'futureCovariates' | 'futureCalendar'>;

/**
 * Transform + network + unscaling in graph `g` (see buildSequenceOnnx for the inputs): the graph
 * inputs it reads, and `output`, double [N, H, Q] in the target's units.
 */
export function sequenceForecast(
  g: Graph,
  doc: SequenceModelDocument,
  scaling: SequenceScaling,
): { inputs: ValueInfoProto[]; output: string; features: ForecastFeatures; members: number } {
  const L = doc.lookback;
  const H = doc.horizon;
  const Q = Math.max(1, doc.quantiles.length);
  if (scaling.target.length !== doc.seriesIds.length)
    throw exportError(`the window state scales ${scaling.target.length} series; the model was trained on ${doc.seriesIds.length}.`);
  const covariates = doc.inputs.slice(1).filter((f) => scaling.covariates[f]);
  const calendar = doc.inputs.slice(1).filter((f) => !scaling.covariates[f]);
  const inputs = [
    valueInfo('series', DataType.INT64, ['N'], 'index into mlpipe.contract seriesIds'),
    valueInfo('history', DataType.DOUBLE, ['N', L], 'raw target values, oldest first'),
  ];

  const means = Float64Array.from(scaling.target, (s) => s.mean);
  const stds = Float64Array.from(scaling.target, (s) => s.std);
  const series = g.one('Reshape', ['series', g.int64s([-1, 1])]); // [N, 1]
  const mean = g.one('Gather', [g.tensor('target_means', DataType.DOUBLE, [means.length], means), series], [attrInt('axis', 0)]); // [N, 1]
  const std = g.one('Gather', [g.tensor('target_stds', DataType.DOUBLE, [stds.length], stds), series], [attrInt('axis', 0)]);
  const target = g.one('Div', [g.one('Sub', ['history', mean]), std]); // [N, L]
  // A model relative to a base (lib/forecast-base.ts): the base of each step is a linear map of the
  // scaled lookback (MatMul with B [L, H]), and the network reads the target relative to its last value.
  const mode = doc.relativeTo ?? 'none';
  let base: string | undefined;
  let targetIn = target;
  if (mode !== 'none') {
    const B = baseMatrix(mode, L, H, doc.season ?? 1);
    base = g.one('MatMul', [target, g.tensor('base_matrix', DataType.DOUBLE, [L, H], B)]); // [N, H]
    const last = g.one('Gather', [target, g.int64s([L - 1])], [attrInt('axis', 1)]); // [N, 1]
    targetIn = g.one('Sub', [target, last]);
  }
  // Per-step features [N, L, F]: the scaled target, the scaled covariates (double), then the ready
  // calendar features (float); reordered to the model's input order when they interleave.
  let x = g.one('Unsqueeze', [targetIn, g.int64s([2])]); // [N, L, 1]
  if (covariates.length) {
    inputs.push(valueInfo('covariates', DataType.DOUBLE, ['N', L, covariates.length], `raw ${covariates.join(', ')}`));
    const cm = Float64Array.from(covariates, (c) => scaling.covariates[c]!.mean);
    const cs = Float64Array.from(covariates, (c) => scaling.covariates[c]!.std);
    const scaled = g.one('Div', [
      g.one('Sub', ['covariates', g.tensor('covariate_means', DataType.DOUBLE, [cm.length], cm)]),
      g.tensor('covariate_stds', DataType.DOUBLE, [cs.length], cs),
    ]);
    x = g.one('Concat', [x, scaled], [attrInt('axis', 2)]);
  }
  x = g.one('Cast', [x], [attrInt('to', DataType.FLOAT)]);
  if (calendar.length) {
    inputs.push(valueInfo('calendar', DataType.FLOAT, ['N', L, calendar.length], calendar.join(', ')));
    x = g.one('Concat', [x, 'calendar'], [attrInt('axis', 2)]);
  }
  const assembled = [doc.inputs[0]!, ...covariates, ...calendar];
  if (assembled.join('\u0000') !== doc.inputs.join('\u0000')) {
    x = g.one('Gather', [x, g.int64s(doc.inputs.map((f) => assembled.indexOf(f)))], [attrInt('axis', 2)]);
  }
  // Known-future features [N, H, G]: raw known covariates (scaled here), then ready calendar features.
  const futureCovariates = doc.future.filter((f) => scaling.covariates[f]);
  const futureCalendar = doc.future.filter((f) => !scaling.covariates[f]);
  let xf: string | undefined;
  if (futureCovariates.length) {
    inputs.push(valueInfo('future_covariates', DataType.DOUBLE, ['N', H, futureCovariates.length], `raw ${futureCovariates.join(', ')}`));
    const m = Float64Array.from(futureCovariates, (c) => scaling.covariates[c]!.mean);
    const sd = Float64Array.from(futureCovariates, (c) => scaling.covariates[c]!.std);
    xf = g.one(
      'Cast',
      [
        g.one('Div', [
          g.one('Sub', ['future_covariates', g.tensor('future_means', DataType.DOUBLE, [m.length], m)]),
          g.tensor('future_stds', DataType.DOUBLE, [sd.length], sd),
        ]),
      ],
      [attrInt('to', DataType.FLOAT)],
    );
  }
  if (futureCalendar.length) {
    inputs.push(valueInfo('future_calendar', DataType.FLOAT, ['N', H, futureCalendar.length], futureCalendar.join(', ')));
    xf = xf ? g.one('Concat', [xf, 'future_calendar'], [attrInt('axis', 2)]) : 'future_calendar';
  }
  const futureOrder = [...futureCovariates, ...futureCalendar];
  if (xf && futureOrder.join('\u0000') !== doc.future.join('\u0000')) {
    xf = g.one('Gather', [xf, g.int64s(doc.future.map((f) => futureOrder.indexOf(f)))], [attrInt('axis', 2)]);
  }
  // Each member's network, its quantiles sorted (as tfjs sorts them), then the members' mean: one
  // member is the network alone.
  const members = sequenceMembers(doc);
  const outs = members.map((m, i) => {
    let o = sequenceNetwork(g, x, xf, m, members.length > 1 ? `m${i}_` : ''); // [N, H*Q] scaled
    o = g.one('Reshape', [o, g.int64s([-1, H, Q])]);
    if (Q > 1) o = g.node('TopK', [o, g.int64s([Q])], [attrInt('axis', -1), attrInt('largest', 0), attrInt('sorted', 1)], undefined, 2)[0]!;
    return o;
  });
  let out = outs.length === 1 ? outs[0]! : g.one('Mean', outs);
  // The base back in (double, [N, H] -> [N, H, 1], every quantile level), then unscale: mean and std [N, 1] -> [N, 1, 1].
  out = g.one('Cast', [out], [attrInt('to', DataType.DOUBLE)]);
  if (base) out = g.one('Add', [out, g.one('Unsqueeze', [base, g.int64s([2])])]);
  const std3 = g.one('Unsqueeze', [std, g.int64s([2])]);
  const mean3 = g.one('Unsqueeze', [mean, g.int64s([2])]);
  out = g.one('Add', [g.one('Mul', [out, std3]), mean3]);
  return { inputs, output: out, features: { covariates, calendar, futureCovariates, futureCalendar }, members: members.length };
}

/**
 * Transform + network + unscaling as one ModelProto. Inputs:
 * - `series` int64 [N]: index into the contract's `seriesIds`;
 * - `history` double [N, L]: the raw target values, oldest first;
 * - `covariates` double [N, L, C] (when the model reads observed covariates): raw values, in the
 *   contract's `covariates` order;
 * - `calendar` float [N, L, K] (when it reads other per-step features): ready features, in the
 *   contract's `calendar` order;
 * - `future_covariates` double [N, H, Gk]: raw known-future covariates of the forecast steps;
 * - `future_calendar` float [N, H, Gc]: ready calendar features of the forecast steps.
 * Output `forecasts` float [N, H, Q] (Q = 1 for a point model), in the target's units.
 */
export function buildSequenceOnnx(
  doc: SequenceModelDocument,
  scaling: SequenceScaling,
  options: ForecastModelOptions = { target: 'y' },
): ModelProto {
  const g = new Graph();
  const f = sequenceForecast(g, doc, scaling);
  return forecastModel(g, f.inputs, f.output, {
    lookback: doc.lookback,
    horizon: doc.horizon,
    quantiles: doc.quantiles,
    seriesIds: doc.seriesIds,
    features: f.features,
    options,
    metadata: f.members > 1 ? { 'mlpipe.ensemble_members': String(f.members) } : {},
  });
}

export type ForecastModelOptions = ExportOptions & {
  target: string;
  window?: Pick<OnnxForecastContract, 'frequency' | 'timeColumn' | 'seriesColumn' | 'calendarFeatures' | 'holidays'>;
};

/**
 * A forecaster's ModelProto around graph `g`: its double [N, H, Q] `output` cast to the float
 * `forecasts` output, and the contract (mlpipe.contract) a server reads.
 */
export function forecastModel(
  g: Graph,
  inputs: ValueInfoProto[],
  output: string,
  c: {
    lookback: number;
    horizon: number;
    quantiles: number[];
    seriesIds: string[];
    features: ForecastFeatures;
    options: ForecastModelOptions;
    metadata?: Record<string, string>;
    graphName?: string;
  },
): ModelProto {
  const { lookback: L, horizon: H, options } = c;
  const Q = Math.max(1, c.quantiles.length);
  g.nodes.push({ name: 'n_output', op_type: 'Cast', input: [output], output: ['forecasts'], attribute: [attrInt('to', DataType.FLOAT)] });
  const contract: OnnxForecastContract = {
    kind: 'forecast',
    task: 'regression',
    target: options.target,
    output: 'forecasts',
    inputs: [],
    lookback: L,
    horizon: H,
    quantiles: c.quantiles,
    seriesIds: c.seriesIds,
    ...c.features,
    ...options.window,
  };
  return {
    ir_version: ONNX_IR_VERSION,
    producer_name: 'mlpipe',
    producer_version: options.producerVersion ?? '0',
    model_version: 1,
    doc_string:
      options.docString ?? `Forecasts ${options.target} ${H} steps ahead from the last ${L} raw values of a series (scaling included).`,
    opset_import: [{ domain: '', version: ONNX_OPSET }],
    metadata_props: [
      { key: 'mlpipe.contract', value: JSON.stringify(contract) },
      ...Object.entries(c.metadata ?? {}).map(([key, value]) => ({ key, value })),
      ...Object.entries(options.metadata ?? {}).map(([key, value]) => ({ key, value })),
    ],
    graph: {
      name: c.graphName ?? 'mlpipe-forecast',
      node: g.nodes,
      initializer: g.initializers,
      input: inputs,
      output: [valueInfo('forecasts', DataType.FLOAT, ['N', H, Q])],
    },
  };
}
