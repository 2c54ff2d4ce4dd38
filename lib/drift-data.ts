/**
 * Reads a dataset file (Parquet, CSV, JSON lines) into the typed columns the drift library takes:
 * numbers as Float64Array with NaN for null (64-bit integers beyond 2^53 also exactly), text and
 * booleans as Int32Array codes into a label list (-1 for null). Columns are typed the way Evidently
 * sees what pandas reads: booleans are categorical; in a CSV, pandas' missing-value markers (NA,
 * null, N/A, …) are missing, True/False (true/TRUE, …) is boolean, other text (yes/no, ISO
 * timestamps: pandas does not parse dates unless asked) is categorical. Date and time typed
 * columns (Parquet, JSON) are not tested, as in Evidently.
 */
import { ident, sqlString, withDuckDB } from '../adapters/duckdb.js';
import { PipelineError } from '../engine/errors.js';
import type { ColumnValues, Dataset } from '../engine/drift/index.js';
import type { ArtifactRef } from '../engine/types.js';
import { describe, isNumericType, type Column } from './dataset.js';

export type DataFormat = 'parquet' | 'csv' | 'jsonl';

/** The format of a file or artifact, from its name (or media type): Parquet, JSON lines, else CSV. */
export function formatOf(name: string, mediaType?: string): DataFormat {
  const lower = name.toLowerCase();
  if (lower.endsWith('.parquet') || mediaType === 'application/vnd.apache.parquet') return 'parquet';
  if (/\.(jsonl|ndjson|json)$/.test(lower) || mediaType === 'application/x-ndjson') return 'jsonl';
  return 'csv';
}

/** The format of an artifact (stored objects have no extension: the recorded name says). */
export function artifactFormat(ref: ArtifactRef): DataFormat {
  return formatOf(ref.name ?? '', ref.mediaType);
}

/** pandas.read_csv's default missing-value markers (its na_values). */
export const PANDAS_NA_VALUES = [
  '',
  '#N/A',
  '#N/A N/A',
  '#NA',
  '-1.#IND',
  '-1.#QNAN',
  '-NaN',
  '-nan',
  '1.#IND',
  '1.#QNAN',
  '<NA>',
  'N/A',
  'NA',
  'NULL',
  'NaN',
  'None',
  'n/a',
  'nan',
  'null',
];
const PANDAS_TRUE = new Set(['True', 'TRUE', 'true']);
const PANDAS_FALSE = new Set(['False', 'FALSE', 'false']);

/** The DuckDB relation reading a file; a CSV with pandas' missing markers, and `text` columns read as text. */
export function readerFor(file: string, format: DataFormat = formatOf(file), text: string[] = []): string {
  const f = sqlString(file);
  if (format === 'parquet') return `read_parquet(${f})`;
  if (format === 'jsonl') return `read_json_auto(${f})`;
  const types = text.length ? `, types={${text.map((c) => `${sqlString(c)}: 'VARCHAR'`).join(', ')}}` : '';
  return `read_csv(${f}, header=true, nullstr=[${PANDAS_NA_VALUES.map(sqlString).join(', ')}]${types})`;
}

const MAX_SAFE = '9007199254740991';

/** Codes over spellings of True/False as codes over the labels 'True' and 'False'. */
function booleanColumn(codes: Int32Array, labels: string[]): ColumnValues {
  const to = Int32Array.from(labels, (x) => (PANDAS_TRUE.has(x) ? 0 : 1));
  for (let i = 0; i < codes.length; i++) if (codes[i]! >= 0) codes[i] = to[codes[i]!]!;
  return { type: 'cat', codes, labels: ['True', 'False'], boolean: true };
}

export interface LoadedDataset extends Dataset {
  /** Columns left out (dates, times, nested types), with their SQL type. */
  skipped: { name: string; type: string }[];
}

/**
 * `onRows` runs after each chunk of rows is read (rows so far); it may return a promise, which is
 * awaited (an activity heartbeats there).
 */
