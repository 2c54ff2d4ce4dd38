import { describe, expect, it } from 'vitest';
import { chi2Sf, erfc, gammaQ, ks2Samp, kstwoSf, lgamma, normCdf } from '../../engine/drift/special.js';

const close = (a: number, b: number, rel = 1e-12): void => {
  expect(Math.abs(a - b) / Math.max(Math.abs(b), 1e-300)).toBeLessThan(rel);
};

describe('special functions (values from scipy 1.17)', () => {
  it('lgamma, gammaQ, chi2Sf, erfc, normCdf', () => {
    close(lgamma(0.5), 0.5723649429247001);
    close(lgamma(100), 359.1342053695754);
    close(chi2Sf(3.1746031746031744, 5), 0.6730876006966301, 1e-12);
    close(chi2Sf(30, 3), 1.3800570312932553e-6, 1e-12);
    close(chi2Sf(500, 10), 4.4147360999137545e-101, 1e-10);
    close(gammaQ(2.5, 1), 0.8491450360846096, 1e-12);
    close(erfc(3), 2.2090496998585445e-5, 1e-12);
    close(normCdf(-5), 2.866515718791933e-7, 1e-12);
    close(2 * (1 - normCdf(0.4409585518440984)), 0.6592430036926307, 1e-12);
  });

  it('ks_2samp exact: the worked example and unequal sizes', () => {
    const a = Float64Array.from([38.7, 41.5, 43.8, 44.5, 45.5, 46.0, 47.7, 58.0]);
    const b = Float64Array.from([39.2, 39.3, 39.7, 41.4, 41.8, 42.9, 43.3, 45.8]);
    const r = ks2Samp(a, b);
    close(r.statistic, 0.625);
    expect(Math.abs(r.pValue - 0.08702408702408701)).toBeLessThan(1e-12);
    // ks_2samp(arange(10), 0.5 + 2 * arange(8)) -> D 0.4, p 0.39174550939256825
    const c = Float64Array.from({ length: 10 }, (_, i) => i);
    const d = Float64Array.from({ length: 8 }, (_, i) => 0.5 + 2 * i);
    const r2 = ks2Samp(c, d);
    close(r2.statistic, 0.4);
    expect(Math.abs(r2.pValue - 0.39174550939256825)).toBeLessThan(1e-12);
  });

  it('kstwo.sf', () => {
    close(kstwoSf(0.1, 100), 0.2526927570063874, 1e-9);
    close(kstwoSf(0.05, 500), 0.15866260223815387, 1e-6);
    close(kstwoSf(0.3, 50), 0.00017353260202718738, 1e-9);
  });
});
