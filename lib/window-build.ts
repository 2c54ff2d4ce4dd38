/**
 * From a long table (series id, time, target, covariates) to window sets: the pure part of
 * process.window. The time index is corrected first (each time snapped to the start of its period
 * at the declared frequency), duplicates (a time twice in a series: the first row is kept) and
 * gaps (missing periods) are found and reported, missing values are filled by the declared rule
 * (or left NaN), scalings and fill values are fitted on the train part only, then windows are cut.
 */
import { PipelineError } from '../engine/errors.js';
import type { CalendarFeature, FillRule, Frequency, WindowSet, WindowState } from './windows.js';
import { WINDOW_STATE_FORMAT } from './windows.js';

/** The table as read from the dataset, ordered or not. */
export interface LongTable {
  seriesIds: string[];
  /** [rows], an index into seriesIds. */
  series: Int32Array;
  /** [rows], epoch ms. */
  time: Float64Array;
  /** [rows], NaN where null. */
  target: Float64Array;
  /** Observed covariates (known only up to the forecast origin). */
  covariates: { name: string; values: Float64Array }[];
  /** Known-future covariates (known for the horizon too: planned promotions, a public schedule). */
  known: { name: string; values: Float64Array }[];
}

export interface WindowOptions {
  timeColumn: string;
  seriesColumn: string | null;
  targetColumn: string;
  frequency: Frequency;
  lookback: number;
  horizon: number;
  /** Steps between the origins of train windows. */
  stride: number;
  /** Steps between the origins of validation, test and fold test windows. */
  evalStride: number;
  season: number;
  /** The last `testSteps` periods are the test block; the `validationSteps` before them validation. */
  testSteps: number;
  validationSteps: number;
  /** Walk-forward folds: fold k tests on the k-th of `folds` blocks of `foldSteps` periods (ending at the table's end, or before the test block). */
  folds?: number;
  foldSteps?: number;
  /** The fold blocks end right before the test block (so a search on the folds never sees it); false: at the table's end. */
  foldsBeforeTest?: boolean;
  fill: FillRule;
  calendar: CalendarFeature[];
  holidays: string[];
  /** Drop windows with a missing value in their lookback target or horizon (after filling). */
  dropIncomplete: boolean;
  /** The names of LongTable's covariates and known columns, in order. */
  covariateNames: string[];
  knownNames: string[];
}

export interface BuiltWindows {
  train: WindowSet;
  validation?: WindowSet;
  test: WindowSet;
  state: WindowState;
  folds?: { train: WindowSet; test: WindowSet; state: WindowState }[];
}

const DAY = 86_400_000;
const HOUR = 3_600_000;

/** The period index of an epoch-ms time at a frequency (months since 1970-01, days since 1970-01-01, ...). */
export function periodIndex(ms: number, f: Frequency): number {
  const d = new Date(ms);
  const months = (d.getUTCFullYear() - 1970) * 12 + d.getUTCMonth();
  switch (f) {
    case 'hour':
      return Math.floor(ms / HOUR);
    case 'day':
      return Math.floor(ms / DAY);
    case 'week':
      // Weeks start on Monday; 1970-01-01 was a Thursday.
      return Math.floor((Math.floor(ms / DAY) + 3) / 7);
    case 'month':
      return months;
    case 'quarter':
      return Math.floor(months / 3);
    case 'year':
      return d.getUTCFullYear() - 1970;
  }
}

/** The epoch ms of the start of a period. */
export function periodStart(index: number, f: Frequency): number {
  switch (f) {
    case 'hour':
      return index * HOUR;
    case 'day':
      return index * DAY;
    case 'week':
      return (index * 7 - 3) * DAY;
    case 'month':
      return Date.UTC(1970 + Math.floor(index / 12), ((index % 12) + 12) % 12, 1);
    case 'quarter':
      return Date.UTC(1970 + Math.floor(index / 4), (((index % 4) + 4) % 4) * 3, 1);
    case 'year':
      return Date.UTC(1970 + index, 0, 1);
  }
}

const iso = (ms: number): string => new Date(ms).toISOString();

