/**
 * export.onnx's check of an exported forecaster: the windows of a window set (process.window's
 * test windows) turned back into the raw values they were made from (the target and covariates
 * unscaled with the window state), fed to onnxruntime the way the prediction server feeds it
 * (lib/forecast-input.ts, calendar features recomputed from the timestamps), against tfjs on the
 * windows themselves, unscaled. The error is relative to each series' standard deviation.
 */
import { PipelineError } from '../../engine/errors.js';
import { importOptional } from '../../adapters/optional.js';
import { readContract, type OnnxForecastContract } from '../../adapters/onnx/contract.js';
import { decodeModel } from '../../adapters/onnx/proto.js';
import { forecastTensors, type RawWindows } from '../../lib/forecast-input.js';
import type { SequenceScaling } from '../../lib/onnx-sequence.js';
import { servedEtsForecast, type ServedEts, type ServedEtsInit } from '../../lib/ets-served.js';
import { deserializeSequenceMembers, predictMembers, type SequenceModelDocument } from '../../lib/sequence-model.js';
import { loadTf } from '../../lib/tf.js';
import { decodeWindows, type WindowState } from '../../lib/windows.js';

export interface ForecastParity {
  rows: number;
  maxAbsError: number;
  meanAbsError: number;
  /** The largest |onnx - tfjs| over its series' standard deviation. */
  maxRelativeError: number;
}

/** The scalings the graph applies, from the window state, in the model's series order. */
export function sequenceScaling(doc: SequenceModelDocument, state: WindowState): SequenceScaling {
  const target = doc.seriesIds.map((id) => {
    const s = state.scaling[id];
    if (!s)
      throw new PipelineError('PLUGIN_INPUT', `export.onnx: the window state has no scaling for series '${id}' the model was trained on.`, {
        hint: 'Bind the state of the process.window step that made the model’s training windows.',
      });
    return s;
  });
  return { target, covariates: { ...state.covariates, ...state.known } };
}

/** What the windows must match: the graph's lookback, horizon and series (and a sequence model's inputs). */
interface WindowShape {
  lookback: number;
  horizon: number;
  seriesIds: string[];
  inputs?: string[];
}

/** The windows of a window set, raw (what a client sends) and as the set has them (scaled). */
interface ParityWindows {
  raw: RawWindows;
  scaledX: Float32Array;
  scaledXf: Float32Array;
  /** Each window's series id. */
  series: string[];
}

/** Raw windows (what a client sends) from a window set's scaled x and xf. */
function rawWindows(c: OnnxForecastContract, doc: WindowShape, state: WindowState, bytes: Buffer): ParityWindows {
  const w = decodeWindows(bytes);
  if (w.lookback !== doc.lookback || w.horizon !== doc.horizon || (doc.inputs && w.inputs.join('\u0000') !== doc.inputs.join('\u0000')))
    throw new PipelineError('PLUGIN_INPUT', "export.onnx: the 'windows' do not have the model's lookback, horizon and inputs.", {
      hint: 'Bind the test windows of the process.window step the model was trained on.',
    });
  const L = w.lookback;
  const H = w.horizon;
  const F = w.inputs.length;
  const G = w.future.length;
  const scales = { ...state.covariates, ...state.known };
  const index = new Map(doc.seriesIds.map((s, i) => [s, i]));
  const n = w.count;
  const raw: RawWindows = {
    count: n,
    series: new Int32Array(n),
    history: new Float64Array(n * L),
    covariates: new Float64Array(n * L * c.covariates.length),
    futureCovariates: new Float64Array(n * H * c.futureCovariates.length),
    origin: w.origin,
  };
  const covAt = c.covariates.map((f) => w.inputs.indexOf(f));
  const futAt = c.futureCovariates.map((f) => w.future.indexOf(f));
  const series: string[] = [];
  for (let i = 0; i < n; i++) {
    const id = w.seriesIds[w.series[i]!]!;
    const s = index.get(id);
    if (s === undefined)
      throw new PipelineError('PLUGIN_INPUT', `export.onnx: window ${i} is of series '${id}', which the model was not trained on.`);
    series.push(id);
    (raw.series as Int32Array)[i] = s;
    const { mean, std } = state.scaling[id]!;
    for (let k = 0; k < L; k++) {
      const at = (i * L + k) * F;
      raw.history[i * L + k] = w.x[at]! * std + mean;
      covAt.forEach(
        (j, q) =>
          (raw.covariates[(i * L + k) * covAt.length + q] = w.x[at + j]! * scales[c.covariates[q]!]!.std + scales[c.covariates[q]!]!.mean),
      );
    }
    for (let k = 0; k < H; k++)
      futAt.forEach(
        (j, q) =>
          (raw.futureCovariates[(i * H + k) * futAt.length + q] =
            w.xf[(i * H + k) * G + j]! * scales[c.futureCovariates[q]!]!.std + scales[c.futureCovariates[q]!]!.mean),
      );
  }
  return { raw, scaledX: w.x, scaledXf: w.xf, series };
}

