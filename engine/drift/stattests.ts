/**
 * Evidently's drift tests (legacy 0.4.x numerics, unchanged through 0.7), on prepared columns:
 * numeric columns as cleaned frequency tables (distinct values ascending, with counts); categories (and numeric columns treated by
 * value) as counts over a key list. Each returns the score; `drifted` applies the test's
 * comparison to a threshold. Pure.
 */
import { chi2Sf, ks2SampFreq, normCdf, type Freq } from './special.js';
import { densities, histogramCounts, sturgesEdges } from './histogram.js';

export type ColumnType = 'num' | 'cat';
export type StatTestName = 'ks' | 'chisquare' | 'z' | 'wasserstein' | 'jensenshannon' | 'psi' | 'kl_div' | 'hellinger';

/** A column's values by key: counts per key in reference and current (same order). */
export interface KeyCounts {
  keys: (number | string)[];
  ref: Float64Array;
  cur: Float64Array;
  nRef: number;
  nCur: number;
}

/** One column of both datasets, cleaned as Evidently cleans it. */
export interface PreparedColumn {
  name: string;
  type: ColumnType;
  /** num: the cleaned values (NaN dropped, and infinities beside a NaN) as a frequency table. */
  ref?: Freq;
  cur?: Freq;
  /**
   * num: the same, as numpy computes with them (float64): for 64-bit integers beyond 2^53, rounded
   * to doubles (Wasserstein, histograms); `ref` keeps them exact for order and counts (K-S,
   * tests by value), as pandas and scipy do. Absent: the same tables.
   */
  refFloat?: Freq;
  curFloat?: Freq;
  /** Counts by value (always for cat; built on demand for num). */
  counts: () => KeyCounts;
  nRef: number;
  nCur: number;
  /** Distinct values in reference, and in reference and current together. */
  refUnique: number;
  unionUnique: number;
  /** cat: True/False on both sides (keys 'True' and 'False', reported as booleans). */
  boolean?: boolean;
  /** num: the values are (original - offset) * scale (64-bit integers rebased, huge values scaled). */
  original?: { scale: number; offset: number };
}

export interface StatTest {
  name: StatTestName;
  displayName: string;
  defaultThreshold: number;
  /** Column types a user may choose the test for (the default selection may use it more widely). */
  allowed: ColumnType[];
  /** true when the score means drift at this threshold. */
  drifted(score: number, threshold: number): boolean;
  score(c: PreparedColumn): number;
}

const pDrift = (strict: boolean) => (p: number, t: number) => (strict ? p < t : p <= t);
const distDrift = (d: number, t: number): boolean => d >= t;

/** Shares per key, as get_binned_data computes them (histogram bins for numeric columns with > 20 reference values). */
function binned(c: PreparedColumn, fillZeroes: boolean): [Float64Array, Float64Array] {
  let r: Float64Array;
  let q: Float64Array;
  if (c.type === 'num' && c.refUnique > 20) {
    const ref = c.refFloat ?? c.ref!;
    const cur = c.curFloat ?? c.cur!;
    const min = Math.min(ref.values[0]!, cur.values[0]!);
    const max = Math.max(ref.values[ref.values.length - 1]!, cur.values[cur.values.length - 1]!);
    const edges = sturgesEdges(min, max, ref.n + cur.n);
    r = histogramCounts(ref, edges).map((x) => x / ref.n);
    q = histogramCounts(cur, edges).map((x) => x / cur.n);
  } else {
    const k = c.counts();
    r = k.ref.map((x) => x / k.nRef);
    q = k.cur.map((x) => x / k.nCur);
  }
  if (fillZeroes) {
    for (const a of [r, q]) {
      let min = Infinity;
      for (const v of a) if (v !== 0 && v < min) min = v;
      const fill = min <= 0.0001 ? min / 1e6 : 0.0001;
      for (let i = 0; i < a.length; i++) if (a[i] === 0) a[i] = fill;
    }
  }
  return [r, q];
}