/** The names of the calendar inputs a feature list gives, in order. */
export function calendarNames(features: CalendarFeature[]): string[] {
  const out: string[] = [];
  for (const f of features) {
    if (f === 'dayOfWeek') out.push('dow_sin', 'dow_cos');
    else if (f === 'month') out.push('month_sin', 'month_cos');
    else if (f === 'dayOfYear') out.push('doy_sin', 'doy_cos');
    else out.push('holiday');
  }
  return out;
}

/** The calendar feature values of a period start, in calendarNames' order. */
export function calendarValues(ms: number, features: CalendarFeature[], holidays: ReadonlySet<string>): number[] {
  const d = new Date(ms);
  const out: number[] = [];
  const tau = 2 * Math.PI;
  for (const f of features) {
    if (f === 'dayOfWeek') {
      const dow = (d.getUTCDay() + 6) % 7; // Monday 0
      out.push(Math.sin((tau * dow) / 7), Math.cos((tau * dow) / 7));
    } else if (f === 'month') {
      const m = d.getUTCMonth();
      out.push(Math.sin((tau * m) / 12), Math.cos((tau * m) / 12));
    } else if (f === 'dayOfYear') {
      const doy = Math.floor((ms - Date.UTC(d.getUTCFullYear(), 0, 1)) / DAY);
      out.push(Math.sin((tau * doy) / 365.25), Math.cos((tau * doy) / 365.25));
    } else {
      out.push(holidays.has(iso(ms).slice(0, 10)) ? 1 : 0);
    }
  }
  return out;
}

/** One series on its regular time index, from its first to its last period; NaN where missing. */
interface DenseSeries {
  id: string;
  /** The period index of position 0. */
  first: number;
  target: Float64Array;
  covariates: Float64Array[];
  known: Float64Array[];
}

interface Prepared {
  series: DenseSeries[];
  gaps: WindowState['gaps'];
  duplicates: WindowState['duplicates'];
  /** Rows whose time was not the start of its period. */
  snapped: number;
  /** The last period of the table. */
  last: number;
}

/** Corrects the time index, finds duplicates and gaps, lays each series on its regular index. */
export function prepareSeries(t: LongTable, f: Frequency): Prepared {
  const n = t.time.length;
  const order = Array.from({ length: n }, (_, i) => i);
  const period = new Float64Array(n);
  let snapped = 0;
  for (let i = 0; i < n; i++) {
    if (!Number.isFinite(t.time[i])) {
      throw new PipelineError('DATA_INVALID', `process.window: row ${i + 1} has no time.`, {
        hint: 'Drop rows without a time before windowing (process.sql), or fix the time column.',
      });
    }
    period[i] = periodIndex(t.time[i]!, f);
    if (periodStart(period[i]!, f) !== t.time[i]) snapped++;
  }
  // Stable: rows of one period keep their table order, so "the first row" is the first in the table.
  order.sort((a, b) => t.series[a]! - t.series[b]! || period[a]! - period[b]! || a - b);
  const series: DenseSeries[] = [];
  const gaps: WindowState['gaps'] = [];
  const duplicates: WindowState['duplicates'] = [];
  let last = -Infinity;
  let i = 0;
  while (i < n) {
    const s = t.series[order[i]!]!;
    let j = i;
    while (j < n && t.series[order[j]!] === s) j++;
    const first = period[order[i]!]!;
    const end = period[order[j - 1]!]!;
    const len = end - first + 1;
    const dense: DenseSeries = {
      id: t.seriesIds[s]!,
      first,
      target: new Float64Array(len).fill(NaN),
      covariates: t.covariates.map(() => new Float64Array(len).fill(NaN)),
      known: t.known.map(() => new Float64Array(len).fill(NaN)),
    };
    let prev = first - 1;
    for (let k = i; k < j; k++) {
      const row = order[k]!;
      const p = period[row]!;
      if (p === prev) {
        const d = duplicates[duplicates.length - 1];
        if (d && d.series === dense.id && d.time === iso(periodStart(p, f))) d.rows++;
        else duplicates.push({ series: dense.id, time: iso(periodStart(p, f)), rows: 2 });
        continue;
      }
      if (p > prev + 1) gaps.push({ series: dense.id, from: iso(periodStart(prev + 1, f)), steps: p - prev - 1 });
      const at = p - first;
      dense.target[at] = t.target[row]!;
      t.covariates.forEach((c, ci) => (dense.covariates[ci]![at] = c.values[row]!));
      t.known.forEach((c, ci) => (dense.known[ci]![at] = c.values[row]!));
      prev = p;
    }
    last = Math.max(last, end);
    series.push(dense);
    i = j;
  }
  return { series, gaps, duplicates, snapped, last };
}

