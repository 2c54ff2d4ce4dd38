/**
 * process.transform's standardize fit: on clean data a count and two aggregates per column; when
 * they show a value that is not finite (or DuckDB refuses the deviation) the pass runs again with
 * the checks that count the infinite and null values. Both paths give what the previous method
 * (always the four aggregates with the checks, reproduced below) gave: the same means and deviations
 * to the bit, or the same error. Real DuckDB, one thread, so the sums are in the order of the rows.
 */
import { describe, expect, it } from 'vitest';
import { ident, withDuckDB, type Duck } from '../../adapters/duckdb.js';
import { fitTransform, type OrderedRow } from '../../plugins/process/transform.js';

/** The previous method: the four aggregates per column with the checks, then the same messages. */
async function previousStandardize(db: Duck, table: string, names: string[]): Promise<{ ops: unknown[] } | { error: string }> {
  const exprs = names.flatMap((n, i) => {
    const c = ident(n);
    return [
      `count_if(isinf(${c}::DOUBLE) OR isnan(${c}::DOUBLE))::BIGINT AS s${i}_0`,
      `count_if(${c} IS NULL)::BIGINT AS s${i}_1`,
      `avg(CASE WHEN isinf(${c}::DOUBLE) THEN NULL ELSE ${c}::DOUBLE END) AS s${i}_2`,
      `stddev_pop(CASE WHEN isinf(${c}::DOUBLE) THEN NULL ELSE ${c}::DOUBLE END) AS s${i}_3`,
    ];
  });
  let row: Record<string, unknown>;
  try {
    row = (await db.rows<Record<string, unknown>>(`SELECT ${exprs.join(', ')} FROM ${table}`))[0]!;
  } catch (e) {
    return { error: (e as Error).message };
  }
  const ops: unknown[] = [];
  for (const [i, name] of names.entries()) {
    const [inf, nulls, mean, std] = [
      Number(row[`s${i}_0`]),
      Number(row[`s${i}_1`]),
      row[`s${i}_2`] as number | null,
      row[`s${i}_3`] as number | null,
    ];
    if (inf > 0)
      return { error: `process.transform: cannot standardize '${name}': ${inf} values are infinite or NaN (a division by zero?).` };
    if (mean === null) return { error: `process.transform: cannot standardize '${name}': it is entirely null.` };
    if (nulls > 0) return { error: `process.transform: '${name}' has ${nulls} nulls; impute it before standardize.` };
    ops.push({ op: 'standardize', column: name, mean, std: std && std > 0 ? std : 1 });
  }
  return { ops };
}

/** The fit now, and the queries its one-thread pass ran. */
async function standardizeNow(db: Duck, table: string): Promise<{ result: { ops: unknown[] } | { error: string }; queries: string[] }> {
  const queries: string[] = [];
  const ordered: OrderedRow = async (sql) => {
    queries.push(sql);
    return (await db.rows<Record<string, unknown>>(sql))[0];
  };
  try {
    const state = await fitTransform(db, table, [{ op: 'standardize', columns: 'numeric' }], [], ordered);
    return { result: { ops: state.ops }, queries };
  } catch (e) {
    return { result: { error: (e as Error).message }, queries };
  }
}

/** Many rows with many significant digits, so that a sum in another order shows in its last bits. */
const CLEAN = `SELECT sin(i) * 1000 + i / 7 AS a, sqrt(i) / 3 AS b, (i % 5)::INTEGER AS k FROM range(1, 50001) t(i)`;

const CASES: [string, string, boolean][] = [
  // name, the table's query, whether the fallback pass runs
  ['clean data', CLEAN, false],
  ['a constant column (deviation 0, fitted as 1)', `SELECT a, 3.0::DOUBLE AS c FROM (${CLEAN})`, false],
  [
    'an infinite value',
    `SELECT a, CASE WHEN i = 7 THEN 'inf'::DOUBLE ELSE b END AS b FROM (SELECT *, row_number() OVER () AS i FROM (${CLEAN}))`,
    true,
  ],
  ['a NaN value', `SELECT a, CASE WHEN b > 70 THEN 'nan'::DOUBLE ELSE b END AS b FROM (${CLEAN})`, true],
  ['infinite and null values', `SELECT a, CASE WHEN b > 70 THEN '-inf'::DOUBLE WHEN b < 2 THEN NULL ELSE b END AS b FROM (${CLEAN})`, true],
  ['null values', `SELECT a, CASE WHEN b < 2 THEN NULL ELSE b END AS b FROM (${CLEAN})`, false],
  ['an entirely null column', `SELECT a, NULL::DOUBLE AS z FROM (${CLEAN})`, true],
  ['a deviation DuckDB refuses', `SELECT x FROM (VALUES (1e200::DOUBLE), (-1e200::DOUBLE)) t(x)`, true],
];

describe('process.transform standardize fit', () => {
  it.each(CASES)('%s: the same state or error as the previous method', async (_name, query, fallback) => {
    await withDuckDB(
      async (db) => {
        await db.run(`CREATE TEMP TABLE t AS ${query}`);
        const names = (await db.rows<{ column_name: string }>(`SELECT column_name FROM (DESCRIBE t)`)).map((r) => r.column_name);
        const before = await previousStandardize(db, 't', names);
        const now = await standardizeNow(db, 't');
        expect(now.result).toEqual(before);
        // Means and deviations to the bit (toEqual compares numbers with Object.is).
        if ('ops' in before) {
          const bits = (ops: unknown[]): string[] =>
            (ops as { mean: number; std: number }[]).map((o) => `${o.mean.toString()} ${o.std.toString()}`);
          expect(bits((now.result as { ops: unknown[] }).ops)).toEqual(bits(before.ops));
        }
        expect(now.queries.some((q) => q.includes('isinf('))).toBe(fallback);
      },
      { threads: 1 },
    );
  });

  it('an overflowing sum: the previous method fitted an infinite mean that did not apply; now a clear error', async () => {
    await withDuckDB(
      async (db) => {
        await db.run(`CREATE TEMP TABLE t AS SELECT x FROM (VALUES (1e308::DOUBLE), (1e308::DOUBLE)) t(x)`);
        expect(await previousStandardize(db, 't', ['x'])).toEqual({ ops: [{ op: 'standardize', column: 'x', mean: Infinity, std: 1 }] });
        const now = await standardizeNow(db, 't');
        expect(now.result).toEqual({ error: "process.transform: cannot standardize 'x': its mean overflows a double." });
        expect(now.queries.some((q) => q.includes('isinf('))).toBe(true);
      },
      { threads: 1 },
    );
  });
});
