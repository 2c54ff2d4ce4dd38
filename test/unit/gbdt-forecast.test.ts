/** train.gbdt-forecast: lag features from windows, forecasts aligned with their window set, fold forecasts. */
import { describe, expect, it } from 'vitest';
import type { ArtifactRef } from '../../engine/types.js';
import { decodeForecasts, encodeWindows, type WindowSet } from '../../lib/windows.js';
import { lagFeatureNames, lagMatrix, lagSpec, toForecasts, trainGbdtForecast } from '../../plugins/train/gbdt-forecast.js';
import { evaluateForecast } from '../../plugins/evaluate/forecast.js';
import { failure, runPlugin, stoppingContext, testContext } from './step-context.js';
import { seasonalMonthlyWindows } from './forecast-fixtures.js';

const built = seasonalMonthlyWindows();

describe('lag features', () => {
  it('one row per window and step, relative to the last value, and back', () => {
    const spec = lagSpec(built.test, { lags: 3, covariateLags: 1, relativeTo: 'last' });
    expect(lagFeatureNames(spec)).toEqual([
      'lag1',
      'lag2',
      'lag3',
      'future_month_sin',
      'future_month_cos',
      'step',
      'season_ref',
      'lookback_mean',
    ]);
    const { m, label, rows } = lagMatrix(built.test, spec, true);
    expect(m.rows).toBe(built.test.count * 3);
    const set: WindowSet = built.test;
    const F = set.inputs.length;
    const last = set.x[(0 * 12 + 11) * F]!;
    expect(m.x[0]).toBeCloseTo(0, 6); // lag1 - last
    expect(m.x[1]).toBeCloseTo(set.x[(0 * 12 + 10) * F]! - last, 6);
    expect(m.x[5]).toBe(1); // step 1
    expect(label[0]).toBeCloseTo(set.y[0]! - last, 6);
    // The labels as forecasts give back the truth.
    const back = toForecasts(set, spec, Float64Array.from(label), rows);
    expect(Array.from(back).map((v) => v.toFixed(4))).toEqual(Array.from(set.y).map((v) => v.toFixed(4)));
  });
});

