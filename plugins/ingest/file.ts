import { existsSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { sniffCsv, sqlString, withDuckDB, type Duck } from '../../adapters/duckdb.js';
import { PipelineError } from '../../engine/errors.js';
import { isArtifactRef } from '../../engine/types.js';
import { storeDataset, writeParquet } from '../../lib/dataset.js';
import { definePlugin, type IoKind } from '../sdk.js';

const SQL_TYPES = ['DOUBLE', 'BIGINT', 'INTEGER', 'VARCHAR', 'BOOLEAN', 'DATE', 'TIMESTAMP'] as const;
const MAX_REPORTED = 10;

const params = z
  .object({
    /** A local path (relative to the project), a file:// URI; or leave it out and bind the `source` input. */
    path: z.string().min(1).optional(),
    format: z.enum(['auto', 'csv', 'parquet', 'jsonl']).default('auto'),
    csv: z
      .object({
        delimiter: z.string().length(1).optional(),
        header: z.boolean().default(true),
        nullValues: z.array(z.string()).optional(),
      })
      .strict()
      .default({ header: true }),
    /** Column types to enforce; a value that does not convert is a bad row. Others are inferred. */
    columns: z.record(z.string(), z.enum(SQL_TYPES)).optional(),
    /** `fail` (default): any malformed row fails the step with a report; `skip`: drop them, count them. */
    onBadRows: z.enum(['fail', 'skip']).default('fail'),
    minRows: z.number().int().min(0).default(1),
  })
  .strict();

type Params = z.infer<typeof params>;

function formatOf(p: Params, file: string, mediaType?: string): 'csv' | 'parquet' | 'jsonl' {
  if (p.format !== 'auto') return p.format;
  const lower = file.toLowerCase();
  if (lower.endsWith('.parquet') || mediaType === 'application/vnd.apache.parquet') return 'parquet';
  if (/\.(jsonl|ndjson)$/.test(lower) || mediaType === 'application/x-ndjson') return 'jsonl';
  return 'csv';
}

function readerSql(p: Params, format: 'csv' | 'parquet' | 'jsonl', file: string): string {
  const f = sqlString(file);
  if (format === 'parquet') return `read_parquet(${f})`;
  const types = typesOption(p);
  const columns = types ? `, ${types}` : '';
  if (format === 'jsonl') return `read_json(${f}, format='newline_delimited'${columns.replace('types=', 'columns=')})`;
  return `read_csv(${f}, ${csvOptions(p).join(', ')}${columns})`;
}

/** The `types={...}` option of the step's pinned column types, names and types as SQL strings. */
function typesOption(p: Params): string | undefined {
  if (!p.columns) return undefined;
  return `types={${Object.entries(p.columns)
    .map(([k, v]) => `${sqlString(k)}: ${sqlString(v)}`)
    .join(', ')}}`;
}

/** The read_csv options the step's params give (the rest DuckDB detects). */
function csvOptions(p: Params): string[] {
  const opts = [`header=${p.csv.header}`, 'store_rejects=true', 'strict_mode=true'];
  if (p.csv.delimiter) opts.push(`delim=${sqlString(p.csv.delimiter)}`);
  if (p.csv.nullValues) opts.push(`nullstr=[${p.csv.nullValues.map(sqlString).join(', ')}]`);
  return opts;
}

/**
 * read_csv with what DuckDB's sniffer detects written out (dialect, header, column names and types,
 * date formats) and `auto_detect=false`: the sniffer runs once, here, instead of again each time the
 * query is bound (the view, the probe, the COPY). The same sniffer on the same sample with the same
 * options as the reader in readerSql, so the same reading (test/unit/data-plugins.test.ts compares
 * the bytes). Undefined when DuckDB cannot sniff the file: readerSql's reader reports why.
 */
export async function sniffedCsvReader(db: Duck, p: Params, file: string): Promise<string | undefined> {
  const types = typesOption(p);
  const s = await sniffCsv(db, file, [...csvOptions(p), ...(types ? [types] : [])]);
  if (!s) return undefined;
  const opts = [...s.options, ...csvOptions(p).filter((o) => !/^(header|delim)=/.test(o))];
  return `read_csv(${sqlString(file)}, ${opts.join(', ')})`;
}

interface Reject {
  line: number;
  column_name: string | null;
  error_type: string;
  csv_line: string;
  error_message: string;
}

async function rejects(db: Duck): Promise<{ total: number; first: Reject[] }> {
  try {
    // DuckDB records one reject per missing column of a short line: report one per line, the first.
    const [{ n }] = (await db.rows<{ n: number }>('SELECT count(DISTINCT line)::BIGINT AS n FROM reject_errors')) as [{ n: number }];
    const first = await db.rows<Reject>(
      `SELECT line, column_name, error_type, csv_line, error_message FROM (SELECT *, row_number() OVER (PARTITION BY line ORDER BY column_idx) AS k FROM reject_errors) WHERE k = 1 ORDER BY line LIMIT ${MAX_REPORTED}`,
    );
    return { total: n, first };
  } catch {
    return { total: 0, first: [] };
  }
}

/**
 * ingest.file — reads a CSV, Parquet or JSON-lines file (a local path, a file:// URI, or the
 * `source` artifact input) with DuckDB and writes it as a Parquet `dataset` artifact. Column types
 * are inferred unless `columns` pins them. Malformed rows (wrong number of fields, values that do not
 * convert to a pinned type) fail the step with a report naming the file, line and column, or are
 * skipped and counted with `onBadRows: skip`. An empty file, or fewer than `minRows` rows, fails.
 */
export const ingestFile = definePlugin({
  name: 'ingest.file',
  version: '1',
  description: 'Reads CSV / Parquet / JSON lines (path or `source` artifact) into a Parquet dataset; reports malformed rows.',
  pathParams: ['path'],
  params,
  inputs: (p): Record<string, IoKind> => (p.path ? {} : { source: 'artifact' }),
  outputs: { dataset: 'dataset', rows: 'json', columns: 'json', badRows: 'json' },
  // A path's contents are not part of the cache key, so reading is never cached. Identical data
  // gives an identical Parquet digest, so the steps after it still hit the cache.
  cacheable: false,
  async run(ctx, p, inputs) {
    let file: string;
    let label: string;
    let mediaType: string | undefined;
    if (p.path) {
      file = p.path.startsWith('file://') ? fileURLToPath(p.path) : resolve(ctx.projectDir, p.path);
      label = p.path;
      if (!existsSync(file)) {
        throw new PipelineError('PLUGIN_PARAMS', `ingest.file: no file at ${file}.`, {
          hint: 'Paths are relative to the project folder of the worker.',
        });
      }
    } else {
      const ref = inputs['source'];
      if (!isArtifactRef(ref)) throw new PipelineError('PLUGIN_INPUT', 'ingest.file needs `path` or a `source` artifact input.');
      file = await ctx.store.getFile(ref);
      label = ref.name ?? ref.uri;
      mediaType = ref.mediaType;
    }
    if (statSync(file).size === 0) {
      throw new PipelineError('DATA_INVALID', `${label}: the file is empty.`, { hint: 'Check the export that produced it.' });
    }
    const format = formatOf(p, file, mediaType);
    return withDuckDB(async (db) => {
      try {
        // A view, not a table: the rows stream from the file into the Parquet writer once.
        const reader = (format === 'csv' ? await sniffedCsvReader(db, p, file) : undefined) ?? readerSql(p, format, file);
        await db.run(`CREATE TEMP VIEW source AS SELECT * FROM ${reader}`);
        await db.run(`CREATE TEMP TABLE __probe AS SELECT * FROM source LIMIT 0`);
      } catch (e) {
        throw new PipelineError('DATA_INVALID', `${label}: cannot read it as ${format}: ${(e as Error).message.split('\n')[0]}`, {
          hint:
            format === 'csv' ? 'Check the delimiter and the header, or set `format`.' : 'Set `format` if the file extension is misleading.',
        });
      }
      // One pass: the file streams into Parquet; malformed rows are recorded on the way.
      const written = await writeParquet(ctx, db, 'SELECT * FROM source', 'dataset');
      const bad = format === 'csv' ? await rejects(db) : { total: 0, first: [] };
      if (bad.total > 0 && p.onBadRows === 'fail') {
        const lines = bad.first.map(
          (r) =>
            `  line ${r.line}${r.column_name ? `, column '${r.column_name}'` : ''}: ${r.error_type.toLowerCase()} — ${r.error_message.split('\n')[0]}\n      ${JSON.stringify(r.csv_line).slice(0, 120)}`,
        );
        throw new PipelineError(
          'DATA_INVALID',
          `${label}: ${bad.total} malformed row${bad.total === 1 ? '' : 's'}:\n${lines.join('\n')}${bad.total > bad.first.length ? `\n  ... and ${bad.total - bad.first.length} more` : ''}`,
          {
            hint: 'Fix the rows, or set onBadRows: skip to drop them (they are counted in the badRows output).',
          },
        );
      }
      const n = written.rows;
      if (n < p.minRows) {
        throw new PipelineError('DATA_INVALID', `${label}: ${n} data rows; at least ${p.minRows} expected.`, {
          hint: 'An empty export, or a header-only file?',
        });
      }
      const dataset = await storeDataset(ctx, written.file, 'dataset');
      ctx.logger.info({ file: label, rows: n, badRows: bad.total }, 'ingested');
      return { dataset, rows: n, columns: written.columns, badRows: bad.total };
    });
  },
});
