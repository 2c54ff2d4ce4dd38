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

/** Raw windows (what a client sends) from a window set's scaled x and xf. */
function rawWindows(
  c: OnnxForecastContract,
  doc: SequenceModelDocument,
  state: WindowState,
  bytes: Buffer,
): { raw: RawWindows; scaledX: Float32Array; scaledXf: Float32Array; series: string[] } {
  const w = decodeWindows(bytes);
  if (w.lookback !== doc.lookback || w.horizon !== doc.horizon || w.inputs.join('\u0000') !== doc.inputs.join('\u0000'))
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

export async function forecastParity(
  onnx: Uint8Array,
  doc: SequenceModelDocument,
  state: WindowState,
  windows: Buffer,
): Promise<ForecastParity> {
  const contract = readContract(decodeModel(onnx)) as OnnxForecastContract;
  const { raw, scaledX, scaledXf, series } = rawWindows(contract, doc, state, windows);
  const n = raw.count;
  const { loadOnnxModel } = await importOptional(
    'onnxruntime-node',
    'export.onnx (its parity check)',
    () => import('../../adapters/onnx/runtime.js'),
  );
  const predictor = await loadOnnxModel(onnx);
  let viaOnnx: Float32Array;
  try {
    viaOnnx = await predictor.runTensors(forecastTensors(contract, raw));
  } finally {
    await predictor.close();
  }
  const { tf } = await loadTf();
  // A seed ensemble: every member, combined as the graph combines them.
  const models = await deserializeSequenceMembers(tf, doc);
  let scaled: Float32Array;
  try {
    scaled = predictMembers(tf, models, doc, { count: n, x: scaledX, xf: scaledXf });
  } finally {
    for (const m of models) m.dispose();
  }
  if (scaled.length !== viaOnnx.length)
    throw new PipelineError('DATA_INVALID', `export.onnx: ${viaOnnx.length} ONNX outputs against ${scaled.length} tfjs outputs.`);
  const per = scaled.length / Math.max(1, n);
  let max = 0;
  let maxRel = 0;
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const { mean, std } = state.scaling[series[i]!]!;
    for (let k = i * per; k < (i + 1) * per; k++) {
      const d = Math.abs(scaled[k]! * std + mean - viaOnnx[k]!);
      if (!(d <= max)) max = d; // NaN wins
      if (!(d / std <= maxRel)) maxRel = d / std;
      sum += d;
    }
  }
  return { rows: n, maxAbsError: max, meanAbsError: sum / Math.max(1, scaled.length), maxRelativeError: maxRel };
}
