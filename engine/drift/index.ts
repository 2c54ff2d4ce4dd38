/**
 * Data drift between a reference and a current dataset, computed the way Evidently (legacy
 * DataDriftPreset, 0.4.x numerics) computes it: the same cleaning of NaN and infinities, the same
 * default test per column, thresholds and comparisons, per-column overrides, and dataset drift by
 * the share of drifted columns. The report has Evidently's legacy JSON shape (DatasetDriftMetric +
 * DataDriftTable with small distributions), so tools that read Evidently's JSON read ours.
 *
 * Columns come as typed arrays (numbers as Float64Array with NaN for missing; categories as
 * Int32Array codes into a label list, -1 for missing), so a million rows cost no object per row;
 * or as frequency tables (each distinct value or label with its count, e.g. from a GROUP BY), which
 * is all the tests need: a numeric column is sorted once and reduced to its table either way.
 * Pure.
 */
import { PipelineError } from '../errors.js';
import { densityHistogram } from './histogram.js';
import { freqOfSorted, sortFloat64, type Freq } from './special.js';
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
 * The same as frequency tables: `num` with `distinct` (the distinct non-missing values, ascending,
 * ±Infinity allowed), `counts` (how often each occurs) and `missing` (the NULL / NaN count);
 * `cat` with `counts` per label instead of codes (missing values are simply not counted).
 */
export type ColumnValues =
  | { type: 'num'; values: Float64Array; exact?: BigInt64Array }
  | { type: 'num'; distinct: Float64Array; counts: Float64Array; missing: number }
  | { type: 'cat'; codes: Int32Array; labels: string[]; boolean?: boolean }
  | { type: 'cat'; counts: Float64Array; labels: string[]; boolean?: boolean };

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

type NumColumn = Extract<ColumnValues, { type: 'num' }>;
type NumValues = Extract<ColumnValues, { values: Float64Array }>;
type NumTable = Extract<ColumnValues, { distinct: Float64Array }>;
type CatColumn = Extract<ColumnValues, { type: 'cat' }>;

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

/** A column's values as its cleaned frequency table: cleaned, sorted, runs counted. */
function valuesTable(values: Float64Array): Freq {
  return freqOfSorted(sortFloat64(cleanNumbers(values)));
}

/**
 * A frequency table as given, cleaned as its values would be (a missing value, or a NaN among the
 * values, drops the infinities too), entries with no count left out and equal neighbours (-0 and
 * 0) merged. Refuses a table that is not ascending or has a negative or fractional count.
 */
function cleanTable(name: string, col: NumTable): Freq {
  const { distinct, counts } = col;
  if (distinct.length !== counts.length)
    throw new RangeError(`column '${name}': ${distinct.length} distinct values but ${counts.length} counts`);
  let hasNaN = col.missing > 0;
  for (let k = 0; k < distinct.length && !hasNaN; k++) if (distinct[k] !== distinct[k] && counts[k]! > 0) hasNaN = true;
  return mergedTable(name, distinct, counts, hasNaN);
}

function mergedTable(name: string, distinct: Float64Array, counts: Float64Array, dropInfinite: boolean): Freq {
  const values = new Float64Array(distinct.length);
  const out = new Float64Array(distinct.length);
  let k = -1;
  let n = 0;
  for (let i = 0; i < distinct.length; i++) {
    const v = distinct[i]!;
    const c = counts[i]!;
    if (!(c >= 0 && Number.isInteger(c))) throw new RangeError(`column '${name}': the count of ${v} is ${c}`);
    if (c === 0 || v !== v || (dropInfinite && !Number.isFinite(v))) continue;
    if (k >= 0 && v === values[k]) out[k]! += c;
    else if (k >= 0 && v < values[k]!)
      throw new RangeError(`column '${name}': the distinct values are not ascending (${values[k]} before ${v})`);
    else {
      values[++k] = v;
      out[k] = c;
    }
    n += c;
  }
  return { values: values.slice(0, k + 1), counts: out.slice(0, k + 1), n };
}

function tableOf(name: string, col: NumColumn): Freq {
  return 'values' in col ? valuesTable(col.values) : cleanTable(name, col);
}

/** A frequency table's column as values (in ascending order, then its missing values as NaN). */
function asValues(col: NumColumn): NumValues {
  if ('values' in col) return col;
  let n = col.missing;
  for (const c of col.counts) n += c;
  const values = new Float64Array(n).fill(NaN);
  let at = 0;
  for (let k = 0; k < col.distinct.length; k++) {
    values.fill(col.distinct[k]!, at, at + col.counts[k]!);
    at += col.counts[k]!;
  }
  return { type: 'num', values };
}

/** Keys and counts from two frequency tables (merged). */
function numericCounts(ref: Freq, cur: Freq): KeyCounts {
  const keys: number[] = [];
  const r: number[] = [];
  const c: number[] = [];
  const u = ref.values;
  const w = cur.values;
  let i = 0;
  let j = 0;
  while (i < u.length || j < w.length) {
    const v = i < u.length ? (j < w.length ? Math.min(u[i]!, w[j]!) : u[i]!) : w[j]!;
    keys.push(v);
    r.push(i < u.length && u[i] === v ? ref.counts[i++]! : 0);
    c.push(j < w.length && w[j] === v ? cur.counts[j++]! : 0);
  }
  return { keys, ref: Float64Array.from(r), cur: Float64Array.from(c), nRef: ref.n, nCur: cur.n };
}

/** Distinct values of both tables together. */
function unionSize(ref: Freq, cur: Freq): number {
  const u = ref.values;
  const w = cur.values;
  let i = 0;
  let j = 0;
  let n = 0;
  while (i < u.length || j < w.length) {
    const v = i < u.length ? (j < w.length ? Math.min(u[i]!, w[j]!) : u[i]!) : w[j]!;
    if (i < u.length && u[i] === v) i++;
    if (j < w.length && w[j] === v) j++;
    n++;
  }
  return n;
}

