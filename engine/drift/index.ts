/**
 * Data drift between a reference and a current dataset, computed the way Evidently (legacy
 * DataDriftPreset, 0.4.x numerics) computes it: the same cleaning of NaN and infinities, the same
 * default test per column, thresholds and comparisons, per-column overrides, and dataset drift by
 * the share of drifted columns. The report has Evidently's legacy JSON shape (DatasetDriftMetric +
 * DataDriftTable with small distributions), so tools that read Evidently's JSON read ours.
 *
 * Columns come as typed arrays (numbers as Float64Array with NaN for missing; categories as
 * Int32Array codes into a label list, -1 for missing), so a million rows cost no object per row.
 * Pure.
 */
import { PipelineError } from '../errors.js';
import { densityHistogram } from './histogram.js';
import { sortFloat64 } from './special.js';
import {
  defaultStatTest,
  STAT_TESTS,
  type ColumnType,
  type KeyCounts,
  type PreparedColumn,
  type StatTest,
  type StatTestName,
} from './stattests.js';

export { STAT_TESTS, type StatTestName } from './stattests.js';

/**
 * A column. `num`: values with NaN for missing, and for 64-bit integers beyond 2^53 the exact values
 * beside them (`exact`, any value where `values` is NaN). `cat`: codes into labels; `boolean` marks
 * a True/False column (labels 'True' and 'False'), which Evidently treats as categorical.
 */
export type ColumnValues =
  { type: 'num'; values: Float64Array; exact?: BigInt64Array } | { type: 'cat'; codes: Int32Array; labels: string[]; boolean?: boolean };

export interface Dataset {
  /** Row count. */
  rows: number;
  columns: Record<string, ColumnValues>;
}

export interface DriftOptions {
  /** Columns to test (default: every column of the reference). */
  columns?: string[];
  /** Share of drifted columns from which the dataset drifts (default 0.5). */
  driftShare?: number;
  /** Test for every column, per type, per column: the most specific wins. */
  stattest?: StatTestName;
  catStattest?: StatTestName;
  numStattest?: StatTestName;
  perColumnStattest?: Record<string, StatTestName>;
  threshold?: number;
  catThreshold?: number;
  numThreshold?: number;
  perColumnThreshold?: Record<string, number>;
}

export interface ColumnDrift {
  column_name: string;
  column_type: ColumnType;
  stattest_name: string;
  stattest: StatTestName;
  stattest_threshold: number;
  drift_score: number;
  drift_detected: boolean;
  reference_rows: number;
  current_rows: number;
  current: { small_distribution: { x: (number | string | boolean)[]; y: number[] } };
  reference: { small_distribution: { x: (number | string | boolean)[]; y: number[] } };
}

export interface DriftResult {
  driftShare: number;
  numberOfColumns: number;
  numberOfDriftedColumns: number;
  shareOfDriftedColumns: number;
  datasetDrift: boolean;
  columns: ColumnDrift[];
}

function driftError(message: string, hint: string): PipelineError {
  return new PipelineError('DATA_INVALID', message, { hint });
}

/** Finite values, dropping NaN and ±inf only when the column holds a NaN (Evidently's quirk). */
function cleanNumbers(values: Float64Array): Float64Array {
  const len = values.length;
  let hasNaN = false;
  for (let k = 0; k < len; k++) {
    if (values[k] !== values[k]) {
      hasNaN = true;
      break;
    }
  }
  if (!hasNaN) return values;
  let n = 0;
  for (let k = 0; k < len; k++) if (Number.isFinite(values[k])) n++;
  const out = new Float64Array(n);
  let i = 0;
  for (let k = 0; k < len; k++) if (Number.isFinite(values[k])) out[i++] = values[k]!;
  return out;
}

function countSortedUnique(a: Float64Array): number {
  let n = 0;
  for (let i = 0; i < a.length; i++) if (i === 0 || a[i] !== a[i - 1]) n++;
  return n;
}

