/** process.window and lib/window-build.ts: time index correction, gaps, duplicates, fill rules, train-only scaling, calendar features, stride, folds. */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { ArtifactRef } from '../../engine/types.js';
import {
  buildWindows,
  fillSeries,
  periodIndex,
  periodStart,
  seasonalScale,
  type LongTable,
  type WindowOptions,
} from '../../lib/window-build.js';
import { decodeWindows, parseWindowState } from '../../lib/windows.js';
import { ingestFile } from '../../plugins/ingest/file.js';
import { window } from '../../plugins/process/window.js';
import { failure, runPlugin, testContext } from './step-context.js';

const day = (d: string): number => Date.parse(`${d}T00:00:00Z`);
const month = (y: number, m: number): number => Date.UTC(y, m - 1, 1);

function table(rows: [string, number, number][]): LongTable {
  const ids = [...new Set(rows.map((r) => r[0]))].sort();
  return {
    seriesIds: ids,
    series: Int32Array.from(rows.map((r) => ids.indexOf(r[0]))),
    time: Float64Array.from(rows.map((r) => r[1])),
    target: Float64Array.from(rows.map((r) => r[2])),
    covariates: [],
    known: [],
  };
}

const base: WindowOptions = {
  timeColumn: 't',
  seriesColumn: 's',
  targetColumn: 'y',
  frequency: 'day',
  lookback: 2,
  horizon: 1,
  stride: 1,
  evalStride: 1,
  season: 7,
  testSteps: 2,
  validationSteps: 0,
  fill: 'none',
  calendar: [],
  holidays: [],
  dropIncomplete: true,
  covariateNames: [],
  knownNames: [],
};

/** Ten daily values 0..9 of series 'a' from 2024-01-01. */
const tenDays = (): [string, number, number][] => Array.from({ length: 10 }, (_, i) => ['a', day('2024-01-01') + i * 86_400_000, i]);

describe('the time index', () => {
  it('numbers periods and finds their starts at each frequency', () => {
    expect(periodStart(periodIndex(Date.parse('2024-03-17T13:45:00Z'), 'month'), 'month')).toBe(month(2024, 3));
    expect(periodStart(periodIndex(Date.parse('2024-03-17T13:45:00Z'), 'day'), 'day')).toBe(day('2024-03-17'));
    // 2024-03-17 is a Sunday: its week starts on Monday 2024-03-11.
    expect(periodStart(periodIndex(Date.parse('2024-03-17T13:45:00Z'), 'week'), 'week')).toBe(day('2024-03-11'));
    expect(periodStart(periodIndex(Date.parse('2024-08-17T00:00:00Z'), 'quarter'), 'quarter')).toBe(month(2024, 7));
    expect(periodIndex(month(2000, 2), 'month') - periodIndex(month(1999, 11), 'month')).toBe(3);
  });

  it('snaps times to their period, reports gaps and duplicates (keeping the first row)', () => {
    const rows = tenDays().filter((r) => r[2] !== 4 && r[2] !== 5); // days 4 and 5 missing
    rows.push(['a', day('2024-01-03') + 3_600_000, 99]); // a second value for day 2, an hour in: a duplicate
    rows[0] = ['a', day('2024-01-01') + 8 * 3_600_000, 0]; // snapped to midnight
    const w = buildWindows(table(rows), { ...base, fill: 'none', dropIncomplete: false });
    expect(w.state.gaps).toEqual([{ series: 'a', from: '2024-01-05T00:00:00.000Z', steps: 2 }]);
    expect(w.state.duplicates).toEqual([{ series: 'a', time: '2024-01-03T00:00:00.000Z', rows: 2 }]);
    expect(w.state.snapped).toBe(2);
    // The duplicate's first row (value 2) is kept, the gap is NaN (no fill rule).
    const all = [...w.train.y, ...w.test.y];
    expect(all).not.toContain((99 - w.state.scaling['a']!.mean) / w.state.scaling['a']!.std);
    expect(all.some((v) => Number.isNaN(v))).toBe(true);
  });

  it('fills by the declared rule: median of the train part, previous, zero, linear', () => {
    const v = Float64Array.from([1, NaN, 3, 10, NaN, NaN, 100]);
    // Train part: the first 4 positions -> median of 1, 3, 10 = 3.
    expect(Array.from(fillSeries(v, 'median', 4).values)).toEqual([1, 3, 3, 10, 3, 3, 100]);
    expect(Array.from(fillSeries(v, 'previous', 4).values)).toEqual([1, 1, 3, 10, 10, 10, 100]);
    expect(Array.from(fillSeries(v, 'zero', 4).values)).toEqual([1, 0, 3, 10, 0, 0, 100]);
    expect(Array.from(fillSeries(v, 'linear', 4).values)).toEqual([1, 2, 3, 10, 40, 70, 100]);
    expect(fillSeries(v, 'median', 4).filled).toBe(3);
    expect(Array.from(fillSeries(v, 'none', 4).values).filter(Number.isNaN)).toHaveLength(3);
  });

  it('drops windows that touch a missing value when there is no fill rule, keeps them with one', () => {
    const rows = tenDays().filter((r) => r[2] !== 4);
    const dropped = buildWindows(table(rows), { ...base, dropIncomplete: true });
    const filled = buildWindows(table(rows), { ...base, fill: 'linear' });
    // Origins 2..7 in train (y at origin 2..7); 4 (y), 5 and 6 (lookback) touch day 4.
    expect(filled.train.count).toBe(6);
    expect(dropped.train.count).toBe(3);
    expect(filled.state.filled).toBe(1);
  });
});

