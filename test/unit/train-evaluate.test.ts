/**
 * Training and evaluation, called directly (real tfjs, real DuckDB, real local store). Small data:
 * the goal is behaviour (learning, checkpoint-resume, gate), not accuracy.
 */
import { stepProgressOf } from '../../engine/progress.js';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { LocalArtifactStore } from '../../adapters/local-store.js';
import { PipelineError } from '../../engine/errors.js';
import type { ArtifactRef } from '../../engine/types.js';
import { classificationMetrics, regressionMetrics, rocAuc } from '../../plugins/evaluate/metrics.js';
import { evaluateModel } from '../../plugins/evaluate/model.js';
import { ingestFile } from '../../plugins/ingest/file.js';
import { learningRateAt, parseCheckpoint, trainMlp } from '../../plugins/train/mlp.js';
import { withDuckDB } from '../../adapters/duckdb.js';
import { loadMatrix } from '../../lib/model.js';
import { runPlugin, testContext } from './step-context.js';

describe('metrics', () => {
  it('regression metrics match hand-computed values', () => {
    const m = regressionMetrics([1, 2, 3, 4], [1, 2, 3, 8]);
    expect(m.rmse).toBeCloseTo(2, 12);
    expect(m.mae).toBeCloseTo(1, 12);
    expect(m.r2).toBeCloseTo(1 - 16 / 5, 12);
    expect(m.mape).toBeCloseTo(0.25, 12);
  });

  it('ROC AUC counts ordered pairs, with ties as halves', () => {
    expect(rocAuc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])).toBeCloseTo(0.75, 12);
    expect(rocAuc([0, 1], [0.5, 0.5])).toBeCloseTo(0.5, 12);
  });

  it('binary and multi-class classification metrics', () => {
    const b = classificationMetrics([0, 1, 1, 0], [0.2, 0.9, 0.4, 0.6], 1);
    expect(b).toMatchObject({ accuracy: 0.5, precision: 0.5, recall: 0.5, f1: 0.5, rocAuc: 0.75 });
    expect(b.logLoss).toBeCloseTo(-(Math.log(0.8) + Math.log(0.9) + Math.log(0.4) + Math.log(0.4)) / 4, 12);
    const m = classificationMetrics([0, 1, 2], [0.8, 0.1, 0.1, 0.1, 0.8, 0.1, 0.1, 0.1, 0.8], 3);
    expect(m).toMatchObject({ accuracy: 1, precision: 1, recall: 1, f1: 1, rocAuc: 1 });
  });

  it('learning-rate schedules', () => {
    const base = { learningRate: 0.1, epochs: 10 };
    expect(learningRateAt({ ...base, lrSchedule: { type: 'step', every: 3, factor: 0.5 } }, 4)).toBeCloseTo(0.05, 12);
    expect(learningRateAt({ ...base, lrSchedule: { type: 'cosine', minLearningRate: 0 } }, 1)).toBeCloseTo(0.1, 12);
    expect(learningRateAt({ ...base, lrSchedule: { type: 'cosine', minLearningRate: 0 } }, 6)).toBeCloseTo(0.05, 12);
  });
});

/** y = 3 a - 2 b + 1 + noise; label = y > 1. */
function synthetic(rows: number, seed: number): string {
  let s = seed;
  const r = (): number => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * 2 - 1;
  const lines = ['a,b,y,label'];
  for (let i = 0; i < rows; i++) {
    const a = r();
    const b = r();
    const y = 3 * a - 2 * b + 1 + 0.05 * r();
    lines.push(`${a},${b},${y},${y > 1 ? 'high' : 'low'}`);
  }
  const dir = mkdtempSync(join(tmpdir(), 'mlpipe-train-'));
  writeFileSync(join(dir, 'd.csv'), `${lines.join('\n')}\n`);
  return join(dir, 'd.csv');
}

async function datasets(ctx: ReturnType<typeof testContext>) {
  const train = (await runPlugin(ingestFile, ctx, { path: synthetic(600, 1) }))['dataset'] as ArtifactRef;
  const test = (await runPlugin(ingestFile, ctx, { path: synthetic(200, 2) }))['dataset'] as ArtifactRef;
  return { train, test };
}

