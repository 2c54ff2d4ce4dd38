/**
 * The served form of an ETS model (lib/ets-served.ts): for random parameters of every trend and
 * season form and both initial-state estimates, the H×L matrix times a window equals the recursion
 * run on that window (lib/ets.ts's etsFilter / fitInitial, etsForecast); the forecast is affine in
 * the window (rows sum to 1: a constant added to the window is added to the forecast); a window
 * shorter than the form needs is refused.
 */
import { describe, expect, it } from 'vitest';
import { ETS_SEASONALS, ETS_TRENDS, type EtsParams, type EtsSpec } from '../../lib/ets.js';
import {
  applyEtsMatrix,
  parseEtsModel,
  SERVED_ETS_INITS,
  servedEtsForecast,
  servedEtsMatrix,
  servedEtsMinimumLookback,
} from '../../lib/ets-served.js';
import { prng } from '../../engine/random.js';

const rng = prng;

function randomParams(r: () => number, spec: EtsSpec): EtsParams {
  const alpha = 0.05 + 0.9 * r();
  return {
    alpha,
    beta: spec.trend === 'none' ? 0 : alpha * (0.01 + 0.9 * r()),
    gamma: spec.seasonal === 'none' ? 0 : (1 - alpha) * (0.01 + 0.9 * r()),
    phi: spec.trend === 'damped' ? 0.8 + 0.18 * r() : 1,
  };
}

/** A seasonal series with a trend and noise (target-like magnitudes). */
function series(r: () => number, n: number, m: number): Float64Array {
  const level = 500 + 1000 * r();
  return Float64Array.from({ length: n }, (_, t) => level + 3 * t + 80 * Math.sin((2 * Math.PI * t) / m) + 40 * (r() - 0.5));
}

describe('the served ETS form', () => {
  const r = rng(11);
  for (const trend of ETS_TRENDS)
    for (const seasonal of ETS_SEASONALS)
      for (const init of SERVED_ETS_INITS) {
        it(`ETS(A, ${trend}, ${seasonal}), ${init} states: M·y equals the recursion on random parameters and windows`, () => {
          for (let k = 0; k < 5; k++) {
            const m = 4 + Math.floor(r() * 9); // 4..12
            const spec: EtsSpec = { trend, seasonal, period: m };
            const L = servedEtsMinimumLookback(spec) + Math.floor(r() * 14);
            const H = 1 + Math.floor(r() * 8);
            const model = { spec, params: randomParams(r, spec) };
            const M = servedEtsMatrix(model, L, H, init);
            expect(M.length).toBe(H * L);
            for (let w = 0; w < 4; w++) {
              const y = series(r, L, m);
              const viaMatrix = applyEtsMatrix(M, y, H);
              const viaRecursion = servedEtsForecast(y, model, H, init);
              for (let h = 0; h < H; h++)
                expect(Math.abs(viaMatrix[h]! - viaRecursion[h]!)).toBeLessThan(1e-7 * (1 + Math.abs(viaRecursion[h]!)));
              // Affine: a constant added to the window is added to every forecast.
              const shifted = servedEtsForecast(
                y.map((v) => v + 250),
                model,
                H,
                init,
              );
              for (let h = 0; h < H; h++) expect(shifted[h]! - viaRecursion[h]!).toBeCloseTo(250, 5);
            }
            for (let h = 0; h < H; h++) expect(M.slice(h * L, (h + 1) * L).reduce((a, b) => a + b, 0)).toBeCloseTo(1, 8);
          }
        });
      }

  it('the two initial-state estimates differ, and a seasonal form follows the season', () => {
    const spec: EtsSpec = { trend: 'damped', seasonal: 'additive', period: 12 };
    const model = { spec, params: { alpha: 0.3, beta: 0.05, gamma: 0.2, phi: 0.9 } };
    const y = Float64Array.from({ length: 36 }, (_, t) => 1000 + 100 * Math.sin((2 * Math.PI * t) / 12));
    const ls = servedEtsForecast(y, model, 12, 'least-squares');
    const classical = servedEtsForecast(y, model, 12, 'classical');
    // An exact seasonal pattern: the least-squares states reproduce it (zero errors), so the forecast is the next season.
    for (let h = 0; h < 12; h++) expect(ls[h]!).toBeCloseTo(1000 + 100 * Math.sin((2 * Math.PI * (36 + h)) / 12), 6);
    expect(Math.max(...classical.map((v, h) => Math.abs(v - ls[h]!)))).toBeGreaterThan(0);
  });

  it('a series without a fit repeats its last value', () => {
    const M = servedEtsMatrix(null, 5, 3, 'least-squares');
    expect(Array.from(applyEtsMatrix(M, [1, 2, 3, 4, 7], 3))).toEqual([7, 7, 7]);
    expect(Array.from(servedEtsForecast([1, 2, 3, 4, 7], null, 3, 'classical'))).toEqual([7, 7, 7]);
  });

  it('refuses a window shorter than two seasons for a seasonal form, and a malformed model document', () => {
    const spec: EtsSpec = { trend: 'none', seasonal: 'additive', period: 12 };
    expect(() => servedEtsMatrix({ spec, params: { alpha: 0.2, beta: 0, gamma: 0.1, phi: 1 } }, 13, 6, 'least-squares')).toThrow(
      /at least 24 values; the lookback is 13/,
    );
    expect(() => parseEtsModel({ format: 'mlpipe.ets/1', horizon: 6, series: { a: { spec, params: { alpha: 2 } } } }, 'x')).toThrow(
      /not a valid train.ets model \(series 'a' parameters\)/,
    );
  });
});