/** Keys and counts from two sorted numeric arrays (run lengths, merged). */
function numericCounts(ref: Float64Array, cur: Float64Array): KeyCounts {
  const keys: number[] = [];
  const r: number[] = [];
  const c: number[] = [];
  let i = 0;
  let j = 0;
  while (i < ref.length || j < cur.length) {
    const v = i < ref.length ? (j < cur.length ? Math.min(ref[i]!, cur[j]!) : ref[i]!) : cur[j]!;
    let a = 0;
    let b = 0;
    while (i < ref.length && ref[i] === v) {
      i++;
      a++;
    }
    while (j < cur.length && cur[j] === v) {
      j++;
      b++;
    }
    keys.push(v);
    r.push(a);
    c.push(b);
  }
  return { keys, ref: Float64Array.from(r), cur: Float64Array.from(c), nRef: ref.length, nCur: cur.length };
}

function categoricalCounts(ref: { codes: Int32Array; labels: string[] }, cur: { codes: Int32Array; labels: string[] }): KeyCounts {
  // Map both label lists onto one key list (labels of either side, in first-seen order).
  const index = new Map<string, number>();
  const keys: string[] = [];
  const remap = (labels: string[]): Int32Array =>
    Int32Array.from(labels, (l) => {
      let k = index.get(l);
      if (k === undefined) {
        k = keys.length;
        index.set(l, k);
        keys.push(l);
      }
      return k;
    });
  const mr = remap(ref.labels);
  const mc = remap(cur.labels);
  const r = new Float64Array(keys.length);
  const c = new Float64Array(keys.length);
  // Count by code first (a dense array), then map codes to keys.
  const byCode = (codes: Int32Array, labels: number): { counts: Float64Array; n: number } => {
    const counts = new Float64Array(labels);
    let n = 0;
    for (let k = 0; k < codes.length; k++) {
      const code = codes[k]!;
      if (code >= 0) {
        if (code >= labels) throw new RangeError(`category code ${code} has no label (${labels} labels)`);
        counts[code]!++;
        n++;
      }
    }
    return { counts, n };
  };
  const rc = byCode(ref.codes, ref.labels.length);
  const cc = byCode(cur.codes, cur.labels.length);
  rc.counts.forEach((x, code) => (r[mr[code]!]! += x));
  cc.counts.forEach((x, code) => (c[mc[code]!]! += x));
  const nRef = rc.n;
  const nCur = cc.n;
  // Keys present in neither (unused labels) are not values of the column.
  const keep = keys.map((_, i) => r[i]! > 0 || c[i]! > 0);
  return {
    keys: keys.filter((_, i) => keep[i]),
    ref: r.filter((_, i) => keep[i]),
    cur: c.filter((_, i) => keep[i]),
    nRef,
    nCur,
  };
}

/** Values of a 64-bit integer column made exact doubles: minus the smallest of both sides (`base`). */
function rebased(col: { values: Float64Array; exact?: BigInt64Array }, base: bigint): Float64Array {
  const { values, exact } = col;
  return Float64Array.from(values, (v, k) =>
    v !== v ? NaN : exact ? Number(exact[k]! - base) : Number.isInteger(v) ? Number(BigInt(v) - base) : v - Number(base),
  );
}

function minExact(cols: { values: Float64Array; exact?: BigInt64Array }[]): bigint | undefined {
  let min: bigint | undefined;
  for (const { values, exact } of cols) {
    for (let k = 0; k < values.length; k++) {
      if (!(exact ? values[k] === values[k] : Number.isFinite(values[k]))) continue;
      const v = exact ? exact[k]! : BigInt(Math.floor(values[k]!));
      if (min === undefined || v < min) min = v;
    }
  }
  return min;
}

function countInfinite(a: Float64Array): number {
  let n = 0;
  for (let k = 0; k < a.length && a[k] === -Infinity; k++) n++;
  for (let k = a.length - 1; k >= 0 && a[k] === Infinity; k--) n++;
  return n;
}

type CatColumn = Extract<ColumnValues, { type: 'cat' }>;
const TRUE_TEXT = new Set(['true', 't', 'yes', 'y', '1']);
const FALSE_TEXT = new Set(['false', 'f', 'no', 'n', '0']);

/**
 * A boolean column on one side and its text on the other (a Parquet dataset from ingest, where
 * DuckDB read yes/no as booleans, against the raw CSV): the text side as booleans, when every
 * label is a spelling of true or false. Anything else stays as it is.
 */
