/**
 * Exponential smoothing state-space models with additive errors (ETS(A,·,·)): the level, an optional
 * additive or damped additive trend, and optional additive seasonality of period m. For an
 * observation y_t, with the states before it (l, b, s_{t-m}):
 *
 *   ŷ_t = l + φ·b + s_{t-m}          e_t = y_t - ŷ_t
 *   l'  = l + φ·b + α·e_t            b'  = φ·b + β·e_t            s_t = s_{t-m} + γ·e_t
 *
 * (φ = 1 without damping; b = 0 without a trend; s = 0 without seasonality.) h steps after the last
 * observation: l + (φ + … + φ^h)·b + the season's latest s.
 *
 * Fitted by maximum likelihood (Gaussian errors, σ² concentrated out: minimise n·log(SSE)). For given
 * smoothing parameters the one-step errors are affine in the initial states (the recursion is
 * linear), so the initial states that minimise the SSE are a least-squares solution; Nelder-Mead
 * searches the smoothing parameters only, inside the usual region 0 < α < 1, 0 < β < α,
 * 0 < γ < 1 - α, 0.8 ≤ φ ≤ 0.98. The seasonal initial states sum to zero (the model is the same under
 * any normalisation: a constant moves between the level and the seasons). `autoEts` fits each
 * candidate model and keeps the lowest AICc. Missing observations (NaN) update no state and add no
 * error. Pure and deterministic: no I/O, no randomness.
 */

export const ETS_TRENDS = ['none', 'additive', 'damped'] as const;
export const ETS_SEASONALS = ['none', 'additive'] as const;
export type EtsTrend = (typeof ETS_TRENDS)[number];
export type EtsSeasonal = (typeof ETS_SEASONALS)[number];

export interface EtsSpec {
  trend: EtsTrend;
  seasonal: EtsSeasonal;
  /** The seasonal period (used only when seasonal is additive). */
  period: number;
}

export interface EtsParams {
  alpha: number;
  /** 0 without a trend. */
  beta: number;
  /** 0 without seasonality. */
  gamma: number;
  /** 1 unless the trend is damped. */
  phi: number;
}

/** The states before the first observation. seasonal[j] is the seasonal state the observation at index j uses (s_{j-m}). */
export interface EtsStates {
  level: number;
  trend: number;
  seasonal: number[];
}

export interface EtsFit {
  spec: EtsSpec;
  /** The model's short name: A (error), N/A/Ad (trend), N/A (season), e.g. 'AAdA'. */
  name: string;
  params: EtsParams;
  initial: EtsStates;
  /**
   * The states after the last observation; final.seasonal[j] is the seasonal state the j-th step
   * after the series uses (for steps beyond the period, j mod period).
   */
  final: EtsStates;
  /** Observations that were not missing. */
  n: number;
  sse: number;
  logLik: number;
  /** Free parameters, σ² included. */
  k: number;
  aic: number;
  aicc: number;
  bic: number;
}

export function modelName(spec: Pick<EtsSpec, 'trend' | 'seasonal'>): string {
  const t = spec.trend === 'none' ? 'N' : spec.trend === 'additive' ? 'A' : 'Ad';
  return `A${t}${spec.seasonal === 'additive' ? 'A' : 'N'}`;
}

const period = (spec: EtsSpec): number => (spec.seasonal === 'additive' ? spec.period : 1);

interface Filtered {
  errors: Float64Array;
  fitted: Float64Array;
  final: EtsStates;
  sse: number;
  n: number;
}

/**
 * Runs the recursion over y from the given initial states: the one-step errors and forecasts (NaN
 * where y is missing) and the final states.
 */
