/**
 * Builds one ONNX graph from a fitted transform (process.transform's state) and a trained model —
 * a train.tfjs-mlp network, or a train.xgboost / train.lightgbm tree ensemble (lib/onnx-trees.ts,
 * as one ai.onnx.ml TreeEnsembleRegressor): raw feature columns in, prediction out. Pure: no I/O, no tfjs.
 *
 * Inputs are the raw columns the transform reads, each [N, 1]: numbers as double (NaN for null),
 * text as string ("" for null). Preprocessing runs in double exactly as the SQL at fit time does;
 * the features are then cast to float for the model (tfjs trains in float32, and both boosting libraries
 * split on float32 features).
 *
 * What a client must send is recorded in the model's metadata (`mlpipe.inputs`), so a server needs
 * nothing but the .onnx file.
 */
import { PipelineError } from '../engine/errors.js';
import { type OnnxContract, type OnnxInput } from '../adapters/onnx/contract.js';
import {
  AttributeType,
  DataType,
  type AttributeProto,
  type ModelProto,
  type NodeProto,
  type TensorProto,
  type ValueInfoProto,
} from '../adapters/onnx/proto.js';
import { parseFormula, type Formula } from './formula.js';
import type { FittedTransform } from './fitted-transform.js';
import type { ModelDocument } from './model.js';
import type { BoostedModelDocument } from './boosted-model.js';
import { treeEnsemble } from './onnx-trees.js';

export const ONNX_OPSET = 21;
export const ONNX_ML_OPSET = 3;
/** IR version 10 goes with opset 21 (onnx 1.16). */
export const ONNX_IR_VERSION = 10;

function exportError(message: string, hint?: string): PipelineError {
  return new PipelineError('PLUGIN_PARAMS', `export.onnx: ${message}`, hint ? { hint } : {});
}

/** A graph being built: nodes, initializers, fresh names (shared with lib/onnx-sequence.ts). */
export class Graph {
  nodes: NodeProto[] = [];
  initializers: TensorProto[] = [];
  private count = 0;
  private constants = new Map<string, string>();

  fresh(prefix: string): string {
    return `${prefix}_${++this.count}`;
  }

  node(op: string, input: string[], attrs: AttributeProto[] = [], domain?: string, outputs = 1): string[] {
    const out = Array.from({ length: outputs }, () => this.fresh(op.toLowerCase()));
    this.nodes.push({ name: this.fresh(`n_${op}`), op_type: op, input, output: out, attribute: attrs, ...(domain ? { domain } : {}) });
    return out;
  }

  one(op: string, input: string[], attrs: AttributeProto[] = [], domain?: string): string {
    return this.node(op, input, attrs, domain)[0]!;
  }

  tensor(name: string, type: number, dims: number[], data: Float32Array | Float64Array | BigInt64Array): string {
    this.initializers.push({ name, dims, data_type: type, raw_data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) });
    return name;
  }

  /** A double scalar, shared between uses. */
  double(value: number): string {
    const key = `d${value}`;
    let name = this.constants.get(key);
    if (!name) {
      name = this.tensor(this.fresh('c'), DataType.DOUBLE, [], Float64Array.of(value));
      this.constants.set(key, name);
    }
    return name;
  }

  int64s(values: number[]): string {
    return this.tensor(this.fresh('shape'), DataType.INT64, [values.length], BigInt64Array.from(values.map(BigInt)));
  }
}

export const attrInt = (name: string, i: number): AttributeProto => ({ name, type: AttributeType.INT, i });
export const attrInts = (name: string, ints: number[]): AttributeProto => ({ name, type: AttributeType.INTS, ints });
const attrFloats = (name: string, floats: number[]): AttributeProto => ({ name, type: AttributeType.FLOATS, floats });
const attrString = (name: string, value: string): AttributeProto => ({
  name,
  type: AttributeType.STRING,
  s: new TextEncoder().encode(value),
});
const attrStrings = (name: string, values: string[]): AttributeProto => ({
  name,
  type: AttributeType.STRINGS,
  strings: values.map((v) => new TextEncoder().encode(v)),
});

export function valueInfo(name: string, elem: number, dims: (number | string)[], doc?: string): ValueInfoProto {
  return {
    name,
    ...(doc ? { doc_string: doc } : {}),
    type: {
      tensor_type: { elem_type: elem, shape: { dim: dims.map((d) => (typeof d === 'number' ? { dim_value: d } : { dim_param: d })) } },
    },
  };
}

interface DenseLayer {
  kernel: Float32Array;
  bias?: Float32Array;
  inputs: number;
  units: number;
  activation: string;
}

