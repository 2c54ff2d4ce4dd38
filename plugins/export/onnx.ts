import { z } from 'zod';
import { join } from 'node:path';
import { ident, sqlString, withDuckDB } from '../../adapters/duckdb.js';
import { encodeModel } from '../../adapters/onnx/proto.js';
import type { Columns } from '../../adapters/onnx/runtime.js';
import { PipelineError } from '../../engine/errors.js';
import { isArtifactRef, type ArtifactRef } from '../../engine/types.js';
import { datasetFile, describe } from '../../lib/dataset.js';
import { applyTransformSql, parseFittedTransform, type FittedTransform } from '../../lib/fitted-transform.js';
import { definePlugin, type StepContext } from '../sdk.js';
import { loadTf } from '../../lib/tf.js';
import { deserializeModel, loadMatrix, predict, type ModelDocument } from '../../lib/model.js';
import { readContract } from '../../adapters/onnx/contract.js';
import { buildOnnxModel } from '../../lib/onnx-graph.js';
import { importOptional } from '../../adapters/optional.js';
import { isBoostedModel, parseBoostedModel, type BoostedModelDocument } from '../../lib/boosted-model.js';
import { isSequenceModel, parseSequenceModel, type SequenceModelDocument } from '../../lib/sequence-model.js';
import { buildSequenceOnnx } from '../../lib/onnx-sequence.js';
import { parseWindowState } from '../../lib/windows.js';
import {
  etsReference,
  forecastParity,
  sequenceReference,
  sequenceScaling,
  weightedReference,
  type ForecastReference,
} from './forecast-parity.js';
import { GBDT_FORECAST_FORMAT } from '../../lib/boosted-model.js';
import { isEtsModel, parseEtsModel, SERVED_ETS_INITS, type EtsModelDocument } from '../../lib/ets-served.js';
import { buildCombinationOnnx, buildEtsOnnx, etsSeriesModels, type CombinationMember } from '../../lib/onnx-ets.js';
import type { ModelProto } from '../../adapters/onnx/proto.js';
import type { WindowState } from '../../lib/windows.js';

const params = z
  .object({
    /**
     * With a raw `test` dataset: the largest allowed |onnx - model| over the test rows, relative to
     * the target's standard deviation (regression) or in probability (classification). The reference
     * is the model's own runtime: tfjs for an MLP, the boosting library for XGBoost / LightGBM.
     */
    maxParityError: z.number().positive().default(1e-4),
    /**
     * A train.ets model (alone or in a combination): how the served form estimates its states from
     * the request's window (lib/ets-served.ts): least-squares (the SSE's minimiser for the fitted
     * parameters) or classical (a decomposition of the window's first two seasons).
     */
    etsInitial: z.enum(SERVED_ETS_INITS).default('least-squares'),
    /**
     * With `combination`: the combination's member names (its train.forecast-combine step's
     * `members`); member `x`'s model is bound as input `x_model`.
     */
    members: z
      .array(
        z
          .string()
          .regex(/^[A-Za-z][A-Za-z0-9_]*$/, 'member names are letters, digits and _ (starting with a letter)')
          .max(40),
      )
      .max(32)
      .refine((m) => new Set(m).size === m.length, 'member names must be distinct')
      .default([]),
  })
  .strict();

type Params = z.infer<typeof params>;

/** An artifact input's bytes and its JSON. */
async function json<T>(ctx: StepContext, inputs: Record<string, unknown>, name: string): Promise<{ bytes: Buffer; value: T }> {
  const ref = inputs[name];
  if (!isArtifactRef(ref)) throw new PipelineError('PLUGIN_INPUT', `export.onnx: input '${name}' must be an artifact.`);
  const bytes = await ctx.store.get(ref);
  return { bytes, value: JSON.parse(bytes.toString('utf8')) as T };
}

export interface Parity {
  rows: number;
  maxAbsError: number;
  meanAbsError: number;
  /** maxAbsError over the target's standard deviation (regression) or 1 (probabilities). */
  maxRelativeError: number;
}

/**
 * The model's own predictions of the transformed test rows (row-major), and the scale of the
 * parity error: the target's standard deviation (regression) or 1 (probabilities).
 */
type Reference = (transformedFile: string, rawFile: string) => Promise<{ values: ArrayLike<number>; scale: number }>;

