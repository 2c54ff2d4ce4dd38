/**
 * Deferred datasets (lib/dataset.ts): a process.sql step whose dataset only DuckDB steps read passes
 * it on as a recipe. Real DuckDB and a real local store: what the next step computes from the recipe
 * is what it would have read from the Parquet file; a step that needs the file gets it materialised
 * (the same bytes the step would have written); the compiler defers only where every reader takes it.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { withDuckDB } from '../../adapters/duckdb.js';
import { compilePipeline } from '../../engine/compile.js';
import { referencedDigests } from '../../engine/gc.js';
import type { ArtifactRef } from '../../engine/types.js';
import { DEFERRED, datasetFile, isDeferred, materialize, PARQUET, type DatasetRecipe } from '../../lib/dataset.js';
import { ingestFile } from '../../plugins/ingest/file.js';
import { sql } from '../../plugins/process/sql.js';
import { applyTransform, transform } from '../../plugins/process/transform.js';
import { memoryConf, registry } from './fakes.js';
import { failure, runPlugin, testContext } from './step-context.js';

const dir = mkdtempSync(join(tmpdir(), 'mlpipe-deferred-'));
const csv = join(dir, 'houses.csv');
writeFileSync(
  csv,
  `id,rooms,households,bedrooms,kind\n${Array.from({ length: 2000 }, (_, i) => `${i},${1 + ((i * 7919) % 500)},${1 + (i % 9)},${i % 31 === 0 ? '' : (i * 13) % 90},${'abc'[i % 3]}`).join('\n')}\n`,
);

const FEATURES = { sql: 'SELECT *, rooms / households AS rooms_per_household FROM input WHERE rooms > $min', params: { min: 10 } };
const FIT = {
  exclude: ['id'],
  steps: [
    { op: 'impute', columns: ['bedrooms'], strategy: 'median' },
    { op: 'onehot', columns: ['kind'] },
    { op: 'standardize', columns: 'numeric' },
  ],
};

const ref = (out: Record<string, unknown>, name = 'dataset'): ArtifactRef => out[name] as ArtifactRef;

async function setup() {
  const ctx = testContext(dir);
  const ingested = await runPlugin(ingestFile, ctx, { path: csv });
  const deferCtx = { ...ctx, defer: ['dataset'] };
  return { ctx, deferCtx, input: ref(ingested) };
}

describe('deferred datasets', () => {
  it('pass a process.sql result on as a recipe that the next DuckDB step computes to the same data', async () => {
    const { ctx, deferCtx, input } = await setup();
    const written = await runPlugin(sql, ctx, FEATURES, { input });
    const deferred = await runPlugin(sql, deferCtx, FEATURES, { input });
    expect(ref(written).mediaType).toBe(PARQUET);
    expect(ref(deferred).mediaType).toBe(DEFERRED);
    expect(ref(deferred).derivedFrom?.map((r) => r.sha256)).toEqual([input.sha256]);
    // The same rows and columns are reported without writing the file.
    expect(deferred['rows']).toBe(written['rows']);
    expect(deferred['rows']).toBeLessThan(2000);
    expect(deferred['columns']).toEqual(written['columns']);
    // The recipe: the query, the bound values and the input by digest; the same recipe again is the same artifact.
    const recipe = JSON.parse((await ctx.store.get(ref(deferred))).toString('utf8')) as DatasetRecipe;
    expect(recipe).toMatchObject({
      plugin: 'process.sql',
      sql: FEATURES.sql,
      params: { min: 10 },
      tables: { input: { sha256: input.sha256 } },
    });
    expect(ref(await runPlugin(sql, deferCtx, FEATURES, { input })).sha256).toBe(ref(deferred).sha256);
    const other = await runPlugin(sql, deferCtx, { ...FEATURES, params: { min: 11 } }, { input });
    expect(ref(other).sha256).not.toBe(ref(deferred).sha256);

    // transform over the recipe writes the same bytes as over the Parquet file.
    const fromFile = await runPlugin(transform, ctx, FIT, { train: ref(written), test: ref(written) });
    const fromRecipe = await runPlugin(transform, ctx, FIT, { train: ref(deferred), test: ref(deferred) });
    expect(ref(fromRecipe, 'train').sha256).toBe(ref(fromFile, 'train').sha256);
    expect(ref(fromRecipe, 'test').sha256).toBe(ref(fromFile, 'test').sha256);
    expect(fromRecipe['features']).toEqual(fromFile['features']);
    // A query without bound values is streamed (a view), not computed into a table first: the same bytes.
    const plainSql = { sql: 'SELECT *, rooms / households AS rooms_per_household FROM input' };
    const streamed = await runPlugin(sql, deferCtx, plainSql, { input });
    const written2 = await runPlugin(sql, ctx, plainSql, { input });
    const a = await runPlugin(transform, ctx, FIT, { train: ref(streamed) });
    const b = await runPlugin(transform, ctx, FIT, { train: ref(written2) });
    expect(ref(a, 'train').sha256).toBe(ref(b, 'train').sha256);
    const state = fromFile['state'];
    const applied = await runPlugin(applyTransform, ctx, {}, { dataset: ref(deferred), state });
    expect(ref(applied).sha256).toBe(ref(fromFile, 'train').sha256);
  });

  it('chains recipes, and materialises one for a step that needs the file: the bytes the step would have written', async () => {
    const { ctx, deferCtx, input } = await setup();
    const first = await runPlugin(sql, deferCtx, FEATURES, { input });
    const second = { sql: 'SELECT kind, count(*)::BIGINT AS n, sum(rooms_per_household) AS s FROM input GROUP BY kind ORDER BY kind' };
    const chained = await runPlugin(sql, deferCtx, second, { input: ref(first) });
    expect(ref(chained).mediaType).toBe(DEFERRED);
    expect(chained['rows']).toBe(3);
    // The same query over the materialised first step.
    const plain = await runPlugin(sql, ctx, second, { input: ref(await runPlugin(sql, ctx, FEATURES, { input })) });
    const file = await datasetFile(ctx, { d: ref(chained) }, 'd');
    expect(file).toBe(await ctx.store.getFile(ref(plain)));
    // Materialised once: the record finds it the next time.
    expect((await materialize(ctx, ref(chained))).sha256).toBe(ref(plain).sha256);
    expect(await ctx.store.getRecord(`deferred/${ref(chained).sha256}`)).toMatchObject({ dataset: { sha256: ref(plain).sha256 } });
    const values = await withDuckDB((db) => db.rows(`SELECT kind, n FROM read_parquet('${file}') ORDER BY kind`));
    expect(values.map((r) => r['kind'])).toEqual(['a', 'b', 'c']);
  });

  it('fails the reading step with the recipe named when the query fails on the data there', async () => {
    const { ctx, deferCtx, input } = await setup();
    // The count leaves the unread cast out, so the failure shows when the rows are computed.
    const bad = await runPlugin(sql, deferCtx, { sql: 'SELECT *, CAST(kind AS INTEGER) AS k FROM input' }, { input });
    expect(isDeferred(ref(bad))).toBe(true);
    const e = await failure(runPlugin(transform, ctx, FIT, { train: ref(bad) }));
    expect(e.code).toBe('DATA_INVALID');
    expect(e.message).toMatch(/Conversion Error.*\(reading the deferred dataset dataset\.deferred\.json \(process\.sql\)\)/);
  });

  it('keeps what a recipe reads while a record names the recipe (gc roots)', async () => {
    const { ctx, deferCtx, input } = await setup();
    const out = await runPlugin(sql, deferCtx, FEATURES, { input });
    await ctx.store.putRecord('cache/k1', { outputs: { dataset: out['dataset'] } });
    const { digests } = await referencedDigests(ctx.store);
    expect(digests.has(ref(out).sha256)).toBe(true);
    expect(digests.has(input.sha256)).toBe(true);
  });
});

describe('the compiler defers a dataset', () => {
  const conf = memoryConf({});
  const compile = (steps: string) =>
    compilePipeline({ file: 'pipelines/t.yaml', text: `name: t\nsteps:\n${steps}`, conf, catalog: registry }).steps;
  const ingest = '  ingest: { uses: ingest.file, with: { path: data.csv } }\n';
  const features = (extra = '') =>
    `  features:\n    uses: process.sql\n    needs: [ingest]\n    inputs: { input: "\${steps.ingest.outputs.dataset}" }\n    with: { sql: "SELECT * FROM input"${extra} }\n`;
  const fit = (input = '${steps.features.outputs.dataset}') =>
    `  fit:\n    uses: process.transform\n    needs: [features]\n    inputs: { train: "${input}" }\n    with: { steps: [{ op: standardize, columns: numeric }] }\n`;

  it('when every reader is a DuckDB step taking it whole', () => {
    const steps = compile(ingest + features() + fit());
    expect(steps['features']!.defer).toEqual({ dataset: ['fit'] });
    expect(steps['ingest']!.defer).toBeUndefined();
    expect(steps['fit']!.defer).toBeUndefined();
  });

  it('not when nobody reads it (a result), a reader needs the file, or it is used elsewhere', () => {
    expect(compile(ingest + features())['features']!.defer).toBeUndefined();
    const mlp = `  train:\n    uses: train.tfjs-mlp\n    needs: [features]\n    inputs: { train: "\${steps.features.outputs.dataset}" }\n    with: { target: rooms, epochs: 1 }\n`;
    expect(compile(ingest + features() + fit() + mlp)['features']!.defer).toBeUndefined();
    const echo = `  show:\n    uses: util.echo\n    needs: [features]\n    with: { values: { u: "\${steps.features.outputs.dataset.uri}" } }\n`;
    expect(compile(ingest + features() + fit() + echo)['features']!.defer).toBeUndefined();
    // Its row count is read in an expression: that does not need the file.
    const rows = `  show:\n    uses: util.echo\n    needs: [features]\n    with: { values: { n: "\${steps.features.outputs.rows}" } }\n`;
    expect(compile(ingest + features() + fit() + rows)['features']!.defer).toEqual({ dataset: ['fit'] });
    // A query that may read files is not deferred.
    expect(compile(ingest + features(', externalAccess: true') + fit())['features']!.defer).toBeUndefined();
  });
});
