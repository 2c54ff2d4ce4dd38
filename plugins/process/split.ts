import { z } from 'zod';
import { ident, withDuckDB } from '../../adapters/duckdb.js';
import { PipelineError } from '../../engine/errors.js';
import type { ArtifactRef } from '../../engine/types.js';
import { datasetFile, describe, isNumericType, view, writeDataset } from '../../lib/dataset.js';
import { definePlugin, type IoKind } from '../sdk.js';

const params = z
  .object({
    /** random (seeded), stratified (by a column; numeric columns are binned into quantiles), time (ordered). */
    method: z.enum(['random', 'stratified', 'time']).default('random'),
    test: z.number().gt(0).lt(1).default(0.2),
    validation: z.number().min(0).lt(1).default(0),
    seed: z.number().int().default(42),
    stratifyBy: z.string().optional(),
    /** Quantile bins for a numeric stratification column. */
    bins: z.number().int().min(2).max(100).default(10),
    timeColumn: z.string().optional(),
    /** Walk-forward folds (time method): fold k trains on blocks 1..k and tests on block k+1. */
    folds: z.number().int().min(2).max(50).optional(),
  })
  .strict()
  .refine((p) => p.test + p.validation < 1, { message: 'test + validation must be below 1', path: ['validation'] })
  .refine((p) => p.method !== 'stratified' || p.stratifyBy, { message: 'stratified needs stratifyBy', path: ['stratifyBy'] })
  .refine((p) => p.method !== 'time' || p.timeColumn, { message: 'time needs timeColumn', path: ['timeColumn'] })
  .refine((p) => p.folds === undefined || p.method === 'time', { message: 'folds need method: time', path: ['folds'] });

/**
 * process.split — splits a dataset into train, validation (when `validation` > 0) and test
 * datasets. `random` assigns rows by a seeded hash of their position, so the same data and seed
 * always give the same split; `stratified` keeps the share of each class (or quantile bin of a
 * numeric column) equal across splits; `time` keeps the newest rows for test (and validation before
 * it). With `folds`, it also outputs walk-forward folds: [{ train, test }, ...].
 */
export const split = definePlugin({
  name: 'process.split',
  version: '1',
  description: 'Seeded random, stratified or time-ordered train/validation/test split; walk-forward folds.',
  params,
  inputs: { dataset: 'dataset' },
  outputs: (p): Record<string, IoKind> => ({
    train: 'dataset',
    test: 'dataset',
    ...(p.validation > 0 ? { validation: 'dataset' } : {}),
    ...(p.folds ? { folds: 'json' } : {}),
    counts: 'json',
  }),
  async run(ctx, p, inputs) {
    const file = await datasetFile(ctx, inputs, 'dataset');
    return withDuckDB(async (db) => {
      await view(db, 'raw', file);
      const columns = await describe(db, 'raw');
      for (const c of [p.stratifyBy, p.timeColumn]) {
        if (c && !columns.some((x) => x.name === c)) {
          throw new PipelineError(
            'PLUGIN_PARAMS',
            `process.split: the dataset has no column '${c}'. Columns: ${columns.map((x) => x.name).join(', ')}.`,
          );
        }
      }
      // u in [0, 1): a seeded hash of the row position, stable for the same data.
      await db.run(
        `CREATE TEMP TABLE rows AS SELECT *, hash(__rid * 1000003 + ${p.seed}) / 18446744073709551616.0 AS __u FROM (SELECT row_number() OVER () AS __rid, * FROM raw)`,
      );
      let part = 'rows';
      let order = '__u';
      if (p.method === 'stratified') {
        const s = columns.find((c) => c.name === p.stratifyBy)!;
        const key = isNumericType(s.type)
          ? `ntile(${p.bins}) OVER (ORDER BY ${ident(s.name)})`
          : `coalesce(CAST(${ident(s.name)} AS VARCHAR), '<null>')`;
        await db.run(`CREATE TEMP TABLE strat AS SELECT *, ${key} AS __stratum FROM rows`);
        part = 'strat';
      } else if (p.method === 'time') {
        order = `${ident(p.timeColumn!)}, __rid`;
      }
      const partition = p.method === 'stratified' ? 'PARTITION BY __stratum' : '';
      // Position within the (stratum's) order, as a fraction: the last `test` share is test, the
      // `validation` share before it is validation.
      await db.run(
        `CREATE TEMP TABLE assigned AS SELECT *, CASE
           WHEN __q >= 1 - ${p.test} THEN 'test'
           WHEN __q >= 1 - ${p.test} - ${p.validation} THEN 'validation'
           ELSE 'train' END AS __split
         FROM (SELECT *, (row_number() OVER (${partition} ORDER BY ${order}) - 1) / count(*) OVER (${partition}) AS __q FROM ${part})`,
      );
      const drop = `EXCLUDE (__rid, __u, __q, __split${p.method === 'stratified' ? ', __stratum' : ''})`;
      const out: Record<string, unknown> = {};
      const counts: Record<string, number> = {};
      for (const name of ['train', 'validation', 'test'] as const) {
        if (name === 'validation' && p.validation === 0) continue;
        const w = await writeDataset(ctx, db, `SELECT * ${drop} FROM assigned WHERE __split = '${name}' ORDER BY __rid`, name);
        out[name] = w.ref;
        counts[name] = w.rows;
      }
      if (p.folds) {
        const folds: { train: ArtifactRef; test: ArtifactRef }[] = [];
        await db.run(`CREATE TEMP TABLE blocks AS SELECT *, ntile(${p.folds + 1}) OVER (ORDER BY ${order}) AS __block FROM rows`);
        const keep = 'EXCLUDE (__rid, __u, __block)';
        for (let k = 1; k <= p.folds; k++) {
          const train = await writeDataset(ctx, db, `SELECT * ${keep} FROM blocks WHERE __block <= ${k} ORDER BY __rid`, `fold${k}-train`);
          const test = await writeDataset(ctx, db, `SELECT * ${keep} FROM blocks WHERE __block = ${k + 1} ORDER BY __rid`, `fold${k}-test`);
          folds.push({ train: train.ref, test: test.ref });
        }
        out['folds'] = folds;
      }
      out['counts'] = counts;
      return out;
    });
  },
});
