/**
 * Reads a dataset file (Parquet, CSV, JSON lines) into the columns the drift library takes, as
 * frequency tables computed in DuckDB: numbers as their distinct values with counts (NULL and NaN
 * counted as missing; 64-bit integers beyond 2^53 as values, also exactly), text and booleans as
 * labels with counts. Columns are typed the way Evidently
 * sees what pandas reads: booleans are categorical; in a CSV, pandas' missing-value markers (NA,
 * null, N/A, …) are missing, True/False (true/TRUE, …) is boolean, other text (yes/no, ISO
 * timestamps: pandas does not parse dates unless asked) is categorical. Date and time typed
 * columns (Parquet, JSON) are not tested, as in Evidently.
 */
import { availableParallelism } from 'node:os';
import { ident, sniffCsv, sqlString, withDuckDB, type Duck } from '../adapters/duckdb.js';
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
const PANDAS_NA = new Set(PANDAS_NA_VALUES);
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

/**
 * A CSV's reader with what DuckDB's sniffer detects written out (dialect, header, column names and
 * types) and `auto_detect=false`, with its columns: the sniffer runs once, here, with the options
 * readerFor gives read_csv (so the same reading), instead of again at each bind, and read_csv with
 * fixed types parses faster. Every sniffed name and type goes into the SQL as a string literal.
 * Undefined when DuckDB cannot sniff the file (readerFor's reader then reports why).
 */
export async function sniffedCsv(
  db: Duck,
  file: string,
  text: string[] = [],
): Promise<{ reader: string; plain: string; columns: Column[] } | undefined> {
  const f = sqlString(file);
  const nulls = `nullstr=[${PANDAS_NA_VALUES.map(sqlString).join(', ')}]`;
  const types = text.length ? [`types={${text.map((c) => `${sqlString(c)}: 'VARCHAR'`).join(', ')}}`] : [];
  const s = await sniffCsv(db, file, ['header=true', nulls, ...types]);
  if (!s) return undefined;
  return {
    reader: `read_csv(${f}, ${[...s.options, nulls].join(', ')})`,
    plain: `read_csv(${f}, ${s.options.join(', ')})`,
    columns: s.columns,
  };
}

const MAX_SAFE = '9007199254740991';

/** Counts over spellings of True/False as counts over the labels 'True' and 'False'. */
function booleanColumn(labels: string[], counts: Float64Array): ColumnValues {
  const both = new Float64Array(2);
  labels.forEach((x, k) => (both[PANDAS_TRUE.has(x) ? 0 : 1]! += counts[k]!));
  return { type: 'cat', counts: both, labels: ['True', 'False'], boolean: true };
}

export interface LoadedDataset extends Dataset {
  /** Columns left out (dates, times, nested types), with their SQL type. */
  skipped: { name: string; type: string }[];
}

/**
 * A numeric column's frequency table from DuckDB: `SELECT v, n` of a GROUP BY, ascending, NULL and
 * NaN groups counted as missing. The table is taken chunk by chunk into arrays that grow as needed
 * (a table is usually far shorter than the column), NaN and NULL left out as they pass.
 */
async function numericTable(db: Duck, rel: string, col: string): Promise<ColumnValues> {
  let distinct = new Float64Array(4096);
  let counts = new Float64Array(4096);
  let kept = 0;
  let missing = 0;
  await db.scanDoubles(
    `SELECT v, c FROM (SELECT ${col}::DOUBLE AS v, count(*)::DOUBLE AS c FROM ${rel} GROUP BY 1) ORDER BY v`,
    ([v, c], [valid], rows) => {
      if (kept + rows > distinct.length) {
        const size = Math.max(2 * distinct.length, kept + rows);
        const [d, n] = [new Float64Array(size), new Float64Array(size)];
        d.set(distinct.subarray(0, kept));
        n.set(counts.subarray(0, kept));
        [distinct, counts] = [d, n];
      }
      for (let i = 0; i < rows; i++) {
        const x = v![i]!;
        // The NULL group (its value undefined) and the NaN group are missing values.
        if ((valid && !(valid[i >>> 3]! & (1 << (i & 7)))) || x !== x) missing += c![i]!;
        else {
          distinct[kept] = x;
          counts[kept++] = c![i]!;
        }
      }
    },
  );
  return { type: 'num', distinct: distinct.slice(0, kept), counts: counts.slice(0, kept), missing };
}

/**
 * Reads a data file as frequency tables, the form the drift tests need: per numeric column its
 * distinct values (ascending) with their counts, per categorical column its labels with their
 * counts, each a GROUP BY in DuckDB (so no column of a million values reaches JavaScript). A
 * 64-bit integer column holding values beyond 2^53 is read as values (exact beside the doubles).
 * `onRows` runs after each column (with the row count); it may return a promise, which is awaited
 * (an activity heartbeats there). `threads`: DuckDB's threads (default 2).
 */
