/**
 * process.transform gives the same bytes for the same rows, on data of several Parquet row groups
 * that DuckDB reads on two threads: its means and deviations are sums in the order of the rows, so
 * the steps after it hit the cache when it runs again. Real DuckDB, a real local store.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { ArtifactRef } from '../../engine/types.js';
import { DEFERRED } from '../../lib/dataset.js';
import { ingestFile } from '../../plugins/ingest/file.js';
import { sql } from '../../plugins/process/sql.js';
import { transform } from '../../plugins/process/transform.js';
import { runPlugin, testContext } from './step-context.js';

const ROWS = 400_000; // four row groups of DuckDB's 122,880 rows
const dir = mkdtempSync(join(tmpdir(), 'mlpipe-transform-det-'));
const csv = join(dir, 'rows.csv');
// Values with many significant digits, so that the order of a sum shows in its last bits.
writeFileSync(
  csv,
  `id,a,b,c,kind\n${Array.from(
    { length: ROWS },
    (_, i) => `${i},${Math.sin(i) * 1000 + i / 7},${i % 17 === 0 ? '' : Math.sqrt(i) / 3},${Math.cos(i * 0.37) * 1e-3},${'xyz'[i % 3]}`,
  ).join('\n')}\n`,
);
const FIT = {
  exclude: ['id'],
  steps: [
    { op: 'impute', columns: ['b'], strategy: 'mean' },
    { op: 'log', columns: ['c'], offset: 1 },
    { op: 'onehot', columns: ['kind'] },
    { op: 'standardize', columns: 'numeric' },
  ],
};
const ref = (out: Record<string, unknown>, name = 'dataset'): ArtifactRef => out[name] as ArtifactRef;

describe('process.transform on several row groups', () => {
  it('writes the same bytes and the same state every time, from a file or from a deferred dataset', async () => {
    const ctx = testContext(dir);
    const input = ref(await runPlugin(ingestFile, ctx, { path: csv }));
    const features = { sql: 'SELECT *, a * c AS ac FROM input' };
    const deferred = ref(await runPlugin(sql, { ...ctx, defer: ['dataset'] }, features, { input }));
    expect(deferred.mediaType).toBe(DEFERRED);
    const written = ref(await runPlugin(sql, ctx, features, { input }));

    const digests = new Set<string>();
    const states = new Set<string>();
    for (const train of [written, deferred, written, deferred, written, deferred]) {
      const out = await runPlugin(transform, ctx, FIT, { train });
      digests.add(ref(out, 'train').sha256);
      states.add(ref(out, 'state').sha256);
    }
    expect(states.size).toBe(1);
    expect(digests.size).toBe(1);
    const state = JSON.parse(
      (await ctx.store.get(ref(await runPlugin(transform, ctx, FIT, { train: written }), 'state'))).toString('utf8'),
    ) as {
      ops: { op: string; column: string; mean?: number; value?: number }[];
    };
    // The fitted mean is the mean (each thread's share is not lost or counted twice).
    let sum = 0;
    for (let i = 0; i < ROWS; i++) sum += Math.sin(i) * 1000 + i / 7;
    const a = state.ops.find((o) => o.op === 'standardize' && o.column === 'a')!;
    expect(Math.abs(a.mean! - sum / ROWS)).toBeLessThan(1e-6);
  }, 120_000);
});