function median(values: number[]): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Finite values of `v` at positions before `end` (exclusive). */
function trainValues(v: Float64Array, end: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < Math.min(end, v.length); i++) if (Number.isFinite(v[i])) out.push(v[i]!);
  return out;
}

/** Fills the NaNs of a copy of `v` by the rule (median: of the train part). Returns the copy and how many were filled. */
export function fillSeries(v: Float64Array, rule: FillRule, trainEnd: number): { values: Float64Array; filled: number } {
  const out = Float64Array.from(v);
  if (rule === 'none') return { values: out, filled: 0 };
  let filled = 0;
  const med = rule === 'median' ? median(trainValues(v, trainEnd)) : NaN;
  let lastSeen = NaN;
  let lastAt = -1;
  for (let i = 0; i < out.length; i++) {
    if (Number.isFinite(out[i])) {
      if (rule === 'linear' && lastAt >= 0 && i - lastAt > 1) {
        for (let k = lastAt + 1; k < i; k++) out[k] = lastSeen + ((out[i]! - lastSeen) * (k - lastAt)) / (i - lastAt);
      }
      lastSeen = out[i]!;
      lastAt = i;
      continue;
    }
    if (rule === 'median' && Number.isFinite(med)) {
      out[i] = med;
      filled++;
    } else if (rule === 'zero') {
      out[i] = 0;
      filled++;
    } else if (rule === 'previous' && lastAt >= 0) {
      out[i] = lastSeen;
      filled++;
    } else if (rule === 'linear' && lastAt >= 0) {
      filled++; // counted now, written when the next value is seen (or below, at the end)
    }
  }
  if (rule === 'linear') {
    // Trailing missing values after the last observation: carried forward.
    for (let i = lastAt + 1; i < out.length; i++) if (lastAt >= 0) out[i] = lastSeen;
  }
  return { values: out, filled };
}

function meanStd(values: number[]): { mean: number; std: number } {
  if (values.length === 0) return { mean: 0, std: 1 };
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  const variance = values.reduce((a, b) => a + (b - mean) ** 2, 0) / values.length;
  const std = Math.sqrt(variance);
  return { mean, std: std > 1e-12 && Number.isFinite(std) ? std : 1 };
}

/**
 * The MASE denominator of a series: the mean absolute seasonal difference (lag `season`) of its train
 * part, in target units; the lag-1 difference when the train part is shorter than a season; 1 when
 * that is 0 or undefined too.
 */
export function seasonalScale(v: Float64Array, trainEnd: number, season: number): number {
  for (const lag of [season, 1]) {
    let sum = 0;
    let count = 0;
    for (let i = lag; i < Math.min(trainEnd, v.length); i++) {
      const d = v[i]! - v[i - lag]!;
      if (Number.isFinite(d)) {
        sum += Math.abs(d);
        count++;
      }
    }
    if (count > 0 && sum > 0) return sum / count;
  }
  return 1;
}

interface Block {
  name: string;
  /** First and last period (inclusive) whose values the windows forecast. */
  start: number;
  end: number;
}

interface Fitted {
  state: WindowState;
  sets: Record<string, WindowSet>;
}

