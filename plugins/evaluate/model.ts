import { z } from 'zod';
import { PipelineError } from '../../engine/errors.js';
import { isArtifactRef } from '../../engine/types.js';
import { datasetFile } from '../../lib/dataset.js';
import { definePlugin } from '../sdk.js';
import { loadTf } from '../../lib/tf.js';
import { deserializeModel, loadMatrix, predict, type Matrix } from '../../lib/model.js';
import { isBoostedModel, parseBoostedModel } from '../../lib/boosted-model.js';
import { predictBoosted } from '../../lib/boosted-predict.js';
import { classificationMetrics, regressionMetrics } from './metrics.js';

const LOWER_IS_BETTER = new Set(['rmse', 'mae', 'mape', 'logLoss']);

const params = z
  .object({
    gate: z
      .object({
        /** Absolute bounds per metric, e.g. { rmse: { max: 50000 }, r2: { min: 0.7 } }. */
        thresholds: z.record(z.string(), z.object({ min: z.number().optional(), max: z.number().optional() }).strict()).default({}),
        /** Bound on model / baseline per metric, e.g. { rmse: 0.5 } (lower-is-better metrics only). */
        maxRatioToBaseline: z.record(z.string(), z.number().positive()).default({}),
      })
      .strict()
      .optional(),
  })
  .strict();

const fmt = (v: number): string => (Math.abs(v) >= 100 ? Math.round(v).toLocaleString('en-US') : Number(v.toPrecision(4)).toString());

/**
 * evaluate.model — scores a train.tfjs-mlp, train.xgboost or train.lightgbm `model` on the `test` dataset. Regression: RMSE, MAE,
 * R², MAPE; classification: accuracy, precision, recall, F1, ROC AUC, log loss. The same metrics for
 * a naive baseline on the same rows: the training mean (regression) or the majority class. An
 * optional quality gate (absolute thresholds, ratio to the baseline) fails the step, and with it the
 * run before any deploy step, saying which metric missed by how much.
 */
