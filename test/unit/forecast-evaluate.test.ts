/** evaluate.forecast and lib/forecast-metrics.ts on windows small enough to check by hand. */
import { describe, expect, it } from 'vitest';
import type { ArtifactRef } from '../../engine/types.js';
import { baselineForecasts, scoreWithBaselines } from '../../lib/forecast-metrics.js';
import { encodeForecasts, encodeWindows, type WindowSet, type WindowState } from '../../lib/windows.js';
import { evaluateForecast } from '../../plugins/evaluate/forecast.js';
import { failure, runPlugin, testContext } from './step-context.js';

// One series, mean 10, std 2 (so scaled = (v - 10) / 2), season 2, MASE scale 3.
// Lookback (original units) 10 14 12 16; truth 13 18; the model says 15 16.
const lookback = [10, 14, 12, 16];
const truth = [13, 18];
const model = [15, 16];
const scale = (v: number): number => (v - 10) / 2;

function set(): WindowSet {
  return {
    lookback: 4,
    horizon: 2,
    count: 1,
    inputs: ['y'],
    future: [],
    season: 2,
    seriesIds: ['a'],
    x: Float32Array.from(lookback.map(scale)),
    xf: new Float32Array(0),
    y: Float32Array.from(truth.map(scale)),
    series: Int32Array.from([0]),
    origin: Float64Array.from([Date.UTC(2024, 0, 1)]),
  };
}

const state: WindowState = {
  format: 'mlpipe.window-state/1',
  timeColumn: 't',
  seriesColumn: null,
  targetColumn: 'y',
  frequency: 'day',
  lookback: 4,
  horizon: 2,
  stride: 1,
  season: 2,
  seriesIds: ['a'],
  scaling: { a: { mean: 10, std: 2 } },
  seasonalScale: { a: 3 },
  covariates: {},
  known: {},
  calendar: { features: [], holidays: [] },
  inputs: ['y'],
  future: [],
  fill: 'none',
  gaps: [],
  duplicates: [],
  snapped: 0,
  filled: 0,
  boundaries: {},
};

const mae = (f: number[]): number => f.reduce((a, v, i) => a + Math.abs(v - truth[i]!), 0) / f.length;
const rmse = (f: number[]): number => Math.sqrt(f.reduce((a, v, i) => a + (v - truth[i]!) ** 2, 0) / f.length);
const smape = (f: number[]): number =>
  f.reduce((a, v, i) => a + (200 * Math.abs(v - truth[i]!)) / (Math.abs(v) + Math.abs(truth[i]!)), 0) / f.length;

describe('forecast metrics', () => {
  it('baselines from the lookback: naive, seasonal naive (one season back), moving average (last season)', () => {
    expect(Array.from(baselineForecasts(set(), state, 'naive'))).toEqual([16, 16]);
    expect(Array.from(baselineForecasts(set(), state, 'seasonalNaive'))).toEqual([12, 16]);
    expect(Array.from(baselineForecasts(set(), state, 'movingAverage'))).toEqual([14, 14]);
    expect(Array.from(baselineForecasts(set(), state, 'movingAverage', 4))).toEqual([13, 13]);
    expect(() => baselineForecasts({ ...set(), season: 5 }, state, 'seasonalNaive')).toThrow(/at least one season/);
  });

  it('MAE, RMSE, sMAPE and MASE overall and per step, in target units', () => {
    const s = scoreWithBaselines(set(), state, Float64Array.from(model));
    expect(s.model.overall.mae).toBeCloseTo(mae(model), 6);
    expect(s.model.overall.rmse).toBeCloseTo(rmse(model), 6);
    expect(s.model.overall.smape).toBeCloseTo(smape(model), 6);
    expect(s.model.overall.mase).toBeCloseTo(mae(model) / 3, 6);
    expect(s.model.perStep.map((m) => m.mae)).toEqual([2, 2]);
    expect(s.baselines.seasonalNaive.overall.mae).toBeCloseTo(mae([12, 16]), 6);
    expect(s.baselines.seasonalNaive.perStep.map((m) => m.mae)).toEqual([1, 2]);
    expect(s.baselines.naive.overall.rmse).toBeCloseTo(rmse([16, 16]), 6);
    expect(s.baselines.movingAverage.overall.mase).toBeCloseTo(mae([14, 14]) / 3, 6);
    expect(s.model.overall.cells).toBe(2);
  });

  it('score only cells where the truth and every forecast are finite', () => {
    const w = set();
    w.y[1] = Number.NaN;
    const s = scoreWithBaselines(w, state, Float64Array.from(model));
    expect(s.model.overall.cells).toBe(1);
    expect(s.model.overall.mae).toBe(2);
    expect(s.baselines.seasonalNaive.overall.mae).toBe(1);
  });
});