function reconcileBooleans(ref: CatColumn, cur: CatColumn): [CatColumn, CatColumn] {
  if (!ref.boolean === !cur.boolean) return [ref, cur];
  const text = ref.boolean ? cur : ref;
  const to = text.labels.map((l) => (TRUE_TEXT.has(l.toLowerCase()) ? 0 : FALSE_TEXT.has(l.toLowerCase()) ? 1 : -1));
  if (to.includes(-1)) return [ref, cur];
  const asBoolean: CatColumn = {
    type: 'cat',
    codes: text.codes.map((k) => (k < 0 ? -1 : to[k]!)),
    labels: ['True', 'False'],
    boolean: true,
  };
  return ref.boolean ? [ref, asBoolean] : [asBoolean, cur];
}

export function prepareColumn(name: string, ref: ColumnValues, cur: ColumnValues): PreparedColumn {
  if (ref.type !== cur.type) {
    throw driftError(
      `Column '${name}' is ${ref.type === 'num' ? 'numeric' : 'categorical'} in the reference data but ${cur.type === 'num' ? 'numeric' : 'categorical'} in the current data.`,
      'Both datasets must have the same column types: cast the column in the step that produces the current data, or leave the column out (columns: [...]).',
    );
  }
  if (ref.type === 'num' && cur.type === 'num') {
    // 64-bit integers beyond 2^53 (ids, nanosecond times) are ordered and counted exactly, as pandas
    // and scipy do with int64: rebased on the smallest value of both sides (K-S, counts and test
    // selection are invariant to it); numpy's float64 view serves Wasserstein and histograms.
    const base = ref.exact || cur.exact ? minExact([ref, cur]) : undefined;
    let r = sortFloat64(cleanNumbers(base === undefined ? ref.values : rebased(ref, base)));
    let c = sortFloat64(cleanNumbers(base === undefined ? cur.values : rebased(cur, base)));
    for (const [label, a] of [
      ['reference', r],
      ['current', c],
    ] as const) {
      if (a.length === 0)
        throw driftError(
          `Column '${name}' is empty in the ${label} data after dropping missing values.`,
          'Leave the column out of the drift check, or fix the data that produced it.',
        );
    }
    // ±Infinity is dropped only beside a NaN (above); otherwise Evidently fails to bin the column
    // (np.histogram: range not finite), and so does this, instead of a NaN score read as no drift.
    const infinite = [countInfinite(r), countInfinite(c)];
    if (infinite[0]! + infinite[1]!) {
      throw driftError(
        `Column '${name}' holds infinite values (${infinite[0]} in the reference data, ${infinite[1]} in the current data) and no missing values, so its drift is undefined.`,
        'Replace ±Infinity with a missing value in the data (a column with missing values has its infinities dropped, as in Evidently), clip it, or leave the column out (columns: [...]).',
      );
    }
    // Values near the float maximum overflow differences and squares (Evidently scores them NaN,
    // i.e. no drift): every score is scale-invariant, so compute on values scaled by a power of two.
    const maxAbs = Math.max(-r[0]!, r[r.length - 1]!, -c[0]!, c[c.length - 1]!);
    let scale = 1;
    if (maxAbs > 2 ** 400) {
      scale = 2 ** -(Math.ceil(Math.log2(maxAbs)) - 400);
      r = r.map((v) => v * scale);
      c = c.map((v) => v * scale);
    }
    const original = scale !== 1 ? { scale, offset: 0 } : undefined;
    // numpy's view of 64-bit integers: doubles (for Wasserstein, histograms, distributions).
    const floats =
      base !== undefined ? { refFloat: sortFloat64(cleanNumbers(ref.values)), curFloat: sortFloat64(cleanNumbers(cur.values)) } : {};
    let counts: KeyCounts | undefined;
    const getCounts = (): KeyCounts => (counts ??= numericCounts(r, c));
    // Distinct values of both, from the merge of the two sorted arrays.
    let union = 0;
    {
      let i = 0;
      let j = 0;
      while (i < r.length || j < c.length) {
        const v = i < r.length ? (j < c.length ? Math.min(r[i]!, c[j]!) : r[i]!) : c[j]!;
        while (i < r.length && r[i] === v) i++;
        while (j < c.length && c[j] === v) j++;
        union++;
      }
    }
    return {
      name,
      type: 'num',
      refSorted: r,
      curSorted: c,
      ...floats,
      counts: getCounts,
      nRef: r.length,
      nCur: c.length,
      refUnique: countSortedUnique(r),
      unionUnique: union,
      ...(original ? { original } : {}),
    };
  }
  const [r, c] = reconcileBooleans(ref as CatColumn, cur as CatColumn);
  const k = categoricalCounts(r, c);
  for (const [label, n] of [
    ['reference', k.nRef],
    ['current', k.nCur],
  ] as const) {
    if (n === 0)
      throw driftError(
        `Column '${name}' is empty in the ${label} data after dropping missing values.`,
        'Leave the column out of the drift check, or fix the data that produced it.',
      );
  }
  return {
    name,
    type: 'cat',
    counts: () => k,
    nRef: k.nRef,
    nCur: k.nCur,
    refUnique: k.ref.filter((x) => x > 0).length,
    unionUnique: k.keys.length,
    ...(r.boolean && c.boolean ? { boolean: true } : {}),
  };
}