/** tfjs predicts the MLP (the way evaluation does). */
function tfjsReference(modelBytes: Buffer, doc: ModelDocument): Reference {
  return async (transformed) => {
    const { tf } = await loadTf();
    const { model, meta } = await deserializeModel(tf, modelBytes);
    try {
      const values = predict(tf, model, meta, await loadMatrix(transformed, { features: meta.features, label: 'parity' }));
      return { values, scale: doc.task === 'regression' ? (doc.targetStd ?? 1) : 1 };
    } finally {
      model.dispose();
    }
  };
}

/** The boosting library predicts from the model's native save (float32 features, as in training). */
function libraryReference(doc: BoostedModelDocument): Reference {
  return async (transformed, raw) => {
    const m = await loadMatrix(transformed, { features: doc.features, label: 'parity' });
    // The native libraries load on first use.
    const { predictBoosted } = await import('../../lib/boosted-predict.js');
    const values = predictBoosted(doc, { x: m.x, rows: m.rows, cols: doc.features.length });
    if (doc.task !== 'regression') return { values, scale: 1 };
    // The target's standard deviation on the test rows themselves.
    const scale = await withDuckDB(async (db) => {
      await db.restrict({ paths: [raw] });
      const [r] = await db.rows<{ s: number | null }>(
        `SELECT stddev_pop(${ident(doc.target)}::DOUBLE) AS s FROM read_parquet(${sqlString(raw)})`,
      );
      return r?.s || 1;
    });
    return { values, scale };
  };
}

/**
 * Predicts the raw rows of `file` with onnxruntime and the transformed rows with the model's own
 * runtime, and compares them.
 */
async function checkParity(
  ctx: StepContext,
  onnx: Uint8Array,
  state: FittedTransform,
  file: string,
  reference: Reference,
): Promise<Parity> {
  // The native runtime loads on first use, not with every worker and CLI command.
  const { loadOnnxModel } = await importOptional(
    'onnxruntime-node',
    'export.onnx (its parity check)',
    () => import('../../adapters/onnx/runtime.js'),
  );
  const predictor = await loadOnnxModel(onnx);
  try {
    const transformed = join(ctx.workDir, 'parity-transformed.parquet');
    const raw = await withDuckDB(async (db) => {
      // The state's derive SQL sees the test data only.
      await db.restrict({ paths: [file, transformed] });
      await db.run(`CREATE VIEW src AS SELECT * FROM read_parquet(${sqlString(file)})`);
      const cols = (await describe(db, 'src')).map((c) => c.name);
      await db.run(`COPY (\n${applyTransformSql(state, 'src', cols)}\n) TO ${sqlString(transformed)} (FORMAT parquet, USE_TMP_FILE false)`);
      const wanted = predictor.contract.inputs;
      const missing = wanted.filter((w) => !cols.includes(w.name));
      if (missing.length)
        throw new PipelineError(
          'DATA_INVALID',
          `export.onnx: the test data lacks raw column(s) ${missing.map((m) => m.name).join(', ')}; give the split before the transform.`,
        );
      const rows = await db.rows<Record<string, unknown>>(
        `SELECT ${wanted.map((w) => `${ident(w.name)}${w.type === 'number' ? '::DOUBLE' : '::VARCHAR'} AS ${ident(w.name)}`).join(', ')} FROM src`,
      );
      const columns: Columns = {};
      for (const w of wanted) {
        columns[w.name] =
          w.type === 'number'
            ? Float64Array.from(rows, (r) => (r[w.name] === null ? NaN : (r[w.name] as number)))
            : rows.map((r) => r[w.name] as string | null);
      }
      return { columns, rows: rows.length };
    });
    const viaOnnx = await predictor.predictColumns(raw.columns, raw.rows);
    const { values: viaModel, scale } = await reference(transformed, file);
    if (viaModel.length !== viaOnnx.length)
      throw new PipelineError('DATA_INVALID', `export.onnx: ${viaOnnx.length} ONNX outputs against ${viaModel.length} reference outputs.`);
    let max = 0;
    let sum = 0;
    for (let i = 0; i < viaModel.length; i++) {
      const d = Math.abs(viaModel[i]! - viaOnnx[i]!);
      if (!(d <= max)) max = d; // NaN wins
      sum += d;
    }
    return { rows: raw.rows, maxAbsError: max, meanAbsError: sum / Math.max(1, viaModel.length), maxRelativeError: max / scale };
  } finally {
    await predictor.close();
  }
}

