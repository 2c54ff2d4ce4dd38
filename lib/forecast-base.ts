/**
 * What a forecaster's labels are relative to (`relativeTo` of train.gbdt-forecast and
 * train.tfjs-sequence): a base computed from each window's own lookback target (scaled units), so
 * the model learns the change from it rather than the level. The forecast is the model's output
 * plus the base. Pure: no I/O.
 *
 * - `none`: the level itself (base 0);
 * - `last`: the last lookback value (a delta target; the naive forecast is the base);
 * - `season`: the value one season before each horizon step (the seasonal naive forecast);
 * - `seasonalLast`: the value a season before plus the change over the last season,
 *   x[t+h-m] + (x[t] - x[t-m]) (the last value plus the change the series had a season earlier over
 *   the same steps): the forecast of the seasonal random walk of twice-differenced series
 *   ((1 - B)(1 - B^m) y = e), which follows a level shift like `last` and keeps the seasonal shape
 *   like `season`. Beyond a season, the value k seasons back plus k such changes. Needs a lookback
 *   longer than the season (else: the last value).
 *
 * Each mode is a linear map of the lookback, base[h] = sum_l x[l] B[l, h] (`baseMatrix`), which is
 * how the ONNX export computes it; `windowBase` is the same with a fallback to the last value where
 * a value it needs is missing (NaN) or before the lookback.
 */

export const RELATIVE_TO = ['none', 'last', 'season', 'seasonalLast'] as const;
export type RelativeTo = (typeof RELATIVE_TO)[number];

/** The lookback index one season (or k seasons) before step h (0-based): L + h - m ceil((h + 1) / m). */
export function seasonIndex(L: number, m: number, h: number): number {
  return L + h - m * Math.ceil((h + 1) / m);
}

/**
 * The lookback indices and signs that make the base of step h (0-based): [index, weight] pairs,
 * falling back to the last value when the lookback is too short for the mode.
 */
export function baseTerms(mode: RelativeTo, L: number, m: number, h: number): [number, number][] {
  if (mode === 'none') return [];
  const last: [number, number][] = [[L - 1, 1]];
  if (mode === 'last') return last;
  const s = seasonIndex(L, m, h);
  if (s < 0) return last;
  if (mode === 'season') return [[s, 1]];
  // seasonalLast: x[s] + k (x[L-1] - x[L-1-m]), s being k seasons before step h.
  const r = L - 1 - m;
  if (r < 0) return last;
  const k = (L + h - s) / m;
  return [
    [s, 1],
    [L - 1, k],
    [r, -k],
  ];
}

/** B [L, H] row-major: base[h] = sum_l x[l] B[l * H + h]. All zero for `none`. */
export function baseMatrix(mode: RelativeTo, L: number, H: number, m: number): Float64Array {
  const out = new Float64Array(L * H);
  for (let h = 0; h < H; h++) for (const [l, w] of baseTerms(mode, L, m, h)) out[l * H + h] = out[l * H + h]! + w;
  return out;
}

/**
 * The base of step h for a window whose lookback target is `at(l)` (l = 0..L-1, scaled units):
 * baseTerms, or the last value when a term is not finite.
 */
export function windowBase(mode: RelativeTo, L: number, m: number, h: number, at: (l: number) => number): number {
  if (mode === 'none') return 0;
  let sum = 0;
  for (const [l, w] of baseTerms(mode, L, m, h)) {
    const v = at(l);
    if (!Number.isFinite(v)) return at(L - 1);
    sum += w * v;
  }
  return sum;
}

/** Bases [N, H] of a window set's lookback target (input 0 of x [N, L, F]). */
export function windowBases(
  mode: RelativeTo,
  w: { count: number; lookback: number; horizon: number; season: number; x: Float32Array; inputs: { length: number } },
): Float32Array {
  const { count: n, lookback: L, horizon: H, season: m } = w;
  const F = w.inputs.length;
  const out = new Float32Array(n * H);
  if (mode === 'none') return out;
  for (let i = 0; i < n; i++) {
    const at = (l: number): number => w.x[(i * L + l) * F]!;
    for (let h = 0; h < H; h++) out[i * H + h] = windowBase(mode, L, m, h, at);
  }
  return out;
}
