/**
 * ingest.file writes the same Parquet bytes for the same file, also when the file spans many row
 * groups that DuckDB reads and writes on two threads and several ingests run at once (timing that
 * used to move a row group's end: docs/benchmarks.md). Then the steps after it hit the cache on a
 * rerun. Real DuckDB, a real local store.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { sqlString, withDuckDB } from '../../adapters/duckdb.js';
import type { ArtifactRef } from '../../engine/types.js';
import { ingestFile } from '../../plugins/ingest/file.js';
import { sql } from '../../plugins/process/sql.js';
import { testStore } from '../../api/testing.js';
import { runPlugin, testContext } from './step-context.js';

const ROWS = 1_500_000; // about 150 MB of CSV: many of the reader's slices, many row groups
const dir = mkdtempSync(join(tmpdir(), 'mlpipe-ingest-det-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const sha256 = (file: string): string => createHash('sha256').update(readFileSync(file)).digest('hex');

describe('ingest.file on a file of many row groups', () => {
  it('writes byte-identical Parquet every time, several ingests at once, and so does a step after it', async () => {
    const csv = join(dir, 'rows.csv');
    await withDuckDB((db) =>
      db.run(
        `COPY (SELECT i AS id, random() * 1000 AS a, CASE WHEN random() < 0.01 THEN NULL ELSE floor(random() * 2000) END AS b,
           sqrt(i) / 3 AS c, ['x', 'y', 'z'][1 + (i % 3)::INT] AS kind FROM range(${ROWS}) t(i)) TO ${sqlString(csv)} (HEADER)`,
      ),
    );
    // One store; each run its own context (and scratch folder), as each attempt has.
    const store = testStore();
    const ctx = (): ReturnType<typeof testContext> => testContext(dir, store);
    const ingestAll = (): Promise<ArtifactRef[]> =>
      Promise.all([0, 1, 2].map(async () => (await runPlugin(ingestFile, ctx(), { path: csv }))['dataset'] as ArtifactRef));
    const refs = [...(await ingestAll()), ...(await ingestAll())];
    // The store's digest is of the bytes: one digest, and the file's own hash is it.
    expect(new Set(refs.map((r) => r.sha256)).size).toBe(1);
    const file = await store.getFile(refs[0]!);
    expect(sha256(file)).toBe(refs[0]!.sha256);

    const groups = await withDuckDB((db) =>
      db.rows<{ n: number }>(
        `SELECT row_group_num_rows AS n FROM parquet_metadata(${sqlString(file)}) WHERE column_id = 0 ORDER BY row_group_id`,
      ),
    );
    expect(groups.length).toBeGreaterThan(4);
    expect(groups.reduce((s, g) => s + Number(g.n), 0)).toBe(ROWS);
    // Every row, in the file's order.
    const [check] = await withDuckDB((db) =>
      db.rows<{ n: number; ordered: boolean }>(
        `SELECT count(*)::BIGINT AS n, bool_and(id = rn - 1) AS ordered FROM (SELECT id, row_number() OVER () AS rn FROM read_parquet(${sqlString(file)}))`,
      ),
    );
    expect(check).toEqual({ n: ROWS, ordered: true });

    // A step after it, on these row groups, gives one output too.
    const after = await Promise.all(
      [0, 1, 2].map(
        async () =>
          (await runPlugin(sql, ctx(), { sql: 'SELECT *, a * c AS ac FROM input' }, { input: refs[0] }))['dataset'] as ArtifactRef,
      ),
    );
    expect(new Set(after.map((r) => r.sha256)).size).toBe(1);
  }, 180_000);
});
