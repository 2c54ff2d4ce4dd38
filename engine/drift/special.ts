/**
 * Special functions the drift tests need, accurate to about 1e-14
 * relative where the tests use them: log-gamma, the regularised upper incomplete gamma function
 * (chi-square survival), erfc and the normal CDF, and the two-sample Kolmogorov-Smirnov p-value as
 * scipy's ks_2samp(method='auto') computes it (exact lattice-path count up to 10,000 per side, the
 * one-sample kstwo distribution beyond). Pure.
 */

const LANCZOS_G = 7;
const LANCZOS = [
  0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059, 12.507343278686905,
  -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
];

/** ln Γ(x) for x > 0 (Lanczos, g = 7). */
export function lgamma(x: number): number {
  if (x < 0.5) return Math.log(Math.PI / Math.abs(Math.sin(Math.PI * x))) - lgamma(1 - x);
  const z = x - 1;
  let a = LANCZOS[0]!;
  const t = z + LANCZOS_G + 0.5;
  for (let i = 1; i < LANCZOS.length; i++) a += LANCZOS[i]! / (z + i);
  return 0.5 * Math.log(2 * Math.PI) + (z + 0.5) * Math.log(t) - t + Math.log(a);
}

/** Regularised upper incomplete gamma Q(a, x) = Γ(a, x) / Γ(a). */
export function gammaQ(a: number, x: number): number {
  if (Number.isNaN(a) || Number.isNaN(x) || a <= 0 || x < 0) return NaN;
  if (x === 0) return 1;
  if (x === Infinity) return 0;
  const logPrefix = a * Math.log(x) - x - lgamma(a);
  if (x < a + 1) {
    // Series for P(a, x); Q = 1 - P.
    let term = 1 / a;
    let sum = term;
    for (let n = 1; n < 10_000; n++) {
      term *= x / (a + n);
      sum += term;
      if (Math.abs(term) < Math.abs(sum) * 1e-17) break;
    }
    return 1 - sum * Math.exp(logPrefix);
  }
  // Continued fraction for Q(a, x) (modified Lentz).
  const tiny = 1e-300;
  let b = x + 1 - a;
  let c = 1 / tiny;
  let d = 1 / b;
  let h = d;
  for (let i = 1; i < 10_000; i++) {
    const an = -i * (i - a);
    b += 2;
    d = an * d + b;
    if (Math.abs(d) < tiny) d = tiny;
    c = b + an / c;
    if (Math.abs(c) < tiny) c = tiny;
    d = 1 / d;
    const delta = d * c;
    h *= delta;
    if (Math.abs(delta - 1) < 1e-16) break;
  }
  return Math.exp(logPrefix) * h;
}

/** P(X >= x) for X ~ chi-square(df). df = 0 gives NaN, as scipy does. */
export function chi2Sf(x: number, df: number): number {
  if (!(df > 0)) return NaN;
  if (Number.isNaN(x)) return NaN;
  if (x <= 0) return 1;
  return gammaQ(df / 2, x / 2);
}

/** erfc(x), through Q(1/2, x²) for x >= 0. */
export function erfc(x: number): number {
  if (Number.isNaN(x)) return NaN;
  if (x < 0) return 2 - erfc(-x);
  return gammaQ(0.5, x * x);
}

/** Standard normal CDF, evaluated as scipy's ndtr does (1 - erfc/2 above zero). */
export function normCdf(x: number): number {
  if (Number.isNaN(x)) return NaN;
  const y = 0.5 * erfc(Math.abs(x) / Math.SQRT2);
  return x > 0 ? 1 - y : y;
}

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

/**
 * The probability that a uniformly random monotone lattice path from (0,0) to (m,n) leaves the
 * band |x/m - y/n| < h/lcm(m,n) — the exact two-sided p-value of the two-sample KS statistic
 * D = h/lcm. Computed as 1 - P(inside) directly (Viehmann 2021), which stays in [0, 1]:
 *   B(x,y) = (x B(x-1,y) + y B(x,y-1)) / (x+y) inside the band, 1 outside, B(0,0) = 0.
 * Only the band is visited: O(m * band width).
 */
export function ksExactOutside(m: number, n: number, h: number): number {
  if (m < n) [m, n] = [n, m];
  const g = gcd(m, n);
  const mg = m / g;
  const ng = n / g;
  // (x, y) is inside when |ng*x - mg*y| < h.
  const col = new Float64Array(n + 1).fill(1);
  let prevLo = 0;
  for (let x = 0; x <= m; x++) {
    // y in band: (ng*x - h)/mg < y < (ng*x + h)/mg
    const lo = Math.max(0, Math.floor((ng * x - h) / mg) + 1);
    const hi = Math.min(n, Math.ceil((ng * x + h) / mg) - 1);
    for (let y = prevLo; y < Math.min(lo, n + 1); y++) col[y] = 1; // left the band below
    if (hi < lo) return 1;
    for (let y = lo; y <= hi; y++) {
      if (x === 0 && y === 0) {
        col[0] = 0;
        continue;
      }
      // col[y] still holds B(x-1, y); B(x, y-1) is col[y-1] when inside the band, else 1.
      const below = y > lo ? col[y - 1]! : 1;
      col[y] = (x * col[y]! + y * below) / (x + y);
    }
    prevLo = lo;
  }
  return col[n]!;
}

