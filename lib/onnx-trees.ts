/**
 * A boosted-trees model (lib/boosted-model.ts) as the attributes of one ONNX-ML
 * `TreeEnsembleRegressor`, read from the library's own JSON dump. Pure: no I/O.
 *
 * How each library's prediction maps onto the operator (input: float32 features, as both libraries
 * and mlpipe's trainers use them):
 * - XGBoost: `x < split_condition` goes left (BRANCH_LT); a missing value goes where `default_left`
 *   says; thresholds are float32 already. A leaf's value is its `split_conditions` entry. Tree k adds
 *   to class `tree_info[k]`. The model's `base_score` is stored in the objective's output space
 *   (probability for logistic objectives, as xgboost 3.2 writes it; a vector per class for
 *   multiclass) and is turned into the margin the trees add to (logit for logistic objectives).
 * - LightGBM: `x <= threshold` goes left (BRANCH_LEQ). Its thresholds are doubles compared against
 *   the float32 feature widened to double, so the exported threshold is the largest float32 not
 *   above it (the same decision for every float32 input). `missing_type: NaN` sends a missing value
 *   where `default_left` says; `missing_type: None` treats it as 0, so it goes where 0 goes. Tree k
 *   adds to class `k % num_tree_per_iteration`; the initial score is inside the first trees;
 *   `average_output` (random-forest mode) divides by the number of iterations; the `sigmoid`
 *   parameter of a binary objective scales the raw score before the logistic.
 * Post transform: LOGISTIC (binary), SOFTMAX (multiclass), none (regression).
 */
import { PipelineError } from '../engine/errors.js';
import type { BoostedModelDocument } from './boosted-model.js';

export interface TreeNode {
  tree: number;
  id: number;
  /** Index into the model's features; 0 for leaves. */
  feature: number;
  /** float32 threshold; 0 for leaves. */
  value: number;
  mode: 'BRANCH_LT' | 'BRANCH_LEQ' | 'LEAF';
  trueId: number;
  falseId: number;
  /** 1: a missing (NaN) value takes the true branch. */
  missingTrue: 0 | 1;
}

export interface TreeLeaf {
  tree: number;
  node: number;
  target: number;
  weight: number;
}

export interface TreeEnsemble {
  nodes: TreeNode[];
  leaves: TreeLeaf[];
  targets: number;
  /** Added to each target's sum of leaves (the margin of the library's base score). */
  base: number[];
  postTransform: 'NONE' | 'LOGISTIC' | 'SOFTMAX';
  trees: number;
}

function refuse(message: string, hint?: string): PipelineError {
  return new PipelineError('PLUGIN_INPUT', `export.onnx: ${message}`, hint ? { hint } : {});
}

const f32 = new Float32Array(1);
const i32 = new Int32Array(f32.buffer);

/** The largest float32 that is <= x (so `float32 v <= result` exactly when `v <= x`). */
export function float32AtMost(x: number): number {
  const f = Math.fround(x);
  if (f <= x || !Number.isFinite(x)) return f;
  f32[0] = f;
  // One step towards -infinity: the bit pattern moves down for positives, up for negatives.
  if (f > 0) i32[0]! -= 1;
  else if (f === 0)
    i32[0] = 0x80000001 | 0; // the smallest negative subnormal
  else i32[0]! += 1;
  return f32[0]!;
}

type Json = Record<string, unknown>;
const obj = (v: unknown, what: string): Json => {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw refuse(`the model dump has no ${what}.`);
  return v as Json;
};
const nums = (v: unknown, what: string): number[] => {
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'number' && typeof x !== 'boolean'))
    throw refuse(`the model dump's ${what} is not a list of numbers.`);
  return (v as (number | boolean)[]).map(Number);
};

/** What the tasks need from each library's objective: the post transform and how a base score becomes a margin. */
function outputOf(doc: BoostedModelDocument): { post: TreeEnsemble['postTransform']; toMargin: (p: number) => number } {
  const identity = (p: number) => p;
  if (doc.task === 'multiclass') return { post: 'SOFTMAX', toMargin: identity };
  if (doc.task === 'binary') return { post: 'LOGISTIC', toMargin: (p) => Math.log(p / (1 - p)) };
  return { post: 'NONE', toMargin: identity };
}

