/**
 * The drift loader against DuckDB's own row values: frequency tables (NULL and NaN as missing),
 * category counts (labels with quotes and non-ASCII intact), from a Parquet and a CSV file; drift
 * on the tables equal to drift on the row values; both sides read at once, the reference's error
 * first.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { sqlString, withDuckDB } from '../../adapters/duckdb.js';
import { PipelineError } from '../../engine/errors.js';
import { computeDrift, type ColumnValues, type Dataset } from '../../engine/drift/index.js';
import { loadDriftDataset, loadDriftPair } from '../../lib/drift-data.js';

const dir = mkdtempSync(join(tmpdir(), 'mlpipe-drift-data-'));
const ROWS = 10_007; // several 2048-row chunks and a partial one
const LABELS = ["it's", 'a"b', 'ünï', 'x;DROP TABLE t', 'plain'];

/** A file where every 13th number and every 11th category is missing, and `n` also holds NaN; `shift` moves x. */
async function write(name: string, format: 'parquet' | 'csv', shift = 0): Promise<string> {
  const file = join(dir, `${name}.${format}`);
  const labels = `[${LABELS.map(sqlString).join(', ')}]`;
  await withDuckDB((db) =>
    db.run(
      `COPY (SELECT CASE WHEN i % 13 = 0 THEN NULL ELSE (i * 7919 % 1000) / 8.0 + ${shift} * (i % 7) END AS x,
                    CASE WHEN i % 17 = 0 THEN 'NaN'::DOUBLE ELSE i % 5 END AS n,
                    CASE WHEN i % 11 = 0 THEN NULL ELSE ${labels}[1 + (i * 31 % 5)::INT] END AS c,
                    i % 3 = 0 AS b
             FROM range(${ROWS}) t(i)) TO ${sqlString(file)} (FORMAT ${format}${format === 'csv' ? ', HEADER' : ''})`,
    ),
  );
  return file;
}

/** What the rows say, one value per row in file order. */
async function expected(file: string): Promise<{ x: number[]; n: number[]; c: (string | null)[]; b: (boolean | null)[] }> {
  const reader = file.endsWith('.csv') ? `read_csv(${sqlString(file)}, header=true)` : `read_parquet(${sqlString(file)})`;
  const rows = await withDuckDB((db) => db.rows<{ x: number | null; n: number; c: string | null; b: boolean | null }>(`FROM ${reader}`));
  return {
    x: rows.map((r) => (r.x === null ? NaN : r.x)),
    n: rows.map((r) => r.n),
    c: rows.map((r) => r.c),
    b: rows.map((r) => r.b),
  };
}

/** A numeric column's frequency table from its values: distinct values ascending, counts, missing. */
function table(values: number[]): { distinct: number[]; counts: number[]; missing: number } {
  const by = new Map<number, number>();
  let missing = 0;
  for (const v of values) {
    if (Number.isNaN(v)) missing++;
    else by.set(v, (by.get(v) ?? 0) + 1);
  }
  const distinct = [...by.keys()].sort((a, b) => a - b);
  return { distinct, counts: distinct.map((v) => by.get(v)!), missing };
}

/** Counts per label of a categorical column (from codes or counts). */
function labelCounts(col: ColumnValues | undefined): Record<string, number> {
  if (col?.type !== 'cat') throw new Error('not a categorical column');
  const out: Record<string, number> = {};
  const add = (label: string, n: number): void => {
    if (n > 0) out[label] = (out[label] ?? 0) + n;
  };
  if ('codes' in col) for (const k of col.codes) add(col.labels[k]!, k >= 0 ? 1 : 0);
  else col.labels.forEach((l, k) => add(l, col.counts[k]!));
  return out;
}

function tally(xs: (string | null)[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const x of xs) if (x !== null) out[x] = (out[x] ?? 0) + 1;
  return out;
}

/** The rows as the typed columns computeDrift takes, for comparison with the loaded tables. */
function fromRows(want: Awaited<ReturnType<typeof expected>>): Dataset {
  const codes = (xs: (string | null)[], labels: string[]): Int32Array => Int32Array.from(xs, (x) => (x === null ? -1 : labels.indexOf(x)));
  const b = want.b.map((v) => (v === null ? null : v ? 'True' : 'False'));
  return {
    rows: want.x.length,
    columns: {
      x: { type: 'num', values: Float64Array.from(want.x) },
      n: { type: 'num', values: Float64Array.from(want.n) },
      c: { type: 'cat', codes: codes(want.c, LABELS), labels: LABELS },
      b: { type: 'cat', codes: codes(b, ['True', 'False']), labels: ['True', 'False'], boolean: true },
    },
  };
}