/** Fits fill values and scalings on periods before `trainEnd`, then cuts train windows (horizon before `trainEnd`) and the blocks' windows. */
function fitAndCut(prep: Prepared, o: WindowOptions, trainEnd: number, blocks: Block[]): Fitted {
  const holidays = new Set(o.holidays);
  const cal = calendarNames(o.calendar);
  const L = o.lookback;
  const H = o.horizon;
  let filled = 0;
  // Filled copies per series (fill rule fitted on this split's train part).
  const filledSeries = prep.series.map((s) => {
    const end = trainEnd - s.first;
    const t = fillSeries(s.target, o.fill, end);
    filled += t.filled;
    const covariates = s.covariates.map((c) => {
      const r = fillSeries(c, o.fill, end);
      filled += r.filled;
      return r.values;
    });
    const known = s.known.map((c) => {
      const r = fillSeries(c, o.fill, end);
      filled += r.filled;
      return r.values;
    });
    return { ...s, target: t.values, covariates, known, raw: s.target };
  });
  const scaling: WindowState['scaling'] = {};
  const scales: Record<string, number> = {};
  for (const s of filledSeries) {
    scaling[s.id] = meanStd(trainValues(s.raw, trainEnd - s.first));
    scales[s.id] = seasonalScale(s.raw, trainEnd - s.first, o.season);
  }
  const globalScaling = (
    pick: (s: (typeof filledSeries)[number]) => Float64Array[],
    names: string[],
  ): Record<string, { mean: number; std: number }> =>
    Object.fromEntries(
      names.map((name, ci) => [name, meanStd(filledSeries.flatMap((s) => trainValues(pick(s)[ci]!, trainEnd - s.first)))]),
    );
  {
    const covariateNames = o.covariateNames;
    const knownNames = o.knownNames;
    const covScaling = globalScaling((s) => s.covariates, covariateNames);
    const knownScaling = globalScaling((s) => s.known, knownNames);
    const inputs = [o.targetColumn, ...covariateNames, ...knownNames, ...cal];
    const future = [...knownNames, ...cal];
    const sets: Record<string, WindowSet> = {};
    const all: (Block & { stride: number; anchorEnd: number })[] = [
      { name: 'train', start: -Infinity, end: trainEnd - 1, stride: o.stride, anchorEnd: trainEnd - 1 },
      ...blocks.map((b) => ({ ...b, stride: o.evalStride, anchorEnd: b.start + H - 1 })),
    ];
    const seriesIds = filledSeries.map((s) => s.id);
    for (const b of all) {
      const x: number[] = [];
      const xf: number[] = [];
      const y: number[] = [];
      const series: number[] = [];
      const origin: number[] = [];
      filledSeries.forEach((s, si) => {
        const sc = scaling[s.id]!;
        const lastPeriod = s.first + s.target.length - 1;
        const firstOrigin = Math.max(s.first + L, Number.isFinite(b.start) ? b.start : -Infinity);
        const lastOrigin = Math.min(lastPeriod, b.end) - H + 1;
        for (let org = firstOrigin; org <= lastOrigin; org++) {
          // Train: the newest window ends right before trainEnd, others every `stride` before it.
          // Blocks: the first window starts at the block's start, others every `stride` after it.
          const offset = b.name === 'train' ? b.anchorEnd - (org + H - 1) : org - b.start;
          if (offset % b.stride !== 0) continue;
          const at = org - s.first;
          let complete = true;
          for (let l = 0; l < L; l++) if (!Number.isFinite(s.target[at - L + l])) complete = false;
          for (let h = 0; h < H; h++) if (!Number.isFinite(s.target[at + h])) complete = false;
          if (!complete && o.dropIncomplete) continue;
          for (let l = 0; l < L; l++) {
            const p = at - L + l;
            x.push((s.target[p]! - sc.mean) / sc.std);
            covariateNames.forEach((name, ci) => x.push((s.covariates[ci]![p]! - covScaling[name]!.mean) / covScaling[name]!.std));
            knownNames.forEach((name, ci) => x.push((s.known[ci]![p]! - knownScaling[name]!.mean) / knownScaling[name]!.std));
            x.push(...calendarValues(periodStart(s.first + p, o.frequency), o.calendar, holidays));
          }
          for (let h = 0; h < H; h++) {
            const p = at + h;
            y.push((s.target[p]! - sc.mean) / sc.std);
            knownNames.forEach((name, ci) => xf.push((s.known[ci]![p]! - knownScaling[name]!.mean) / knownScaling[name]!.std));
            xf.push(...calendarValues(periodStart(s.first + p, o.frequency), o.calendar, holidays));
          }
          series.push(si);
          origin.push(periodStart(org, o.frequency));
        }
      });
      sets[b.name] = {
        lookback: L,
        horizon: H,
        count: series.length,
        inputs,
        future,
        season: o.season,
        seriesIds,
        x: Float32Array.from(x),
        xf: Float32Array.from(xf),
        y: Float32Array.from(y),
        series: Int32Array.from(series),
        origin: Float64Array.from(origin),
      };
    }
    const boundaries: Record<string, string> = {
      first: iso(periodStart(Math.min(...filledSeries.map((s) => s.first)), o.frequency)),
      last: iso(periodStart(prep.last, o.frequency)),
      trainEnd: iso(periodStart(trainEnd, o.frequency)),
    };
    for (const b of blocks) boundaries[b.name] = iso(periodStart(b.start, o.frequency));
    const state: WindowState = {
      format: WINDOW_STATE_FORMAT,
      timeColumn: o.timeColumn,
      seriesColumn: o.seriesColumn,
      targetColumn: o.targetColumn,
      frequency: o.frequency,
      lookback: L,
      horizon: H,
      stride: o.stride,
      season: o.season,
      seriesIds,
      scaling,
      seasonalScale: scales,
      covariates: covScaling,
      known: knownScaling,
      calendar: { features: o.calendar, holidays: o.holidays },
      inputs,
      future,
      fill: o.fill,
      gaps: prep.gaps,
      duplicates: prep.duplicates,
      snapped: prep.snapped,
      filled,
      boundaries,
    };
    return { state, sets };
  }
}