export function etsFilter(y: ArrayLike<number>, spec: EtsSpec, p: EtsParams, initial: EtsStates): Filtered {
  const m = period(spec);
  const trend = spec.trend !== 'none';
  const seasonal = spec.seasonal === 'additive';
  const phi = spec.trend === 'damped' ? p.phi : 1;
  const season = new Float64Array(m);
  if (seasonal) for (let j = 0; j < m; j++) season[j] = initial.seasonal[j] ?? 0;
  let l = initial.level;
  let b = trend ? initial.trend : 0;
  const errors = new Float64Array(y.length);
  const fitted = new Float64Array(y.length);
  let sse = 0;
  let n = 0;
  for (let t = 0; t < y.length; t++) {
    const j = t % m;
    const s = seasonal ? season[j]! : 0;
    const pb = phi * b;
    const yhat = l + pb + s;
    fitted[t] = yhat;
    const v = y[t]!;
    const e = Number.isFinite(v) ? v - yhat : 0;
    errors[t] = Number.isFinite(v) ? e : NaN;
    if (Number.isFinite(v)) {
      sse += e * e;
      n++;
    }
    l = l + pb + p.alpha * e;
    if (trend) b = pb + p.beta * e;
    if (seasonal) season[j] = s + p.gamma * e;
  }
  const shift = y.length % m;
  const final: EtsStates = {
    level: l,
    trend: b,
    seasonal: seasonal ? Array.from({ length: m }, (_, j) => season[(shift + j) % m]!) : [],
  };
  return { errors, fitted, final, sse, n };
}

/** Point forecasts 1..h steps after the states `final`. */
export function etsForecast(spec: EtsSpec, p: EtsParams, final: EtsStates, h: number): Float64Array {
  const out = new Float64Array(h);
  const phi = spec.trend === 'damped' ? p.phi : 1;
  const trend = spec.trend !== 'none';
  let damp = 0;
  let pow = 1;
  for (let k = 0; k < h; k++) {
    pow *= phi;
    damp += pow;
    const s = spec.seasonal === 'additive' ? final.seasonal[k % spec.period]! : 0;
    out[k] = final.level + (trend ? damp * final.trend : 0) + s;
  }
  return out;
}

/** The smoothing parameters a model estimates, in order: alpha, beta (trend), gamma (season), phi (damped). */
function smoothingCount(spec: EtsSpec): number {
  return 1 + (spec.trend !== 'none' ? 1 : 0) + (spec.seasonal === 'additive' ? 1 : 0) + (spec.trend === 'damped' ? 1 : 0);
}

/** Free initial states: the level, the trend, and m - 1 seasons (the last is minus their sum). */
function initialCount(spec: EtsSpec): number {
  return 1 + (spec.trend !== 'none' ? 1 : 0) + (spec.seasonal === 'additive' ? spec.period - 1 : 0);
}

/** Free parameters of a model, σ² included (what AICc counts). */
export function parameterCount(spec: EtsSpec): number {
  return smoothingCount(spec) + initialCount(spec) + 1;
}

const LOWER = 1e-4;
const UPPER = 1 - 1e-4;
const PHI_LOWER = 0.8;
const PHI_UPPER = 0.98;

const sigmoid = (u: number): number => 1 / (1 + Math.exp(-u));
const logit = (p: number): number => Math.log(p / (1 - p));
const within = (lo: number, hi: number, u: number): number => lo + (hi - lo) * sigmoid(u);

/** Unconstrained search coordinates -> smoothing parameters in the usual region (β as a share of α, γ of 1 - α). */
function paramsOf(spec: EtsSpec, u: ArrayLike<number>): EtsParams {
  let i = 0;
  const alpha = within(LOWER, UPPER, u[i++]!);
  const beta = spec.trend !== 'none' ? alpha * within(LOWER, UPPER, u[i++]!) : 0;
  const gamma = spec.seasonal === 'additive' ? (1 - alpha) * within(LOWER, UPPER, u[i++]!) : 0;
  const phi = spec.trend === 'damped' ? within(PHI_LOWER, PHI_UPPER, u[i++]!) : 1;
  return { alpha, beta, gamma, phi };
}

function coordsOf(spec: EtsSpec, p: EtsParams): number[] {
  const inv = (lo: number, hi: number, v: number): number => logit(Math.min(1 - 1e-9, Math.max(1e-9, (v - lo) / (hi - lo))));
  const u = [inv(LOWER, UPPER, p.alpha)];
  if (spec.trend !== 'none') u.push(inv(LOWER, UPPER, p.beta / p.alpha));
  if (spec.seasonal === 'additive') u.push(inv(LOWER, UPPER, p.gamma / (1 - p.alpha)));
  if (spec.trend === 'damped') u.push(inv(PHI_LOWER, PHI_UPPER, p.phi));
  return u;
}