/**
 * export.onnx — one ONNX file holding the fitted preprocessing and the trained model, servable by
 * onnxruntime anywhere, checked against the model's own runtime before anything is registered:
 * - a train.tfjs-mlp network or a train.xgboost / train.lightgbm tree ensemble with
 *   process.transform's `state` (derived formulas, imputation, log, clipping, one-hot, scaling):
 *   raw feature records in, prediction out. With a raw `test` dataset (the split before the
 *   transform) onnxruntime and tfjs / the boosting library must agree on every row;
 * - a train.tfjs-sequence forecaster with process.window's `state` (the per-series target scaling
 *   and the covariate scalings): the raw last `lookback` values of a series in, `horizon` forecasts
 *   (x quantiles) in the target's units out (lib/onnx-sequence.ts). With `windows` bound (the test
 *   windows) onnxruntime, fed the raw values the windows were made from, and tfjs must agree on
 *   every window.
 * - a train.ets model with process.window's `state`: its served form (fixed parameters, state
 *   re-estimated from the window; lib/ets-served.ts) as one H×L matrix per series, the same inputs
 *   and contract; parity against the served form's recursion on the `windows`;
 * - a train.forecast-combine combination (`combination`: the combine step's `model` output; the
 *   param `members` names its members, and member `x`'s model is input `x_model`), one sequence forecaster and
 *   train.ets models: every member in one graph, added with the combination's weights; parity
 *   against the same sum of the members' own runtimes (tfjs, the ETS recursion).
 * A train.gbdt-forecast model has no ONNX export (its lag features are built outside a graph).
 * Beyond `maxParityError` (relative to the target's standard deviation) the step fails.
 */
export const exportOnnx = definePlugin({
  name: 'export.onnx',
  version: '1',
  description:
    "Exports transform + model (MLP, boosted trees, a sequence forecaster with its window scaling, an ETS model's served form, or a combination of forecasters) as one ONNX file and checks onnxruntime against the model's own runtime.",
  params,
  inputs: (p: Params) => ({
    'model?': 'model' as const,
    'combination?': 'json' as const,
    ...Object.fromEntries(p.members.map((m) => [`${m}_model?`, 'model' as const])),
    state: 'artifact' as const,
    'test?': 'dataset' as const,
    'windows?': 'artifact' as const,
  }),
  outputs: { onnx: 'model', parity: 'metrics', inputs: 'json' },
  async run(ctx, p, inputs: Inputs) {
    const metadata = {
      'mlpipe.pipeline': ctx.pipeline,
      'mlpipe.workflow_id': ctx.workflowId,
      'mlpipe.run_id': ctx.runId,
    };
    const combination = inputs['combination'] ?? null;
    const model = inputs['model'];
    if (combination !== null && isArtifactRef(model))
      throw new PipelineError(
        'PLUGIN_INPUT',
        "export.onnx: bind 'model' (one model) or 'combination' (with its members' models), not both.",
        {
          hint: "For train.forecast-combine, bind 'combination' to its model output and <member>_model to each member's model; leave 'model' null.",
        },
      );
    if (combination !== null) return exportCombination(ctx, p, inputs, combination, metadata);
    // The members' models are read only with a combination (a pipeline binds them whichever model family ran).
    if (!isArtifactRef(model))
      throw new PipelineError(
        'PLUGIN_INPUT',
        "export.onnx: nothing to export: bind 'model' (a trained model) or 'combination' and its members' models.",
        {
          hint: 'model: ${steps.<train step>.outputs.model}',
        },
      );
    const { bytes: modelBytes, value } = await json<unknown>(ctx, inputs, 'model');
    Object.assign(metadata, { 'mlpipe.source_model_sha256': model.sha256 });
    if (isSequenceModel(value)) return exportForecaster(ctx, p, inputs, parseSequenceModel(value, 'export.onnx'), metadata);
    if (isEtsModel(value)) return exportEts(ctx, p, inputs, parseEtsModel(value, 'export.onnx'), metadata);
    if ((value as { format?: unknown }).format === GBDT_FORECAST_FORMAT) throw noGbdtExport("input 'model'");
    if (isArtifactRef(inputs['windows']))
      throw new PipelineError(
        'PLUGIN_INPUT',
        "export.onnx: input 'windows' goes with a train.tfjs-sequence model; bind 'test' (a raw dataset) for this one.",
      );
    let doc: ModelDocument | BoostedModelDocument;
    let reference: Reference;
    if (isBoostedModel(value)) {
      const boosted = parseBoostedModel(value, 'export.onnx');
      doc = boosted;
      reference = libraryReference(boosted);
    } else if ((value as { kind?: unknown }).kind === 'mlpipe.tfjs-mlp') {
      doc = value as ModelDocument;
      reference = tfjsReference(modelBytes, doc);
    } else
      throw new PipelineError(
        'PLUGIN_INPUT',
        "export.onnx: input 'model' is not a train.tfjs-mlp, train.xgboost, train.lightgbm or train.tfjs-sequence model.",
      );
    const state = parseFittedTransform((await json<unknown>(ctx, inputs, 'state')).value, 'export.onnx');
    const proto = buildOnnxModel(state, doc, { metadata });
    const bytes = encodeModel(proto);
    let parity: Parity | null = null;
    if (isArtifactRef(inputs['test'])) {
      parity = await checkParity(ctx, bytes, state, await datasetFile(ctx, inputs, 'test'), reference);
      ctx.logger.info(
        { ...parity },
        `ONNX parity on ${parity.rows} rows: max |onnx - ${isBoostedModel(value) ? (doc as BoostedModelDocument).library : 'tfjs'}| = ${parity.maxAbsError.toPrecision(3)} (${parity.maxRelativeError.toExponential(2)} of the target's std)`,
      );
      gate(parity, p.maxParityError);
    }
    const onnx = await ctx.store.put(bytes, { name: 'model.onnx', mediaType: 'application/onnx' });
    return { onnx, parity, inputs: readContract(proto).inputs };
  },
});

