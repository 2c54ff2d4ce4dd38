import { z } from 'zod';
import { withDuckDB } from '../../adapters/duckdb.js';
import { DataError } from '../../engine/errors.js';
import { datasetFile, view, writeDataset } from '../data/dataset.js';
import { definePlugin, type IoKind } from '../sdk.js';

/**
 * process.sql — runs one DuckDB SQL query over named dataset inputs and writes the result as a
 * dataset. Each name in `tables` (default ['input']) is an input of the step and a view in the
 * query: `SELECT *, total_rooms / households AS rooms_per_household FROM input`.
 */
export const sql = definePlugin({
  name: 'process.sql',
  version: '1',
  description: 'DuckDB SQL over named dataset inputs (each name in `tables` is an input and a view).',
  params: z
    .object({
      sql: z.string().min(1),
      tables: z.array(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'table names are SQL identifiers')).min(1).default(['input']),
    })
    .strict(),
  inputs: (p): Record<string, IoKind> => Object.fromEntries(p.tables.map((t) => [t, 'dataset' as const])),
  outputs: { dataset: 'dataset', rows: 'json', columns: 'json' },
  async run(ctx, p, inputs) {
    return withDuckDB(async (db) => {
      for (const t of p.tables) await view(db, t, await datasetFile(ctx, inputs, t));
      try {
        const w = await writeDataset(ctx, db, p.sql, 'dataset');
        return { dataset: w.ref, rows: w.rows, columns: w.columns };
      } catch (e) {
        throw new DataError('DATA_INVALID', `process.sql: the query failed: ${(e as Error).message.split('\n')[0]}`, {
          hint: `Tables available: ${p.tables.join(', ')}. Check column names with 'DESCRIBE ${p.tables[0]}'.`,
        });
      }
    });
  },
});