/** Free initial-state coordinates -> the states (seasons summing to zero). */
function statesOf(spec: EtsSpec, theta: ArrayLike<number>): EtsStates {
  let i = 0;
  const level = theta[i++]!;
  const trend = spec.trend !== 'none' ? theta[i++]! : 0;
  const seasonal: number[] = [];
  if (spec.seasonal === 'additive') {
    let sum = 0;
    for (let j = 0; j < spec.period - 1; j++) {
      seasonal.push(theta[i]!);
      sum += theta[i++]!;
    }
    seasonal.push(-sum);
  }
  return { level, trend, seasonal };
}

/**
 * The initial states that minimise the SSE for these smoothing parameters, and that SSE. The
 * recursion is linear, so every state and error is affine in the free initial states θ: one pass
 * carries each state as its coefficients over (θ, 1), giving the errors e = e0 + E·θ and the normal
 * equations (E'E)·θ = -E'e0 on the way; the minimum is e0'e0 + (E'e0)·θ.
 */
function bestInitial(y: Float64Array, spec: EtsSpec, p: EtsParams): { theta: Float64Array; sse: number } {
  const k = initialCount(spec);
  const w = k + 1;
  const m = period(spec);
  const hasTrend = spec.trend !== 'none';
  const seasonal = spec.seasonal === 'additive';
  const phi = spec.trend === 'damped' ? p.phi : 1;
  const level = new Float64Array(w);
  const trend = new Float64Array(w);
  const season = new Float64Array(m * w);
  level[0] = 1;
  if (hasTrend) trend[1] = 1;
  if (seasonal) {
    const first = hasTrend ? 2 : 1;
    for (let j = 0; j < m - 1; j++) {
      season[j * w + first + j] = 1;
      season[(m - 1) * w + first + j] = -1;
    }
  }
  const e = new Float64Array(w);
  const a = new Float64Array(k * k);
  const r = new Float64Array(k);
  let e0e0 = 0;
  for (let t = 0; t < y.length; t++) {
    const so = (t % m) * w;
    const v = y[t]!;
    const observed = Number.isFinite(v);
    for (let i = 0; i < w; i++) {
      const pb = phi * trend[i]!;
      const yhat = level[i]! + pb + (seasonal ? season[so + i]! : 0);
      const ei = observed ? (i === k ? v - yhat : -yhat) : 0;
      e[i] = ei;
      level[i] = level[i]! + pb + p.alpha * ei;
      if (hasTrend) trend[i] = pb + p.beta * ei;
      if (seasonal) season[so + i] = season[so + i]! + p.gamma * ei;
    }
    if (!observed) continue;
    const ek = e[k]!;
    e0e0 += ek * ek;
    for (let i = 0; i < k; i++) {
      const ei = e[i]!;
      if (ei === 0) continue;
      r[i]! -= ei * ek;
      const row = i * k;
      for (let j = 0; j <= i; j++) a[row + j]! += ei * e[j]!;
    }
  }
  for (let i = 0; i < k; i++) for (let j = 0; j < i; j++) a[j * k + i] = a[i * k + j]!;
  const theta = solveSymmetric(a, r, k);
  let reduction = 0;
  for (let i = 0; i < k; i++) reduction += r[i]! * theta[i]!;
  return { theta, sse: Math.max(0, e0e0 - reduction) };
}