function pickTest(name: string, type: ColumnType, o: DriftOptions, c: PreparedColumn): StatTest {
  const chosen = o.perColumnStattest?.[name] ?? (type === 'cat' ? o.catStattest : o.numStattest) ?? o.stattest;
  if (!chosen) return defaultStatTest(c);
  const test = STAT_TESTS[chosen];
  if (!test)
    throw driftError(`Unknown drift test '${chosen}' for column '${name}'.`, `Known tests: ${Object.keys(STAT_TESTS).join(', ')}.`);
  if (!test.allowed.includes(type)) {
    throw driftError(
      `Drift test '${chosen}' does not apply to column '${name}', which is ${type === 'num' ? 'numeric' : 'categorical'}.`,
      `For ${type === 'num' ? 'numeric' : 'categorical'} columns use one of: ${Object.values(STAT_TESTS)
        .filter((t) => t.allowed.includes(type))
        .map((t) => t.name)
        .join(', ')}.`,
    );
  }
  return test;
}

function smallDistribution(
  col: ColumnValues,
  keys: KeyCounts | undefined,
  side: 'ref' | 'cur',
  prepared: PreparedColumn,
): { x: (number | string | boolean)[]; y: number[] } {
  if (col.type === 'num') {
    // The sorted, cleaned values are the column's finite values (infinities were refused).
    const sorted = (side === 'ref' ? (prepared.refFloat ?? prepared.refSorted) : (prepared.curFloat ?? prepared.curSorted))!;
    const h = densityHistogram(sorted, sorted[0]!, sorted[sorted.length - 1]!, 10);
    const o = prepared.original;
    return o ? { x: h.x.map((x) => x / o.scale + o.offset), y: h.y.map((y) => y * o.scale) } : h;
  }
  const k = keys!;
  const order = k.keys
    .map((key, i) => ({ key, i }))
    .sort((a, b) => (String(a.key) < String(b.key) ? -1 : String(a.key) > String(b.key) ? 1 : 0));
  const boolean = prepared.boolean ?? false;
  return { x: order.map((o) => (boolean ? o.key === 'True' : o.key)), y: order.map((o) => (side === 'ref' ? k.ref : k.cur)[o.i]!) };
}

/** The columns to test; missing columns and unknown tests are refused. */
export function checkOptions(reference: Dataset, current: Dataset, options: DriftOptions): string[] {
  const names = options.columns ?? Object.keys(reference.columns);
  const missing = {
    reference: names.filter((n) => !(n in reference.columns)),
    current: names.filter((n) => !(n in current.columns)),
  };
  if (missing.reference.length || missing.current.length) {
    const parts = [
      missing.reference.length ? `missing in the reference data: ${missing.reference.join(', ')}` : '',
      missing.current.length ? `missing in the current data: ${missing.current.join(', ')}` : '',
    ].filter(Boolean);
    throw driftError(
      `Columns ${parts.join('; ')}.`,
      `Reference columns: ${Object.keys(reference.columns).join(', ')}. Current columns: ${Object.keys(current.columns).join(', ')}. Pass columns: [...] to test a subset.`,
    );
  }
  for (const [k, v] of Object.entries(options.perColumnStattest ?? {})) {
    if (!(v in STAT_TESTS))
      throw driftError(`Unknown drift test '${v}' for column '${k}'.`, `Known tests: ${Object.keys(STAT_TESTS).join(', ')}.`);
  }
  return names;
}