const REGRESSION = {
  target: 'y',
  features: ['a', 'b'],
  hidden: [16],
  epochs: 20,
  batchSize: 32,
  learningRate: 0.02,
  seed: 5,
  backend: 'wasm',
  checkpoint: { everyEpochs: 5, keep: 2 },
} as const;

describe('train.tfjs-mlp and evaluate.model', () => {
  it('learns a regression far better than the mean baseline, and the gate explains a miss', async () => {
    const ctx = testContext();
    const { train, test } = await datasets(ctx);
    const trained = await runPlugin(trainMlp, ctx, REGRESSION, { train });
    expect(trained['backend']).toBe('wasm');
    expect(trained['metrics']).toMatchObject({ epochs: 20, epochsThisAttempt: 20, resumedFromEpoch: 0, features: 2, rows: 600 });
    // System metrics of the training step, under MLflow's system/ names (at least the closing sample).
    const rss = ctx.series.filter((s) => s.key === 'system/process_memory_rss_megabytes');
    expect(rss.length).toBeGreaterThanOrEqual(1);
    expect(rss[0]!.value).toBeGreaterThan(10);
    expect(ctx.series.some((s) => s.key === 'system/cpu_utilization_percentage')).toBe(true);
    const ev = await runPlugin(evaluateModel, ctx, { gate: { maxRatioToBaseline: { rmse: 0.2 } } }, { model: trained['model'], test });
    const m = ev['metrics'] as Record<string, number>;
    const base = ev['baseline'] as Record<string, number>;
    expect(m['rmse']!).toBeLessThan(0.2 * base['rmse']!);
    expect(m['r2']!).toBeGreaterThan(0.95);
    const e = await runPlugin(
      evaluateModel,
      ctx,
      { gate: { thresholds: { rmse: { max: 0.001 }, r2: { min: 0.9999 } } } },
      { model: trained['model'], test },
    ).catch((x: unknown) => x as PipelineError);
    expect(e).toBeInstanceOf(PipelineError);
    expect((e as PipelineError).code).toBe('QUALITY_GATE');
    expect((e as PipelineError).message).toMatch(/rmse [\d.]+ > max 0\.001 \(missed by [\d.]+, [\d.]+%\)/);
    expect((e as PipelineError).message).toMatch(/r2 [\d.]+ < min 0\.9999 \(missed by [\d.]+\)/);
  });

  it('classifies, with accuracy above the majority baseline', async () => {
    const ctx = testContext();
    const { train, test } = await datasets(ctx);
    const trained = await runPlugin(trainMlp, ctx, { ...REGRESSION, target: 'label', task: 'classification' }, { train });
    const ev = await runPlugin(evaluateModel, ctx, {}, { model: trained['model'], test });
    const m = ev['metrics'] as Record<string, number>;
    expect(m['accuracy']!).toBeGreaterThan(0.9);
    expect(m['rocAuc']!).toBeGreaterThan(0.95);
    expect(m['accuracy']!).toBeGreaterThan((ev['baseline'] as Record<string, number>)['accuracy']! + 0.2);
  });

  it('resumes after an interruption from the last checkpoint, not epoch 1, and ends where an uninterrupted run ends', async () => {
    const store = new LocalArtifactStore(mkdtempSync(join(tmpdir(), 'mlpipe-resume-')));
    const setup = testContext(process.cwd(), store);
    const { train } = await datasets(setup);

    const whole = await runPlugin(trainMlp, testContext(process.cwd(), store), REGRESSION, { train });

    // First attempt: abort at epoch 12 (as a killed worker would stop); checkpoints exist for 5 and 10.
    const abort = new AbortController();
    const first = testContext(process.cwd(), store, {
      signal: abort.signal,
      onHeartbeat: (d) => stepProgressOf(d)?.done === 12 && abort.abort(new Error('worker lost')),
    });
    await expect(runPlugin(trainMlp, first, REGRESSION, { train })).rejects.toThrow('worker lost');
    // Second attempt with the same checkpoints.
    const second = { ...first, attempt: 2, signal: new AbortController().signal, progress: () => undefined };
    const resumed = await runPlugin(trainMlp, second, REGRESSION, { train });
    expect(resumed['metrics']).toMatchObject({ epochs: 20, resumedFromEpoch: 10, epochsThisAttempt: 10 });
    const a = (whole['metrics'] as Record<string, number>)['trainLoss']!;
    const b = (resumed['metrics'] as Record<string, number>)['trainLoss']!;
    expect(Math.abs(a - b) / a).toBeLessThan(1e-3);
  });

  it('explains a missing target column and text in a feature column', async () => {
    const ctx = testContext();
    const { train } = await datasets(ctx);
    const noTarget = await runPlugin(trainMlp, ctx, { ...REGRESSION, target: 'price' }, { train }).catch(
      (e: unknown) => e as PipelineError,
    );
    expect(noTarget.message).toContain("train: no target column 'price'. Columns: a, b, y, label.");
    const text = await runPlugin(trainMlp, ctx, { ...REGRESSION, features: ['a', 'label'] }, { train }).catch(
      (e: unknown) => e as PipelineError,
    );
    expect(text.message).toContain('feature column(s) label are not numeric');
  });
});