/** Solves A·x = r for a symmetric positive semi-definite A (Cholesky with a tiny ridge; Gaussian elimination if that fails). */
export function solveSymmetric(a: Float64Array, r: Float64Array, k: number): Float64Array {
  let trace = 0;
  for (let i = 0; i < k; i++) trace += a[i * k + i]!;
  const ridge = (trace / Math.max(1, k)) * 1e-10 + 1e-300;
  const l = new Float64Array(k * k);
  let ok = true;
  for (let i = 0; i < k && ok; i++) {
    for (let j = 0; j <= i; j++) {
      let s = a[i * k + j]! + (i === j ? ridge : 0);
      for (let q = 0; q < j; q++) s -= l[i * k + q]! * l[j * k + q]!;
      if (i === j) {
        if (!(s > 0)) {
          ok = false;
          break;
        }
        l[i * k + i] = Math.sqrt(s);
      } else {
        l[i * k + j] = s / l[j * k + j]!;
      }
    }
  }
  const x = new Float64Array(k);
  if (ok) {
    const z = new Float64Array(k);
    for (let i = 0; i < k; i++) {
      let s = r[i]!;
      for (let q = 0; q < i; q++) s -= l[i * k + q]! * z[q]!;
      z[i] = s / l[i * k + i]!;
    }
    for (let i = k - 1; i >= 0; i--) {
      let s = z[i]!;
      for (let q = i + 1; q < k; q++) s -= l[q * k + i]! * x[q]!;
      x[i] = s / l[i * k + i]!;
    }
    return x;
  }
  // Gaussian elimination with partial pivoting; a singular direction gets 0.
  const m = Float64Array.from(a);
  const b = Float64Array.from(r);
  const piv = Array.from({ length: k }, (_, i) => i);
  for (let c = 0; c < k; c++) {
    let best = c;
    for (let i = c + 1; i < k; i++) if (Math.abs(m[piv[i]! * k + c]!) > Math.abs(m[piv[best]! * k + c]!)) best = i;
    [piv[c], piv[best]] = [piv[best]!, piv[c]!];
    const pr = piv[c]!;
    const d = m[pr * k + c]!;
    if (Math.abs(d) <= ridge) continue;
    for (let i = c + 1; i < k; i++) {
      const ri = piv[i]!;
      const f = m[ri * k + c]! / d;
      if (f === 0) continue;
      for (let q = c; q < k; q++) m[ri * k + q]! -= f * m[pr * k + q]!;
      b[ri]! -= f * b[pr]!;
    }
  }
  for (let c = k - 1; c >= 0; c--) {
    const pr = piv[c]!;
    const d = m[pr * k + c]!;
    if (Math.abs(d) <= ridge) {
      x[c] = 0;
      continue;
    }
    let s = b[pr]!;
    for (let q = c + 1; q < k; q++) s -= m[pr * k + q]! * x[q]!;
    x[c] = s / d;
  }
  return x;
}

export interface NelderMeadOptions {
  maxEvaluations?: number;
  /** Stop when the simplex's values differ by less than this, relative to the best (as R's optim reltol). */
  tolerance?: number;
  step?: number;
}

/** Nelder-Mead minimisation (reflection 1, expansion 2, contraction ½, shrink ½) from x0. */
export function nelderMead(
  f: (x: Float64Array) => number,
  x0: ArrayLike<number>,
  o: NelderMeadOptions = {},
): { x: Float64Array; value: number; evaluations: number } {
  const d = x0.length;
  const maxEval = o.maxEvaluations ?? 200 * (d + 1);
  const tol = o.tolerance ?? 1e-8;
  const step = o.step ?? 0.5;
  let evaluations = 0;
  const value = (x: Float64Array): number => {
    evaluations++;
    const v = f(x);
    return Number.isFinite(v) ? v : Infinity;
  };
  const pts: Float64Array[] = [Float64Array.from(x0)];
  for (let i = 0; i < d; i++) {
    const p = Float64Array.from(x0);
    p[i]! += step;
    pts.push(p);
  }
  const vals = pts.map(value);
  const order = (): void => {
    const idx = pts.map((_, i) => i).sort((a, b) => vals[a]! - vals[b]! || a - b);
    const p2 = idx.map((i) => pts[i]!);
    const v2 = idx.map((i) => vals[i]!);
    pts.splice(0, pts.length, ...p2);
    vals.splice(0, vals.length, ...v2);
  };
  const along = (c: Float64Array, w: Float64Array, t: number): Float64Array => Float64Array.from(c, (ci, i) => ci + t * (w[i]! - ci));
  order();
  while (evaluations < maxEval) {
    if (Math.abs(vals[d]! - vals[0]!) <= tol * (Math.abs(vals[0]!) + tol)) break;
    const c = new Float64Array(d);
    for (let i = 0; i < d; i++) for (let j = 0; j < d; j++) c[j]! += pts[i]![j]! / d;
    const worst = pts[d]!;
    const xr = along(c, worst, -1);
    const fr = value(xr);
    if (fr < vals[0]!) {
      const xe = along(c, worst, -2);
      const fe = value(xe);
      if (fe < fr) {
        pts[d] = xe;
        vals[d] = fe;
      } else {
        pts[d] = xr;
        vals[d] = fr;
      }
    } else if (fr < vals[d - 1]!) {
      pts[d] = xr;
      vals[d] = fr;
    } else {
      const outside = fr < vals[d]!;
      const xc = along(c, worst, outside ? -0.5 : 0.5);
      const fc = value(xc);
      if (fc < (outside ? fr : vals[d]!)) {
        pts[d] = xc;
        vals[d] = fc;
      } else {
        for (let i = 1; i <= d; i++) {
          pts[i] = along(pts[0]!, pts[i]!, 0.5);
          vals[i] = value(pts[i]!);
        }
      }
    }
    order();
  }
  return { x: pts[0]!, value: vals[0]!, evaluations };
}