/** One-sided Smirnov survival P(D_n^+ >= d), exact (Birnbaum-Tingey), summed in log space. */
export function smirnovSf(n: number, d: number): number {
  if (d <= 0) return 1;
  if (d >= 1) return 0;
  const jmax = Math.floor(n * (1 - d));
  let sum = 0;
  const lgn1 = lgamma(n + 1);
  for (let j = 0; j <= jmax; j++) {
    const a = d + j / n;
    if (n - j === 0) {
      sum += Math.exp((j - 1) * Math.log(a));
      continue;
    }
    if (a >= 1) continue;
    const logTerm = lgn1 - lgamma(j + 1) - lgamma(n - j + 1) + (n - j) * Math.log1p(-a) + (j - 1) * Math.log(a);
    sum += Math.exp(logTerm);
  }
  return d * sum;
}

/**
 * CDF of the one-sample two-sided statistic D_n (Marsaglia, Tsang & Wang 2003): P(D_n < d) from
 * the n-th power of a (2k-1)² matrix, with exponent tracking against overflow.
 */
export function kolmogorovCdfMTW(n: number, d: number): number {
  const k = Math.floor(n * d) + 1;
  const m = 2 * k - 1;
  const h = k - n * d;
  const H = new Float64Array(m * m);
  for (let i = 0; i < m; i++) for (let j = 0; j < m; j++) H[i * m + j] = i - j + 1 < 0 ? 0 : 1;
  for (let i = 0; i < m; i++) {
    H[i * m]! -= h ** (i + 1);
    H[(m - 1) * m + i]! -= h ** (m - i);
  }
  H[(m - 1) * m]! += 2 * h - 1 > 0 ? (2 * h - 1) ** m : 0;
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < m; j++) {
      if (i - j + 1 > 0) for (let g = 1; g <= i - j + 1; g++) H[i * m + j]! /= g;
    }
  }
  const mul = (A: Float64Array, B: Float64Array): Float64Array => {
    const C = new Float64Array(m * m);
    for (let i = 0; i < m; i++) {
      for (let l = 0; l < m; l++) {
        const a = A[i * m + l]!;
        if (a === 0) continue;
        for (let j = 0; j < m; j++) C[i * m + j]! += a * B[l * m + j]!;
      }
    }
    return C;
  };
  // Power by squaring with exponents kept apart.
  const power = (A: Float64Array, e: number, p: number): { M: Float64Array; exp: number } => {
    if (p === 1) return { M: A, exp: e };
    const half = power(A, e, Math.floor(p / 2));
    let M = mul(half.M, half.M);
    let exp = 2 * half.exp;
    if (p % 2 === 1) {
      M = mul(A, M);
      exp += e;
    }
    if (M[(k - 1) * m + (k - 1)]! > 1e140) {
      for (let i = 0; i < m * m; i++) M[i]! *= 1e-140;
      exp += 140;
    }
    return { M, exp };
  };
  const { M, exp } = power(H, 0, n);
  let sv = M[(k - 1) * m + (k - 1)]!;
  let ev = exp;
  for (let i = 1; i <= n; i++) {
    sv = (sv * i) / n;
    if (sv < 1e-140) {
      sv *= 1e140;
      ev -= 140;
    }
  }
  return sv * 10 ** ev;
}

/** P(D_n >= d) for the one-sample two-sided statistic (scipy's kstwo.sf), for the sizes drift needs. */
export function kstwoSf(d: number, n: number): number {
  if (d >= 1) return 0;
  if (d <= 0) return 1;
  const t = n * d;
  if (t <= 1) {
    if (t <= 0.5) return 1;
    // Ruben-Gambino: P(D_n < d) = n! (2d - 1/n)^n ... for 1/2n <= d <= 1/n
    let cdf = 1;
    const base = 2 * d - 1 / n;
    for (let i = 1; i <= n; i++) cdf *= i * base;
    return 1 - cdf;
  }
  if (t >= n - 1) return Math.min(1, 2 * (1 - d) ** n);
  if (d >= 0.5) return Math.min(1, 2 * smirnovSf(n, d));
  const nx2 = n * d * d;
  if (nx2 >= 370) return 0;
  if (nx2 >= 2.2 || (n <= 140 && nx2 > 4)) return Math.min(1, 2 * smirnovSf(n, d));
  return Math.min(1, Math.max(0, 1 - kolmogorovCdfMTW(n, d)));
}

/**
 * A sample as a frequency table: its distinct values in ascending order and how often each occurs
 * (`n`, the sum of the counts, is the sample's size). Every drift test on numbers needs only this,
 * and a column of a million values usually has far fewer distinct ones.
 */
export interface Freq {
  values: Float64Array;
  counts: Float64Array;
  n: number;
}

