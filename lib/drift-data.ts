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

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/** Codes over spellings of True/False as codes over the labels 'True' and 'False'. */
function booleanColumn(codes: Int32Array, labels: string[]): ColumnValues {
  const to = labels.map((x) => (PANDAS_TRUE.has(x) || x === 'True' ? 0 : 1));
  return { type: 'cat', codes: codes.map((k) => (k < 0 ? -1 : to[k]!)), labels: ['True', 'False'], boolean: true };
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
    const [{ n }] = (await db.rows<{ n: number }>(`SELECT count(*)::BIGINT AS n FROM ${src}`)) as [{ n: number }];
    if (n === 0) throw new PipelineError('DATA_INVALID', `The ${label} data ${file} has no rows.`);
    const out: Record<string, ColumnValues> = {};
    const labelIndex = used.map(() => new Map<string, number>());
    const labels: string[][] = used.map(() => []);
    const nums = used.map((u) => (u.kind === 'num' ? new Float64Array(n) : undefined));
    const codes = used.map((u) => (u.kind === 'cat' ? new Int32Array(n) : undefined));
    // BIGINT comes as it is (a bigint beyond 2^53): kept exactly when any value needs it.
    const exact = used.map((u) => (u.type === 'BIGINT' ? new BigInt64Array(n) : undefined));
    const needsExact = used.map(() => false);
    const select = used
      .map((u) =>
        u.type === 'BIGINT'
          ? ident(u.name)
          : u.kind === 'num'
            ? `${ident(u.name)}::DOUBLE`
            : u.type === 'BOOLEAN'
              ? `CASE WHEN ${ident(u.name)} THEN 'True' WHEN NOT ${ident(u.name)} THEN 'False' END`
              : `${ident(u.name)}::VARCHAR`,
      )
      .join(', ');
    let row = 0;
    if (used.length) {
      for await (const chunk of db.chunks(`SELECT ${select} FROM ${src}`)) {
        const len = chunk[0]!.length;
        used.forEach((u, c) => {
          const values = chunk[c]!;
          if (u.kind === 'num') {
            const target = nums[c]!;
            const big = exact[c];
            for (let i = 0; i < len; i++) {
              const v = values[i];
              if (typeof v === 'bigint') {
                big![row + i] = v;
                target[row + i] = Number(v);
                if (v > MAX_SAFE || v < -MAX_SAFE) needsExact[c] = true;
                continue;
              }
              target[row + i] = v === null || v === undefined ? NaN : (v as number);
              if (big && v !== null && v !== undefined) big[row + i] = BigInt(v as number);
            }
          } else {
            const target = codes[c]!;
            const index = labelIndex[c]!;
            for (let i = 0; i < len; i++) {
              const v = values[i];
              if (v === null || v === undefined) {
                target[row + i] = -1;
                continue;
              }
              const s = String(v);
              let k = index.get(s);
              if (k === undefined) {
                k = labels[c]!.length;
                index.set(s, k);
                labels[c]!.push(s);
              }
              target[row + i] = k;
            }
          }
        });
        row += len;
        await onRows?.(row);
      }
    }
    used.forEach((u, c) => {
      if (u.kind === 'num') {
        out[u.name] = { type: 'num', values: nums[c]!, ...(needsExact[c] ? { exact: exact[c]! } : {}) };
        return;
      }
      // True/False (pandas' spellings) and nothing else: a boolean column, labels 'True' / 'False'.
      const l = labels[c]!;
      const boolean = u.type === 'BOOLEAN' || (fmt === 'csv' && l.length > 0 && l.every((x) => PANDAS_TRUE.has(x) || PANDAS_FALSE.has(x)));
      out[u.name] = boolean ? booleanColumn(codes[c]!, l) : { type: 'cat', codes: codes[c]!, labels: l };
    });
    return { rows: n, columns: out, skipped: kinds.filter((k) => !k.kind).map((k) => ({ name: k.name, type: k.type })) };
  });
}