/** Windows for train, validation (when validationSteps > 0), test and the walk-forward folds. */
export function buildWindows(t: LongTable, o: WindowOptions): BuiltWindows {
  if (t.time.length === 0) throw new PipelineError('DATA_INVALID', 'process.window: the table has no rows.');
  if (o.testSteps < o.horizon) {
    throw new PipelineError('PLUGIN_PARAMS', `process.window: testSteps (${o.testSteps}) must be at least the horizon (${o.horizon}).`);
  }
  if (o.validationSteps > 0 && o.validationSteps < o.horizon) {
    throw new PipelineError(
      'PLUGIN_PARAMS',
      `process.window: validationSteps (${o.validationSteps}) must be 0 or at least the horizon (${o.horizon}).`,
    );
  }
  const prep = prepareSeries(t, o.frequency);
  const E = prep.last;
  const testStart = E - o.testSteps + 1;
  const valStart = testStart - o.validationSteps;
  const main = fitAndCut(prep, o, valStart, [
    ...(o.validationSteps > 0 ? [{ name: 'validation', start: valStart, end: testStart - 1 }] : []),
    { name: 'test', start: testStart, end: E },
  ]);
  const out: BuiltWindows = { train: main.sets['train']!, test: main.sets['test']!, state: main.state };
  if (o.validationSteps > 0) out.validation = main.sets['validation']!;
  if (o.folds) {
    const fs = o.foldSteps ?? o.testSteps;
    if (fs < o.horizon)
      throw new PipelineError('PLUGIN_PARAMS', `process.window: foldSteps (${fs}) must be at least the horizon (${o.horizon}).`);
    out.folds = [];
    const foldsEnd = o.foldsBeforeTest ? testStart - 1 : E;
    for (let k = 1; k <= o.folds; k++) {
      const start = foldsEnd - (o.folds - k + 1) * fs + 1;
      const f = fitAndCut(prep, o, start, [{ name: 'test', start, end: start + fs - 1 }]);
      out.folds.push({ train: f.sets['train']!, test: f.sets['test']!, state: f.state });
    }
  }
  for (const [name, set] of Object.entries({
    train: out.train,
    test: out.test,
    ...(out.validation ? { validation: out.validation } : {}),
  })) {
    if (set.count === 0) {
      throw new PipelineError(
        'DATA_INVALID',
        `process.window: no ${name} windows (lookback ${o.lookback}, horizon ${o.horizon}, ${o.testSteps} test and ${o.validationSteps} validation periods, series of up to ${Math.max(...prep.series.map((s) => s.target.length))} periods).`,
        {
          hint: 'Shorten the lookback or the horizon, or give fewer periods to test and validation.',
        },
      );
    }
  }
  return out;
}