export const evaluateModel = definePlugin({
  name: 'evaluate.model',
  version: '1',
  description: 'Test-set metrics for a model and a naive baseline, with an optional quality gate.',
  params,
  inputs: { model: 'model', test: 'dataset' },
  outputs: { metrics: 'metrics', baseline: 'metrics', passed: 'json', report: 'artifact' },
  async run(ctx, p, inputs) {
    const modelRef = inputs['model'];
    if (!isArtifactRef(modelRef)) throw new PipelineError('PLUGIN_INPUT', "evaluate.model: input 'model' must be a model artifact.");
    const testFile = await datasetFile(ctx, inputs, 'test');
    const { meta, test, out, backend } = await predictModel(await ctx.store.get(modelRef), testFile);
    let metrics: Record<string, number>;
    let baseline: Record<string, number>;
    if (meta.task === 'regression') {
      const y = test.y as number[];
      metrics = regressionMetrics(y, out);
      // The training mean (a boosted model does not record it: the test rows' mean, a stronger baseline).
      const mean = meta.targetMean ?? y.reduce((a, b) => a + b, 0) / Math.max(1, y.length);
      baseline = regressionMetrics(y, new Float64Array(y.length).fill(mean));
    } else {
      const classes = meta.classes!;
      const index = new Map(classes.map((c, i) => [String(c), i]));
      const truth = test.y!.map((v) => index.get(String(v)) ?? -1);
      if (truth.includes(-1)) {
        const unseen = [...new Set(test.y!.filter((v) => !index.has(String(v))))].slice(0, 5);
        throw new PipelineError(
          'DATA_INVALID',
          `evaluate.model: test labels the model never saw: ${unseen.map((u) => JSON.stringify(u)).join(', ')}.`,
        );
      }
      const k = classes.length === 2 ? 1 : classes.length;
      metrics = classificationMetrics(truth, out, k);
      // The training shares (a boosted model does not record them: the test rows' shares).
      const priors = meta.classPriors ?? classes.map((_, c) => truth.filter((t) => t === c).length / Math.max(1, truth.length));
      const base = new Float64Array(truth.length * k);
      for (let i = 0; i < truth.length; i++) for (let c = 0; c < k; c++) base[i * k + c] = k === 1 ? priors[1]! : priors[c]!;
      baseline = classificationMetrics(truth, base, k);
    }

    const misses: string[] = [];
    for (const [name, bound] of Object.entries(p.gate?.thresholds ?? {})) {
      const v = metrics[name];
      if (v === undefined)
        throw new PipelineError('PLUGIN_PARAMS', `evaluate.model: no metric '${name}'. Metrics: ${Object.keys(metrics).join(', ')}.`);
      if (!Number.isFinite(v)) {
        misses.push(`${name} is ${String(v)}`);
        continue;
      }
      if (bound.max !== undefined && v > bound.max)
        misses.push(
          `${name} ${fmt(v)} > max ${fmt(bound.max)} (missed by ${fmt(v - bound.max)}, ${((100 * (v - bound.max)) / bound.max).toFixed(1)}%)`,
        );
      if (bound.min !== undefined && v < bound.min)
        misses.push(`${name} ${fmt(v)} < min ${fmt(bound.min)} (missed by ${fmt(bound.min - v)})`);
    }
    for (const [name, max] of Object.entries(p.gate?.maxRatioToBaseline ?? {})) {
      if (!LOWER_IS_BETTER.has(name))
        throw new PipelineError(
          'PLUGIN_PARAMS',
          `evaluate.model: maxRatioToBaseline applies to ${[...LOWER_IS_BETTER].join(', ')}, not '${name}'.`,
        );
      const ratio = metrics[name]! / baseline[name]!;
      if (!(ratio <= max))
        misses.push(`${name} / baseline ${name} = ${fmt(metrics[name]!)} / ${fmt(baseline[name]!)} = ${ratio.toFixed(3)} > max ${max}`);
    }
    const report = {
      task: meta.task,
      rows: test.rows,
      backend,
      metrics,
      baseline,
      gate: p.gate ?? null,
      passed: misses.length === 0,
      misses,
    };
    const reportRef = await ctx.store.put(JSON.stringify(report, null, 2), { name: 'evaluation.json', mediaType: 'application/json' });
    if (misses.length > 0) {
      throw new PipelineError(
        'QUALITY_GATE',
        `Quality gate failed on ${test.rows} test rows:\n${misses.map((m) => `  - ${m}`).join('\n')}`,
        {
          hint: 'The model was not good enough to go further. Improve it, or change the gate in the pipeline.',
        },
      );
    }
    return { metrics, baseline, passed: true, report: reportRef };
  },
});

/** What evaluation needs of either kind of model. */
interface Evaluated {
  meta: { task: 'regression' | 'classification'; targetMean?: number; classes?: (string | number)[]; classPriors?: number[] };
  test: Matrix;
  out: ArrayLike<number>;
  backend: string;
}

/** Predicts the test rows with the model's own runtime: tfjs for train.tfjs-mlp, the library for train.xgboost / train.lightgbm. */
async function predictModel(bytes: Buffer, testFile: string): Promise<Evaluated> {
  const doc = JSON.parse(bytes.toString('utf8')) as unknown;
  if (isBoostedModel(doc)) {
    const boosted = parseBoostedModel(doc, 'evaluate.model');
    const test = await loadMatrix(testFile, { target: boosted.target, features: boosted.features, label: 'test' });
    const out = predictBoosted(boosted, { x: test.x, rows: test.rows, cols: boosted.features.length });
    const classes =
      boosted.task === 'regression'
        ? undefined
        : (boosted.classes ?? Array.from({ length: boosted.task === 'binary' ? 2 : boosted.numClass }, (_, i) => i));
    return {
      meta: { task: boosted.task === 'regression' ? 'regression' : 'classification', ...(classes ? { classes } : {}) },
      test,
      out,
      backend: boosted.library,
    };
  }
  const { tf, backend } = await loadTf();
  const { model, meta } = await deserializeModel(tf, bytes);
  try {
    const test = await loadMatrix(testFile, { target: meta.target, features: meta.features, label: 'test' });
    return { meta, test, out: predict(tf, model, meta, test), backend };
  } finally {
    model.dispose();
  }
}