describe('train.gbdt-forecast', () => {
  it('keeps the finished folds of an interrupted backtest: a retry trains only the rest, to the same forecasts', async () => {
    const params = {
      rounds: 60,
      numLeaves: 7,
      learningRate: 0.1,
      minDataInLeaf: 5,
      earlyStoppingRounds: 10,
      checkpoint: { everyRounds: 20 },
    };
    const bind = async (ctx: ReturnType<typeof testContext>) => {
      const put = (s: WindowSet, name: string): Promise<ArtifactRef> => ctx.store.put(encodeWindows(s), { name });
      const folds = [];
      for (const f of built.folds!) folds.push({ train: await put(f.train, 'ft'), test: await put(f.test, 'fs') });
      return { train: await put(built.train, 'train'), validation: await put(built.validation!, 'val'), folds };
    };
    const values = async (ctx: ReturnType<typeof testContext>, out: Record<string, unknown>) =>
      Promise.all((out['foldForecasts'] as ArtifactRef[]).map(async (r) => Array.from(decodeForecasts(await ctx.store.get(r)).values)));
    const straight = testContext();
    const whole = await runPlugin(trainGbdtForecast, straight, params, await bind(straight));
    expect(whole['metrics']).toMatchObject({ foldsResumed: 0, foldsTrainedThisAttempt: 2 });
    // The first attempt is stopped once fold 1 is done (the signal, as a cancel or a lost worker would).
    const ctx = stoppingContext((p) => p.unit === 'fold' && p.done === 1);
    const bound = await bind(ctx);
    await expect(runPlugin(trainGbdtForecast, ctx, params, bound)).rejects.toThrow('stopped');
    const resumed = await runPlugin(trainGbdtForecast, { ...ctx, signal: new AbortController().signal }, params, bound);
    const m = resumed['metrics'] as Record<string, number>;
    const first = whole['metrics'] as Record<string, number>;
    // The model was checkpointed when done: no boosting again; fold 1 kept, fold 2 trained.
    expect(m).toMatchObject({
      roundsThisAttempt: 0,
      foldsResumed: 1,
      foldsTrainedThisAttempt: 1,
      bestIteration: first['bestIteration'],
    });
    expect(m['resumedFromRound']).toBe(first['rounds']);
    expect(await values(ctx, resumed)).toEqual(await values(straight, whole));
    // Lost after the last fold, before the step returned (the same step's checkpoints again): no fold is trained again.
    const again = await runPlugin(trainGbdtForecast, { ...ctx, signal: new AbortController().signal }, params, bound);
    expect(again['metrics']).toMatchObject({ roundsThisAttempt: 0, foldsResumed: 2, foldsTrainedThisAttempt: 0 });
    expect(await values(ctx, again)).toEqual(await values(straight, whole));
  });

  it('trains, forecasts the predict set and each fold, and beats the seasonal naive baseline on a trending cycle', async () => {
    const ctx = testContext();
    const put = (s: WindowSet, name: string): Promise<ArtifactRef> => ctx.store.put(encodeWindows(s), { name });
    const state = await ctx.store.put(JSON.stringify(built.state), { name: 'state.json' });
    const folds = [];
    for (const f of built.folds!)
      folds.push({
        train: await put(f.train, 'ft'),
        test: await put(f.test, 'fs'),
        state: await ctx.store.put(JSON.stringify(f.state), { name: 's' }),
      });
    const test = await put(built.test, 'test');
    const out = await runPlugin(
      trainGbdtForecast,
      ctx,
      { rounds: 200, numLeaves: 7, learningRate: 0.1, minDataInLeaf: 5 },
      { train: await put(built.train, 'train'), validation: await put(built.validation!, 'val'), predict: test, folds },
    );
    const forecasts = decodeForecasts(await ctx.store.get(out['forecasts'] as ArtifactRef));
    expect(forecasts.windows).toBe(test.sha256);
    expect(forecasts.count).toBe(built.test.count);
    expect(out['foldForecasts']).toHaveLength(2);
    const ev = await runPlugin(
      evaluateForecast,
      ctx,
      {},
      { windows: test, forecasts: out['forecasts'], state, folds, foldForecasts: out['foldForecasts'] },
    );
    const metrics = ev['metrics'] as Record<string, number>;
    const baseline = ev['baseline'] as Record<string, number>;
    // The seasonal naive baseline misses the trend of a year; the trees see it in the lags.
    expect(metrics['mase']).toBeLessThan(baseline['mase']!);
    expect(metrics['backtestMase']).toBeLessThan(baseline['backtestMase']!);
  });

  it('labels relative to every base give back the truth as forecasts', () => {
    for (const relativeTo of ['none', 'last', 'season', 'seasonalLast'] as const) {
      const spec = lagSpec(built.test, { lags: 12, covariateLags: 1, relativeTo });
      const { label, rows } = lagMatrix(built.test, spec, true);
      const back = toForecasts(built.test, spec, Float64Array.from(label), rows);
      for (let k = 0; k < back.length; k++) expect(back[k]).toBeCloseTo(built.test.y[k]!, 4);
    }
  });

  it('refit: trains again on train + validation for the early-stopped round count, and forecasts with that model', async () => {
    const params = {
      rounds: 200,
      numLeaves: 7,
      learningRate: 0.1,
      minDataInLeaf: 5,
      earlyStoppingRounds: 10,
      relativeTo: 'seasonalLast',
    } as const;
    const run = async (refit: boolean) => {
      const ctx = testContext(); // one each: a checkpoint of one run is not the other's
      const put = (s: WindowSet, name: string): Promise<ArtifactRef> => ctx.store.put(encodeWindows(s), { name });
      const out = await runPlugin(
        trainGbdtForecast,
        ctx,
        { ...params, refit },
        {
          train: await put(built.train, 'train'),
          validation: await put(built.validation!, 'val'),
          predict: await put(built.test, 'test'),
        },
      );
      const values = decodeForecasts(await ctx.store.get(out['forecasts'] as ArtifactRef)).values;
      const doc = JSON.parse((await ctx.store.get(out['model'] as ArtifactRef)).toString('utf8')) as { spec: { relativeTo: string } };
      return { metrics: out['metrics'] as Record<string, number>, values, doc };
    };
    const plain = await run(false);
    const refit = await run(true);
    expect(refit.metrics['bestIteration']).toBe(plain.metrics['bestIteration']);
    expect(plain.metrics['refitRows']).toBe(0);
    expect(refit.metrics['refitRows']).toBe(refit.metrics['rows']! + built.validation!.count * built.validation!.horizon);
    expect(Array.from(refit.values)).not.toEqual(Array.from(plain.values));
    expect(refit.doc.spec.relativeTo).toBe('seasonalLast');
  });

  it('refuses windows of another shape and early stopping without validation', async () => {
    const ctx = testContext();
    const train = await ctx.store.put(encodeWindows(built.train), { name: 'train' });
    const other = await ctx.store.put(encodeWindows({ ...built.test, inputs: ['z', 'month_sin', 'month_cos'] }), { name: 'other' });
    expect((await failure(runPlugin(trainGbdtForecast, ctx, { rounds: 5 }, { train, predict: other }))).message).toMatch(
      /do not match the train windows/,
    );
    expect((await failure(runPlugin(trainGbdtForecast, ctx, { rounds: 5, earlyStoppingRounds: 3 }, { train }))).message).toMatch(
      /needs a `validation`/,
    );
  });
});