describe('parseCheckpoint', () => {
  it('reads a tfjs trainer checkpoint, and is undefined for bytes of another kind or a document without the fields', () => {
    const doc = { model: { w: [1] }, state: { epoch: 3 } };
    expect(parseCheckpoint(Buffer.from(JSON.stringify(doc)), ['model', 'state'])).toEqual(doc);
    // A boosting checkpoint: a length-prefixed header and a native model, not JSON.
    expect(parseCheckpoint(Buffer.concat([Buffer.from([0, 0, 0, 2]), Buffer.from('{}tree')]), ['model'])).toBeUndefined();
    expect(parseCheckpoint(Buffer.from(JSON.stringify({ folds: [] })), ['model', 'state'])).toBeUndefined();
    expect(parseCheckpoint(Buffer.from('null'), ['model'])).toBeUndefined();
  });
});

describe('loadMatrix', () => {
  const parquet = async (select: string): Promise<string> => {
    const file = join(mkdtempSync(join(tmpdir(), 'mlpipe-matrix-')), 'data.parquet');
    await withDuckDB((db) => db.run(`COPY (${select}) TO '${file}' (FORMAT parquet)`));
    return file;
  };

  it('reads every row in file order across chunks, row-major, with the target as JS values', async () => {
    // 5,000 rows: more than one 2,048-row chunk. a: integers, b: doubles, t: BIGINT target.
    const file = await parquet('SELECT i::INTEGER AS a, i / 4.0 AS b, (i * 3)::BIGINT AS t, i::VARCHAR AS s FROM range(5000) r(i)');
    const m = await loadMatrix(file, { target: 't', label: 'train' });
    expect(m.features).toEqual(['a', 'b']);
    expect(m.rows).toBe(5000);
    expect(m.x).toHaveLength(10_000);
    for (const i of [0, 1, 2047, 2048, 4999]) {
      expect([m.x[2 * i], m.x[2 * i + 1]]).toEqual([i, i / 4]);
      expect(m.y![i]).toBe(i * 3);
    }
    const labels = await loadMatrix(file, { target: 's', features: ['b'], label: 'train' });
    expect(labels.y!.slice(0, 3)).toEqual(['0', '1', '2']);
    expect(Array.from(labels.x.slice(0, 3))).toEqual([0, 0.25, 0.5]);
  });

  it('names the feature columns with nulls and a null target', async () => {
    const file = await parquet(
      'SELECT CASE WHEN i % 10 = 0 THEN NULL ELSE i END AS a, i AS b, CASE WHEN i = 7 THEN NULL ELSE i END AS t FROM range(100) r(i)',
    );
    const e = await loadMatrix(file, { target: 't', label: 'train' }).catch((err: unknown) => err as PipelineError);
    expect(e).toBeInstanceOf(PipelineError);
    expect((e as PipelineError).message).toBe("train: null values in 'a' (10).");
    const t = await loadMatrix(file, { target: 't', features: ['b'], label: 'test' }).catch((err: unknown) => err as PipelineError);
    expect((t as PipelineError).message).toBe("test: the target 't' has null values.");
  });
});