export async function loadDriftDataset(
  file: string,
  label: string,
  only?: string[],
  format?: DataFormat,
  onRows?: (rows: number) => void | Promise<void>,
  threads?: number,
): Promise<LoadedDataset> {
  return withDuckDB(
    async (db) => {
      const fmt = format ?? formatOf(file);
      let src = readerFor(file, fmt);
      let sniffed: Awaited<ReturnType<typeof sniffedCsv>>;
      let columns: Column[];
      try {
        sniffed = fmt === 'csv' ? await sniffedCsv(db, file) : undefined;
        columns = sniffed ? sniffed.columns : await describe(db, src);
        // DuckDB's CSV sniffer reads yes/no and t/f as booleans and ISO strings as dates; pandas
        // keeps them text (True/False aside, decided below): read those columns as text.
        const asText = fmt === 'csv' ? columns.filter((c) => /^(BOOLEAN|DATE|TIME)/.test(c.type)).map((c) => c.name) : [];
        if (asText.length) {
          sniffed = sniffed && (await sniffedCsv(db, file, asText));
          src = readerFor(file, fmt, asText);
          columns = sniffed ? sniffed.columns : await describe(db, src);
        }
        if (sniffed) src = sniffed.reader;
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
      // pandas' missing markers in a CSV: read_csv compares every field with each of them, which
      // costs. Numbers, text and 64-bit integers only: the file is read with DuckDB's own (an empty
      // field), a marker left as text is dropped from the labels below, and one in a numeric
      // column is NaN (missing either way) or a conversion error, after which the file is read
      // again with the markers. The same frequency tables, see test/unit/drift-data.test.ts.
      let markersAsText = false;
      if (fmt !== 'parquet' && used.length) {
        const select = `CREATE TEMP TABLE __data AS SELECT ${used.map((u) => ident(u.name)).join(', ')} FROM `;
        const plain = sniffed && used.every((u) => /^(DOUBLE|BIGINT|VARCHAR)$/.test(u.type));
        markersAsText =
          !!plain &&
          (await db.run(select + sniffed!.plain).then(
            () => true,
            () => false,
          ));
        if (!markersAsText) await db.run(select + src);
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
      const out: Record<string, ColumnValues> = {};
      for (const u of used) {
        const col = ident(u.name);
        if (u.kind === 'num' && exact.has(u.name)) {
          const { columns: typed } = await db.typedColumns(`SELECT ${col}::DOUBLE, ${col} FROM ${rel}`, n);
          out[u.name] = { type: 'num', values: typed[0] as Float64Array, exact: typed[1] as BigInt64Array };
        } else if (u.kind === 'num') {
          out[u.name] = await numericTable(db, rel, col);
        } else if (u.type === 'BOOLEAN') {
          const [t] = await db.rows<{ t: number; f: number }>(
            `SELECT count(*) FILTER (WHERE ${col})::DOUBLE AS t, count(*) FILTER (WHERE NOT ${col})::DOUBLE AS f FROM ${rel}`,
          );
          out[u.name] = { type: 'cat', counts: Float64Array.of(t!.t, t!.f), labels: ['True', 'False'], boolean: true };
        } else {
          const labels: string[] = [];
          const counts: number[] = [];
          for await (const [v, c] of db.chunks(
            `SELECT ${col}::VARCHAR AS v, count(*)::DOUBLE AS c FROM ${rel} WHERE ${col} IS NOT NULL GROUP BY 1 ORDER BY 1`,
          )) {
            v!.forEach((x, i) => {
              if (markersAsText && PANDAS_NA.has(x as string)) return;
              labels.push(x as string);
              counts.push(c![i] as number);
            });
          }
          // True/False (pandas' spellings) and nothing else in a CSV: a boolean column, labels 'True' / 'False'.
          const boolean = fmt === 'csv' && labels.length > 0 && labels.every((x) => PANDAS_TRUE.has(x) || PANDAS_FALSE.has(x));
          out[u.name] = boolean
            ? booleanColumn(labels, Float64Array.from(counts))
            : { type: 'cat', counts: Float64Array.from(counts), labels };
        }
        await onRows?.(n);
      }
      return { rows: n, columns: out, skipped: kinds.filter((k) => !k.kind).map((k) => ({ name: k.name, type: k.type })) };
    },
    threads === undefined ? {} : { threads },
  );
}

export interface DriftSource {
  file: string;
  format?: DataFormat;
}

/**
 * Reference and current read concurrently (each in its own DuckDB, with half the cores). When both fail, the
 * reference's error is the one thrown, as when they were read one after the other.
 */
export async function loadDriftPair(
  reference: DriftSource,
  current: DriftSource,
  only?: string[],
  onRows?: (side: 'reference' | 'current', rows: number) => void | Promise<void>,
): Promise<[LoadedDataset, LoadedDataset]> {
  // Half the cores each: two DuckDBs of two threads on two cores took half as long again (their
  // GROUP BYs and CSV parsing contend), see docs/benchmarks.md.
  const threads = Math.max(1, Math.floor(availableParallelism() / 2));
  const [r, c] = await Promise.allSettled([
    loadDriftDataset(reference.file, 'reference', only, reference.format, onRows && ((n) => onRows('reference', n)), threads),
    loadDriftDataset(current.file, 'current', only, current.format, onRows && ((n) => onRows('current', n)), threads),
  ]);
  if (r.status === 'rejected') throw r.reason;
  if (c.status === 'rejected') throw c.reason;
  return [r.value, c.value];
}