export interface FitOptions {
  /**
   * Nelder-Mead starting points for the smoothing parameters. Default: the best `searchStarts` points
   * of a coarse grid over the region (the likelihood has local optima, often at the region's edges).
   */
  starts?: Partial<EtsParams>[];
  /** How many of the grid's best points Nelder-Mead starts from (default 2). */
  searchStarts?: number;
  maxEvaluations?: number;
}

const GRID = {
  alpha: [0.05, 0.2, 0.4, 0.6, 0.8, 0.95],
  /** β as a share of α. */
  beta: [0.01, 0.1, 0.4, 0.8],
  /** γ as a share of 1 - α. */
  gamma: [0.01, 0.1, 0.4],
  phi: [0.82, 0.9, 0.97],
};

function gridStarts(spec: EtsSpec): EtsParams[] {
  const out: EtsParams[] = [];
  for (const alpha of GRID.alpha)
    for (const b of spec.trend !== 'none' ? GRID.beta : [0])
      for (const g of spec.seasonal === 'additive' ? GRID.gamma : [0])
        for (const phi of spec.trend === 'damped' ? GRID.phi : [1]) out.push({ alpha, beta: alpha * b, gamma: (1 - alpha) * g, phi });
  return out;
}

function criteria(spec: EtsSpec, n: number, sse: number): Pick<EtsFit, 'logLik' | 'k' | 'aic' | 'aicc' | 'bic'> {
  const k = parameterCount(spec);
  const logLik = -0.5 * n * (Math.log((2 * Math.PI * Math.max(sse, 1e-300)) / n) + 1);
  const aic = -2 * logLik + 2 * k;
  const aicc = n - k - 1 > 0 ? aic + (2 * k * (k + 1)) / (n - k - 1) : Infinity;
  return { logLik, k, aic, aicc, bic: -2 * logLik + Math.log(n) * k };
}

/** The states and criteria of a model with these smoothing parameters, the initial states fitted (least squares). */
export function fitInitial(y: ArrayLike<number>, spec: EtsSpec, p: EtsParams): EtsFit {
  const ys = Float64Array.from(y);
  const initial = statesOf(spec, bestInitial(ys, spec, p).theta);
  const f = etsFilter(ys, spec, p, initial);
  return { spec, name: modelName(spec), params: p, initial, final: f.final, n: f.n, sse: f.sse, ...criteria(spec, f.n, f.sse) };
}

/**
 * One model fitted by maximum likelihood: Nelder-Mead over the smoothing parameters from each start
 * (the best end kept), the initial states by least squares at every step. The series is standardised
 * for the search (the model is affine-equivariant), and the result mapped back.
 */