function relEntr(x: number, y: number): number {
  if (x > 0 && y > 0) return x * Math.log(x / y);
  if (x === 0 && y >= 0) return 0;
  return Infinity;
}

function normalised(a: Float64Array): Float64Array {
  let s = 0;
  for (const v of a) s += v;
  return a.map((v) => v / s);
}

/**
 * Population standard deviation (numpy's np.std, ddof 0) of a frequency table: the mean from a
 * compensated (Neumaier) sum of value x count, then the sum of squared deviations x count.
 */
export function populationStd(f: Freq): number {
  if (f.n <= 1) return 0;
  let sum = 0;
  let correction = 0;
  for (let k = 0; k < f.values.length; k++) {
    const x = f.values[k]! * f.counts[k]!;
    const t = sum + x;
    correction += Math.abs(sum) >= Math.abs(x) ? sum - t + x : x - t + sum;
    sum = t;
  }
  const mean = (sum + correction) / f.n;
  let sq = 0;
  for (let k = 0; k < f.values.length; k++) {
    const d = f.values[k]! - mean;
    sq += d * d * f.counts[k]!;
  }
  return Math.sqrt(sq / f.n);
}

/** scipy.stats.wasserstein_distance of two samples (frequency tables): the integral of |F_u - F_v|. */
export function wasserstein(a: Freq, b: Freq): number {
  const u = a.values;
  const v = b.values;
  let i = 0;
  let j = 0;
  let ci = 0;
  let cj = 0;
  let prev = Math.min(u[0]!, v[0]!);
  let total = 0;
  while (i < u.length || j < v.length) {
    const x = i < u.length ? (j < v.length ? Math.min(u[i]!, v[j]!) : u[i]!) : v[j]!;
    total += Math.abs(ci / a.n - cj / b.n) * (x - prev);
    if (i < u.length && u[i] === x) ci += a.counts[i++]!;
    if (j < v.length && v[j] === x) cj += b.counts[j++]!;
    prev = x;
  }
  return total;
}

