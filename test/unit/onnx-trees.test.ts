/**
 * Boosted trees to ONNX: models trained by the Python xgboost and lightgbm packages
 * (test/tools/boosting_fixtures.py, committed in test/fixtures/boosting), exported with
 * lib/onnx-graph.ts and predicted by onnxruntime-node on held-out rows with missing values, against
 * the library's own predictions.
 */
import { describe, expect, it } from 'vitest';
import { loadOnnxModel } from '../../adapters/onnx/runtime.js';
import { encodeModel } from '../../adapters/onnx/proto.js';
import { PipelineError } from '../../engine/errors.js';
import type { BoostedModelDocument } from '../../lib/boosted-model.js';
import { buildOnnxModel } from '../../lib/onnx-graph.js';
import { float32AtMost, treeEnsemble } from '../../lib/onnx-trees.js';
import { BOOSTING_FIXTURES, fixture, fixtureRows, identityTransform as identity } from './boosting-fixtures.js';

const { features, rows } = fixtureRows;

/** The parts of the dumps the refusal cases edit. */
interface XgbDump {
  learner: {
    learner_model_param: { base_score: string };
    objective: { name: string };
    gradient_booster: { name: string; model: { trees: { split_type: number[] }[] } };
  };
}
const xgbDump = (d: BoostedModelDocument) => d.model as XgbDump;
const lgbDump = (d: BoostedModelDocument) =>
  d.model as { tree_info: { tree_structure: { missing_type: string; decision_type: string } }[] };

async function onnxPredict(doc: BoostedModelDocument): Promise<{ out: Float32Array; width: number; bytes: Uint8Array }> {
  const bytes = encodeModel(buildOnnxModel(identity, doc));
  const predictor = await loadOnnxModel(bytes);
  try {
    const columns = Object.fromEntries(features.map((f, j) => [f, Float64Array.from(rows, (r) => r[j] ?? NaN)]));
    const out = await predictor.predictColumns(columns, rows.length);
    return { out, width: out.length / rows.length, bytes };
  } finally {
    await predictor.close();
  }
}

const CASES = BOOSTING_FIXTURES;