/** The frequency table of a sorted array: runs of equal values (=== , so -0 and 0 are one value). */
export function freqOfSorted(sorted: Float64Array): Freq {
  let k = 0;
  for (let i = 0; i < sorted.length; i++) if (i === 0 || sorted[i] !== sorted[i - 1]) k++;
  const values = new Float64Array(k);
  const counts = new Float64Array(k);
  let at = -1;
  for (let i = 0; i < sorted.length; i++) {
    if (i === 0 || sorted[i] !== sorted[i - 1]) values[++at] = sorted[i]!;
    counts[at]!++;
  }
  return { values, counts, n: sorted.length };
}

/** ks_2samp's p-value for the statistic `d` between samples of n1 and n2 values. */
function ksResult(d: number, n1: number, n2: number): { statistic: number; pValue: number } {
  if (Math.max(n1, n2) <= 10_000) {
    const g = gcd(n1, n2);
    const lcm = (n1 / g) * n2;
    const h = Math.round(d * lcm);
    const dr = h / lcm;
    if (h === 0) return { statistic: dr, pValue: 1 };
    const p = ksExactOutside(n1, n2, h);
    if (p >= 0 && p <= 1) return { statistic: dr, pValue: p };
  }
  const [m, n] = n1 >= n2 ? [n1, n2] : [n2, n1];
  const en = (m * n) / (m + n);
  return { statistic: d, pValue: Math.min(1, Math.max(0, kstwoSf(d, Math.round(en)))) };
}

/**
 * Two-sided two-sample KS test on sorted, NaN-free samples, as scipy's ks_2samp(method='auto'):
 * D over the pooled values (right-continuous ECDFs); exact p-value when both samples have at most
 * 10,000 values (D rounded to h/lcm first), else kstwo.sf(D, round(n1 n2 / (n1 + n2))).
 */
export function ks2Samp(a: Float64Array, b: Float64Array): { statistic: number; pValue: number } {
  if (!a.length || !b.length) throw new Error('ks_2samp needs two non-empty samples');
  return ks2SampFreq(freqOfSorted(a), freqOfSorted(b));
}

/** ks2Samp of two samples given as frequency tables (the same D, the same p-value). */
export function ks2SampFreq(a: Freq, b: Freq): { statistic: number; pValue: number } {
  const n1 = a.n;
  const n2 = b.n;
  if (!n1 || !n2) throw new Error('ks_2samp needs two non-empty samples');
  // Walk both tables; at each distinct value both ECDFs include every copy of it.
  const u = a.values;
  const v = b.values;
  let i = 0;
  let j = 0;
  let ci = 0;
  let cj = 0;
  let d = 0;
  while (i < u.length || j < v.length) {
    const x = i < u.length ? (j < v.length ? Math.min(u[i]!, v[j]!) : u[i]!) : v[j]!;
    if (i < u.length && u[i] === x) ci += a.counts[i++]!;
    if (j < v.length && v[j] === x) cj += b.counts[j++]!;
    const diff = Math.abs(ci / n1 - cj / n2);
    if (diff > d) d = diff;
  }
  return ksResult(d, n1, n2);
}

/**
 * Ascending sort of finite-or-infinite float64 values (no NaN), as an LSD radix sort on the IEEE
 * bit patterns (sign-flipped so unsigned order is numeric order): four 16-bit passes, about 1.7x
 * faster than TypedArray.prototype.sort on a million values. Returns a new array.
 */
export function sortFloat64(src: Float64Array): Float64Array {
  const n = src.length;
  if (n < 2048) return src.slice().sort();
  let from = new Uint32Array(src.slice().buffer);
  let to = new Uint32Array(2 * n);
  for (let i = 0; i < n; i++) {
    const hi = from[2 * i + 1]!;
    if (hi & 0x80000000) {
      from[2 * i + 1] = ~hi;
      from[2 * i] = ~from[2 * i]!;
    } else from[2 * i + 1] = (hi | 0x80000000) >>> 0;
  }
  const counts = new Uint32Array(65536);
  for (let pass = 0; pass < 4; pass++) {
    const word = pass >> 1;
    const shift = (pass & 1) * 16;
    counts.fill(0);
    for (let i = 0; i < n; i++) counts[(from[2 * i + word]! >>> shift) & 0xffff]!++;
    let sum = 0;
    for (let k = 0; k < 65536; k++) {
      const c = counts[k]!;
      counts[k] = sum;
      sum += c;
    }
    for (let i = 0; i < n; i++) {
      const d = counts[(from[2 * i + word]! >>> shift) & 0xffff]!++;
      to[2 * d] = from[2 * i]!;
      to[2 * d + 1] = from[2 * i + 1]!;
    }
    [from, to] = [to, from];
  }
  for (let i = 0; i < n; i++) {
    const hi = from[2 * i + 1]!;
    if (hi & 0x80000000) from[2 * i + 1] = hi & 0x7fffffff;
    else {
      from[2 * i + 1] = ~hi;
      from[2 * i] = ~from[2 * i]!;
    }
  }
  return new Float64Array(from.buffer);
}