describe('evaluate.forecast', () => {
  async function stored(ctx: ReturnType<typeof testContext>, f: number[], w = set()): Promise<Record<string, ArtifactRef>> {
    const windows = await ctx.store.put(encodeWindows(w), { name: 'test.windows' });
    const forecasts = await ctx.store.put(
      encodeForecasts({ count: 1, horizon: 2, windows: windows.sha256, values: Float32Array.from(f.map(scale)) }),
      {
        name: 'forecasts',
      },
    );
    const st = await ctx.store.put(JSON.stringify(state), { name: 'state.json' });
    return { windows, forecasts, state: st };
  }

  it('reports the model beside the seasonal naive baseline, per step, and passes a gate it meets', async () => {
    const ctx = testContext();
    const refs = await stored(ctx, [12.5, 17]);
    const out = await runPlugin(evaluateForecast, ctx, { gate: { maxRatioToBaseline: { mase: 0.9 } } }, refs);
    const metrics = out['metrics'] as Record<string, number>;
    expect(metrics['mae']).toBeCloseTo(mae([12.5, 17]), 5);
    expect((out['baseline'] as Record<string, number>)['mae']).toBeCloseTo(mae([12, 16]), 5);
    expect((out['horizon'] as Record<string, number[]>)['mae']).toEqual([0.5, 1]);
    expect((out['baselines'] as Record<string, Record<string, number>>)['naive']!['mae']).toBeCloseTo(mae([16, 16]), 5);
    expect(out['passed']).toBe(true);
  });

  it('fails the gate with QUALITY_GATE naming the ratio', async () => {
    const ctx = testContext();
    const e = await failure(runPlugin(evaluateForecast, ctx, { gate: { maxRatioToBaseline: { mase: 0.9 } } }, await stored(ctx, model)));
    expect(e.code).toBe('QUALITY_GATE');
    expect(e.message).toMatch(/mase \/ seasonalNaive mase = 0\.6667 \/ 0\.5 = 1\.333 > max 0\.9/);
  });

  it('refuses forecasts of another window set', async () => {
    const ctx = testContext();
    const refs = await stored(ctx, model);
    const other = await ctx.store.put(encodeWindows({ ...set(), origin: Float64Array.from([0]) }), { name: 'other.windows' });
    const e = await failure(runPlugin(evaluateForecast, ctx, {}, { ...refs, windows: other }));
    expect(e.code).toBe('PLUGIN_INPUT');
    expect(e.message).toMatch(/made for window set/);
  });

  it('averages a walk-forward backtest over folds', async () => {
    const ctx = testContext();
    const f1 = await stored(ctx, model); // MASE (2 + 2) / 2 / 3
    const f2 = await stored(ctx, [13, 18], { ...set(), origin: Float64Array.from([Date.UTC(2024, 1, 1)]) }); // perfect: 0
    const folds = [f1, f2].map((r) => ({ train: r.windows, test: r.windows, state: r.state }));
    // forecasts and state bound by name from the needed steps do not turn a backtest into a test evaluation.
    const out = await runPlugin(
      evaluateForecast,
      ctx,
      {},
      { folds, foldForecasts: [f1.forecasts, f2.forecasts], forecasts: f1.forecasts, state: f1.state },
    );
    const metrics = out['metrics'] as Record<string, number>;
    expect(metrics['backtestMase']).toBeCloseTo((mae(model) / 3 + 0) / 2, 5);
    expect(metrics['mase']).toBeCloseTo(metrics['backtestMase']!, 9);
    expect((out['baseline'] as Record<string, number>)['backtestMase']).toBeCloseTo(mae([12, 16]) / 3, 5);
    const backtest = out['backtest'] as { folds: { fold: number; mase: number }[] };
    expect(backtest.folds.map((f) => f.fold)).toEqual([1, 2]);
    const e = await failure(runPlugin(evaluateForecast, ctx, {}, { folds, foldForecasts: [f1.forecasts] }));
    expect(e.message).toMatch(/same length/);
    expect((await failure(runPlugin(evaluateForecast, ctx, {}, { forecasts: f1.forecasts, state: f1.state }))).message).toMatch(
      /bind windows too/,
    );
    expect((await failure(runPlugin(evaluateForecast, ctx, {}, { windows: f1.windows }))).message).toMatch(/go together/);
  });
});
