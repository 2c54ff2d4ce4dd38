/** lib/ets.ts (the ETS recursion, its fit, the automatic choice), train.ets and train.forecast-combine. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { ArtifactRef } from '../../engine/types.js';
import { autoEts, etsFilter, etsForecast, fitEts, type EtsParams, type EtsSeasonal, type EtsTrend } from '../../lib/ets.js';
import { decodeForecasts, encodeForecasts, encodeWindows, type WindowSet } from '../../lib/windows.js';
import { evaluateForecast } from '../../plugins/evaluate/forecast.js';
import { trainEts } from '../../plugins/train/ets.js';
import { combineValues, trainForecastCombine } from '../../plugins/train/forecast-combine.js';
import { failure, runPlugin, stoppingContext, testContext } from './step-context.js';
import { seasonalMonthlyWindows } from './forecast-fixtures.js';

interface FixtureModel {
  trend: EtsTrend;
  seasonal: EtsSeasonal;
  params: EtsParams;
  initial: { level: number; trend: number; seasonal: number[] };
  fitted: number[];
  sse: number;
  logLik: number;
  forecast: number[];
}
const fixture = JSON.parse(readFileSync(join(__dirname, '..', 'fixtures', 'ets', 'statsmodels.json'), 'utf8')) as {
  period: number;
  horizon: number;
  series: { name: string; y: number[]; models: FixtureModel[] }[];
};

describe('the ETS recursion', () => {
  it('simple exponential smoothing: the level is the closed-form weighted mean of the past', () => {
    const y = [12, 15, 11, 14, 18, 16, 13, 17];
    const alpha = 0.3;
    const l0 = 10;
    const f = etsFilter(
      y,
      { trend: 'none', seasonal: 'none', period: 1 },
      { alpha, beta: 0, gamma: 0, phi: 1 },
      {
        level: l0,
        trend: 0,
        seasonal: [],
      },
    );
    const n = y.length;
    let closed = (1 - alpha) ** n * l0;
    for (let j = 0; j < n; j++) closed += alpha * (1 - alpha) ** j * y[n - 1 - j]!;
    expect(f.final.level).toBeCloseTo(closed, 12);
    const fc = etsForecast({ trend: 'none', seasonal: 'none', period: 1 }, { alpha, beta: 0, gamma: 0, phi: 1 }, f.final, 3);
    expect(Array.from(fc)).toEqual([f.final.level, f.final.level, f.final.level]);
  });

  it('a damped trend adds phi + ... + phi^h of the slope', () => {
    const spec = { trend: 'damped', seasonal: 'none', period: 1 } as const;
    const p = { alpha: 0.5, beta: 0.1, gamma: 0, phi: 0.9 };
    const fc = etsForecast(spec, p, { level: 100, trend: 2, seasonal: [] }, 3);
    expect(fc[0]).toBeCloseTo(100 + 2 * 0.9, 12);
    expect(fc[2]).toBeCloseTo(100 + 2 * (0.9 + 0.81 + 0.729), 12);
  });

  it("reproduces statsmodels' one-step fitted values and forecasts from its parameters and initial states", () => {
    for (const s of fixture.series) {
      for (const m of s.models) {
        const spec = { trend: m.trend, seasonal: m.seasonal, period: fixture.period };
        const f = etsFilter(s.y, spec, m.params, m.initial);
        const scale = Math.max(...s.y.map(Math.abs));
        for (let t = 0; t < s.y.length; t++) expect(Math.abs(f.fitted[t]! - m.fitted[t]!)).toBeLessThan(1e-9 * scale);
        expect(f.sse).toBeCloseTo(m.sse, 4);
        const fc = etsForecast(spec, m.params, f.final, fixture.horizon);
        for (let h = 0; h < fixture.horizon; h++) expect(Math.abs(fc[h]! - m.forecast[h]!)).toBeLessThan(1e-9 * scale);
      }
    }
  });
});

describe('fitting', () => {
  it("reaches statsmodels' maximum likelihood (or a higher one) for every model of the fixture", () => {
    for (const s of fixture.series) {
      for (const m of s.models) {
        const fit = fitEts(s.y, { trend: m.trend, seasonal: m.seasonal, period: fixture.period });
        expect(fit.logLik, `${s.name} ${fit.name}`).toBeGreaterThan(m.logLik - 0.05);
        // The smoothing parameters stay in the usual region.
        expect(fit.params.beta).toBeLessThanOrEqual(fit.params.alpha);
        expect(fit.params.gamma).toBeLessThanOrEqual(1 - fit.params.alpha);
      }
    }
  });

  it('a noiseless linear trend: the trend model fits it exactly and continues the line; AICc picks a trend model', () => {
    const y = Array.from({ length: 40 }, (_, t) => 3 + 2 * t);
    const fit = fitEts(y, { trend: 'additive', seasonal: 'none', period: 1 });
    expect(fit.sse).toBeLessThan(1e-12);
    const fc = etsForecast(fit.spec, fit.params, fit.final, 4);
    expect(Array.from(fc).map((v) => Number(v.toFixed(6)))).toEqual([83, 85, 87, 89]);
    const { best } = autoEts(
      y.map((v, t) => v + 0.01 * Math.sin(t * 1.7)),
      { period: 1 },
    );
    expect(best?.spec.trend).not.toBe('none');
  });

  it('a season and a level: the seasonal model is chosen and its forecasts follow the season', () => {
    const season = [5, 3, -1, -4, -6, -2, 1, 4, 6, 2, -3, -5];
    const y = Array.from({ length: 72 }, (_, t) => 50 + season[t % 12]! + 0.3 * Math.sin(t * 2.3));
    const { best } = autoEts(y, { period: 12 });
    expect(best?.spec.seasonal).toBe('additive');
    const fc = etsForecast(best!.spec, best!.params, best!.final, 12);
    for (let h = 0; h < 12; h++) expect(Math.abs(fc[h]! - (50 + season[(72 + h) % 12]!))).toBeLessThan(1);
  });

  it('is deterministic, and a missing value adds no error', () => {
    const y = fixture.series[0]!.y;
    const a = autoEts(y, { period: 12 });
    const b = autoEts(y, { period: 12 });
    expect(a.best).toEqual(b.best);
    const gap = [...y];
    gap[30] = NaN;
    const fit = fitEts(gap, { trend: 'none', seasonal: 'additive', period: 12 });
    expect(fit.n).toBe(y.length - 1);
    expect(Number.isFinite(fit.logLik)).toBe(true);
  });
});

const built = seasonalMonthlyWindows();

async function bind(ctx: ReturnType<typeof testContext>, test: WindowSet = built.test) {
  const put = (s: WindowSet, name: string): Promise<ArtifactRef> => ctx.store.put(encodeWindows(s), { name });
  const folds = [];
  for (const f of built.folds!)
    folds.push({
      train: await put(f.train, 'ft'),
      test: await put(f.test, 'fs'),
      state: await ctx.store.put(JSON.stringify(f.state), { name: 's' }),
    });
  return {
    train: await put(built.train, 'train'),
    validation: await put(built.validation!, 'val'),
    predict: await put(test, 'test'),
    state: await ctx.store.put(JSON.stringify(built.state), { name: 'state.json' }),
    folds,
  };
}

describe('train.ets', () => {
  it('forecasts the predict windows and each fold in the forecasts format; evaluate.forecast scores them; better than seasonal naive', async () => {
    const ctx = testContext();
    const inputs = await bind(ctx);
    const out = await runPlugin(trainEts, ctx, {}, inputs);
    const f = decodeForecasts(await ctx.store.get(out['forecasts'] as ArtifactRef));
    expect(f.windows).toBe(inputs.predict.sha256);
    expect([f.count, f.horizon]).toEqual([built.test.count, 3]);
    expect(out['foldForecasts']).toHaveLength(2);
    expect((out['metrics'] as Record<string, number>)['fallbacks']).toBe(0);
    const ev = await runPlugin(
      evaluateForecast,
      ctx,
      {},
      {
        windows: inputs.predict,
        forecasts: out['forecasts'],
        state: inputs.state,
        folds: inputs.folds,
        foldForecasts: out['foldForecasts'],
      },
    );
    const metrics = ev['metrics'] as Record<string, number>;
    const baseline = ev['baseline'] as Record<string, number>;
    expect(metrics['mase']).toBeLessThan(baseline['mase']!);
    expect(metrics['backtestMase']).toBeLessThan(baseline['backtestMase']!);
  });

  it('never reads the targets of the windows it forecasts: changing them leaves the forecasts alone (refit window and block)', async () => {
    for (const refit of ['window', 'block'] as const) {
      const ctx = testContext();
      const a = await runPlugin(trainEts, ctx, { refit }, await bind(ctx));
      const changed: WindowSet = { ...built.test, y: built.test.y.map((v) => v + 5) };
      const b = await runPlugin(trainEts, ctx, { refit }, await bind(ctx, changed));
      const va = decodeForecasts(await ctx.store.get(a['forecasts'] as ArtifactRef)).values;
      const vb = decodeForecasts(await ctx.store.get(b['forecasts'] as ArtifactRef)).values;
      expect(Array.from(vb)).toEqual(Array.from(va));
    }
  });

  it('keeps the finished folds of an interrupted backtest: a retry fits only the rest, to the same forecasts and counts', async () => {
    const params = { refit: 'window' as const };
    const values = async (ctx: ReturnType<typeof testContext>, out: Record<string, unknown>) =>
      Promise.all((out['foldForecasts'] as ArtifactRef[]).map(async (r) => Array.from(decodeForecasts(await ctx.store.get(r)).values)));
    const straight = testContext();
    const whole = await runPlugin(trainEts, straight, params, await bind(straight));
    const first = whole['metrics'] as Record<string, number>;
    expect(first).toMatchObject({ foldsResumed: 0, foldsFittedThisAttempt: 2 });
    // The first attempt is stopped once fold 1 is done (the signal, as a cancel or a lost worker would).
    const ctx = stoppingContext((p) => p.unit === 'fold' && p.done === 1);
    const bound = await bind(ctx);
    await expect(runPlugin(trainEts, ctx, params, bound)).rejects.toThrow('stopped');
    const resumed = await runPlugin(trainEts, { ...ctx, signal: new AbortController().signal }, params, bound);
    const m = resumed['metrics'] as Record<string, number>;
    expect(m).toMatchObject({ foldsResumed: 1, foldsFittedThisAttempt: 1 });
    // The kept fold's fits and model choices are counted as if the step had run straight through.
    for (const key of Object.keys(first).filter((k) => k === 'fits' || k === 'fallbacks' || k.startsWith('chosen_')))
      expect(m[key], key).toBe(first[key]);
    expect(await values(ctx, resumed)).toEqual(await values(straight, whole));
    // Lost after the last fold, before the step returned: no fold is fitted again.
    const again = await runPlugin(trainEts, { ...ctx, signal: new AbortController().signal }, params, bound);
    expect(again['metrics']).toMatchObject({ foldsResumed: 2, foldsFittedThisAttempt: 0 });
    expect(await values(ctx, again)).toEqual(await values(straight, whole));
    // Other params are other work: a checkpoint of refit window is not kept by refit block.
    const block = await runPlugin(trainEts, { ...ctx, signal: new AbortController().signal }, { refit: 'block' }, bound);
    expect(block['metrics']).toMatchObject({ foldsResumed: 0, foldsFittedThisAttempt: 2 });
  });

  it('refit block runs one fit per series on to each origin; window refits per window; both deterministic', async () => {
    const ctx = testContext();
    const inputs = await bind(ctx);
    const block = await runPlugin(trainEts, ctx, { refit: 'block' }, inputs);
    const window = await runPlugin(trainEts, ctx, { refit: 'window' }, inputs);
    const again = await runPlugin(trainEts, ctx, { refit: 'window' }, inputs);
    const folds = built.folds!.reduce((a, f) => a + f.test.count, 0);
    expect((window['metrics'] as Record<string, number>)['fits']).toBe(built.test.count + folds);
    expect((block['metrics'] as Record<string, number>)['fits']).toBe(2 * 3);
    expect(again['forecasts']).toEqual(window['forecasts']);
  });
});

describe('train.forecast-combine', () => {
  it('mean, median and weighted cell by cell, leaving NaN cells out', () => {
    const a = Float32Array.from([1, 2, NaN]);
    const b = Float32Array.from([3, 4, 6]);
    const c = Float32Array.from([8, 0, NaN]);
    expect(Array.from(combineValues([a, b], 'mean'))).toEqual([2, 3, 6]);
    expect(Array.from(combineValues([a, b, c], 'median'))).toEqual([3, 2, 6]);
    expect(Array.from(combineValues([a, b], 'weighted', [3, 1]))).toEqual([1.5, 2.5, 6]);
  });

  it('combines the forecasts and fold forecasts of two train steps; refuses members of other windows', async () => {
    const ctx = testContext();
    const inputs = await bind(ctx);
    const ets = await runPlugin(trainEts, ctx, {}, inputs);
    const block = await runPlugin(trainEts, ctx, { refit: 'block' }, inputs);
    const out = await runPlugin(
      trainForecastCombine,
      ctx,
      { members: ['ets', 'block'] },
      {
        ets_forecasts: ets['forecasts'],
        ets_foldForecasts: ets['foldForecasts'],
        block_forecasts: block['forecasts'],
        block_foldForecasts: block['foldForecasts'],
      },
    );
    const get = async (r: unknown) => decodeForecasts(await ctx.store.get(r as ArtifactRef));
    const [x, y, m] = await Promise.all([get(ets['forecasts']), get(block['forecasts']), get(out['forecasts'])]);
    expect(m.windows).toBe(inputs.predict.sha256);
    for (let i = 0; i < m.values.length; i++) expect(m.values[i]).toBeCloseTo((x.values[i]! + y.values[i]!) / 2, 5);
    expect(out['foldForecasts']).toHaveLength(2);
    // A member forecasting other windows: the first fold's forecasts in place of the test forecasts.
    const e = await failure(
      runPlugin(
        trainForecastCombine,
        ctx,
        { members: ['ets', 'block'] },
        { ets_forecasts: ets['forecasts'], block_forecasts: (block['foldForecasts'] as ArtifactRef[])[0] },
      ),
    );
    expect(e.code).toBe('PLUGIN_INPUT');
    expect(e.message).toContain("member 'block' forecast window set");
    const other = await ctx.store.put(encodeForecasts({ count: 1, horizon: 3, windows: x.windows, values: new Float32Array(3) }), {
      name: 'f',
    });
    const shape = await failure(
      runPlugin(trainForecastCombine, ctx, { members: ['ets', 'block'] }, { ets_forecasts: ets['forecasts'], block_forecasts: other }),
    );
    expect(shape.code).toBe('PLUGIN_INPUT');
    const half = await failure(runPlugin(trainForecastCombine, ctx, { members: ['ets', 'block'] }, { ets_forecasts: ets['forecasts'] }));
    expect(half.message).toContain("not for 'block'");
    const folds = await failure(
      runPlugin(
        trainForecastCombine,
        ctx,
        { members: ['ets', 'block'] },
        { ets_foldForecasts: ets['foldForecasts'], block_foldForecasts: [(block['foldForecasts'] as ArtifactRef[])[0]] },
      ),
    );
    expect(folds.message).toContain('has 1 fold forecasts');
  });
});