function gate(parity: Parity, max: number): void {
  if (parity.maxRelativeError <= max) return;
  throw new PipelineError(
    'QUALITY_GATE',
    `export.onnx: onnxruntime and the model's own runtime disagree by ${parity.maxRelativeError.toExponential(2)} (relative), above maxParityError ${max}.`,
    { hint: 'The exported graph does not reproduce the trained model; report it with the transform state.' },
  );
}

/** The forecaster and its window scaling as one file; parity on the `windows` when bound. */
async function exportForecaster(
  ctx: StepContext,
  p: Params,
  inputs: Record<string, unknown>,
  doc: SequenceModelDocument,
  metadata: Record<string, string>,
): Promise<{ onnx: ArtifactRef; parity: Parity | null; inputs: unknown }> {
  const state = await forecasterState(ctx, inputs, 'a train.tfjs-sequence model');
  const proto = buildSequenceOnnx(doc, sequenceScaling(doc, state), { metadata, ...windowOptions(state) });
  const bytes = encodeModel(proto);
  let parity: Parity | null = null;
  if (isArtifactRef(inputs['windows'])) {
    parity = await forecastParity(bytes, doc, state, await ctx.store.get(inputs['windows']), sequenceReference(doc, state));
    ctx.logger.info(
      { ...parity },
      `ONNX parity on ${parity.rows} windows: max |onnx - tfjs| = ${parity.maxAbsError.toPrecision(3)} (${parity.maxRelativeError.toExponential(2)} of the series' std)`,
    );
    gate(parity, p.maxParityError);
  }
  return storeForecaster(ctx, proto, bytes, parity);
}

type Inputs = Record<string, unknown>;
type ForecasterOutputs = { onnx: ArtifactRef; parity: Parity | null; inputs: unknown };

function noGbdtExport(what: string): PipelineError {
  return new PipelineError(
    'PLUGIN_INPUT',
    `export.onnx: ${what} is a train.gbdt-forecast model, which has no ONNX export (its lag features and bases are computed outside any graph).`,
    {
      hint: 'Export a train.tfjs-sequence model (model=lstm|gru|tcn), a train.ets model (model=ets) or their combination (model=combo) instead; serve train.gbdt-forecast forecasts from its forecasts artifact.',
    },
  );
}

/** A forecaster's window state; a raw `test` dataset refused (forecasters are checked on window sets). */
async function forecasterState(ctx: StepContext, inputs: Inputs, what: string): Promise<WindowState> {
  if (isArtifactRef(inputs['test']))
    throw new PipelineError(
      'PLUGIN_INPUT',
      `export.onnx: ${what} is checked on window sets: bind 'windows' (process.window's test output), not 'test'.`,
    );
  return parseWindowState((await json<unknown>(ctx, inputs, 'state')).value, 'export.onnx');
}