const XGB_OBJECTIVES: Record<BoostedModelDocument['task'], string[]> = {
  regression: ['reg:squarederror', 'reg:absoluteerror', 'reg:pseudohubererror', 'reg:quantileerror'],
  binary: ['binary:logistic', 'reg:logistic'],
  multiclass: ['multi:softprob', 'multi:softmax'],
};

function fromXgboost(doc: BoostedModelDocument): TreeEnsemble {
  const learner = obj(obj(doc.model, 'learner').learner, 'learner');
  const objective = String(obj(learner.objective, 'objective').name ?? '');
  if (!XGB_OBJECTIVES[doc.task].includes(objective))
    throw refuse(
      `XGBoost objective '${objective}' is not exported for a ${doc.task} model.`,
      `Exported objectives: ${XGB_OBJECTIVES[doc.task].join(', ')}.`,
    );
  const booster = obj(learner.gradient_booster, 'gradient_booster');
  if (booster.name !== 'gbtree')
    throw refuse(`XGBoost booster '${String(booster.name)}' is not exported; only gbtree is.`, 'Train with booster: gbtree.');
  const params = obj(learner.learner_model_param, 'learner_model_param');
  if (Number(params.num_target ?? 1) > 1) throw refuse('multi-target XGBoost models are not exported.');
  const numFeature = Number(params.num_feature);
  if (numFeature !== doc.features.length)
    throw refuse(`the XGBoost model reads ${numFeature} features but the document lists ${doc.features.length}.`);
  const targets = doc.task === 'multiclass' ? doc.numClass : 1;
  // "[3.98E-1]", "5E-1" or "[a,b,c]" (one per class).
  const baseScores = String(params.base_score ?? '0')
    .replace(/^\[|\]$/g, '')
    .split(',')
    .map(Number);
  if (baseScores.some((b) => !Number.isFinite(b)) || (baseScores.length !== 1 && baseScores.length !== targets))
    throw refuse(`XGBoost base_score '${String(params.base_score)}' is not one number or one per class.`);
  const { post, toMargin } = outputOf(doc);
  const base = Array.from({ length: targets }, (_, k) => toMargin(baseScores[baseScores.length === 1 ? 0 : k]!));

  const model = obj(booster.model, 'gradient_booster.model');
  const trees = model.trees as unknown[];
  if (!Array.isArray(trees)) throw refuse('the XGBoost dump has no trees.');
  const treeInfo = nums(model.tree_info, 'tree_info');
  const nodes: TreeNode[] = [];
  const leaves: TreeLeaf[] = [];
  trees.forEach((raw, t) => {
    const tree = obj(raw, `tree ${t}`);
    const left = nums(tree.left_children, `tree ${t} left_children`);
    const right = nums(tree.right_children, `tree ${t} right_children`);
    const feature = nums(tree.split_indices, `tree ${t} split_indices`);
    const condition = nums(tree.split_conditions, `tree ${t} split_conditions`);
    const defaultLeft = nums(tree.default_left, `tree ${t} default_left`);
    const splitType = tree.split_type === undefined ? [] : nums(tree.split_type, `tree ${t} split_type`);
    if (splitType.some((s) => s !== 0))
      throw refuse(`tree ${t} has categorical splits, which are not exported.`, 'One-hot encode categories with process.transform.');
    const target = targets === 1 ? 0 : treeInfo[t]!;
    if (!(target >= 0 && target < targets)) throw refuse(`tree ${t} adds to class ${target}, outside 0..${targets - 1}.`);
    for (let i = 0; i < left.length; i++) {
      if (left[i] === -1) {
        nodes.push({ tree: t, id: i, feature: 0, value: 0, mode: 'LEAF', trueId: 0, falseId: 0, missingTrue: 0 });
        leaves.push({ tree: t, node: i, target, weight: condition[i]! });
      } else {
        if (!(feature[i]! >= 0 && feature[i]! < numFeature)) throw refuse(`tree ${t} node ${i} splits on feature ${feature[i]}.`);
        nodes.push({
          tree: t,
          id: i,
          feature: feature[i]!,
          value: Math.fround(condition[i]!),
          mode: 'BRANCH_LT',
          trueId: left[i]!,
          falseId: right[i]!,
          missingTrue: defaultLeft[i] ? 1 : 0,
        });
      }
    }
  });
  return { nodes, leaves, targets, base, postTransform: post, trees: trees.length };
}

const LGB_OBJECTIVES: Record<BoostedModelDocument['task'], string[]> = {
  regression: ['regression', 'regression_l1', 'huber', 'fair', 'quantile', 'mape'],
  binary: ['binary'],
  multiclass: ['multiclass'],
};

