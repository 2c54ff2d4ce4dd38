import { z } from 'zod';
import { join } from 'node:path';
import { ident, sqlString, withDuckDB } from '../../adapters/duckdb.js';
import { encodeModel } from '../../adapters/onnx/proto.js';
import type { Columns } from '../../adapters/onnx/runtime.js';
import { PipelineError } from '../../engine/errors.js';
import { isArtifactRef } from '../../engine/types.js';
import { datasetFile, describe } from '../../lib/dataset.js';
import { applyTransformSql, parseFittedTransform, type FittedTransform } from '../../lib/fitted-transform.js';
import { definePlugin, type StepContext } from '../sdk.js';
import { loadTf } from '../../lib/tf.js';
import { deserializeModel, loadMatrix, predict, type ModelDocument } from '../../lib/model.js';
import { readContract } from '../../adapters/onnx/contract.js';
import { buildOnnxModel } from '../../lib/onnx-graph.js';
import { importOptional } from '../../adapters/optional.js';

const params = z
  .object({
    /**
     * With a raw `test` dataset: the largest allowed |onnx - tfjs| over the test rows, relative to
     * the target's standard deviation (regression) or in probability (classification).
     */
    maxParityError: z.number().positive().default(1e-4),
  })
  .strict();

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
 * Predicts the raw rows of `file` with onnxruntime and the transformed rows with tfjs (the way
 * evaluation does) and compares them.
 */
async function checkParity(
  ctx: StepContext,
  onnx: Uint8Array,
  modelBytes: Buffer,
  doc: ModelDocument,
  state: FittedTransform,
  file: string,
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
    const { tf } = await loadTf();
    const { model, meta } = await deserializeModel(tf, modelBytes);
    let viaTf: Float32Array;
    try {
      viaTf = predict(tf, model, meta, await loadMatrix(transformed, { features: meta.features, label: 'parity' }));
    } finally {
      model.dispose();
    }
    if (viaTf.length !== viaOnnx.length)
      throw new PipelineError('DATA_INVALID', `export.onnx: ${viaOnnx.length} ONNX outputs against ${viaTf.length} tfjs outputs.`);
    let max = 0;
    let sum = 0;
    for (let i = 0; i < viaTf.length; i++) {
      const d = Math.abs(viaTf[i]! - viaOnnx[i]!);
      if (!(d <= max)) max = d; // NaN wins
      sum += d;
    }
    const scale = doc.task === 'regression' ? (doc.targetStd ?? 1) : 1;
    return { rows: raw.rows, maxAbsError: max, meanAbsError: sum / Math.max(1, viaTf.length), maxRelativeError: max / scale };
  } finally {
    await predictor.close();
  }
}

/**
 * export.onnx — one ONNX file holding the fitted preprocessing (process.transform's `state`:
 * derived formulas, imputation, log, clipping, one-hot, scaling) and the trained train.tfjs-mlp
 * `model`: raw feature records in, prediction out, servable by onnxruntime anywhere. With a raw
 * `test` dataset (the split before the transform) it checks that onnxruntime and tfjs agree on
 * every row and fails beyond `maxParityError`.
 */
export const exportOnnx = definePlugin({
  name: 'export.onnx',
  version: '1',
  description: 'Exports transform + model as one ONNX file (raw records in) and checks onnxruntime against tfjs on the test rows.',
  params,
  inputs: { model: 'model', state: 'artifact', 'test?': 'dataset' },
  outputs: { onnx: 'model', parity: 'metrics', inputs: 'json' },
  async run(ctx, p, inputs) {
    const { bytes: modelBytes, value: doc } = await json<ModelDocument>(ctx, inputs, 'model');
    if (doc.kind !== 'mlpipe.tfjs-mlp')
      throw new PipelineError('PLUGIN_INPUT', "export.onnx: input 'model' is not a train.tfjs-mlp model.");
    const state = parseFittedTransform((await json<unknown>(ctx, inputs, 'state')).value, 'export.onnx');
    const modelRef = inputs.model;
    const proto = buildOnnxModel(state, doc, {
      metadata: {
        'mlpipe.pipeline': ctx.pipeline,
        'mlpipe.workflow_id': ctx.workflowId,
        'mlpipe.run_id': ctx.runId,
        'mlpipe.source_model_sha256': modelRef.sha256,
      },
    });
    const bytes = encodeModel(proto);
    let parity: Parity | null = null;
    if (isArtifactRef(inputs['test'])) {
      parity = await checkParity(ctx, bytes, modelBytes, doc, state, await datasetFile(ctx, inputs, 'test'));
      ctx.logger.info(
        { ...parity },
        `ONNX parity on ${parity.rows} rows: max |onnx - tfjs| = ${parity.maxAbsError.toPrecision(3)} (${parity.maxRelativeError.toExponential(2)} of the target's std)`,
      );
      if (!(parity.maxRelativeError <= p.maxParityError)) {
        throw new PipelineError(
          'QUALITY_GATE',
          `export.onnx: onnxruntime and tfjs disagree by ${parity.maxRelativeError.toExponential(2)} (relative), above maxParityError ${p.maxParityError}.`,
          {
            hint: 'The exported graph does not reproduce the trained model; report it with the transform state.',
          },
        );
      }
    }
    const onnx = await ctx.store.put(bytes, { name: 'model.onnx', mediaType: 'application/onnx' });
    return { onnx, parity, inputs: readContract(proto).inputs };
  },
});