const windowOptions = (state: WindowState) => ({
  target: state.targetColumn,
  window: {
    frequency: state.frequency,
    timeColumn: state.timeColumn,
    seriesColumn: state.seriesColumn,
    calendarFeatures: state.calendar.features,
    holidays: state.calendar.holidays,
  },
});

/** Every series of the graph must be in the ETS model, and the horizons must agree. */
function etsSeries(doc: EtsModelDocument, seriesIds: string[], horizon: number, name: string): void {
  const missing = seriesIds.filter((id) => !(id in doc.series));
  if (missing.length)
    throw new PipelineError(
      'PLUGIN_INPUT',
      `export.onnx: ${name} has no entry for series ${missing
        .slice(0, 3)
        .map((m) => `'${m}'`)
        .join(', ')}${missing.length > 3 ? ` (and ${missing.length - 3} more)` : ''} of the window state.`,
      { hint: 'Bind the state of the process.window step whose windows the train.ets step was given.' },
    );
  if (doc.horizon !== horizon)
    throw new PipelineError('PLUGIN_INPUT', `export.onnx: ${name} forecasts ${doc.horizon} steps; the windows' horizon is ${horizon}.`, {
      hint: 'Bind the state of the process.window step whose windows the train.ets step was given.',
    });
}

/** A train.ets model's served form; parity against its recursion on the `windows` when bound. */
async function exportEts(
  ctx: StepContext,
  p: Params,
  inputs: Inputs,
  doc: EtsModelDocument,
  metadata: Record<string, string>,
): Promise<ForecasterOutputs> {
  const state = await forecasterState(ctx, inputs, 'a train.ets model');
  etsSeries(doc, state.seriesIds, state.horizon, 'the train.ets model');
  const shape = { seriesIds: state.seriesIds, lookback: state.lookback, horizon: state.horizon };
  const proto = buildEtsOnnx(doc, shape, p.etsInitial, { metadata, ...windowOptions(state) });
  const reference = etsReference(etsSeriesModels(doc, state.seriesIds), state.horizon, p.etsInitial);
  return checkAndStore(ctx, p, inputs, proto, shape, state, reference, 'the served ETS recursion');
}