/**
 * A forecast of every window in the target's units, [N, H, Q] row-major, by the members' own
 * runtimes: what onnxruntime's forecasts are compared with.
 */
export type ForecastReference = (w: ParityWindows) => Promise<Float64Array>;

/** tfjs on the windows themselves (a seed ensemble: every member, combined as the graph combines them), unscaled. */
export function sequenceReference(doc: SequenceModelDocument, state: WindowState): ForecastReference {
  return async (w) => {
    const n = w.raw.count;
    const { tf } = await loadTf();
    const models = await deserializeSequenceMembers(tf, doc);
    let scaled: Float32Array;
    try {
      scaled = predictMembers(tf, models, doc, { count: n, x: w.scaledX, xf: w.scaledXf });
    } finally {
      for (const m of models) m.dispose();
    }
    const per = scaled.length / Math.max(1, n);
    const out = new Float64Array(scaled.length);
    for (let i = 0; i < n; i++) {
      const { mean, std } = state.scaling[w.series[i]!]!;
      for (let k = i * per; k < (i + 1) * per; k++) out[k] = scaled[k]! * std + mean;
    }
    return out;
  };
}

/** The served ETS form run as a recursion on each raw window (lib/ets-served.ts), `models` in the graph's series order. */
export function etsReference(models: ServedEts[], horizon: number, init: ServedEtsInit): ForecastReference {
  return async (w) => {
    const L = w.raw.history.length / Math.max(1, w.raw.count);
    const out = new Float64Array(w.raw.count * horizon);
    for (let i = 0; i < w.raw.count; i++) {
      const window = w.raw.history.subarray(i * L, (i + 1) * L);
      out.set(servedEtsForecast(window, models[w.raw.series[i]!]!, horizon, init), i * horizon);
    }
    return out;
  };
}

/** The weighted sum of the members' references. */
export function weightedReference(parts: { weight: number; reference: ForecastReference }[]): ForecastReference {
  return async (w) => {
    let out: Float64Array | undefined;
    for (const p of parts) {
      const v = await p.reference(w);
      if (!out) out = new Float64Array(v.length);
      if (v.length !== out.length)
        throw new PipelineError('DATA_INVALID', `export.onnx: members give ${v.length} and ${out.length} forecasts.`);
      for (let k = 0; k < v.length; k++) out[k]! += p.weight * v[k]!;
    }
    return out ?? new Float64Array(0);
  };
}

/**
 * onnxruntime on the raw windows (fed as the prediction server feeds it) against `reference`; the
 * error relative to each window's series' standard deviation. `shape` is what the windows must match.
 */
export async function forecastParity(
  onnx: Uint8Array,
  shape: WindowShape,
  state: WindowState,
  windows: Buffer,
  reference: ForecastReference,
): Promise<ForecastParity> {
  const contract = readContract(decodeModel(onnx)) as OnnxForecastContract;
  const w = rawWindows(contract, shape, state, windows);
  const n = w.raw.count;
  const { loadOnnxModel } = await importOptional(
    'onnxruntime-node',
    'export.onnx (its parity check)',
    () => import('../../adapters/onnx/runtime.js'),
  );
  const predictor = await loadOnnxModel(onnx);
  let viaOnnx: Float32Array;
  try {
    viaOnnx = await predictor.runTensors(forecastTensors(contract, w.raw));
  } finally {
    await predictor.close();
  }
  const expected = await reference(w);
  if (expected.length !== viaOnnx.length)
    throw new PipelineError('DATA_INVALID', `export.onnx: ${viaOnnx.length} ONNX outputs against ${expected.length} reference outputs.`);
  const per = expected.length / Math.max(1, n);
  let max = 0;
  let maxRel = 0;
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const { std } = state.scaling[w.series[i]!]!;
    for (let k = i * per; k < (i + 1) * per; k++) {
      const d = Math.abs(expected[k]! - viaOnnx[k]!);
      if (!(d <= max)) max = d; // NaN wins
      if (!(d / std <= maxRel)) maxRel = d / std;
      sum += d;
    }
  }
  return { rows: n, maxAbsError: max, meanAbsError: sum / Math.max(1, expected.length), maxRelativeError: maxRel };
}
