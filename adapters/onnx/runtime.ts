/**
 * onnxruntime-node behind a small interface: load an exported model, predict from raw feature
 * records or column arrays. The input contract comes from the file's own metadata.
 */
import * as ort from 'onnxruntime-node';
import { createHash } from 'node:crypto';
import { PipelineError } from '../../engine/errors.js';
import { readContract, type OnnxContract } from './contract.js';
import { decodeModel } from './proto.js';

/** Column-major input: numbers (null/NaN allowed where nullable) or strings per raw column. */
export type Columns = Record<string, ArrayLike<number | null> | (string | null)[]>;

/** One input tensor: its element type, values (row-major) and dimensions. */
export type TensorInput =
  | { type: 'float64'; data: Float64Array; dims: number[] }
  | { type: 'float32'; data: Float32Array; dims: number[] }
  | { type: 'int64'; data: BigInt64Array; dims: number[] };

export interface OnnxPredictor {
  readonly contract: OnnxContract;
  readonly sha256: string;
  readonly bytes: number;
  /** One value per row (regression), or per row and class (classification: row-major). */
  predictColumns(columns: Columns, rows: number): Promise<Float32Array>;
  /**
   * Named tensors in, the contract's output out (row-major): for models whose inputs are tensors
   * rather than record columns (an exported forecaster: `series`, `history`, ...).
   */
  runTensors(tensors: Record<string, TensorInput>): Promise<Float32Array>;
  /** Rows as records keyed by raw column name. Values are assumed checked against the contract. */
  predict(records: Record<string, unknown>[]): Promise<Float32Array>;
  close(): Promise<void>;
}

export async function loadOnnxModel(bytes: Uint8Array, options: { threads?: number } = {}): Promise<OnnxPredictor> {
  const contract = readContract(decodeModel(bytes));
  let session: ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(bytes, {
      intraOpNumThreads: options.threads ?? 1,
      interOpNumThreads: 1,
      graphOptimizationLevel: 'all',
    });
  } catch (e) {
    throw new PipelineError('DATA_INVALID', `onnxruntime cannot load the model: ${(e as Error).message}`);
  }
  const sha256 = createHash('sha256').update(bytes).digest('hex');

  async function run(feeds: Record<string, ort.Tensor>): Promise<Float32Array> {
    const out = await session.run(feeds);
    const t = out[contract.output];
    if (!t) throw new PipelineError('DATA_INVALID', `The model has no output '${contract.output}'.`);
    return t.data as Float32Array;
  }

  async function predictColumns(columns: Columns, rows: number): Promise<Float32Array> {
    const feeds: Record<string, ort.Tensor> = {};
    for (const input of contract.inputs) {
      const values = columns[input.name];
      if (!values) throw new PipelineError('DATA_INVALID', `No values for input column '${input.name}'.`);
      if (input.type === 'string') {
        feeds[input.name] = new ort.Tensor(
          'string',
          Array.from(values as ArrayLike<string | null>, (v) => (v === null || v === undefined ? '' : String(v))),
          [rows, 1],
        );
      } else {
        const data =
          values instanceof Float64Array
            ? values
            : Float64Array.from(values as ArrayLike<number | null>, (v) => (v === null || v === undefined ? NaN : Number(v)));
        feeds[input.name] = new ort.Tensor('float64', data, [rows, 1]);
      }
    }
    return run(feeds);
  }

  return {
    contract,
    sha256,
    bytes: bytes.byteLength,
    predictColumns,
    async runTensors(tensors) {
      const feeds: Record<string, ort.Tensor> = {};
      for (const [name, t] of Object.entries(tensors)) feeds[name] = new ort.Tensor(t.type, t.data, t.dims);
      return run(feeds);
    },
    async predict(records) {
      const columns: Columns = {};
      for (const input of contract.inputs) {
        columns[input.name] =
          input.type === 'string'
            ? records.map((r) => (r[input.name] === null || r[input.name] === undefined ? null : String(r[input.name])))
            : Float64Array.from(records, (r) => (typeof r[input.name] === 'number' ? (r[input.name] as number) : NaN));
      }
      return predictColumns(columns, records.length);
    },
    async close() {
      await session.release();
    },
  };
}