/** The Dense layers of a Sequential tfjs model, with their weights (dropout is identity at inference). */
export function denseLayers(model: ModelDocument): DenseLayer[] {
  const topology = model.modelTopology as {
    class_name?: string;
    config?: { layers?: { class_name: string; config: { name: string; units?: number; activation?: string; use_bias?: boolean } }[] };
  };
  const layers = topology.config?.layers;
  if (topology.class_name !== 'Sequential' || !layers) throw exportError('the model is not a Sequential tfjs model.');
  const specs = model.weightSpecs as { name: string; shape: number[]; dtype: string }[];
  const bytes = Buffer.from(model.weightData, 'base64');
  const weights = new Map<string, { shape: number[]; data: Float32Array }>();
  let offset = 0;
  for (const s of specs) {
    if (s.dtype !== 'float32') throw exportError(`weight ${s.name} is ${s.dtype}; only float32 weights are exported.`);
    const n = s.shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = bytes.readFloatLE(offset + i * 4);
    offset += n * 4;
    weights.set(s.name, { shape: s.shape, data });
  }
  const out: DenseLayer[] = [];
  for (const layer of layers) {
    if (layer.class_name === 'Dropout') continue;
    if (layer.class_name !== 'Dense')
      throw exportError(`layer ${layer.config.name} is a ${layer.class_name}; only Dense and Dropout layers are exported.`);
    const kernel = weights.get(`${layer.config.name}/kernel`);
    if (!kernel) throw exportError(`no weights for layer ${layer.config.name}.`);
    const bias = weights.get(`${layer.config.name}/bias`);
    out.push({
      kernel: kernel.data,
      bias: bias?.data,
      inputs: kernel.shape[0]!,
      units: kernel.shape[1]!,
      activation: layer.config.activation ?? 'linear',
    });
  }
  return out;
}

export interface ExportOptions {
  /** Written into the file's metadata. */
  metadata?: Record<string, string>;
  docString?: string;
  producerVersion?: string;
}

/** The float [N,F] features through the Dense layers, scaled back to the target's units (regression). */
function networkHead(g: Graph, x: string, model: ModelDocument): string {
  let h = x;
  const layers = denseLayers(model);
  if (layers[0]?.inputs !== model.features.length)
    throw exportError(`the network takes ${layers[0]?.inputs} inputs but the model lists ${model.features.length} features.`);
  layers.forEach((layer, i) => {
    const w = g.tensor(`dense${i}_kernel`, DataType.FLOAT, [layer.inputs, layer.units], layer.kernel);
    h = g.one('MatMul', [h, w]);
    if (layer.bias) h = g.one('Add', [h, g.tensor(`dense${i}_bias`, DataType.FLOAT, [layer.units], layer.bias)]);
    const act = { relu: 'Relu', elu: 'Elu', tanh: 'Tanh', selu: 'Selu', sigmoid: 'Sigmoid', softmax: 'Softmax', linear: '' }[
      layer.activation
    ];
    if (act === undefined) throw exportError(`activation '${layer.activation}' cannot be exported.`);
    if (act === 'Softmax') h = g.one(act, [h], [attrInt('axis', -1)]);
    else if (act) h = g.one(act, [h]);
  });

  const regression = model.task === 'regression';
  if (regression) {
    const std = g.tensor('target_std', DataType.FLOAT, [], Float32Array.of(model.targetStd ?? 1));
    const mean = g.tensor('target_mean', DataType.FLOAT, [], Float32Array.of(model.targetMean ?? 0));
    h = g.one('Add', [g.one('Mul', [h, std]), mean]);
  }
  return h;
}

/** The float [N,F] features through one TreeEnsembleRegressor: [N,1] (regression, binary) or [N,K]. */
function treesHead(g: Graph, x: string, doc: BoostedModelDocument): string {
  const e = treeEnsemble(doc);
  const n = e.nodes;
  // The post transform as its own node: onnxruntime's regressor leaves a single target untransformed.
  const margin = g.one(
    'TreeEnsembleRegressor',
    [x],
    [
      attrInt('n_targets', e.targets),
      attrString('aggregate_function', 'SUM'),
      attrString('post_transform', 'NONE'),
      attrFloats('base_values', e.base),
      attrInts(
        'nodes_treeids',
        n.map((v) => v.tree),
      ),
      attrInts(
        'nodes_nodeids',
        n.map((v) => v.id),
      ),
      attrInts(
        'nodes_featureids',
        n.map((v) => v.feature),
      ),
      attrFloats(
        'nodes_values',
        n.map((v) => v.value),
      ),
      attrStrings(
        'nodes_modes',
        n.map((v) => v.mode),
      ),
      attrInts(
        'nodes_truenodeids',
        n.map((v) => v.trueId),
      ),
      attrInts(
        'nodes_falsenodeids',
        n.map((v) => v.falseId),
      ),
      attrInts(
        'nodes_missing_value_tracks_true',
        n.map((v) => v.missingTrue),
      ),
      attrInts(
        'target_treeids',
        e.leaves.map((l) => l.tree),
      ),
      attrInts(
        'target_nodeids',
        e.leaves.map((l) => l.node),
      ),
      attrInts(
        'target_ids',
        e.leaves.map((l) => l.target),
      ),
      attrFloats(
        'target_weights',
        e.leaves.map((l) => l.weight),
      ),
    ],
    'ai.onnx.ml',
  );
  if (e.postTransform === 'LOGISTIC') return g.one('Sigmoid', [margin]);
  if (e.postTransform === 'SOFTMAX') return g.one('Softmax', [margin], [attrInt('axis', -1)]);
  return margin;
}

