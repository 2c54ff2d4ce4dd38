/**
 * computeDriftParallel (columns tested in worker threads) gives computeDrift's result exactly, and
 * the error computeDrift would throw (the first failing column's, as a PipelineError).
 */
import { describe, expect, it } from 'vitest';
import { computeDrift, type ColumnValues, type Dataset } from '../../engine/drift/index.js';
import { PipelineError } from '../../engine/errors.js';
import { computeDriftParallel } from '../../lib/drift-parallel.js';

const ROWS = 120_000; // 2 sides x 20 columns x 120,000 rows: above the size where workers start

function dataset(seed: number, shift: number, broken = false): Dataset {
  let s = seed;
  const next = (): number => (s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const columns: Record<string, ColumnValues> = {};
  for (let c = 0; c < 16; c++) {
    const values = Float64Array.from({ length: ROWS }, () => Math.round((next() + (c % 3 === 0 ? shift : 0)) * 1000) / 1000);
    // A column holding +inf and no NaN has no defined drift: an error, on whichever thread tests it.
    if (broken && (c === 5 || c === 11)) values[7] = Infinity;
    columns[`n${c}`] = { type: 'num', values };
  }
  for (let c = 0; c < 4; c++) {
    columns[`c${c}`] = {
      type: 'cat',
      codes: Int32Array.from({ length: ROWS }, () => Math.floor(next() * (3 + c))),
      labels: ['a', 'b', 'c', 'd', 'e', 'f'],
    };
  }
  return { rows: ROWS, columns };
}

describe('computeDriftParallel', () => {
  it('equals computeDrift column for column', async () => {
    const expected = computeDrift(dataset(1, 0), dataset(2, 0.2));
    const got = await computeDriftParallel(dataset(1, 0), dataset(2, 0.2), {}, 3);
    expect(got).toEqual(expected);
    expect(got.numberOfDriftedColumns).toBeGreaterThan(0);
  });

  it("throws the first failing column's error, as computeDrift does", async () => {
    const sequential = (() => {
      try {
        computeDrift(dataset(1, 0, true), dataset(2, 0));
      } catch (e) {
        return e as PipelineError;
      }
      throw new Error('expected a failure');
    })();
    const e = await computeDriftParallel(dataset(1, 0, true), dataset(2, 0), {}, 3).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(PipelineError);
    expect((e as PipelineError).code).toBe('DATA_INVALID');
    expect((e as PipelineError).message).toBe(sequential.message);
    expect((e as PipelineError).message).toContain("Column 'n5'");
  });
});
