import { z } from 'zod';
import { ident, sqlString, withDuckDB, type Duck } from '../../adapters/duckdb.js';
import { PipelineError } from '../../engine/errors.js';
import { didYouMean } from '../../engine/suggest.js';
import { datasetFile, describe, isNumericType, view } from '../../lib/dataset.js';
import { definePlugin } from '../sdk.js';

const columnRule = z
  .object({
    /** The column must exist (default true). */
    required: z.boolean().default(true),
    type: z.enum(['number', 'integer', 'string', 'boolean', 'date']).optional(),
    /** Largest share of nulls allowed, 0..1 (NaN counts as null in number columns). A column that is entirely null always fails unless this is 1. */
    maxNullShare: z.number().min(0).max(1).optional(),
    /** Whether a number column may hold NaN or ±Infinity (default false: each one is a violation). */
    allowNonFinite: z.boolean().default(false),
    min: z.number().optional(),
    max: z.number().optional(),
    allowed: z.array(z.union([z.string(), z.number(), z.boolean()])).optional(),
    unique: z.boolean().optional(),
  })
  .strict();

const params = z
  .object({
    columns: z.record(z.string(), columnRule).default({}),
    rows: z
      .object({ min: z.number().int().min(0).optional(), max: z.number().int().min(0).optional() })
      .strict()
      .optional(),
    /** `fail` (default) stops the run with the report; `warn` logs it and lets the run go on. */
    onFailure: z.enum(['fail', 'warn']).default('fail'),
  })
  .strict();

type Rule = z.infer<typeof columnRule>;

const TYPE_CHECK: Record<NonNullable<Rule['type']>, (col: string) => string> = {
  number: (c) => `TRY_CAST(${c} AS DOUBLE) IS NULL`,
  integer: (c) => `(TRY_CAST(${c} AS DOUBLE) IS NULL OR TRY_CAST(${c} AS DOUBLE) <> floor(TRY_CAST(${c} AS DOUBLE)))`,
  string: () => 'false',
  boolean: (c) => `TRY_CAST(${c} AS BOOLEAN) IS NULL`,
  date: (c) => `TRY_CAST(${c} AS DATE) IS NULL`,
};

interface Violation {
  column?: string;
  check: string;
  message: string;
}

async function firstOffender(db: Duck, col: string, where: string): Promise<{ n: number; row?: number; value?: unknown }> {
  const [agg] = (await db.rows<{ n: number }>(`SELECT count(*)::BIGINT AS n FROM data WHERE ${where}`)) as [{ n: number }];
  if (agg.n === 0) return { n: 0 };
  const [first] = await db.rows<{ row: number; value: unknown }>(
    `SELECT __row AS row, ${col} AS value FROM data WHERE ${where} ORDER BY __row LIMIT 1`,
  );
  return { n: agg.n, row: first?.row, value: first?.value };
}

/** A value as the report shows it: NaN and infinities by name (JSON has no token for them). */
const show = (v: unknown): string =>
  typeof v === 'number' && !Number.isFinite(v) ? String(v) : typeof v === 'bigint' ? String(v) : JSON.stringify(v);

/** DuckDB types whose values can be NaN or infinite. */
const isFloatType = (type: string): boolean => /^(FLOAT|DOUBLE|REAL)/.test(type);

const pct = (x: number): string => (x === 0 ? '0%' : `${(100 * x).toFixed(x < 0.01 ? 2 : 1)}%`);

/**
 * validate.expectations — checks a dataset against declarative expectations: columns present, of a
 * type, with at most a share of nulls, within a range, among allowed values, unique; and the row
 * count within bounds. Every violation is reported with the column, how many rows break it and the
 * first one (data row number and value). NaN and ±Infinity in a number column are violations
 * unless `allowNonFinite: true`, and NaN counts as null for `maxNullShare`. `onFailure: fail` stops the run; `warn` logs and goes on.
 * Outputs `passed`, `violations` and a JSON `report` artifact.
 */