/** What the graph's output means, for either kind of model. */
function taskOf(model: ModelDocument | BoostedModelDocument): { task: 'regression' | 'classification'; classes?: (string | number)[] } {
  if (!isBoosted(model)) return { task: model.task, ...(model.classes ? { classes: model.classes } : {}) };
  if (model.task === 'regression') return { task: 'regression' };
  const k = model.task === 'binary' ? 2 : model.numClass;
  return { task: 'classification', classes: model.classes ?? Array.from({ length: k }, (_, i) => i) };
}

function isBoosted(model: ModelDocument | BoostedModelDocument): model is BoostedModelDocument {
  return (model as { format?: unknown }).format !== undefined;
}

/** The whole model, transform and network or tree ensemble, as an ONNX ModelProto. */
export function buildOnnxModel(
  state: FittedTransform,
  model: ModelDocument | BoostedModelDocument,
  options: ExportOptions = {},
): ModelProto {
  const g = new Graph();
  const declared = new Map((state.inputs ?? []).map((c) => [c.name, c.type]));
  const stringColumns = new Set(state.ops.flatMap((o) => (o.op === 'onehot' ? [o.column] : [])));
  const imputed = new Set(state.ops.flatMap((o) => (o.op === 'impute' ? [o.column] : [])));
  /** Raw inputs, created on first read. */
  const inputs: OnnxInput[] = [];
  /** The tensor holding each column's current value ([N,1]). */
  const current = new Map<string, string>();

  const read = (column: string, as: 'number' | 'string'): string => {
    const t = current.get(column);
    if (t) {
      if (as === 'string' && !inputs.some((i) => i.name === column && i.type === 'string')) {
        throw exportError(`column '${column}' is computed as a number but used as text (one-hot).`);
      }
      return t;
    }
    const type = declared.get(column) ?? (stringColumns.has(column) ? 'string' : 'number');
    if (type === 'other')
      throw exportError(`column '${column}' has a type ONNX serving does not take (dates, lists); drop it before the transform.`);
    if (type !== as) {
      throw exportError(
        as === 'string'
          ? `column '${column}' is numeric; one-hot encoding of numbers cannot be exported.`
          : `column '${column}' is text but used as a number.`,
        as === 'string' ? 'Cast it to text (VARCHAR) in an earlier step, or bin it.' : undefined,
      );
    }
    inputs.push({ name: column, type, nullable: false });
    current.set(column, column);
    return column;
  };

  const formula = (f: Formula): string => {
    switch (f.kind) {
      case 'num':
        return g.double(f.value);
      case 'col':
        return read(f.name, 'number');
      case 'neg':
        return g.one('Neg', [formula(f.operand)]);
      case 'fn':
        return g.one({ sqrt: 'Sqrt', ln: 'Log', exp: 'Exp', abs: 'Abs' }[f.fn], [formula(f.arg)]);
      case 'bin':
        return g.one({ '+': 'Add', '-': 'Sub', '*': 'Mul', '/': 'Div', '^': 'Pow' }[f.op], [formula(f.left), formula(f.right)]);
    }
  };

  for (const op of state.ops) {
    switch (op.op) {
      case 'derive':
        if (op.expr === undefined) {
          throw exportError(
            `derived column '${op.name}' is written in SQL, which cannot be exported.`,
            `Write it as a formula: { op: derive, name: ${op.name}, expr: <formula> } (+ - * / ^, sqrt, ln, exp, abs).`,
          );
        }
        current.set(op.name, formula(parseFormula(op.expr)));
        break;
      case 'impute': {
        if (typeof op.value !== 'number')
          throw exportError(`imputing text column '${op.column}' cannot be exported yet; one-hot leaves a missing category as all zeros.`);
        const x = read(op.column, 'number');
        current.set(op.column, g.one('Where', [g.one('IsNaN', [x]), g.double(op.value), x]));
        break;
      }
      case 'log': {
        // SQL: ln(greatest(x, 0) + offset), where greatest() skips a null (so null gives ln(offset)).
        const x = read(op.column, 'number');
        const zero = g.double(0);
        const nonNull = g.one('Where', [g.one('IsNaN', [x]), zero, x]);
        current.set(op.column, g.one('Log', [g.one('Add', [g.one('Max', [nonNull, zero]), g.double(op.offset)])]));
        break;
      }
      case 'clip': {
        let x = read(op.column, 'number');
        if (op.min !== null) x = g.one('Max', [x, g.double(op.min)]);
        if (op.max !== null) x = g.one('Min', [x, g.double(op.max)]);
        current.set(op.column, x);
        break;
      }
      case 'standardize': {
        const x = read(op.column, 'number');
        current.set(op.column, g.one('Div', [g.one('Sub', [x, g.double(op.mean)]), g.double(op.std)]));
        break;
      }
      case 'rbf': {
        // exp(-gamma * sum_j (x_j - c_j)^2) per center, as the SQL computes it.
        const xs = op.columns.map((c) => read(c, 'number'));
        const scale = g.double(-op.gamma);
        op.centers.forEach((center, k) => {
          const squares = xs.map((x, j) => {
            const d = g.one('Sub', [x, g.double(center[j]!)]);
            return g.one('Mul', [d, d]);
          });
          const sum = squares.reduce((acc, t) => g.one('Add', [acc, t]));
          current.set(`${op.name}_${k}`, g.one('Exp', [g.one('Mul', [sum, scale])]));
        });
        break;
      }
      case 'onehot': {
        const x = read(op.column, 'string');
        const c = op.categories.length;
        // [N,1] strings -> [N,1,C] floats (unknown or empty: all zeros) -> [N,C] -> C columns of [N,1].
        const encoded = g.one('OneHotEncoder', [x], [attrStrings('cats_strings', op.categories), attrInt('zeros', 1)], 'ai.onnx.ml');
        const flat = g.one('Cast', [g.one('Reshape', [encoded, g.int64s([-1, c])])], [attrInt('to', DataType.DOUBLE)]);
        const parts = c === 1 ? [flat] : g.node('Split', [flat, g.int64s(Array(c).fill(1))], [attrInt('axis', 1)], undefined, c);
        current.delete(op.column);
        op.categories.forEach((cat, i) => current.set(`${op.column}=${cat}`, parts[i]!));
        break;
      }
    }
  }

  // The network's input: its features in training order.
  const features = model.features.map((f) => {
    const t = current.get(f) ?? (declared.has(f) || !state.ops.length ? read(f, 'number') : undefined);
    if (!t)
      throw exportError(
        `the model's feature '${f}' is not produced by the transform.`,
        'Export the transform state that made the training data.',
      );
    return t;
  });
  for (const i of inputs) i.nullable = imputed.has(i.name) || (declared.get(i.name) ?? 'number') === 'string';
  let h = g.one(
    'Cast',
    [features.length === 1 ? features[0]! : g.one('Concat', features, [attrInt('axis', 1)])],
    [attrInt('to', DataType.FLOAT)],
  );

  const { task, classes } = taskOf(model);
  const regression = task === 'regression';
  if (isBoosted(model)) h = treesHead(g, h, model);
  else h = networkHead(g, h, model);
  const output = regression ? 'prediction' : 'probabilities';
  g.nodes.push({ name: 'n_output', op_type: 'Identity', input: [h], output: [output] });
  const width = regression ? 1 : classes && classes.length > 2 ? classes.length : 1;

  const contract: OnnxContract = { inputs, task, target: model.target, output, ...(classes ? { classes } : {}) };
  return {
    ir_version: ONNX_IR_VERSION,
    producer_name: 'mlpipe',
    producer_version: options.producerVersion ?? '0',
    model_version: 1,
    doc_string: options.docString ?? `Predicts ${model.target} from raw feature records (preprocessing included).`,
    opset_import: [
      { domain: '', version: ONNX_OPSET },
      { domain: 'ai.onnx.ml', version: ONNX_ML_OPSET },
    ],
    metadata_props: [
      { key: 'mlpipe.contract', value: JSON.stringify(contract) },
      ...Object.entries(options.metadata ?? {}).map(([key, value]) => ({ key, value })),
    ],
    graph: {
      name: 'mlpipe',
      node: g.nodes,
      initializer: g.initializers,
      input: inputs.map((i) =>
        valueInfo(i.name, i.type === 'string' ? DataType.STRING : DataType.DOUBLE, ['N', 1], `${i.type}${i.nullable ? ', nullable' : ''}`),
      ),
      output: [valueInfo(output, DataType.FLOAT, ['N', width])],
    },
  };
}
