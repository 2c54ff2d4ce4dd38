/**
 * The served form of a train.ets model (`mlpipe.ets/1`): fixed parameters, state re-estimated from
 * the window. A request carries only the last L values of a series, not its whole history, so the
 * server cannot run the fitted model's recursion from its first observation. Instead, for each
 * series, the fitted form (trend, season, period) and smoothing parameters (α, β, γ, φ) are kept, the
 * initial states are estimated from the window itself, and the ETS recursion (lib/ets.ts) runs over
 * the window; the forecast is read off its final states.
 *
 * Both ways of estimating the initial states are linear in the window, and so is the recursion for
 * fixed parameters, so the forecast of a series is one H×L matrix times the window
 * (`servedEtsMatrix`): what the ONNX graph holds (lib/onnx-ets.ts). `servedEtsForecast` runs the
 * recursion itself (lib/ets.ts's etsFilter / fitInitial and etsForecast): the reference the matrix
 * is tested against and export.onnx's parity check compares the graph with.
 *
 * - `least-squares` (the default): the initial states that minimise the one-step SSE over the
 *   window for the fitted parameters (lib/ets.ts's fitInitial, what training does over the whole
 *   history).
 * - `classical`: a classical decomposition of the window's first two seasons (the level as the first
 *   season's mean, the trend as the difference of the two seasons' means over the period, the
 *   seasons as the first season's deviations from that line); without seasonality, a line through
 *   the first (up to) 10 values.
 *
 * Training's forecasts (train.ets, `refit: window`) refit the model choice and every parameter per
 * window on the whole history before its origin; the served form differs from them, by how much is
 * measured in docs/benchmarks.md. A series the model has no fit for (too little history) repeats
 * its last value, as training's fallback does. Pure: no I/O.
 */
import { PipelineError } from '../engine/errors.js';
import { etsFilter, etsForecast, fitInitial, solveSymmetric, type EtsParams, type EtsSpec, type EtsStates } from './ets.js';

export const ETS_MODEL_FORMAT = 'mlpipe.ets/1';

export const SERVED_ETS_INITS = ['least-squares', 'classical'] as const;
export type ServedEtsInit = (typeof SERVED_ETS_INITS)[number];

/** One series' entry of a train.ets model document (null: no fit). */
export interface EtsSeriesModel {
  model: string;
  spec: EtsSpec;
  params: EtsParams;
  initial: EtsStates;
  final: EtsStates;
  next: string;
  n: number;
  aicc: number;
  logLik: number;
}

/** The model document train.ets writes. */
export interface EtsModelDocument {
  format: typeof ETS_MODEL_FORMAT;
  frequency: string;
  season: number;
  horizon: number;
  target: string;
  series: Record<string, EtsSeriesModel | null>;
}

/** What the served form of a series needs: its form and smoothing parameters. */
export type ServedEts = Pick<EtsSeriesModel, 'spec' | 'params'> | null;

export function isEtsModel(value: unknown): value is EtsModelDocument {
  return typeof value === 'object' && value !== null && (value as { format?: unknown }).format === ETS_MODEL_FORMAT;
}

/** A train.ets model document read back from the store (an untrusted step output): its shape checked. */
export function parseEtsModel(value: unknown, where: string): EtsModelDocument {
  const bad = (what: string): PipelineError =>
    new PipelineError('PLUGIN_INPUT', `${where}: the model is not a valid train.ets model (${what}).`, {
      hint: 'Bind the `model` output of a train.ets step.',
    });
  if (!isEtsModel(value)) throw bad('wrong format');
  const d = value;
  if (!Number.isInteger(d.horizon) || d.horizon < 1) throw bad('horizon');
  if (typeof d.series !== 'object' || d.series === null) throw bad('series');
  const unit = (v: unknown): boolean => typeof v === 'number' && v >= 0 && v <= 1;
  for (const [id, s] of Object.entries(d.series)) {
    if (s === null) continue;
    const sp = s?.spec;
    if (!sp || !['none', 'additive', 'damped'].includes(sp.trend) || !['none', 'additive'].includes(sp.seasonal))
      throw bad(`series '${id}' form`);
    if (sp.seasonal === 'additive' && !(Number.isInteger(sp.period) && sp.period >= 2)) throw bad(`series '${id}' period`);
    const p = s.params;
    if (!p || !unit(p.alpha) || !unit(p.beta) || !unit(p.gamma) || !(typeof p.phi === 'number' && p.phi > 0 && p.phi <= 1))
      throw bad(`series '${id}' parameters`);
  }
  return d;
}

const periodOf = (spec: EtsSpec): number => (spec.seasonal === 'additive' ? spec.period : 1);

