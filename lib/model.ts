/**
 * The model artifact of train.tfjs-mlp, and the matrix loading shared by training, evaluation and
 * serving. A model artifact is one JSON document: the Keras topology, the weights (base64), and
 * what prediction needs (feature order, task, target scaling, class labels).
 */
import { ident, sqlString, withDuckDB } from '../adapters/duckdb.js';
import { PipelineError } from '../engine/errors.js';
import { describe, isNumericType } from './dataset.js';
import type { Tf } from './tf.js';

type LayersModel = import('@tensorflow/tfjs-layers').LayersModel;
type ModelArtifacts = import('@tensorflow/tfjs-core').io.ModelArtifacts;

export interface ModelMeta {
  kind: 'mlpipe.tfjs-mlp';
  version: 1;
  task: 'regression' | 'classification';
  features: string[];
  target: string;
  /** Regression: the model predicts (y - mean) / std. */
  targetMean?: number;
  targetStd?: number;
  /** Classification: label of each output unit (binary: [negative, positive]). */
  classes?: (string | number)[];
  /** Classification: share of each class in the training data (the majority-class baseline). */
  classPriors?: number[];
}

export interface ModelDocument extends ModelMeta {
  modelTopology: unknown;
  weightSpecs: unknown;
  weightData: string;
}

export interface Matrix {
  x: Float32Array;
  y?: (number | string)[];
  rows: number;
  features: string[];
}

/** Reads feature columns (and the target) of a Parquet dataset as a row-major float matrix. */
export async function loadMatrix(file: string, opts: { target?: string; features?: string[]; label: string }): Promise<Matrix> {
  return withDuckDB(async (db) => {
    const src = `read_parquet(${sqlString(file)})`;
    const columns = await describe(db, src);
    if (opts.target && !columns.some((c) => c.name === opts.target)) {
      throw new PipelineError(
        'DATA_INVALID',
        `${opts.label}: no target column '${opts.target}'. Columns: ${columns.map((c) => c.name).join(', ')}.`,
        {
          hint: 'Check `target` (and that no transform dropped or renamed it).',
        },
      );
    }
    const features = opts.features ?? columns.filter((c) => c.name !== opts.target && isNumericType(c.type)).map((c) => c.name);
    const missing = features.filter((f) => !columns.some((c) => c.name === f));
    if (missing.length) throw new PipelineError('DATA_INVALID', `${opts.label}: missing feature column(s) ${missing.join(', ')}.`);
    const nonNumeric = features.filter((f) => !isNumericType(columns.find((c) => c.name === f)!.type));
    if (nonNumeric.length) {
      throw new PipelineError('DATA_INVALID', `${opts.label}: feature column(s) ${nonNumeric.join(', ')} are not numeric.`, {
        hint: 'One-hot encode categorical columns with process.transform first.',
      });
    }
    const select = features.map((f) => `${ident(f)}::DOUBLE AS ${ident(f)}`).join(', ');
    const nulls = await db.rows<{ c: string; n: number }>(
      features
        .map((f) => `SELECT ${sqlString(f)} AS c, count(*) FILTER (WHERE ${ident(f)} IS NULL)::BIGINT AS n FROM ${src}`)
        .join(' UNION ALL '),
    );
    const withNulls = nulls.filter((r) => r.n > 0);
    if (withNulls.length) {
      throw new PipelineError('DATA_INVALID', `${opts.label}: null values in ${withNulls.map((r) => `'${r.c}' (${r.n})`).join(', ')}.`, {
        hint: 'Impute them with process.transform before training.',
      });
    }
    // Column-major chunks straight into the matrix: no object per row.
    const width = features.length;
    let x = new Float32Array(1024 * width);
    const y: (number | string)[] = [];
    let n = 0;
    const targetType = columns.find((c) => c.name === opts.target)?.type;
    const yExpr = opts.target ? `, ${ident(opts.target)}${targetType && isNumericType(targetType) ? '::DOUBLE' : ''} AS __y` : '';
    for await (const chunk of db.chunks(`SELECT ${select}${yExpr} FROM ${src}`)) {
      const count = (chunk[0] ?? []).length;
      if ((n + count) * width > x.length) {
        const grown = new Float32Array(Math.max(x.length * 2, (n + count) * width));
        grown.set(x.subarray(0, n * width));
        x = grown;
      }
      for (let j = 0; j < width; j++) {
        const col = chunk[j] as number[];
        for (let i = 0; i < count; i++) x[(n + i) * width + j] = col[i]!;
      }
      if (opts.target) {
        for (const v of chunk[width] as unknown[]) y.push(typeof v === 'bigint' ? Number(v) : (v as number | string));
      }
      n += count;
    }
    x = x.slice(0, n * width);
    if (opts.target && y.some((v) => v === null || v === undefined)) {
      throw new PipelineError('DATA_INVALID', `${opts.label}: the target '${opts.target}' has null values.`, {
        hint: 'Drop those rows with process.sql, or validate the target with maxNullShare: 0.',
      });
    }
    return { x, y: opts.target ? y : undefined, rows: n, features };
  });
}

export async function serializeModel(tf: Tf, model: LayersModel, meta: ModelMeta): Promise<Buffer> {
  let saved: ModelArtifacts | undefined;
  await model.save(
    tf.io.withSaveHandler(async (artifacts) => {
      saved = artifacts;
      return { modelArtifactsInfo: { dateSaved: new Date(0), modelTopologyType: 'JSON' } };
    }),
  );
  const weights = saved!.weightData as ArrayBuffer;
  const doc: ModelDocument = {
    ...meta,
    modelTopology: saved!.modelTopology,
    weightSpecs: saved!.weightSpecs,
    weightData: Buffer.from(weights).toString('base64'),
  };
  return Buffer.from(JSON.stringify(doc));
}

export async function deserializeModel(tf: Tf, bytes: Buffer): Promise<{ model: LayersModel; meta: ModelMeta }> {
  const doc = JSON.parse(bytes.toString('utf8')) as ModelDocument;
  if (doc.kind !== 'mlpipe.tfjs-mlp') throw new PipelineError('DATA_INVALID', 'Not a train.tfjs-mlp model artifact.');
  const data = Buffer.from(doc.weightData, 'base64');
  const model = await tf.loadLayersModel(
    tf.io.fromMemory({
      modelTopology: doc.modelTopology as object,
      weightSpecs: doc.weightSpecs as import('@tensorflow/tfjs-core').io.WeightsManifestEntry[],
      weightData: data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength),
    }),
  );
  const { modelTopology: _t, weightSpecs: _s, weightData: _d, ...meta } = doc;
  return { model, meta };
}

/** Predictions in the target's units: numbers (regression) or P(class) per row (classification). */
export function predict(tf: Tf, model: LayersModel, meta: ModelMeta, m: Matrix, batchSize = 4096): Float32Array {
  return tf.tidy(() => {
    const x = tf.tensor2d(m.x, [m.rows, m.features.length]);
    const out = model.predict(x, { batchSize }) as import('@tensorflow/tfjs-core').Tensor;
    const scaled = meta.task === 'regression' ? tf.add(tf.mul(out, meta.targetStd ?? 1), meta.targetMean ?? 0) : out;
    return scaled.dataSync() as Float32Array;
  });
}