export const validateExpectations = definePlugin({
  name: 'validate.expectations',
  version: '1',
  description: 'Checks a dataset against column and row-count expectations; fails (or warns) with a readable report.',
  params,
  inputs: { dataset: 'dataset' },
  outputs: { passed: 'json', violations: 'json', report: 'artifact' },
  async run(ctx, p, inputs) {
    const file = await datasetFile(ctx, inputs, 'dataset');
    const violations: Violation[] = [];
    const rows = await withDuckDB(async (db) => {
      await view(db, 'raw', file);
      await db.run('CREATE VIEW data AS SELECT row_number() OVER () AS __row, * FROM raw');
      const columns = await describe(db, 'raw');
      const [{ n }] = (await db.rows<{ n: number }>('SELECT count(*)::BIGINT AS n FROM raw')) as [{ n: number }];
      if (p.rows?.min !== undefined && n < p.rows.min)
        violations.push({ check: 'rows.min', message: `${n} rows; at least ${p.rows.min} expected` });
      if (p.rows?.max !== undefined && n > p.rows.max)
        violations.push({ check: 'rows.max', message: `${n} rows; at most ${p.rows.max} expected` });

      for (const [name, rule] of Object.entries(p.columns)) {
        const meta = columns.find((c) => c.name === name);
        if (!meta) {
          if (rule.required)
            violations.push({
              column: name,
              check: 'required',
              message: `column is missing.${didYouMean(
                name,
                columns.map((c) => c.name),
              )} Columns: ${columns.map((c) => c.name).join(', ')}`,
            });
          continue;
        }
        const col = ident(name);
        // A number column: floats, or text the rule says holds numbers (TRY_CAST reads 'NaN', 'inf').
        const asNumber = isFloatType(meta.type)
          ? col
          : (rule.type === 'number' || rule.type === 'integer') && !isNumericType(meta.type)
            ? `TRY_CAST(${col} AS DOUBLE)`
            : undefined;
        const [nulls] = (await db.rows<{ n: number }>(
          `SELECT count(*)::BIGINT AS n FROM raw WHERE ${col} IS NULL${asNumber ? ` OR isnan(${asNumber})` : ''}`,
        )) as [{ n: number }];
        const share = n === 0 ? 0 : nulls.n / n;
        if (n > 0 && nulls.n === n && rule.maxNullShare !== 1) {
          violations.push({ column: name, check: 'allNull', message: `column is entirely null (${n} rows)` });
          continue;
        }
        if (rule.maxNullShare !== undefined && share > rule.maxNullShare) {
          violations.push({
            column: name,
            check: 'maxNullShare',
            message: `${pct(share)} null (${nulls.n} of ${n}); at most ${pct(rule.maxNullShare)} allowed`,
          });
        }
        if (asNumber && !rule.allowNonFinite) {
          const bad = await firstOffender(db, col, `${col} IS NOT NULL AND NOT isfinite(${asNumber})`);
          if (bad.n > 0) {
            violations.push({
              column: name,
              check: 'nonFinite',
              message: `${bad.n} value${bad.n === 1 ? ' is' : 's are'} NaN or infinite (first at data row ${bad.row}: ${show(bad.value)}); set allowNonFinite: true to accept them`,
            });
          }
        }
        if (rule.type && !(rule.type === 'number' && isNumericType(meta.type))) {
          const bad = await firstOffender(db, col, `${col} IS NOT NULL AND ${TYPE_CHECK[rule.type](col)}`);
          if (bad.n > 0) {
            violations.push({
              column: name,
              check: 'type',
              message: `${bad.n} value${bad.n === 1 ? ' is' : 's are'} not ${rule.type === 'integer' ? 'an integer' : `a ${rule.type}`} (first at data row ${bad.row}: ${show(bad.value)}); column type is ${meta.type}`,
            });
            continue;
          }
        }
        const num = isNumericType(meta.type) ? col : `TRY_CAST(${col} AS DOUBLE)`;
        if (rule.min !== undefined) {
          const bad = await firstOffender(db, col, `${num} < ${rule.min}`);
          if (bad.n > 0)
            violations.push({
              column: name,
              check: 'min',
              message: `${bad.n} value${bad.n === 1 ? '' : 's'} below ${rule.min} (first at data row ${bad.row}: ${show(bad.value)})`,
            });
        }
        if (rule.max !== undefined) {
          const bad = await firstOffender(db, col, `${num} > ${rule.max}`);
          if (bad.n > 0)
            violations.push({
              column: name,
              check: 'max',
              message: `${bad.n} value${bad.n === 1 ? '' : 's'} above ${rule.max} (first at data row ${bad.row}: ${show(bad.value)})`,
            });
        }
        if (rule.allowed) {
          const notAllowed = `${col} IS NOT NULL AND CAST(${col} AS VARCHAR) NOT IN (${rule.allowed.map((v) => sqlString(String(v))).join(', ')})`;
          const bad = await firstOffender(db, col, notAllowed);
          if (bad.n > 0) {
            const others = await db.rows<{ v: unknown }>(`SELECT DISTINCT ${col} AS v FROM raw WHERE ${notAllowed} ORDER BY 1 LIMIT 5`);
            violations.push({
              column: name,
              check: 'allowed',
              message: `${bad.n} value${bad.n === 1 ? ' is' : 's are'} not allowed: ${others.map((o) => JSON.stringify(o.v)).join(', ')} (first at data row ${bad.row})`,
            });
          }
        }
        if (rule.unique) {
          const [dups] = (await db.rows<{ n: number }>(
            `SELECT count(*)::BIGINT AS n FROM (SELECT ${col} FROM raw WHERE ${col} IS NOT NULL GROUP BY 1 HAVING count(*) > 1)`,
          )) as [{ n: number }];
          if (dups.n > 0)
            violations.push({
              column: name,
              check: 'unique',
              message: `${dups.n} value${dups.n === 1 ? ' appears' : 's appear'} more than once`,
            });
        }
      }
      return n;
    });

    const report = { passed: violations.length === 0, rows, violations };
    const ref = await ctx.store.put(JSON.stringify(report, null, 2), { name: 'validation-report.json', mediaType: 'application/json' });
    if (violations.length > 0) {
      const text = violations.map((v) => `  - ${v.column ? `column '${v.column}'` : 'dataset'}: ${v.message}`).join('\n');
      if (p.onFailure === 'fail') {
        throw new PipelineError(
          'DATA_INVALID',
          `Dataset failed ${violations.length} expectation${violations.length === 1 ? '' : 's'} (${rows} rows):\n${text}`,
          {
            hint: 'Fix the data, or relax the expectation (or set onFailure: warn).',
          },
        );
      }
      ctx.logger.warn({ violations: violations.length }, `dataset failed expectations:\n${text}`);
    }
    return { passed: violations.length === 0, violations: violations.length, report: ref };
  },
});