/** The drift of one column (what computeDrift does per column). */
export function columnDrift(name: string, ref: ColumnValues, cur: ColumnValues, options: DriftOptions): ColumnDrift {
  const prepared = prepareColumn(name, ref, cur);
  const test = pickTest(name, prepared.type, options, prepared);
  const threshold =
    options.perColumnThreshold?.[name] ??
    (prepared.type === 'cat' ? options.catThreshold : options.numThreshold) ??
    options.threshold ??
    test.defaultThreshold;
  const score = test.score(prepared);
  const keys = prepared.type === 'cat' ? prepared.counts() : undefined;
  return {
    column_name: name,
    column_type: prepared.type,
    stattest_name: test.displayName,
    stattest: test.name,
    stattest_threshold: threshold,
    drift_score: score,
    drift_detected: test.drifted(score, threshold),
    reference_rows: prepared.nRef,
    current_rows: prepared.nCur,
    current: { small_distribution: smallDistribution(cur, keys, 'cur', prepared) },
    reference: { small_distribution: smallDistribution(ref, keys, 'ref', prepared) },
  };
}

/** The dataset's drift from its columns' (in the order given). */
export function summarise(columns: ColumnDrift[], options: DriftOptions): DriftResult {
  const drifted = columns.filter((c) => c.drift_detected).length;
  const driftShare = options.driftShare ?? 0.5;
  const share = columns.length ? drifted / columns.length : 0;
  return {
    driftShare,
    numberOfColumns: columns.length,
    numberOfDriftedColumns: drifted,
    shareOfDriftedColumns: share,
    datasetDrift: share >= driftShare,
    columns,
  };
}

export function computeDrift(reference: Dataset, current: Dataset, options: DriftOptions = {}): DriftResult {
  const names = checkOptions(reference, current, options);
  return summarise(
    names.map((name) => columnDrift(name, reference.columns[name]!, current.columns[name]!, options)),
    options,
  );
}

/**
 * computeDrift, one column at a time: `between` runs before each column (an activity heartbeats
 * and lets its event loop run there), so a wide dataset never blocks for all its columns at once.
 */
export async function computeDriftStepwise(
  reference: Dataset,
  current: Dataset,
  options: DriftOptions,
  between: (progress: { column: string; done: number; total: number }) => Promise<void>,
): Promise<DriftResult> {
  const names = checkOptions(reference, current, options);
  const columns: ColumnDrift[] = [];
  for (const [i, name] of names.entries()) {
    await between({ column: name, done: i, total: names.length });
    columns.push(columnDrift(name, reference.columns[name]!, current.columns[name]!, options));
  }
  return summarise(columns, options);
}

/** Evidently's legacy Report JSON (DataDriftPreset): DatasetDriftMetric and DataDriftTable. NaN stays the NaN token. */
export function toEvidentlyJson(r: DriftResult, timestamp = new Date()): string {
  const summary = {
    drift_share: r.driftShare,
    number_of_columns: r.numberOfColumns,
    number_of_drifted_columns: r.numberOfDriftedColumns,
    share_of_drifted_columns: r.shareOfDriftedColumns,
    dataset_drift: r.datasetDrift,
  };
  const byColumn = Object.fromEntries(
    r.columns.map((c) => [
      c.column_name,
      {
        column_name: c.column_name,
        column_type: c.column_type,
        stattest_name: c.stattest_name,
        stattest_threshold: c.stattest_threshold,
        drift_score: c.drift_score,
        drift_detected: c.drift_detected,
        current: c.current,
        reference: c.reference,
      },
    ]),
  );
  const report = {
    version: '0.4.40',
    metrics: [
      { metric: 'DatasetDriftMetric', result: summary },
      {
        metric: 'DataDriftTable',
        result: {
          number_of_columns: r.numberOfColumns,
          number_of_drifted_columns: r.numberOfDriftedColumns,
          share_of_drifted_columns: r.shareOfDriftedColumns,
          dataset_drift: r.datasetDrift,
          drift_by_columns: byColumn,
          current_fi: null,
          reference_fi: null,
        },
      },
    ],
    timestamp: timestamp.toISOString().replace('T', ' ').replace('Z', ''),
  };
  // JSON has no NaN; Evidently (Python's json) writes the bare token, and so do we.
  return JSON.stringify(report, (_k, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? `__NUM__${String(v)}` : v)).replace(
    /"__NUM__(NaN|Infinity|-Infinity)"/g,
    '$1',
  );
}
