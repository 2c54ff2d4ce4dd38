/** lib/windows.ts: window sets and forecasts survive a round trip; hostile blobs are refused with DATA_INVALID. */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  decodeForecasts,
  decodeWindows,
  encodeForecasts,
  encodeWindows,
  parseWindowState,
  scaleTarget,
  unscaleTarget,
  type WindowSet,
  type WindowState,
} from '../../lib/windows.js';

function sample(): WindowSet {
  const n = 3;
  const l = 4;
  const h = 2;
  const f = 2;
  const g = 1;
  return {
    lookback: l,
    horizon: h,
    count: n,
    inputs: ['target', 'month_sin'],
    future: ['month_sin'],
    season: 12,
    seriesIds: ['a', 'b "quoted"', 'ünï'],
    x: Float32Array.from({ length: n * l * f }, (_, i) => i * 0.5 - 3),
    xf: Float32Array.from({ length: n * h * g }, (_, i) => -i),
    y: Float32Array.from([1, 2, Number.NaN, 4, 5, 6]),
    series: Int32Array.from([0, 2, 1]),
    origin: Float64Array.from([Date.UTC(2020, 0, 1), Date.UTC(2020, 1, 1), Date.UTC(2021, 5, 1)]),
  };
}

function expectDataInvalid(fn: () => unknown, message: RegExp): void {
  try {
    fn();
  } catch (e) {
    expect((e as { code?: string }).code).toBe('DATA_INVALID');
    expect((e as Error).message).toMatch(message);
    return;
  }
  throw new Error('expected a DATA_INVALID error');
}

describe('window sets', () => {
  it('round-trip every block and the header, NaN included, with 8-byte aligned blocks', () => {
    const set = sample();
    const buf = encodeWindows(set);
    expect(buf.length % 8).toBe(0);
    const back = decodeWindows(buf);
    expect(back.lookback).toBe(4);
    expect(back.horizon).toBe(2);
    expect(back.count).toBe(3);
    expect(back.inputs).toEqual(set.inputs);
    expect(back.future).toEqual(set.future);
    expect(back.season).toBe(12);
    expect(back.seriesIds).toEqual(set.seriesIds);
    expect(Array.from(back.x)).toEqual(Array.from(set.x));
    expect(Array.from(back.xf)).toEqual(Array.from(set.xf));
    expect(Array.from(back.y)).toEqual(Array.from(set.y));
    expect(Array.from(back.series)).toEqual([0, 2, 1]);
    expect(Array.from(back.origin)).toEqual(Array.from(set.origin));
    // Decoding works from an unaligned view too (a Buffer slice of a larger one).
    const shifted = Buffer.concat([Buffer.from([9]), buf]).subarray(1);
    expect(Array.from(decodeWindows(shifted).y)).toEqual(Array.from(set.y));
  });

  it('round-trip an empty set and one without future features', () => {
    const empty: WindowSet = {
      ...sample(),
      count: 0,
      future: [],
      x: new Float32Array(0),
      xf: new Float32Array(0),
      y: new Float32Array(0),
      series: new Int32Array(0),
      origin: new Float64Array(0),
    };
    expect(decodeWindows(encodeWindows(empty)).count).toBe(0);
  });

  it('refuse wrong shapes when encoding', () => {
    expect(() => encodeWindows({ ...sample(), y: new Float32Array(5) })).toThrow(/'y' has 5 values/);
  });

  it('refuse hostile blobs with a clear DATA_INVALID', () => {
    const buf = encodeWindows(sample());
    expectDataInvalid(() => decodeWindows(Buffer.from('nope')), /does not start with 'MLPW'/);
    expectDataInvalid(
      () => decodeWindows(encodeForecasts({ count: 0, horizon: 1, windows: 'a'.repeat(64), values: new Float32Array(0) })),
      /MLPW/,
    );
    // A header length beyond the blob.
    const long = Buffer.from(buf);
    long.writeUInt32LE(0xffffffff, 4);
    expectDataInvalid(() => decodeWindows(long), /header claims/);
    // A truncated blob.
    expectDataInvalid(() => decodeWindows(buf.subarray(0, buf.length - 8)), /the blob has/);
    // Trailing bytes.
    expectDataInvalid(() => decodeWindows(Buffer.concat([buf, Buffer.alloc(8)])), /the blob has/);
    // Headers that lie: a huge count, a negative lookback, a wrong format, extra keys, not JSON.
    const withHeader = (header: unknown): Buffer => {
      const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header));
      const b = Buffer.alloc(8 + json.length);
      b.write('MLPW', 0, 'ascii');
      b.writeUInt32LE(json.length, 4);
      json.copy(b, 8);
      return b;
    };
    const good = { format: 'mlpipe.windows/1', lookback: 4, horizon: 2, count: 3, inputs: ['t'], future: [], season: 7, seriesIds: ['a'] };
    expectDataInvalid(() => decodeWindows(withHeader({ ...good, count: 1e9 })), /over the limit|the blob has/);
    expectDataInvalid(() => decodeWindows(withHeader({ ...good, lookback: -1 })), /bad header/);
    expectDataInvalid(() => decodeWindows(withHeader({ ...good, format: 'mlpipe.windows/2' })), /bad header/);
    expectDataInvalid(() => decodeWindows(withHeader({ ...good, extra: 1 })), /bad header/);
    expectDataInvalid(() => decodeWindows(withHeader({ ...good, inputs: [] })), /bad header/);
    expectDataInvalid(() => decodeWindows(withHeader('{"format": ')), /not UTF-8 JSON/);
    expectDataInvalid(() => decodeWindows(withHeader('"__proto__"')), /bad header/);
    // A series index outside seriesIds.
    expectDataInvalid(() => decodeWindows(encodeWindows({ ...sample(), series: Int32Array.from([0, 1, 7]) })), /names series 7/);
    expectDataInvalid(
      () => decodeWindows(encodeWindows({ ...sample(), origin: Float64Array.from([0, Number.NaN, 0]) })),
      /no finite origin/,
    );
  });
});

