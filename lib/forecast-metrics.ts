/**
 * Forecast accuracy in the target's units: MAE, RMSE, sMAPE and MASE per horizon step and overall,
 * and the naive, seasonal-naive and moving-average baselines computed from the same windows'
 * lookback. Pure; evaluate.forecast and bench/forecast.ts use it.
 */
import { PipelineError } from '../engine/errors.js';
import type { WindowSet, WindowState } from './windows.js';

export interface ForecastMetrics {
  mae: number;
  rmse: number;
  /** Symmetric MAPE in percent: mean of 200 |e| / (|y| + |f|) (0 where both are 0). */
  smape: number;
  /** Mean of |e| / the series' seasonal scale (the train part's mean absolute seasonal difference). */
  mase: number;
  /** Forecast values scored (windows × horizon steps with a true value and every forecast finite). */
  cells: number;
}

export interface ScoredForecast {
  overall: ForecastMetrics;
  /** One entry per horizon step. */
  perStep: ForecastMetrics[];
}

export const BASELINES = ['naive', 'seasonalNaive', 'movingAverage'] as const;
export type BaselineName = (typeof BASELINES)[number];

/** Forecasts in target units, [N, H] row-major. */
export type Values = Float64Array;

/** The true values of a window set in target units, [N, H]. */
export function truthOf(set: WindowSet, state: WindowState): Values {
  const out = new Float64Array(set.count * set.horizon);
  for (let i = 0; i < set.count; i++) {
    const sc = scalingOf(state, set.seriesIds[set.series[i]!]!);
    for (let h = 0; h < set.horizon; h++) out[i * set.horizon + h] = set.y[i * set.horizon + h]! * sc.std + sc.mean;
  }
  return out;
}

/** Scaled forecasts [N, H] (a forecasts blob's values) in target units. */
export function unscaleForecasts(set: WindowSet, state: WindowState, scaled: ArrayLike<number>): Values {
  const out = new Float64Array(set.count * set.horizon);
  for (let i = 0; i < set.count; i++) {
    const sc = scalingOf(state, set.seriesIds[set.series[i]!]!);
    for (let h = 0; h < set.horizon; h++) out[i * set.horizon + h] = scaled[i * set.horizon + h]! * sc.std + sc.mean;
  }
  return out;
}

function scalingOf(state: WindowState, id: string): { mean: number; std: number } {
  const s = state.scaling[id];
  if (!s) {
    throw new PipelineError(
      'PLUGIN_INPUT',
      `The window state has no scaling for series '${id}': the state and the windows are of different process.window steps.`,
      {
        hint: "Bind the state output of the process.window step that made these windows (for a fold, the fold's own state).",
      },
    );
  }
  return s;
}

/**
 * A baseline's forecasts from each window's lookback target (x[:, :, 0]), in target units:
 * naive repeats the last value; seasonal naive the value one season before each step; moving
 * average the mean of the last `window` values.
 */
export function baselineForecasts(set: WindowSet, state: WindowState, name: BaselineName, window = set.season): Values {
  const { lookback: L, horizon: H, season: m } = set;
  const F = set.inputs.length;
  if (name === 'seasonalNaive' && L < m) {
    throw new PipelineError(
      'PLUGIN_INPUT',
      `The seasonal naive baseline needs a lookback of at least one season (${m}); the windows have ${L}.`,
      {
        hint: `Set process.window's lookback to ${m} or more.`,
      },
    );
  }
  const w = Math.max(1, Math.min(window, L));
  const out = new Float64Array(set.count * H);
  for (let i = 0; i < set.count; i++) {
    const sc = scalingOf(state, set.seriesIds[set.series[i]!]!);
    const at = (l: number): number => set.x[(i * L + l) * F]! * sc.std + sc.mean;
    let mean = 0;
    if (name === 'movingAverage') {
      for (let l = L - w; l < L; l++) mean += at(l);
      mean /= w;
    }
    for (let h = 0; h < H; h++) {
      out[i * H + h] = name === 'naive' ? at(L - 1) : name === 'movingAverage' ? mean : at(L + h - m * Math.ceil((h + 1) / m));
    }
  }
  return out;
}

/**
 * Scores forecasts against the truth. Only cells where the truth and every forecast in `all` are
 * finite count, so a model and its baselines are scored on the same cells.
 */
export function scoreForecasts(
  set: WindowSet,
  state: WindowState,
  truth: Values,
  forecast: Values,
  all: Values[] = [forecast],
): ScoredForecast {
  const H = set.horizon;
  const acc = Array.from({ length: H }, () => ({ abs: 0, sq: 0, smape: 0, scaled: 0, n: 0 }));
  for (let i = 0; i < set.count; i++) {
    const id = set.seriesIds[set.series[i]!]!;
    const scale = state.seasonalScale[id];
    if (scale === undefined) {
      throw new PipelineError('PLUGIN_INPUT', `The window state has no seasonal scale for series '${id}'.`, {
        hint: 'Bind the state output of the process.window step that made these windows.',
      });
    }
    for (let h = 0; h < H; h++) {
      const k = i * H + h;
      const y = truth[k]!;
      if (!Number.isFinite(y) || all.some((f) => !Number.isFinite(f[k]!))) continue;
      const f = forecast[k]!;
      const e = Math.abs(y - f);
      const a = acc[h]!;
      a.abs += e;
      a.sq += e * e;
      a.smape += Math.abs(y) + Math.abs(f) === 0 ? 0 : (200 * e) / (Math.abs(y) + Math.abs(f));
      a.scaled += e / scale;
      a.n++;
    }
  }
  const metrics = (a: { abs: number; sq: number; smape: number; scaled: number; n: number }): ForecastMetrics => ({
    mae: a.n ? a.abs / a.n : NaN,
    rmse: a.n ? Math.sqrt(a.sq / a.n) : NaN,
    smape: a.n ? a.smape / a.n : NaN,
    mase: a.n ? a.scaled / a.n : NaN,
    cells: a.n,
  });
  const total = acc.reduce(
    (t, a) => ({ abs: t.abs + a.abs, sq: t.sq + a.sq, smape: t.smape + a.smape, scaled: t.scaled + a.scaled, n: t.n + a.n }),
    {
      abs: 0,
      sq: 0,
      smape: 0,
      scaled: 0,
      n: 0,
    },
  );
  return { overall: metrics(total), perStep: acc.map(metrics) };
}

/** A model's forecasts and the three baselines, scored on the same cells. */
export function scoreWithBaselines(
  set: WindowSet,
  state: WindowState,
  forecast: Values,
  movingAverageWindow?: number,
): { model: ScoredForecast; baselines: Record<BaselineName, ScoredForecast> } {
  const truth = truthOf(set, state);
  const base = Object.fromEntries(BASELINES.map((b) => [b, baselineForecasts(set, state, b, movingAverageWindow)])) as Record<
    BaselineName,
    Values
  >;
  const all = [forecast, ...Object.values(base)];
  return {
    model: scoreForecasts(set, state, truth, forecast, all),
    baselines: Object.fromEntries(BASELINES.map((b) => [b, scoreForecasts(set, state, truth, base[b], all)])) as Record<
      BaselineName,
      ScoredForecast
    >,
  };
}