export const STAT_TESTS: Record<StatTestName, StatTest> = {
  ks: {
    name: 'ks',
    allowed: ['num'],
    displayName: 'K-S p_value',
    defaultThreshold: 0.05,
    drifted: pDrift(false),
    score: (c) => (c.type === 'num' ? ks2SampFreq(c.ref!, c.cur!).pValue : NaN),
  },
  chisquare: {
    name: 'chisquare',
    allowed: ['cat'],
    displayName: 'chi-square p_value',
    defaultThreshold: 0.05,
    drifted: pDrift(true),
    score: (c) => {
      const k = c.counts();
      const norm = k.nCur / k.nRef;
      let stat = 0;
      for (let i = 0; i < k.keys.length; i++) {
        const e = k.ref[i]! * norm;
        const o = k.cur[i]!;
        stat += e === 0 ? (o === 0 ? NaN : Infinity) : ((o - e) * (o - e)) / e;
      }
      if (stat === Infinity) return 0;
      return chi2Sf(stat, k.keys.length - 1);
    },
  },
  z: {
    name: 'z',
    allowed: ['cat'],
    displayName: 'Z-test p_value',
    defaultThreshold: 0.05,
    drifted: pDrift(true),
    score: (c) => {
      const k = c.counts();
      const refKeys = k.keys.filter((_, i) => k.ref[i]! > 0);
      const curKeys = k.keys.filter((_, i) => k.cur[i]! > 0);
      if (refKeys.length === 1 && curKeys.length === 1 && refKeys[0] === curKeys[0]) return 1;
      const order = k.keys.map((key, i) => ({ key, i })).sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
      const first = order[0]!.i;
      const p1 = (k.nRef - k.ref[first]!) / k.nRef;
      const p2 = (k.nCur - k.cur[first]!) / k.nCur;
      const P = (p1 * k.nRef + p2 * k.nCur) / (k.nRef + k.nCur);
      const z = (p1 - p2) / Math.sqrt(P * (1 - P) * (1 / k.nRef + 1 / k.nCur));
      return 2 * (1 - normCdf(Math.abs(z)));
    },
  },
  wasserstein: {
    name: 'wasserstein',
    allowed: ['num'],
    displayName: 'Wasserstein distance (normed)',
    defaultThreshold: 0.1,
    drifted: distDrift,
    score: (c) => {
      if (c.type !== 'num') return NaN;
      const ref = c.refFloat ?? c.ref!;
      return wasserstein(ref, c.curFloat ?? c.cur!) / Math.max(populationStd(ref), 0.001);
    },
  },
  jensenshannon: {
    name: 'jensenshannon',
    allowed: ['cat', 'num'],
    displayName: 'Jensen-Shannon distance',
    defaultThreshold: 0.1,
    drifted: distDrift,
    score: (c) => {
      const [r0, q0] = binned(c, false);
      const r = normalised(r0);
      const q = normalised(q0);
      let js = 0;
      for (let i = 0; i < r.length; i++) {
        const m = (r[i]! + q[i]!) / 2;
        js += relEntr(r[i]!, m) + relEntr(q[i]!, m);
      }
      return Math.sqrt(js / 2);
    },
  },
  psi: {
    name: 'psi',
    allowed: ['cat', 'num'],
    displayName: 'PSI',
    defaultThreshold: 0.1,
    drifted: distDrift,
    score: (c) => {
      const [r, q] = binned(c, true);
      let psi = 0;
      for (let i = 0; i < r.length; i++) psi += (r[i]! - q[i]!) * Math.log(r[i]! / q[i]!);
      return psi;
    },
  },
  kl_div: {
    name: 'kl_div',
    allowed: ['cat', 'num'],
    displayName: 'Kullback-Leibler divergence',
    defaultThreshold: 0.1,
    drifted: distDrift,
    score: (c) => {
      const [r0, q0] = binned(c, true);
      const r = normalised(r0);
      const q = normalised(q0);
      let kl = 0;
      for (let i = 0; i < r.length; i++) kl += relEntr(r[i]!, q[i]!);
      return kl;
    },
  },
  hellinger: {
    name: 'hellinger',
    allowed: ['cat', 'num'],
    displayName: 'Hellinger distance',
    defaultThreshold: 0.1,
    drifted: distDrift,
    score: (c) => {
      let bc = 0;
      if (c.type === 'cat') {
        const k = c.counts();
        for (let i = 0; i < k.keys.length; i++) bc += Math.sqrt((k.ref[i]! / k.nRef) * (k.cur[i]! / k.nCur));
      } else {
        const keys = c.counts().keys as number[];
        const ref = c.refFloat ?? c.ref!;
        const cur = c.curFloat ?? c.cur!;
        const min = Math.min(ref.values[0]!, cur.values[0]!);
        const max = Math.max(ref.values[ref.values.length - 1]!, cur.values[cur.values.length - 1]!);
        const edges = sturgesEdges(min, max, keys.length);
        const width = (edges[edges.length - 1]! - edges[0]!) / (edges.length - 1);
        const h1 = densities(ref, edges);
        const h2 = densities(cur, edges);
        for (let i = 0; i < h1.length; i++) bc += Math.sqrt(h1[i]! * h2[i]!) * width;
      }
      return Math.sqrt(1 - Math.min(1, Math.max(0, bc)));
    },
  },
};

/** Evidently's default test for a column (registry `_get_default_stattest`). */
export function defaultStatTest(c: PreparedColumn): StatTest {
  const n = c.unionUnique;
  if (c.nRef <= 1000) {
    if (c.type === 'num') return n > 5 ? STAT_TESTS.ks : n > 2 ? STAT_TESTS.chisquare : STAT_TESTS.z;
    return n > 2 ? STAT_TESTS.chisquare : STAT_TESTS.z;
  }
  if (c.type === 'num') return n > 5 ? STAT_TESTS.wasserstein : STAT_TESTS.jensenshannon;
  return STAT_TESTS.jensenshannon;
}