/** Free initial states of a form: level, trend, m - 1 seasons (the last is minus their sum). */
function initialCount(spec: EtsSpec): number {
  return 1 + (spec.trend !== 'none' ? 1 : 0) + (spec.seasonal === 'additive' ? spec.period - 1 : 0);
}

/** The shortest window the served form of `spec` is estimated from: two seasons (seasonal), else a value more than the states. */
export function servedEtsMinimumLookback(spec: EtsSpec): number {
  return spec.seasonal === 'additive' ? 2 * spec.period : initialCount(spec) + 1;
}

/** The classical initial states of a window (see the module comment): linear in y. */
function classicalInitial(y: ArrayLike<number>, spec: EtsSpec, phi: number): EtsStates {
  const trend = spec.trend !== 'none';
  if (spec.seasonal === 'additive') {
    const m = spec.period;
    let m1 = 0;
    let m2 = 0;
    for (let j = 0; j < m; j++) {
      m1 += y[j]! / m;
      m2 += y[m + j]! / m;
    }
    const b = trend ? (m2 - m1) / m : 0;
    // The line through the first season's mean at its centre: its value at t is m1 + (t - (m-1)/2)·b.
    const at0 = m1 - ((m - 1) / 2) * b;
    const seasonal = Array.from({ length: m }, (_, j) => y[j]! - (at0 + j * b));
    return { level: at0 - phi * b, trend: b, seasonal };
  }
  if (!trend) return { level: y[0]!, trend: 0, seasonal: [] };
  // A least-squares line through the first (up to) 10 values: intercept at t = 0, slope b.
  const n = Math.min(10, y.length);
  const tMean = (n - 1) / 2;
  let yMean = 0;
  for (let t = 0; t < n; t++) yMean += y[t]! / n;
  let sxy = 0;
  let sxx = 0;
  for (let t = 0; t < n; t++) {
    sxy += (t - tMean) * (y[t]! - yMean);
    sxx += (t - tMean) ** 2;
  }
  const b = sxy / sxx;
  return { level: yMean - tMean * b - phi * b, trend: b, seasonal: [] };
}

function checkWindow(spec: EtsSpec, length: number): void {
  const min = servedEtsMinimumLookback(spec);
  if (length < min)
    throw new PipelineError(
      'PLUGIN_INPUT',
      `export.onnx: an ETS(${spec.trend}, ${spec.seasonal}${spec.seasonal === 'additive' ? `, period ${spec.period}` : ''}) re-estimates its states from a window of at least ${min} values; the lookback is ${length}.`,
      { hint: `Give process.window a lookback of at least ${min} (two seasons for a seasonal model).` },
    );
}

/**
 * The served forecast of one window (the reference): the initial states estimated from the window,
 * the recursion over it with the fixed parameters, H steps on from its final states.
 */
export function servedEtsForecast(window: ArrayLike<number>, model: ServedEts, horizon: number, init: ServedEtsInit): Float64Array {
  if (!model) return new Float64Array(horizon).fill(window[window.length - 1]!);
  const { spec, params } = model;
  checkWindow(spec, window.length);
  const final =
    init === 'least-squares'
      ? fitInitial(window, spec, params).final
      : etsFilter(window, spec, params, classicalInitial(window, spec, spec.trend === 'damped' ? params.phi : 1)).final;
  return etsForecast(spec, params, final, horizon);
}

/**
 * The recursion run on coefficient vectors: every state carried as its coefficients over a basis of
 * width W (the free initial states and/or the window's values; observation t is basis vector
 * `yAt + t`). Returns the final states' coefficients and each step's one-step error's.
 */
function propagate(
  spec: EtsSpec,
  p: EtsParams,
  L: number,
  W: number,
  yAt: number,
  initial: { level: Float64Array; trend: Float64Array; season: Float64Array[] },
): { level: Float64Array; trend: Float64Array; season: Float64Array[]; errors: Float64Array[] } {
  const m = periodOf(spec);
  const hasTrend = spec.trend !== 'none';
  const seasonal = spec.seasonal === 'additive';
  const phi = spec.trend === 'damped' ? p.phi : 1;
  const level = Float64Array.from(initial.level);
  const trend = Float64Array.from(initial.trend);
  const season = initial.season.map((s) => Float64Array.from(s));
  const errors: Float64Array[] = [];
  for (let t = 0; t < L; t++) {
    const s = seasonal ? season[t % m]! : undefined;
    const e = new Float64Array(W);
    for (let i = 0; i < W; i++) {
      const pb = phi * trend[i]!;
      e[i] = (i === yAt + t ? 1 : 0) - (level[i]! + pb + (s ? s[i]! : 0));
      level[i] = level[i]! + pb + p.alpha * e[i]!;
      if (hasTrend) trend[i] = pb + p.beta * e[i]!;
      if (s) s[i] = s[i]! + p.gamma * e[i]!;
    }
    errors.push(e);
  }
  // Rotate the seasons so season[j] is the one the j-th step after the window uses (as etsFilter's final).
  const shift = L % m;
  const rotated = seasonal ? Array.from({ length: m }, (_, j) => season[(shift + j) % m]!) : [];
  return { level, trend, season: rotated, errors };
}