export async function loadDriftDataset(
  file: string,
  label: string,
  only?: string[],
  format?: DataFormat,
  onRows?: (rows: number) => void | Promise<void>,
): Promise<LoadedDataset> {
  return withDuckDB(async (db) => {
    const fmt = format ?? formatOf(file);
    let src = readerFor(file, fmt);
    let columns: Column[];
    try {
      columns = await describe(db, src);
      // DuckDB's CSV sniffer reads yes/no and t/f as booleans and ISO strings as dates; pandas
      // keeps them text (True/False aside, decided below): read those columns as text.
      const asText = fmt === 'csv' ? columns.filter((c) => /^(BOOLEAN|DATE|TIME)/.test(c.type)).map((c) => c.name) : [];
      if (asText.length) {
        src = readerFor(file, fmt, asText);
        columns = await describe(db, src);
      }
    } catch (e) {
      throw new PipelineError('DATA_INVALID', `Cannot read the ${label} data ${file}: ${(e as Error).message.split('\n')[0]}`, {
        hint: 'Give a Parquet, CSV (with a header) or JSON lines file.',
      });
    }
    if (only) {
      const missing = only.filter((c) => !columns.some((d) => d.name === c));
      if (missing.length) {
        throw new PipelineError('DATA_INVALID', `The ${label} data ${file} has no column(s) ${missing.join(', ')}.`, {
          hint: `Its columns: ${columns.map((c) => c.name).join(', ')}.`,
        });
      }
      columns = columns.filter((c) => only.includes(c.name));
    }
    const kinds = columns.map((c) => ({
      ...c,
      kind: isNumericType(c.type) ? ('num' as const) : /^(VARCHAR|ENUM|UUID|BOOLEAN)/.test(c.type) ? ('cat' as const) : undefined,
    }));
    const used = kinds.filter((k) => k.kind);
    // Parquet is read column by column where it lies; other formats are parsed once into a table.
    let rel = src;
    if (fmt !== 'parquet' && used.length) {
      await db.run(`CREATE TEMP TABLE __data AS SELECT ${used.map((u) => ident(u.name)).join(', ')} FROM ${src}`);
      rel = '__data';
    }
    const [{ n }] = (await db.rows<{ n: number }>(`SELECT count(*)::BIGINT AS n FROM ${rel}`)) as [{ n: number }];
    if (n === 0) throw new PipelineError('DATA_INVALID', `The ${label} data ${file} has no rows.`);
    // 64-bit integers beyond 2^53 are kept exactly beside their doubles (when any value needs it).
    const bigints = used.filter((u) => u.type === 'BIGINT');
    const exact = new Set<string>();
    if (bigints.length) {
      const probe = bigints.map((u, i) => `bool_or(${ident(u.name)} > ${MAX_SAFE} OR ${ident(u.name)} < -${MAX_SAFE}) AS b${i}`);
      const [flags] = await db.rows<Record<string, boolean | null>>(`SELECT ${probe.join(', ')} FROM ${rel}`);
      bigints.forEach((u, i) => flags?.[`b${i}`] && exact.add(u.name));
    }
    // Categories become dictionary codes in SQL: an ENUM of the column's distinct values (sorted),
    // and each value's code in it; the labels are the ENUM's values.
    const labels = new Map<string, string[]>();
    const select: string[] = [];
    for (const [c, u] of used.entries()) {
      const col = ident(u.name);
      if (u.kind === 'num') {
        select.push(`${col}::DOUBLE`);
        if (exact.has(u.name)) select.push(col);
      } else if (u.type === 'BOOLEAN') {
        select.push(`(CASE WHEN ${col} THEN 0 WHEN NOT ${col} THEN 1 ELSE -1 END)::INTEGER`);
      } else {
        const type = ident(`__cat${c}`);
        await db.run(`CREATE TYPE ${type} AS ENUM (SELECT DISTINCT ${col}::VARCHAR AS v FROM ${rel} WHERE ${col} IS NOT NULL ORDER BY v)`);
        const [{ v }] = (await db.rows<{ v: string[] }>(`SELECT enum_range(NULL::${type}) AS v`)) as [{ v: string[] }];
        labels.set(u.name, v);
        select.push(`coalesce(enum_code(${col}::VARCHAR::${type})::INTEGER, -1)`);
      }
    }
    const out: Record<string, ColumnValues> = {};
    if (used.length) {
      const { columns: typed } = await db.typedColumns(`SELECT ${select.join(', ')} FROM ${rel}`, n, onRows);
      let k = 0;
      for (const u of used) {
        if (u.kind === 'num') {
          const values = typed[k++] as Float64Array;
          out[u.name] = exact.has(u.name) ? { type: 'num', values, exact: typed[k++] as BigInt64Array } : { type: 'num', values };
          continue;
        }
        const codes = typed[k++] as Int32Array;
        if (u.type === 'BOOLEAN') {
          out[u.name] = { type: 'cat', codes, labels: ['True', 'False'], boolean: true };
          continue;
        }
        // True/False (pandas' spellings) and nothing else in a CSV: a boolean column, labels 'True' / 'False'.
        const l = labels.get(u.name)!;
        const boolean = fmt === 'csv' && l.length > 0 && l.every((x) => PANDAS_TRUE.has(x) || PANDAS_FALSE.has(x));
        out[u.name] = boolean ? booleanColumn(codes, l) : { type: 'cat', codes, labels: l };
      }
    }
    return { rows: n, columns: out, skipped: kinds.filter((k) => !k.kind).map((k) => ({ name: k.name, type: k.type })) };
  });
}

export interface DriftSource {
  file: string;
  format?: DataFormat;
}

/**
 * Reference and current read concurrently (each in its own DuckDB). When both fail, the
 * reference's error is the one thrown, as when they were read one after the other.
 */
export async function loadDriftPair(
  reference: DriftSource,
  current: DriftSource,
  only?: string[],
  onRows?: (side: 'reference' | 'current', rows: number) => void | Promise<void>,
): Promise<[LoadedDataset, LoadedDataset]> {
  const [r, c] = await Promise.allSettled([
    loadDriftDataset(reference.file, 'reference', only, reference.format, onRows && ((n) => onRows('reference', n))),
    loadDriftDataset(current.file, 'current', only, current.format, onRows && ((n) => onRows('current', n))),
  ]);
  if (r.status === 'rejected') throw r.reason;
  if (c.status === 'rejected') throw c.reason;
  return [r.value, c.value];
}