describe('forecasts', () => {
  it('round-trip with the digest of their window set', () => {
    const windows = encodeWindows(sample());
    const digest = createHash('sha256').update(windows).digest('hex');
    const values = Float32Array.from([0.5, -1, 2, 3, 4, 5]);
    const back = decodeForecasts(encodeForecasts({ count: 3, horizon: 2, windows: digest, values, model: 'gbdt' }));
    expect(back.windows).toBe(digest);
    expect(back.model).toBe('gbdt');
    expect(Array.from(back.values)).toEqual(Array.from(values));
  });

  it('refuse a bad digest or a wrong size', () => {
    const f = encodeForecasts({ count: 2, horizon: 2, windows: 'b'.repeat(64), values: new Float32Array(4) });
    expectDataInvalid(() => decodeForecasts(f.subarray(0, f.length - 8)), /the blob has/);
    expect(() => encodeForecasts({ count: 2, horizon: 2, windows: 'b'.repeat(64), values: new Float32Array(3) })).toThrow(/3 values/);
    const bad = encodeForecasts({ count: 0, horizon: 2, windows: 'NOT-A-DIGEST', values: new Float32Array(0) });
    expectDataInvalid(() => decodeForecasts(bad), /bad header/);
  });
});

describe('window state', () => {
  const state: WindowState = {
    format: 'mlpipe.window-state/1',
    timeColumn: 'date',
    seriesColumn: 'series',
    targetColumn: 'count',
    frequency: 'month',
    lookback: 4,
    horizon: 2,
    stride: 1,
    season: 12,
    seriesIds: ['a'],
    scaling: { a: { mean: 10, std: 4 } },
    seasonalScale: { a: 2 },
    covariates: {},
    known: {},
    calendar: { features: ['month'], holidays: [] },
    inputs: ['count', 'month_sin', 'month_cos'],
    future: ['month_sin', 'month_cos'],
    fill: 'none',
    gaps: [],
    duplicates: [],
    snapped: 0,
    filled: 0,
    boundaries: {},
  };

  it('scales and unscales with the series statistics', () => {
    expect(Array.from(scaleTarget(state, 'a', [10, 14, 2]))).toEqual([0, 1, -2]);
    expect(Array.from(unscaleTarget(state, 'a', [0, 1, -2]))).toEqual([10, 14, 2]);
    expect(() => unscaleTarget(state, 'zz', [1])).toThrow(/no scaling for series 'zz'/);
  });

  it('parses only a well-formed document', () => {
    expect(parseWindowState(JSON.parse(JSON.stringify(state)), 'evaluate.forecast').season).toBe(12);
    expect(() => parseWindowState({ ...state, scaling: { a: { mean: 1, std: 0 } } }, 'evaluate.forecast')).toThrow(/not a window state/);
    expect(() => parseWindowState({ ...state, format: 'x' }, 'evaluate.forecast')).toThrow(/not a window state/);
  });
});
