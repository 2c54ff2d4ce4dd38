/**
 * The drift loader against DuckDB's own row values: typed columns (NULL as NaN), categories as
 * dictionary codes built in SQL (NULL as -1, labels with quotes and non-ASCII intact), over many
 * chunks of a Parquet and a CSV file; both sides read at once, the reference's error first.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { sqlString, withDuckDB } from '../../adapters/duckdb.js';
import { PipelineError } from '../../engine/errors.js';
import type { ColumnValues } from '../../engine/drift/index.js';
import { loadDriftDataset, loadDriftPair } from '../../lib/drift-data.js';

const dir = mkdtempSync(join(tmpdir(), 'mlpipe-drift-data-'));
const ROWS = 10_007; // several 2048-row chunks and a partial one
const LABELS = ["it's", 'a"b', 'ünï', 'x;DROP TABLE t', 'plain'];

/** A file where every 13th number and every 11th category is missing, and `n` also holds NaN. */
async function write(name: string, format: 'parquet' | 'csv'): Promise<string> {
  const file = join(dir, `${name}.${format}`);
  const labels = `[${LABELS.map(sqlString).join(', ')}]`;
  await withDuckDB((db) =>
    db.run(
      `COPY (SELECT CASE WHEN i % 13 = 0 THEN NULL ELSE (i * 7919 % 1000) / 8.0 END AS x,
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

function decoded(col: ColumnValues | undefined): (string | null)[] {
  if (col?.type !== 'cat') throw new Error('not a categorical column');
  return Array.from(col.codes, (k) => (k < 0 ? null : col.labels[k]!));
}

describe('loadDriftDataset', () => {
  for (const format of ['parquet', 'csv'] as const) {
    it(`reads ${format} columns as typed arrays and categories as codes, equal to the rows`, async () => {
      const file = await write(`a-${format}`, format);
      const want = await expected(file);
      const got = await loadDriftDataset(file, 'reference');
      expect(got.rows).toBe(ROWS);
      const x = got.columns['x'];
      const n = got.columns['n'];
      expect(x?.type).toBe('num');
      expect(n?.type).toBe('num');
      if (x?.type !== 'num' || n?.type !== 'num') return;
      expect(x.values).toBeInstanceOf(Float64Array);
      expect(Array.from(x.values)).toEqual(want.x);
      expect(Array.from(n.values)).toEqual(want.n);
      expect(Number.isNaN(n.values[0])).toBe(true);
      const c = got.columns['c'];
      expect(c).toMatchObject({ type: 'cat', labels: [...LABELS].sort() });
      expect(decoded(c)).toEqual(want.c);
      expect(got.columns['b']).toMatchObject({ type: 'cat', labels: ['True', 'False'], boolean: true });
      expect(decoded(got.columns['b'])).toEqual(want.b.map((v) => (v === null ? null : v ? 'True' : 'False')));
    });
  }

  it('reads both sides at once; when both fail, the reference is named', async () => {
    const good = await write('pair', 'parquet');
    const [r, c] = await loadDriftPair({ file: good }, { file: good });
    expect(r.rows).toBe(ROWS);
    expect(decoded(c.columns['c'])).toEqual(decoded(r.columns['c']));
    const missing = join(dir, 'missing.parquet');
    const e = await loadDriftPair({ file: missing }, { file: join(dir, 'also-missing.csv') }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(PipelineError);
    expect((e as PipelineError).message).toContain(`reference data ${missing}`);
    const cur = await loadDriftPair({ file: good }, { file: missing }).catch((x: unknown) => x);
    expect((cur as PipelineError).message).toContain(`current data ${missing}`);
  });
});