/** The combination of one sequence forecaster and train.ets models, by the combine step's weights. */
async function exportCombination(
  ctx: StepContext,
  p: Params,
  inputs: Inputs,
  combination: unknown,
  metadata: Record<string, string>,
): Promise<ForecasterOutputs> {
  const c = combination as { method?: unknown; members?: unknown; weights?: unknown };
  const names = c.members;
  if (
    typeof combination !== 'object' ||
    !['mean', 'median', 'weighted'].includes(c.method as string) ||
    !Array.isArray(names) ||
    names.length < 2 ||
    !names.every((n) => typeof n === 'string')
  )
    throw new PipelineError(
      'PLUGIN_INPUT',
      "export.onnx: 'combination' is not a train.forecast-combine model output ({ method, members, weights }).",
      {
        hint: 'combination: ${steps.<combine step>.outputs.model}',
      },
    );
  const members = names as string[];
  let weights: number[];
  if (c.method === 'median') {
    if (members.length > 2)
      throw new PipelineError(
        'PLUGIN_INPUT',
        `export.onnx: the median of ${members.length} forecasters has no ONNX export (the median of two is their mean).`,
        {
          hint: 'Combine with method mean or weighted to export the combination.',
        },
      );
    weights = [0.5, 0.5];
  } else {
    const w = c.weights;
    if (!Array.isArray(w) || w.length !== members.length || !w.every((v) => typeof v === 'number' && v >= 0 && Number.isFinite(v)))
      throw new PipelineError('PLUGIN_INPUT', "export.onnx: 'combination' has no weights, one per member.", {
        hint: 'Bind the model output of a train.forecast-combine step.',
      });
    weights = w as number[];
  }
  if (members.join('\u0000') !== p.members.join('\u0000'))
    throw new PipelineError(
      'PLUGIN_INPUT',
      `export.onnx: the combination's members are ${members.map((m) => `'${m}'`).join(', ')}; the step's 'members' param is [${p.members.join(', ')}].`,
      {
        hint: `with: { members: [${members.join(', ')}] }, and bind ${members.map((m) => `${m}_model`).join(', ')} to the members' train steps' model outputs.`,
      },
    );
  const missing = members.filter((m) => !isArtifactRef(inputs[`${m}_model`]));
  if (missing.length)
    throw new PipelineError(
      'PLUGIN_INPUT',
      `export.onnx: the combination has no model bound for member${missing.length > 1 ? 's' : ''} ${missing.map((m) => `'${m}'`).join(', ')}.`,
      { hint: `Bind ${missing.map((m) => `${m}_model`).join(', ')} to the member's train step's model output (a skipped step has none).` },
    );
  const state = await forecasterState(ctx, inputs, 'a combination of forecasters');
  const parts: CombinationMember[] = [];
  const sources: Record<string, string> = {};
  for (const [i, name] of members.entries()) {
    const ref = inputs[`${name}_model`] as ArtifactRef;
    sources[name] = ref.sha256;
    const value = JSON.parse((await ctx.store.get(ref)).toString('utf8')) as unknown;
    const weight = weights[i]!;
    if (isSequenceModel(value)) {
      const doc = parseSequenceModel(value, 'export.onnx');
      parts.push({ name, weight, model: { kind: 'sequence', doc, scaling: sequenceScaling(doc, state) } });
    } else if (isEtsModel(value)) {
      parts.push({ name, weight, model: { kind: 'ets', doc: parseEtsModel(value, 'export.onnx') } });
    } else if ((value as { format?: unknown })?.format === GBDT_FORECAST_FORMAT) {
      throw noGbdtExport(`member '${name}'`);
    } else {
      throw new PipelineError('PLUGIN_INPUT', `export.onnx: member '${name}' is not a train.tfjs-sequence or train.ets model.`, {
        hint: "Bind each member's train step's model output.",
      });
    }
  }
  // The graph's series and window are the sequence member's (buildCombinationOnnx requires one).
  const seq = parts.find((m) => m.model.kind === 'sequence')?.model as { doc: SequenceModelDocument } | undefined;
  const shape = seq
    ? { seriesIds: seq.doc.seriesIds, lookback: seq.doc.lookback, horizon: seq.doc.horizon }
    : { seriesIds: state.seriesIds, lookback: state.lookback, horizon: state.horizon };
  const references = parts.map((m) => {
    if (m.model.kind === 'sequence') return { weight: m.weight, reference: sequenceReference(m.model.doc, state) };
    etsSeries(m.model.doc, shape.seriesIds, shape.horizon, `member '${m.name}' (a train.ets model)`);
    return { weight: m.weight, reference: etsReference(etsSeriesModels(m.model.doc, shape.seriesIds), shape.horizon, p.etsInitial) };
  });
  const proto = buildCombinationOnnx(parts, p.etsInitial, {
    metadata: { ...metadata, 'mlpipe.source_models_sha256': JSON.stringify(sources) },
    ...windowOptions(state),
  });
  return checkAndStore(ctx, p, inputs, proto, shape, state, weightedReference(references), 'the members (tfjs, the served ETS recursion)');
}

/** Parity on the `windows` when bound (gated), then the file stored. */
async function checkAndStore(
  ctx: StepContext,
  p: Params,
  inputs: Inputs,
  proto: ModelProto,
  shape: { seriesIds: string[]; lookback: number; horizon: number },
  state: WindowState,
  reference: ForecastReference,
  against: string,
): Promise<ForecasterOutputs> {
  const bytes = encodeModel(proto);
  let parity: Parity | null = null;
  if (isArtifactRef(inputs['windows'])) {
    parity = await forecastParity(bytes, shape, state, await ctx.store.get(inputs['windows']), reference);
    ctx.logger.info(
      { ...parity },
      `ONNX parity on ${parity.rows} windows: max |onnx - ${against}| = ${parity.maxAbsError.toPrecision(3)} (${parity.maxRelativeError.toExponential(2)} of the series' std)`,
    );
    gate(parity, p.maxParityError);
  }
  return storeForecaster(ctx, proto, bytes, parity);
}

async function storeForecaster(ctx: StepContext, proto: ModelProto, bytes: Uint8Array, parity: Parity | null): Promise<ForecasterOutputs> {
  const onnx = await ctx.store.put(bytes, { name: 'model.onnx', mediaType: 'application/onnx' });
  const c = readContract(proto) as import('../../adapters/onnx/contract.js').OnnxForecastContract;
  return {
    onnx,
    parity,
    inputs: {
      lookback: c.lookback,
      horizon: c.horizon,
      quantiles: c.quantiles,
      series: c.seriesIds.length,
      covariates: c.covariates,
      calendar: c.calendar,
      futureCovariates: c.futureCovariates,
      futureCalendar: c.futureCalendar,
    },
  };
}
