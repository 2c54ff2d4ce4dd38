/**
 * ONNX graphs of a train.ets model's served form (lib/ets-served.ts: fixed parameters, state
 * re-estimated from the window) and of a train.forecast-combine combination of a sequence
 * forecaster and an ETS model. Pure: no I/O.
 *
 * ETS: each series' served forecast is one H×L matrix times the raw window, so the graph holds the
 * matrices as one [S, H, L] double initializer, gathers each request's by its series index and
 * multiplies it with `history`. The inputs and the contract are the sequence graph's (`series`,
 * `history`; an ETS model reads no covariates, so its own contract lists none).
 *
 * Combination: the sequence member's whole graph (lib/onnx-sequence.ts's sequenceForecast: scaling,
 * network, unscaling) and the ETS matrices read the same `series` and `history`; their forecasts
 * (target units) are added with the combination's weights. The contract is the sequence member's
 * (its covariates and calendar features), which the ETS part ignores.
 */
import { PipelineError } from '../engine/errors.js';
import { DataType, type ModelProto } from '../adapters/onnx/proto.js';
import { servedEtsMatrix, type EtsModelDocument, type ServedEts, type ServedEtsInit } from './ets-served.js';
import { attrInt, Graph, valueInfo } from './onnx-graph.js';
import { forecastModel, sequenceForecast, type ForecastModelOptions, type SequenceScaling } from './onnx-sequence.js';
import type { SequenceModelDocument } from './sequence-model.js';

/** Each series' served model, in `seriesIds` order (a series the document lacks or could not fit: null, its last value repeated). */
export function etsSeriesModels(doc: EtsModelDocument, seriesIds: string[]): ServedEts[] {
  return seriesIds.map((id) => {
    const s = doc.series[id];
    return s ? { spec: s.spec, params: s.params } : null;
  });
}

/** The [S, H, L] matrices of the served form, series-major. */
export function etsMatrices(models: ServedEts[], L: number, H: number, init: ServedEtsInit): Float64Array {
  const out = new Float64Array(models.length * H * L);
  models.forEach((m, s) => out.set(servedEtsMatrix(m, L, H, init), s * H * L));
  return out;
}

/** The ETS forecasts in graph `g`: double [N, H, 1] from `series` and `history`. */
export function etsForecastNodes(g: Graph, matrices: Float64Array, S: number, L: number, H: number, prefix = ''): string {
  const M = g.tensor(`${prefix}ets_matrices`, DataType.DOUBLE, [S, H, L], matrices);
  const picked = g.one('Gather', [M, 'series'], [attrInt('axis', 0)]); // [N, H, L]
  const window = g.one('Unsqueeze', ['history', g.int64s([2])]); // [N, L, 1]
  return g.one('MatMul', [picked, window]); // [N, H, 1]
}

const seriesInputs = (L: number) => [
  valueInfo('series', DataType.INT64, ['N'], 'index into mlpipe.contract seriesIds'),
  valueInfo('history', DataType.DOUBLE, ['N', L], 'raw target values, oldest first'),
];

/** A train.ets model's served form as one ModelProto: `series` and `history` in, `forecasts` float [N, H, 1] out. */
export function buildEtsOnnx(
  doc: EtsModelDocument,
  shape: { seriesIds: string[]; lookback: number; horizon: number },
  init: ServedEtsInit,
  options: ForecastModelOptions,
): ModelProto {
  const { seriesIds, lookback: L, horizon: H } = shape;
  const g = new Graph();
  const out = etsForecastNodes(g, etsMatrices(etsSeriesModels(doc, seriesIds), L, H, init), seriesIds.length, L, H);
  return forecastModel(g, seriesInputs(L), out, {
    lookback: L,
    horizon: H,
    quantiles: [],
    seriesIds,
    features: { covariates: [], calendar: [], futureCovariates: [], futureCalendar: [] },
    options: {
      ...options,
      docString:
        options.docString ??
        `Forecasts ${options.target} ${H} steps ahead from the last ${L} raw values of a series: exponential smoothing with fixed parameters, its state re-estimated from the window.`,
    },
    metadata: { 'mlpipe.ets_initial_states': init },
  });
}

export interface CombinationMember {
  name: string;
  weight: number;
  model: { kind: 'sequence'; doc: SequenceModelDocument; scaling: SequenceScaling } | { kind: 'ets'; doc: EtsModelDocument };
}

/**
 * A weighted sum of members' forecasts as one ModelProto: one sequence member (its contract is the
 * graph's) and any ETS members, every forecast in target units.
 */
export function buildCombinationOnnx(members: CombinationMember[], init: ServedEtsInit, options: ForecastModelOptions): ModelProto {
  const sequences = members.filter((m) => m.model.kind === 'sequence');
  if (sequences.length !== 1)
    throw new PipelineError(
      'PLUGIN_INPUT',
      `export.onnx: a combination is exported with exactly one train.tfjs-sequence member (its inputs are the graph's); this one has ${sequences.length}.`,
      { hint: 'Combine one sequence model with train.ets models (model=combo), or export the members one by one.' },
    );
  const seq = sequences[0]!.model as Extract<CombinationMember['model'], { kind: 'sequence' }>;
  if (seq.doc.quantiles.length)
    throw new PipelineError(
      'PLUGIN_INPUT',
      `export.onnx: member '${sequences[0]!.name}' forecasts quantiles; a combination is exported for point forecasters only.`,
      { hint: 'Train the sequence member without `quantiles`.' },
    );
  const g = new Graph();
  const L = seq.doc.lookback;
  const H = seq.doc.horizon;
  const f = sequenceForecast(g, seq.doc, seq.scaling);
  const parts = members.map((m, i) => {
    const out =
      m.model.kind === 'sequence'
        ? f.output
        : etsForecastNodes(
            g,
            etsMatrices(etsSeriesModels(m.model.doc, seq.doc.seriesIds), L, H, init),
            seq.doc.seriesIds.length,
            L,
            H,
            `m${i}_`,
          );
    return g.one('Mul', [out, g.double(m.weight)]);
  });
  const out = parts.reduce((a, b) => g.one('Add', [a, b]));
  return forecastModel(g, f.inputs, out, {
    lookback: L,
    horizon: H,
    quantiles: [],
    seriesIds: seq.doc.seriesIds,
    features: f.features,
    options: {
      ...options,
      docString:
        options.docString ??
        `Forecasts ${options.target} ${H} steps ahead from the last ${L} raw values of a series: the weighted mean of ${members.map((m) => m.name).join(', ')}.`,
    },
    metadata: {
      'mlpipe.combination': JSON.stringify(members.map((m) => ({ name: m.name, kind: m.model.kind, weight: m.weight }))),
      'mlpipe.ets_initial_states': init,
      ...(f.members > 1 ? { 'mlpipe.ensemble_members': String(f.members) } : {}),
    },
  });
}
