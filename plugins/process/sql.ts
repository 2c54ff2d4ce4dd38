import { resolve } from 'node:path';
import { z } from 'zod';
import { NotOneStatement, withDuckDB, type SqlParams } from '../../adapters/duckdb.js';
import { PipelineError } from '../../engine/errors.js';
import { datasetPath, deferDataset, loadDatasets, writeDataset } from '../../lib/dataset.js';
import { isArtifactRef, type ArtifactRef } from '../../engine/types.js';
import { definePlugin, type IoKind } from '../sdk.js';

const identifier = /^[A-Za-z_][A-Za-z0-9_]*$/;

function tableRefs(inputs: Record<string, unknown>, tables: string[]): Record<string, ArtifactRef> {
  return Object.fromEntries(tables.map((t) => [t, inputs[t]]).filter((e): e is [string, ArtifactRef] => isArtifactRef(e[1])));
}

/**
 * process.sql — runs one DuckDB SQL query over named dataset inputs and writes the result as a
 * dataset. Each name in `tables` (default ['input']) is an input of the step and a view in the
 * query: `SELECT *, total_rooms / households AS rooms_per_household FROM input`.
 *
 * Values come in through `params` and are bound as prepared-statement parameters (`$name` in the
 * SQL), never written into it; the SQL itself is code and takes no `${...}`. The query reads only
 * its input datasets: file-reading table functions, ATTACH, COPY, INSTALL and LOAD are refused,
 * unless the pipeline sets `externalAccess` (true, or a list of folders).
 *
 * When only DuckDB steps read its dataset (and `externalAccess` is false), the step runs the query
 * once to count its rows and passes the dataset on deferred (lib/dataset.ts): the next step computes
 * it in its own session instead of reading a Parquet file this one wrote.
 */
export const sql = definePlugin({
  name: 'process.sql',
  version: '1',
  description: 'DuckDB SQL over named dataset inputs (each name in `tables` is an input and a view); `params` bound as $name.',
  params: z
    .object({
      sql: z.string().min(1),
      tables: z.array(z.string().regex(identifier, 'table names are SQL identifiers')).min(1).default(['input']),
      /** Values bound to `$name` parameters of the query (a run's params and overrides go here, not into `sql`). */
      params: z
        .record(
          z.string().regex(identifier, 'parameter names are identifiers: $name'),
          z.union([z.string(), z.number(), z.boolean(), z.null()]),
        )
        .default({}),
      /**
       * What the query may read and write besides its inputs: false (default) nothing; a list of
       * folders (relative to the project); true, any file, extension or URL.
       */
      externalAccess: z.union([z.boolean(), z.array(z.string().min(1)).min(1)]).default(false),
    })
    .strict(),
  codeParams: ['sql', 'externalAccess'],
  codeHint:
    'Pass values as params: { name: ${params.x} } and write $name in the SQL (bound, not spliced); what step SQL may read (externalAccess) is written in the pipeline itself.',
  inputs: (p): Record<string, IoKind> => Object.fromEntries(p.tables.map((t) => [t, 'dataset' as const])),
  outputs: { dataset: 'dataset', rows: 'json', columns: 'json' },
  deferred: { outputs: (p) => (p.externalAccess === false ? ['dataset'] : []), inputs: (p) => p.tables },
  async run(ctx, p, inputs) {
    const fail = (what: string, hint: string): PipelineError =>
      new PipelineError('DATA_INVALID', `process.sql (step '${ctx.stepId}'): ${what}`, { hint });
    return withDuckDB(async (db) => {
      const datasets = await loadDatasets(ctx, inputs, p.tables);
      if (p.externalAccess !== true) {
        const directories = (p.externalAccess || []).map((d) => `${resolve(ctx.projectDir, d)}/`);
        await db.restrict({ paths: [...datasets.files, datasetPath(ctx, 'dataset')], directories });
      }
      for (const t of p.tables) await datasets.bind(db, t, t);
      const tablesHint = `Tables available: ${p.tables.join(', ')}. Check column names with 'DESCRIBE ${p.tables[0]}'.`;
      const accessHint = 'Step SQL reads only its input tables; the pipeline may allow more with externalAccess: [folder, ...] (or true).';
      const cause = (e: unknown): string => (e as Error).message.split('\n')[0]!;
      let shape: { kind: string; params: string[] };
      try {
        shape = await db.inspect(p.sql);
      } catch (e) {
        if (e instanceof NotOneStatement) {
          // DuckDB runs a PIVOT that finds its columns itself as several statements.
          const pivot = /\bPIVOT\b/i.test(p.sql) ? " A PIVOT needs its values listed: PIVOT t ON col IN ('a', 'b') USING ..." : '';
          throw fail(`${e.message}.`, `Write one SELECT query (no \`;\` between statements).${pivot}`);
        }
        throw fail(`the query failed: ${cause(e)}`, /Permission Error/.test(cause(e)) ? accessHint : tablesHint);
      }
      if (shape.kind !== 'SELECT') {
        const hint = 'The step writes the result of one query; ATTACH, COPY, CREATE, SET, PRAGMA, INSTALL and LOAD are not step SQL.';
        throw fail(
          `the SQL is not a query but a statement of kind ${shape.kind}; only a query (SELECT, WITH, FROM, VALUES) is allowed.`,
          hint,
        );
      }
      const given = Object.keys(p.params);
      const missing = shape.params.filter((n) => !given.includes(n));
      const unused = given.filter((n) => !shape.params.includes(n));
      if (missing.length) {
        const uses = missing.map((n) => `$${n}`).join(', ');
        throw fail(`the query uses ${uses}, which params does not set.`, `Set them under params:, e.g. params: { ${missing[0]}: ... }.`);
      }
      if (unused.length) {
        const names = unused.join(', ');
        const refs = unused.map((n) => `$${n}`).join(', ');
        throw fail(
          `params ${names} ${unused.length === 1 ? 'is' : 'are'} not used by the query.`,
          `Refer to them as ${refs}, or remove them.`,
        );
      }
      try {
        const w =
          ctx.defer?.includes('dataset') && p.externalAccess === false
            ? await deferDataset(
                ctx,
                db,
                { plugin: 'process.sql', version: '1' },
                p.sql,
                tableRefs(inputs, p.tables),
                'dataset',
                p.params as SqlParams,
              )
            : await writeDataset(ctx, db, p.sql, 'dataset', p.params as SqlParams);
        return { dataset: w.ref, rows: w.rows, columns: w.columns };
      } catch (e) {
        throw fail(`the query failed: ${cause(e)}`, /Permission Error/.test(cause(e)) ? accessHint : tablesHint);
      }
    });
  },
});