describe('windows', () => {
  it('cut lookback and horizon, scale per series with train statistics only', () => {
    const w = buildWindows(table(tenDays()), { ...base, lookback: 3, horizon: 2, testSteps: 2 });
    // Train: the targets of days 0..7 (test is days 8, 9); mean/std of 0..7 only.
    const train = [0, 1, 2, 3, 4, 5, 6, 7];
    const mean = train.reduce((a, b) => a + b) / train.length;
    const std = Math.sqrt(train.reduce((a, b) => a + (b - mean) ** 2, 0) / train.length);
    expect(w.state.scaling['a']!.mean).toBeCloseTo(mean, 12);
    expect(w.state.scaling['a']!.std).toBeCloseTo(std, 12);
    // Train windows: origins 3..6 (horizon inside days 0..7); test: origin 8 only.
    expect(w.train.count).toBe(4);
    expect(w.test.count).toBe(1);
    const unscale = (v: number): number => Math.round(v * std + mean);
    expect(Array.from(w.test.x).map(unscale)).toEqual([5, 6, 7]);
    expect(Array.from(w.test.y).map(unscale)).toEqual([8, 9]);
    expect(w.test.origin[0]).toBe(day('2024-01-09'));
    expect(Array.from(w.train.y.slice(0, 2)).map(unscale)).toEqual([3, 4]);
    // A test value far off does not move the scaling.
    const rows = tenDays();
    rows[9] = ['a', rows[9]![1], 1e6];
    expect(buildWindows(table(rows), { ...base, lookback: 3, horizon: 2 }).state.scaling['a']!.mean).toBeCloseTo(mean, 12);
  });

  it('space train origins by stride, counting back from the newest', () => {
    const w = buildWindows(table(tenDays()), { ...base, lookback: 2, horizon: 1, stride: 3, testSteps: 2 });
    // Train targets days 2..7 possible; the newest (origin 7), then 4; origin 1 has no full lookback.
    expect(Array.from(w.train.origin)).toEqual([day('2024-01-05'), day('2024-01-08')]);
  });

  it('add calendar features to inputs and future', () => {
    const w = buildWindows(table(tenDays()), {
      ...base,
      lookback: 1,
      horizon: 1,
      calendar: ['dayOfWeek', 'holiday'],
      holidays: ['2024-01-10'],
    });
    expect(w.test.inputs).toEqual(['y', 'dow_sin', 'dow_cos', 'holiday']);
    expect(w.test.future).toEqual(['dow_sin', 'dow_cos', 'holiday']);
    // The last test window forecasts 2024-01-10, a Wednesday (Monday = 0, so 2) and a holiday; its lookback is Tuesday.
    const last = w.test.count - 1;
    const f = Array.from(w.test.xf.slice(last * 3, last * 3 + 3));
    expect(f[0]).toBeCloseTo(Math.sin((2 * Math.PI * 2) / 7), 6);
    expect(f[1]).toBeCloseTo(Math.cos((2 * Math.PI * 2) / 7), 6);
    expect(f[2]).toBe(1);
    const x = Array.from(w.test.x.slice(last * 4, last * 4 + 4));
    expect(x[1]).toBeCloseTo(Math.sin((2 * Math.PI * 1) / 7), 6);
    expect(x[3]).toBe(0);
  });

  it('walk forward: each fold fits on what precedes its block and tests on it', () => {
    const rows: [string, number, number][] = [];
    for (const s of ['a', 'b']) for (let i = 0; i < 12; i++) rows.push([s, day('2024-01-01') + i * 86_400_000, s === 'a' ? i : 100 - i]);
    const w = buildWindows(table(rows), { ...base, lookback: 2, horizon: 2, testSteps: 2, folds: 3, foldSteps: 2, foldsBeforeTest: false });
    const folds = w.folds!;
    expect(folds).toHaveLength(3);
    // Blocks: days 6-7, 8-9, 10-11; fold 1 fits on days 0..5.
    expect(folds.map((f) => f.state.boundaries['test'])).toEqual([
      '2024-01-07T00:00:00.000Z',
      '2024-01-09T00:00:00.000Z',
      '2024-01-11T00:00:00.000Z',
    ]);
    expect(folds[0]!.state.scaling['a']!.mean).toBeCloseTo(2.5, 12);
    expect(folds[0]!.state.scaling['b']!.mean).toBeCloseTo(97.5, 12);
    for (const f of folds) {
      expect(f.test.count).toBe(2); // one per series
      const trainLast = Math.max(...f.train.origin) + 86_400_000; // last train target day (horizon 2)
      expect(trainLast).toBeLessThan(Math.min(...f.test.origin));
    }
    // The last fold's block is the test block.
    expect(Array.from(folds[2]!.test.origin)).toEqual(Array.from(w.test.origin));
    // MASE scale: mean |y_t - y_{t-7}| of the train part; series a rises by 1 a day -> 7.
    expect(folds[0]!.state.seasonalScale['a']).toBe(1); // only 6 train days: shorter than a season -> lag 1
    expect(w.state.seasonalScale['a']).toBe(7);
    expect(seasonalScale(Float64Array.from([5, 5, 5]), 3, 1)).toBe(1);
    // Before the test block: blocks of days 4-5, 6-7, 8-9.
    const held = buildWindows(table(rows), {
      ...base,
      lookback: 2,
      horizon: 2,
      testSteps: 2,
      folds: 3,
      foldSteps: 2,
      foldsBeforeTest: true,
    });
    expect(held.folds!.map((f) => f.state.boundaries['test'])).toEqual([
      '2024-01-05T00:00:00.000Z',
      '2024-01-07T00:00:00.000Z',
      '2024-01-09T00:00:00.000Z',
    ]);
    expect(Math.max(...held.folds![2]!.test.origin)).toBeLessThan(Math.min(...held.test.origin));
  });

  it('refuse settings that leave no windows', () => {
    expect(() => buildWindows(table(tenDays()), { ...base, lookback: 9, testSteps: 2 })).toThrow(/no train windows/);
    expect(() => buildWindows(table(tenDays()), { ...base, horizon: 3, testSteps: 2 })).toThrow(/at least the horizon/);
  });
});