export function fitEts(y: ArrayLike<number>, spec: EtsSpec, o: FitOptions = {}): EtsFit {
  if (spec.seasonal === 'additive' && !(Number.isInteger(spec.period) && spec.period >= 2)) {
    throw new RangeError(`fitEts: a seasonal model needs a period of at least 2, got ${spec.period}`);
  }
  const raw = Float64Array.from(y);
  let mean = 0;
  let count = 0;
  for (const v of raw) {
    if (!Number.isFinite(v)) continue;
    mean += v;
    count++;
  }
  if (count === 0) throw new RangeError('fitEts: the series has no observed value');
  mean /= count;
  let sq = 0;
  for (const v of raw) if (Number.isFinite(v)) sq += (v - mean) ** 2;
  const scale = Math.sqrt(sq / count) || 1;
  const ys = Float64Array.from(raw, (v) => (v - mean) / scale);
  const objective = (u: Float64Array): number => {
    const { sse } = bestInitial(ys, spec, paramsOf(spec, u));
    return Math.log(Math.max(sse, 1e-300));
  };
  let starts: number[][];
  if (o.starts) {
    starts = o.starts.map((s) => {
      const start: EtsParams = { alpha: 0.5, beta: 0.05, gamma: 0.05, phi: 0.95, ...s };
      start.beta = Math.min(start.beta, start.alpha * 0.99);
      start.gamma = Math.min(start.gamma, (1 - start.alpha) * 0.99);
      return coordsOf(spec, start);
    });
  } else {
    const scored = gridStarts(spec).map((g, i) => {
      const u = coordsOf(spec, g);
      return { u, value: objective(Float64Array.from(u)), i };
    });
    scored.sort((a, b) => a.value - b.value || a.i - b.i);
    starts = scored.slice(0, o.searchStarts ?? 2).map((s) => s.u);
  }
  let best: { x: Float64Array; value: number } | undefined;
  for (const start of starts) {
    // Nelder-Mead again from where it stopped: a collapsed simplex often stops short of the optimum.
    const first = nelderMead(objective, start, { maxEvaluations: o.maxEvaluations });
    const r = nelderMead(objective, first.x, { maxEvaluations: o.maxEvaluations, step: 0.25 });
    const end = r.value <= first.value ? r : first;
    if (!best || end.value < best.value) best = end;
  }
  const p = paramsOf(spec, best!.x);
  const scaled = statesOf(spec, bestInitial(ys, spec, p).theta);
  const initial: EtsStates = {
    level: scaled.level * scale + mean,
    trend: scaled.trend * scale,
    seasonal: scaled.seasonal.map((s) => s * scale),
  };
  const f = etsFilter(raw, spec, p, initial);
  return { spec, name: modelName(spec), params: p, initial, final: f.final, n: f.n, sse: f.sse, ...criteria(spec, f.n, f.sse) };
}

export interface AutoOptions extends FitOptions {
  period: number;
  trends?: readonly EtsTrend[];
  seasonals?: readonly EtsSeasonal[];
}

/**
 * The candidates autoEts fits for a series of n observations: every trend × seasonal asked for, a
 * seasonal one only with a period of at least 2 and two full periods of data, and only models with at
 * least 4 more observations than parameters.
 */
export function candidateSpecs(n: number, o: AutoOptions): EtsSpec[] {
  const out: EtsSpec[] = [];
  for (const seasonal of o.seasonals ?? ETS_SEASONALS) {
    if (seasonal === 'additive' && (o.period < 2 || n < 2 * o.period)) continue;
    for (const trend of o.trends ?? ETS_TRENDS) {
      const spec: EtsSpec = { trend, seasonal, period: o.period };
      if (n >= parameterCount(spec) + 4) out.push(spec);
    }
  }
  return out;
}

/** Every candidate model fitted; the one with the lowest AICc (the first on ties), or undefined when none fits the series' length. */
export function autoEts(y: ArrayLike<number>, o: AutoOptions): { best: EtsFit | undefined; fits: EtsFit[] } {
  let n = 0;
  for (let i = 0; i < y.length; i++) if (Number.isFinite(y[i])) n++;
  const fits = candidateSpecs(n, o).map((spec) => fitEts(y, spec, o));
  let best: EtsFit | undefined;
  for (const f of fits) if (!best || f.aicc < best.aicc) best = f;
  return { best, fits };
}