function fromLightgbm(doc: BoostedModelDocument): TreeEnsemble {
  const dump = obj(doc.model, 'LightGBM dump');
  // "binary sigmoid:1.5", "multiclass num_class:3", "regression"
  const [objective = '', ...options] = String(dump.objective ?? '').split(' ');
  if (!LGB_OBJECTIVES[doc.task].includes(objective))
    throw refuse(
      `LightGBM objective '${objective}' is not exported for a ${doc.task} model.`,
      `Exported objectives: ${LGB_OBJECTIVES[doc.task].join(', ')}.`,
    );
  const option = (name: string) => options.find((o) => o.startsWith(`${name}:`))?.slice(name.length + 1);
  const sigmoid = doc.task === 'binary' ? Number(option('sigmoid') ?? 1) : 1;
  if (!(sigmoid > 0)) throw refuse(`LightGBM sigmoid '${option('sigmoid')}' is not a positive number.`);
  const perIteration = Number(dump.num_tree_per_iteration ?? 1);
  const targets = doc.task === 'multiclass' ? doc.numClass : 1;
  if (perIteration !== targets) throw refuse(`the LightGBM model has ${perIteration} trees per iteration for ${targets} outputs.`);
  if (Number(dump.max_feature_idx) + 1 !== doc.features.length)
    throw refuse(`the LightGBM model reads ${Number(dump.max_feature_idx) + 1} features but the document lists ${doc.features.length}.`);
  const trees = dump.tree_info as unknown[];
  if (!Array.isArray(trees)) throw refuse('the LightGBM dump has no tree_info.');
  // Random-forest mode averages over iterations: fold the division into the leaves.
  const scale = sigmoid / (dump.average_output ? Math.max(1, trees.length / perIteration) : 1);
  const nodes: TreeNode[] = [];
  const leaves: TreeLeaf[] = [];
  trees.forEach((raw, t) => {
    const target = t % perIteration;
    let next = 0;
    const visit = (n: Json): number => {
      const id = next++;
      if (!('split_feature' in n)) {
        if (typeof n.leaf_value !== 'number') throw refuse(`tree ${t} has a leaf without a value.`);
        nodes.push({ tree: t, id, feature: 0, value: 0, mode: 'LEAF', trueId: 0, falseId: 0, missingTrue: 0 });
        leaves.push({ tree: t, node: id, target, weight: n.leaf_value * scale });
        return id;
      }
      if (n.decision_type !== '<=')
        throw refuse(
          `tree ${t} has a '${String(n.decision_type)}' split (categorical), which is not exported.`,
          'One-hot encode categories with process.transform.',
        );
      const feature = Number(n.split_feature);
      const threshold = Number(n.threshold);
      if (!(feature >= 0 && feature < doc.features.length) || Number.isNaN(threshold))
        throw refuse(`tree ${t} has a split on feature ${String(n.split_feature)} at ${String(n.threshold)}.`);
      let missingTrue: 0 | 1;
      if (n.missing_type === 'NaN') missingTrue = n.default_left ? 1 : 0;
      else if (n.missing_type === 'None' || n.missing_type === undefined) missingTrue = 0 <= threshold ? 1 : 0;
      else
        throw refuse(
          `tree ${t} sends zeros the missing-value way (missing_type ${String(n.missing_type)}), which is not exported.`,
          'Train without zero_as_missing.',
        );
      const node: TreeNode = {
        tree: t,
        id,
        feature,
        value: float32AtMost(threshold),
        mode: 'BRANCH_LEQ',
        trueId: 0,
        falseId: 0,
        missingTrue,
      };
      nodes.push(node);
      node.trueId = visit(obj(n.left_child, `tree ${t} left child`));
      node.falseId = visit(obj(n.right_child, `tree ${t} right child`));
      return id;
    };
    visit(obj(obj(raw, `tree ${t}`).tree_structure, `tree ${t} structure`));
  });
  return { nodes, leaves, targets, base: Array(targets).fill(0), postTransform: outputOf(doc).post, trees: trees.length };
}

/** The ensemble of a boosted-trees document, ready for TreeEnsembleRegressor. */
export function treeEnsemble(doc: BoostedModelDocument): TreeEnsemble {
  return doc.library === 'xgboost' ? fromXgboost(doc) : fromLightgbm(doc);
}