describe('process.window', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mlpipe-window-'));
  const csv = (name: string, text: string): string => {
    const p = join(dir, name);
    writeFileSync(p, text);
    return p;
  };

  it('reads a long table with hostile column names and writes window sets and a state', async () => {
    const ctx = testContext();
    const lines = ['"sta""tion",day,"y; DROP TABLE raw; --",temp'];
    for (const s of ['x', 'y'])
      for (let i = 0; i < 30; i++)
        lines.push(`${s},${new Date(day('2024-01-01') + i * 86_400_000).toISOString().slice(0, 10)},${i % 7},${i}`);
    lines.push('x,2024-01-05,99,0'); // a duplicate
    const ing = await runPlugin(ingestFile, ctx, { path: csv('long.csv', lines.join('\n') + '\n') });
    const out = await runPlugin(
      window,
      ctx,
      {
        timeColumn: 'day',
        seriesColumn: 'sta"tion',
        target: 'y; DROP TABLE raw; --',
        covariates: ['temp'],
        frequency: 'day',
        lookback: 7,
        horizon: 3,
        testSteps: 5,
        validationSteps: 5,
        folds: 2,
        calendar: ['dayOfWeek'],
      },
      { dataset: ing['dataset'] },
    );
    const counts = out['counts'] as Record<string, unknown>;
    expect(counts).toMatchObject({ series: 2, duplicates: 1, gaps: 0, inputs: ['y; DROP TABLE raw; --', 'temp', 'dow_sin', 'dow_cos'] });
    const test = decodeWindows(await ctx.store.get(out['test'] as ArtifactRef));
    expect(test.seriesIds).toEqual(['x', 'y']);
    expect(test.season).toBe(7);
    expect(test.count).toBe(2 * 3); // origins at the 3 test days whose horizon fits, per series
    const state = parseWindowState(JSON.parse((await ctx.store.get(out['state'] as ArtifactRef)).toString()), 'test');
    expect(state.duplicates).toEqual([{ series: 'x', time: '2024-01-05T00:00:00.000Z', rows: 2 }]);
    expect(Object.keys(state.covariates)).toEqual(['temp']);
    const folds = out['folds'] as { train: ArtifactRef; test: ArtifactRef; state: ArtifactRef }[];
    expect(folds).toHaveLength(2);
    expect(decodeWindows(await ctx.store.get(folds[1]!.test)).count).toBe(6);
  });

  it('fails in strict mode on gaps, and on a missing or non-numeric column', async () => {
    const ctx = testContext();
    const ing = await runPlugin(ingestFile, ctx, {
      path: csv('gap.csv', 's,t,y,name\na,2024-01-01,1,p\na,2024-01-02,2,p\na,2024-01-04,3,p\na,2024-01-05,4,p\na,2024-01-06,5,p\n'),
    });
    const p = { timeColumn: 't', seriesColumn: 's', target: 'y', frequency: 'day', lookback: 1, horizon: 1, testSteps: 1 };
    const strict = await failure(runPlugin(window, ctx, { ...p, strict: true }, { dataset: ing['dataset'] }));
    expect(strict.code).toBe('DATA_INVALID');
    expect(strict.message).toMatch(/gap in 'a': 1 day\(s\) missing from 2024-01-03/);
    expect((await failure(runPlugin(window, ctx, { ...p, target: 'nope' }, { dataset: ing['dataset'] }))).message).toMatch(
      /no column 'nope'/,
    );
    expect((await failure(runPlugin(window, ctx, { ...p, covariates: ['name'] }, { dataset: ing['dataset'] }))).message).toMatch(
      /'name' is VARCHAR, not numeric/,
    );
    const filled = await runPlugin(window, ctx, { ...p, fill: 'median' }, { dataset: ing['dataset'] });
    expect(filled['counts']).toMatchObject({ gaps: 1, missingPeriods: 1, filled: 1 });
  });
});
