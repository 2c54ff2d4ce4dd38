/** lib/forecast-base.ts: the bases labels are relative to, as a matrix (the ONNX export) and per window (the trainers). */
import { describe, expect, it } from 'vitest';
import { baseMatrix, baseTerms, RELATIVE_TO, seasonIndex, windowBase, windowBases } from '../../lib/forecast-base.js';

/** x [N, L, F] with the target in feature 0 and a second feature that must be ignored. */
function windows(n: number, L: number, f: (i: number, l: number) => number): Float32Array {
  const x = new Float32Array(n * L * 2);
  for (let i = 0; i < n; i++)
    for (let l = 0; l < L; l++) {
      x[(i * L + l) * 2] = f(i, l);
      x[(i * L + l) * 2 + 1] = 1000 + l;
    }
  return x;
}

describe('forecast bases', () => {
  it('seasonalLast forecasts a linear trend plus a seasonal cycle exactly; last and season do not', () => {
    const m = 12;
    const L = 24;
    const H = 18; // past one season: the second season's steps use two seasons back
    const y = (t: number): number => 3 * t + [5, -2, 7, 1, 0, -6, 4, 2, -3, 8, -1, 6][((t % m) + m) % m]!;
    const at = (l: number): number => y(l);
    for (let h = 0; h < H; h++) {
      expect(windowBase('seasonalLast', L, m, h, at)).toBeCloseTo(y(L + h), 10);
    }
    expect(windowBase('season', L, m, 0, at)).toBeCloseTo(y(L) - 3 * m, 10); // a season behind the trend
    expect(windowBase('last', L, m, 0, at)).toBe(y(L - 1));
    expect(windowBase('none', L, m, 0, at)).toBe(0);
  });

  it('the matrix gives the same bases as the per-window code, for every mode and lookback', () => {
    for (const mode of RELATIVE_TO) {
      for (const [L, H, m] of [
        [24, 6, 12],
        [21, 7, 7],
        [13, 18, 12],
        [12, 6, 12], // seasonalLast needs L > m: else the last value
        [5, 3, 12], // shorter than a season: season and seasonalLast fall back to the last value
        [8, 4, 1],
      ] as const) {
        const n = 3;
        const x = windows(n, L, (i, l) => Math.sin(i * 7 + l * 1.3) * 2 + l * 0.1);
        const B = baseMatrix(mode, L, H, m);
        const fromWindows = windowBases(mode, { count: n, lookback: L, horizon: H, season: m, x, inputs: ['y', 'other'] });
        for (let i = 0; i < n; i++)
          for (let h = 0; h < H; h++) {
            let viaMatrix = 0;
            for (let l = 0; l < L; l++) viaMatrix += x[(i * L + l) * 2]! * B[l * H + h]!;
            expect(fromWindows[i * H + h]!).toBeCloseTo(viaMatrix, 5);
          }
      }
    }
  });

  it('falls back to the last value where the lookback is too short or a value is missing', () => {
    expect(baseTerms('season', 5, 12, 0)).toEqual([[4, 1]]);
    expect(baseTerms('seasonalLast', 12, 12, 0)).toEqual([[11, 1]]); // x[t - m] would be before the lookback
    expect(baseTerms('seasonalLast', 13, 12, 0)).toEqual([
      [1, 1],
      [12, 1],
      [0, -1],
    ]);
    expect(baseTerms('seasonalLast', 13, 12, 12)).toEqual([
      [1, 1], // two seasons back, and twice the last season's change
      [12, 2],
      [0, -2],
    ]);
    expect(seasonIndex(24, 12, 11)).toBe(23);
    expect(seasonIndex(24, 12, 12)).toBe(12);
    const at = (l: number): number => (l === 12 ? NaN : l);
    expect(windowBase('season', 24, 12, 0, at)).toBe(23);
    expect(windowBase('seasonalLast', 24, 12, 0, at)).toBe(23);
    expect(windowBase('seasonalLast', 24, 12, 1, at)).toBe(13 + 23 - 11);
  });
});