/**
 * The served form of a series as a matrix: forecasts = M · window, M [H, L] row-major. For a series
 * without a fit, the last value repeated.
 */
export function servedEtsMatrix(model: ServedEts, L: number, H: number, init: ServedEtsInit): Float64Array {
  const M = new Float64Array(H * L);
  if (!model) {
    for (let h = 0; h < H; h++) M[h * L + L - 1] = 1;
    return M;
  }
  const { spec, params: p } = model;
  checkWindow(spec, L);
  const m = periodOf(spec);
  const hasTrend = spec.trend !== 'none';
  const seasonal = spec.seasonal === 'additive';
  const phi = spec.trend === 'damped' ? p.phi : 1;
  /** The final states' coefficients over the window's values. */
  let level: Float64Array;
  let trend: Float64Array;
  let season: Float64Array[];
  if (init === 'classical') {
    // The classical states are linear in the window: column j is their value for the j-th unit window.
    const l0 = new Float64Array(L);
    const b0 = new Float64Array(L);
    const s0 = Array.from({ length: seasonal ? m : 0 }, () => new Float64Array(L));
    const unit = new Float64Array(L);
    for (let j = 0; j < L; j++) {
      unit.fill(0);
      unit[j] = 1;
      const st = classicalInitial(unit, spec, phi);
      l0[j] = st.level;
      b0[j] = hasTrend ? st.trend : 0;
      s0.forEach((s, q) => (s[j] = st.seasonal[q]!));
    }
    ({ level, trend, season } = propagate(spec, p, L, L, 0, { level: l0, trend: b0, season: s0 }));
  } else {
    // Basis (θ, y): the k free initial states, then the window. The one-step errors are e = E·θ + E0·y;
    // the SSE's minimiser θ = T·y solves (E'E)·T = -E'E0 (as lib/ets.ts's bestInitial, column by column).
    const k = initialCount(spec);
    const W = k + L;
    const l0 = new Float64Array(W);
    const b0 = new Float64Array(W);
    const s0 = Array.from({ length: seasonal ? m : 0 }, () => new Float64Array(W));
    l0[0] = 1;
    if (hasTrend) b0[1] = 1;
    const first = hasTrend ? 2 : 1;
    for (let j = 0; j < m - 1 && seasonal; j++) {
      s0[j]![first + j] = 1;
      s0[m - 1]![first + j] = -1;
    }
    const run = propagate(spec, p, L, W, k, { level: l0, trend: b0, season: s0 });
    const A = new Float64Array(k * k);
    const R = Array.from({ length: L }, () => new Float64Array(k));
    for (const e of run.errors) {
      for (let i = 0; i < k; i++) {
        for (let j = 0; j < k; j++) A[i * k + j]! += e[i]! * e[j]!;
        for (let c = 0; c < L; c++) R[c]![i]! -= e[i]! * e[k + c]!;
      }
    }
    const T = R.map((r) => solveSymmetric(A, r, k)); // T[c][i]: state i's coefficient of y_c
    const reduce = (v: Float64Array): Float64Array =>
      Float64Array.from({ length: L }, (_, c) => {
        let s = v[k + c]!;
        for (let i = 0; i < k; i++) s += v[i]! * T[c]![i]!;
        return s;
      });
    level = reduce(run.level);
    trend = reduce(run.trend);
    season = run.season.map(reduce);
  }
  let damp = 0;
  let pow = 1;
  for (let h = 0; h < H; h++) {
    pow *= phi;
    damp += pow;
    for (let c = 0; c < L; c++) {
      M[h * L + c] = level[c]! + (hasTrend ? damp * trend[c]! : 0) + (seasonal ? season[h % m]![c]! : 0);
    }
  }
  return M;
}

/** M · window for one series (M [H, L] row-major). */
export function applyEtsMatrix(M: ArrayLike<number>, window: ArrayLike<number>, H: number): Float64Array {
  const L = window.length;
  return Float64Array.from({ length: H }, (_, h) => {
    let s = 0;
    for (let c = 0; c < L; c++) s += M[h * L + c]! * window[c]!;
    return s;
  });
}