describe('loadDriftDataset', () => {
  for (const format of ['parquet', 'csv'] as const) {
    it(`reads ${format} columns as frequency tables equal to the rows' counts, and drift on them equals drift on the rows`, async () => {
      const file = await write(`a-${format}`, format);
      const want = await expected(file);
      const got = await loadDriftDataset(file, 'reference');
      expect(got.rows).toBe(ROWS);
      for (const name of ['x', 'n'] as const) {
        const col = got.columns[name];
        if (col?.type !== 'num' || !('distinct' in col)) throw new Error(`${name}: not a numeric frequency table`);
        expect(col.distinct).toBeInstanceOf(Float64Array);
        expect({ distinct: Array.from(col.distinct), counts: Array.from(col.counts), missing: col.missing }, name).toEqual(
          table(want[name]),
        );
      }
      // n holds NaN (not NULL): counted as missing all the same, as pandas reads it.
      expect(table(want.n).missing).toBeGreaterThan(0);
      expect(got.columns['c']).toMatchObject({ type: 'cat', labels: [...LABELS].sort() });
      expect(labelCounts(got.columns['c'])).toEqual(tally(want.c));
      expect(got.columns['b']).toMatchObject({ type: 'cat', labels: ['True', 'False'], boolean: true });
      expect(labelCounts(got.columns['b'])).toEqual(tally(want.b.map((v) => (v === null ? null : v ? 'True' : 'False'))));
      // The tests on the tables give what they give on the values themselves, to the last bit.
      const other = await write(`b-${format}`, format, 0.5);
      const cur = await loadDriftDataset(other, 'current');
      expect(computeDrift(got, cur)).toEqual(computeDrift(fromRows(want), fromRows(await expected(other))));
    });
  }

  it("reads a table longer than its first buffer (NULL and NaN groups anywhere in it) as DuckDB's GROUP BY counts it", async () => {
    const file = join(dir, 'wide.parquet');
    // 30,011 rows, about 12,000 distinct values, -0 beside 0, a NULL and a NaN group.
    await withDuckDB((db) =>
      db.run(
        `COPY (SELECT CASE WHEN i % 101 = 0 THEN NULL WHEN i % 103 = 0 THEN 'NaN'::DOUBLE WHEN i % 97 = 0 THEN -0.0
                           ELSE (i * 7919 % 12007) / 3.0 - 2000 END AS v
               FROM range(30011) t(i)) TO ${sqlString(file)} (FORMAT parquet)`,
      ),
    );
    const want = await withDuckDB((db) =>
      db.rows<{ v: number | null; c: number }>(`SELECT v, count(*)::INT AS c FROM read_parquet(${sqlString(file)}) GROUP BY 1 ORDER BY 1`),
    );
    const kept = want.filter((r) => r.v !== null && !Number.isNaN(r.v));
    expect(kept.length).toBeGreaterThan(4096);
    const got = (await loadDriftDataset(file, 'reference')).columns['v'];
    if (got?.type !== 'num' || !('distinct' in got)) throw new Error('v: not a numeric frequency table');
    expect(Array.from(got.distinct)).toEqual(kept.map((r) => r.v));
    expect(Array.from(got.counts)).toEqual(kept.map((r) => r.c));
    expect(got.missing).toBe(want.filter((r) => r.v === null || Number.isNaN(r.v)).reduce((a, r) => a + r.c, 0));
    expect(got.missing).toBeGreaterThan(300);
  });

  it('reads both sides at once; when both fail, the reference is named', async () => {
    const good = await write('pair', 'parquet');
    const [r, c] = await loadDriftPair({ file: good }, { file: good });
    expect(r.rows).toBe(ROWS);
    expect(labelCounts(c.columns['c'])).toEqual(labelCounts(r.columns['c']));
    const missing = join(dir, 'missing.parquet');
    const e = await loadDriftPair({ file: missing }, { file: join(dir, 'also-missing.csv') }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(PipelineError);
    expect((e as PipelineError).message).toContain(`reference data ${missing}`);
    const cur = await loadDriftPair({ file: good }, { file: missing }).catch((x: unknown) => x);
    expect((cur as PipelineError).message).toContain(`current data ${missing}`);
  });
});