/** A categorical column as counts per label (codes counted; missing values not). */
interface LabelCounts {
  labels: string[];
  counts: Float64Array;
  boolean?: boolean;
}

function labelCounts(name: string, col: CatColumn): LabelCounts {
  const boolean = col.boolean ? { boolean: true } : {};
  if ('counts' in col) {
    if (col.counts.length !== col.labels.length)
      throw new RangeError(`column '${name}': ${col.labels.length} labels but ${col.counts.length} counts`);
    for (const c of col.counts) if (!(c >= 0 && Number.isInteger(c))) throw new RangeError(`column '${name}': a label's count is ${c}`);
    return { labels: col.labels, counts: col.counts, ...boolean };
  }
  const labels = col.labels.length;
  const counts = new Float64Array(labels);
  const codes = col.codes;
  for (let k = 0; k < codes.length; k++) {
    const code = codes[k]!;
    if (code >= 0) {
      if (code >= labels) throw new RangeError(`category code ${code} has no label (${labels} labels)`);
      counts[code]!++;
    }
  }
  return { labels: col.labels, counts, ...boolean };
}

function categoricalCounts(ref: LabelCounts, cur: LabelCounts): KeyCounts {
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
  let nRef = 0;
  let nCur = 0;
  ref.counts.forEach((x, code) => {
    r[mr[code]!]! += x;
    nRef += x;
  });
  cur.counts.forEach((x, code) => {
    c[mc[code]!]! += x;
    nCur += x;
  });
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

function countInfinite(f: Freq): number {
  const last = f.values.length - 1;
  return (f.values[0] === -Infinity ? f.counts[0]! : 0) + (last > 0 && f.values[last] === Infinity ? f.counts[last]! : 0);
}

const TRUE_TEXT = new Set(['true', 't', 'yes', 'y', '1']);
const FALSE_TEXT = new Set(['false', 'f', 'no', 'n', '0']);

/**
 * A boolean column on one side and its text on the other (a Parquet dataset from ingest, where
 * DuckDB read yes/no as booleans, against the raw CSV): the text side as booleans, when every
 * label is a spelling of true or false. Anything else stays as it is.
 */
function reconcileBooleans(ref: LabelCounts, cur: LabelCounts): [LabelCounts, LabelCounts] {
  if (!ref.boolean === !cur.boolean) return [ref, cur];
  const text = ref.boolean ? cur : ref;
  const to = text.labels.map((l) => (TRUE_TEXT.has(l.toLowerCase()) ? 0 : FALSE_TEXT.has(l.toLowerCase()) ? 1 : -1));
  if (to.includes(-1)) return [ref, cur];
  const counts = new Float64Array(2);
  text.counts.forEach((x, k) => (counts[to[k]!]! += x));
  const asBoolean: LabelCounts = { labels: ['True', 'False'], counts, boolean: true };
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
    const wide = ('exact' in ref && ref.exact) || ('exact' in cur && cur.exact);
    let r: Freq;
    let c: Freq;
    let floats: { refFloat: Freq; curFloat: Freq } | Record<string, never> = {};
    if (wide) {
      const rv = asValues(ref);
      const cv = asValues(cur);
      const base = minExact([rv, cv]);
      r = valuesTable(base === undefined ? rv.values : rebased(rv, base));
      c = valuesTable(base === undefined ? cv.values : rebased(cv, base));
      if (base !== undefined) floats = { refFloat: valuesTable(rv.values), curFloat: valuesTable(cv.values) };
    } else {
      r = tableOf(name, ref);
      c = tableOf(name, cur);
    }
    for (const [label, a] of [
      ['reference', r],
      ['current', c],
    ] as const) {
      if (a.n === 0)
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
    const maxAbs = Math.max(-r.values[0]!, r.values[r.values.length - 1]!, -c.values[0]!, c.values[c.values.length - 1]!);
    let scale = 1;
    if (maxAbs > 2 ** 400) {
      scale = 2 ** -(Math.ceil(Math.log2(maxAbs)) - 400);
      // (Values far below the maximum may round together when scaled: merged again.)
      r = mergedTable(
        name,
        r.values.map((v) => v * scale),
        r.counts,
        false,
      );
      c = mergedTable(
        name,
        c.values.map((v) => v * scale),
        c.counts,
        false,
      );
    }
    const original = scale !== 1 ? { scale, offset: 0 } : undefined;
    let counts: KeyCounts | undefined;
    return {
      name,
      type: 'num',
      ref: r,
      cur: c,
      ...floats,
      counts: () => (counts ??= numericCounts(r, c)),
      nRef: r.n,
      nCur: c.n,
      refUnique: r.values.length,
      unionUnique: unionSize(r, c),
      ...(original ? { original } : {}),
    };
  }
  const [r, c] = reconcileBooleans(labelCounts(name, ref as CatColumn), labelCounts(name, cur as CatColumn));
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
  keys: KeyCounts | undefined,
  side: 'ref' | 'cur',
  prepared: PreparedColumn,
): { x: (number | string | boolean)[]; y: number[] } {
  if (prepared.type === 'num') {
    // The cleaned values are the column's finite values (infinities were refused).
    const t = (side === 'ref' ? (prepared.refFloat ?? prepared.ref) : (prepared.curFloat ?? prepared.cur))!;
    const h = densityHistogram(t, t.values[0]!, t.values[t.values.length - 1]!, 10);
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
    current: { small_distribution: smallDistribution(keys, 'cur', prepared) },
    reference: { small_distribution: smallDistribution(keys, 'ref', prepared) },
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
