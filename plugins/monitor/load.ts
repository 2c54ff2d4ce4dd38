/**
 * Reads a dataset file (Parquet, CSV, JSON lines) into the typed columns the drift library takes:
 * numbers (and booleans, as 0/1) as Float64Array with NaN for null, text as Int32Array codes into a
 * label list (-1 for null). Date and time columns are not tested, as in Evidently.
 */
import { ident, sqlString, withDuckDB } from '../../adapters/duckdb.js';
import { DataError } from '../../engine/errors.js';
import type { ColumnValues, Dataset } from '../../engine/drift/index.js';
import type { ArtifactRef } from '../../engine/types.js';
import { describe, isNumericType, type Column } from '../data/dataset.js';

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

export function readerFor(file: string, format: DataFormat = formatOf(file)): string {
  const f = sqlString(file);
  if (format === 'parquet') return `read_parquet(${f})`;
  if (format === 'jsonl') return `read_json_auto(${f})`;
  return `read_csv(${f}, header=true)`;
}

export interface LoadedDataset extends Dataset {
  /** Columns left out (dates, times, nested types), with their SQL type. */
  skipped: { name: string; type: string }[];
}

/**
 * `onRows` runs after each chunk of rows is read (rows so far); it may return a promise, which is
 * awaited (an activity heartbeats there).
 */
export async function loadDriftDataset(file: string, label: string, only?: string[], format?: DataFormat, onRows?: (rows: number) => void | Promise<void>): Promise<LoadedDataset> {
  return withDuckDB(async (db) => {
    const src = readerFor(file, format);
    let columns: Column[];
    try {
      columns = await describe(db, src);
    } catch (e) {
      throw new DataError('DATA_INVALID', `Cannot read the ${label} data ${file}: ${(e as Error).message.split('\n')[0]}`, { hint: 'Give a Parquet, CSV (with a header) or JSON lines file.' });
    }
    if (only) {
      const missing = only.filter((c) => !columns.some((d) => d.name === c));
      if (missing.length) {
        throw new DataError('DATA_INVALID', `The ${label} data ${file} has no column(s) ${missing.join(', ')}.`, { hint: `Its columns: ${columns.map((c) => c.name).join(', ')}.` });
      }
      columns = columns.filter((c) => only.includes(c.name));
    }
    const kinds = columns.map((c) => ({
      ...c,
      kind: isNumericType(c.type) || c.type === 'BOOLEAN' ? ('num' as const) : /^(VARCHAR|ENUM|UUID)/.test(c.type) ? ('cat' as const) : undefined,
    }));
    const used = kinds.filter((k) => k.kind);
    const [{ n }] = (await db.rows<{ n: number }>(`SELECT count(*)::BIGINT AS n FROM ${src}`)) as [{ n: number }];
    if (n === 0) throw new DataError('DATA_INVALID', `The ${label} data ${file} has no rows.`);
    const out: Record<string, ColumnValues> = {};
    const labelIndex = used.map(() => new Map<string, number>());
    const labels: string[][] = used.map(() => []);
    const nums = used.map((u) => (u.kind === 'num' ? new Float64Array(n) : undefined));
    const codes = used.map((u) => (u.kind === 'cat' ? new Int32Array(n) : undefined));
    const select = used.map((u) => (u.kind === 'num' ? `${ident(u.name)}::DOUBLE` : `${ident(u.name)}::VARCHAR`)).join(', ');
    let row = 0;
    if (used.length) {
      for await (const chunk of db.chunks(`SELECT ${select} FROM ${src}`)) {
        const len = chunk[0]!.length;
        used.forEach((u, c) => {
          const values = chunk[c]!;
          if (u.kind === 'num') {
            const target = nums[c]!;
            for (let i = 0; i < len; i++) {
              const v = values[i];
              target[row + i] = v === null || v === undefined ? NaN : (v as number);
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
      out[u.name] = u.kind === 'num' ? { type: 'num', values: nums[c]! } : { type: 'cat', codes: codes[c]!, labels: labels[c]! };
    });
    return { rows: n, columns: out, skipped: kinds.filter((k) => !k.kind).map((k) => ({ name: k.name, type: k.type })) };
  });
}