describe('boosted trees as ONNX TreeEnsembleRegressor', () => {
  it('the held-out rows have missing values in every feature', () => {
    for (let j = 0; j < features.length; j++) expect(rows.some((r) => r[j] === null)).toBe(true);
    expect(rows.length).toBeGreaterThanOrEqual(100);
  });

  for (const name of CASES) {
    it(`${name}: onnxruntime matches the library's predict within 1e-4 (of the target's std for regression)`, async () => {
      const doc = fixture(name);
      const { out, width } = await onnxPredict(doc);
      expect(width).toBe(doc.task === 'multiclass' ? doc.numClass : 1);
      let max = 0;
      doc.predictions.forEach((p, i) => p.forEach((v, k) => (max = Math.max(max, Math.abs(v - out[i * width + k]!)))));
      const relative = max / (doc.task === 'regression' ? doc.targetStd : 1);
      expect(relative).toBeLessThan(1e-4);
      // Not a constant: the predictions spread like the library's.
      expect(new Set(Array.from(out, (v) => v.toFixed(3))).size).toBeGreaterThan(20);
    });
  }

  it('the contract says what the output means: regression, P(classes[1]), or P per class', async () => {
    const reg = buildOnnxModel(identity, fixture('lightgbm-regression'));
    const bin = buildOnnxModel(identity, { ...fixture('xgboost-binary'), classes: ['no', 'yes'] });
    const multi = buildOnnxModel(identity, fixture('lightgbm-multiclass'));
    const contract = (m: typeof reg) =>
      JSON.parse(m.metadata_props.find((p) => p.key === 'mlpipe.contract')!.value) as Record<string, unknown>;
    expect(contract(reg)).toMatchObject({ task: 'regression', output: 'prediction', target: 'y' });
    expect(contract(bin)).toMatchObject({ task: 'classification', output: 'probabilities', classes: ['no', 'yes'] });
    expect(contract(multi)).toMatchObject({ task: 'classification', output: 'probabilities', classes: [0, 1, 2] });
    expect(multi.graph.output[0]!.type.tensor_type.shape.dim[1]).toEqual({ dim_value: 3 });
  });

  it('maps each library onto the operator: split rule, base score in margin space, tree-to-class, post transform', () => {
    const xr = treeEnsemble(fixture('xgboost-regression'));
    expect(new Set(xr.nodes.filter((n) => n.mode !== 'LEAF').map((n) => n.mode))).toEqual(new Set(['BRANCH_LT']));
    expect(xr.postTransform).toBe('NONE');
    const xb = fixture('xgboost-binary');
    const base = Number(/[-\d.E]+/.exec(String(xgbDump(xb).learner.learner_model_param.base_score))![0]);
    expect(treeEnsemble(xb).base[0]).toBeCloseTo(Math.log(base / (1 - base)), 10);
    expect(treeEnsemble(xb).postTransform).toBe('LOGISTIC');
    const xm = treeEnsemble(fixture('xgboost-multiclass'));
    expect(xm.postTransform).toBe('SOFTMAX');
    expect(new Set(xm.leaves.map((l) => l.target))).toEqual(new Set([0, 1, 2]));
    const lr = treeEnsemble(fixture('lightgbm-regression'));
    expect(new Set(lr.nodes.filter((n) => n.mode !== 'LEAF').map((n) => n.mode))).toEqual(new Set(['BRANCH_LEQ']));
    expect(lr.base).toEqual([0]);
    const lm = treeEnsemble(fixture('lightgbm-multiclass'));
    expect(lm.leaves.filter((l) => l.tree === 4).every((l) => l.target === 1)).toBe(true);
  });

  it('LightGBM thresholds become the largest float32 not above them', () => {
    for (const x of [0.1, -0.1, 1 / 3, -1 / 3, 1e-40, -1e-40, 0, 123456.789, -0.11771017685532568]) {
      const f = float32AtMost(x);
      expect(Math.fround(f)).toBe(f);
      expect(f).toBeLessThanOrEqual(x);
      // The next float32 up is above x.
      const up = new Float32Array([f]);
      const bits = new Int32Array(up.buffer);
      bits[0] = f > 0 || Object.is(f, 0) ? bits[0]! + 1 : f === 0 ? 1 : bits[0]! - 1;
      expect(up[0]!).toBeGreaterThan(x);
    }
  });

  it('refuses what it cannot export, saying why', () => {
    const xgb = fixture('xgboost-regression');
    const dart = structuredClone(xgb);
    xgbDump(dart).learner.gradient_booster.name = 'dart';
    expect(() => treeEnsemble(dart)).toThrow(/booster 'dart' is not exported/);
    const poisson = structuredClone(xgb);
    xgbDump(poisson).learner.objective.name = 'count:poisson';
    expect(() => treeEnsemble(poisson)).toThrow(/objective 'count:poisson' is not exported/);
    expect(() => treeEnsemble({ ...xgb, features: ['a'] })).toThrow(PipelineError);
    const categorical = structuredClone(xgb);
    xgbDump(categorical).learner.gradient_booster.model.trees[0]!.split_type[0] = 1;
    expect(() => treeEnsemble(categorical)).toThrow(/categorical splits/);
    const lgb = fixture('lightgbm-regression');
    const zero = structuredClone(lgb);
    lgbDump(zero).tree_info[0]!.tree_structure.missing_type = 'Zero';
    expect(() => treeEnsemble(zero)).toThrow(/missing_type Zero/);
    const cat = structuredClone(lgb);
    lgbDump(cat).tree_info[0]!.tree_structure.decision_type = '==';
    expect(() => treeEnsemble(cat)).toThrow(/categorical/);
    expect(() => treeEnsemble({ ...lgb, model: 'not a dump' })).toThrow(PipelineError);
  });
});
