/**
 * Data and training throughput, plugins called directly (no Temporal):
 *
 *   npm run bench:data                 # 5M-row CSV
 *   BENCH_ROWS=1000000 npm run bench:data
 *   BENCH_BASELINE=/path/to/other/checkout npm run bench:data   # that checkout's steps alternately with these (paired)
 *
 * - ingest: a generated CSV (housing-like: 9 numeric columns, 1 categorical) -> Parquet dataset;
 * - process: process.sql (3 derived columns) and process.transform (impute, log, one-hot, standardize);
 *   the chain twice: with the sql step writing Parquet, and with its dataset deferred (a recipe the
 *   transform computes, what a run does when only DuckDB steps read it; lib/dataset.ts); then the
 *   transform again on the same input, to count the distinct outputs (and time it against a baseline);
 * - the chain ingest -> sql (deferred) -> transform BENCH_CHAIN_REPEATS times (default 4) with this
 *   checkout's plugins, in turn with the same chain in plain DuckDB (the floor: the same SQL work and
 *   the same two Parquet files, no store, no checks) and, with BENCH_BASELINE, that checkout's
 *   plugins, on the same CSV in this process: ratios from one run, under the same load;
 * - training: epochs per second of train.tfjs-mlp on the housing training split, per backend that
 *   loads here (each in its own process, since a process keeps the first backend it loads).
 * Results: bench/results/data-<date>.json.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { ident, sqlString, withDuckDB } from '../adapters/duckdb.js';
import { LocalArtifactStore } from '../adapters/local-store.js';
import type { ArtifactRef } from '../engine/types.js';
import { ingestFile } from '../plugins/ingest/file.js';
import { split } from '../plugins/process/split.js';
import { sql } from '../plugins/process/sql.js';
import { transform } from '../plugins/process/transform.js';
import type { AnyPlugin, StepContext } from '../plugins/sdk.js';
import { trainMlp } from '../plugins/train/mlp.js';
import { benchDir } from './tmp.js';

const ROWS = Number(process.env['BENCH_ROWS'] ?? 5_000_000);
const dir = benchDir('data');
// The store and the scratch folders of the steps; each paired chain run has its own, deleted after it
// (a run writes about 1 GiB), and the whole folder is deleted at exit unless BENCH_KEEP=1 (bench/tmp.ts).
let store = new LocalArtifactStore(join(dir, 'store'));
let scratch = dir;

const noCheckpoints: StepContext['checkpoint'] = {
  save: async () => {
    throw new Error('no checkpoints in bench');
  },
  latest: async () => undefined,
  stream: () => noCheckpoints,
};

function ctx(defer?: string[]): StepContext {
  const noop = (): void => undefined;
  let work: string | undefined;
  return {
    ...(defer ? { defer } : {}),
    runId: 'bench',
    workflowId: 'bench',
    pipeline: 'bench',
    stepId: 'bench',
    attempt: 1,
    store,
    logger: { debug: noop, info: noop, warn: noop, error: noop },
    signal: new AbortController().signal,
    progress: noop,
    untilAvailable: (_service, fn) => fn(),
    projectDir: dir,
    env: {},
    redact: (t) => t,
    get workDir() {
      work ??= mkdtempSync(join(scratch, 'work-'));
      return work;
    },
    checkpoint: noCheckpoints,
    logMetrics: noop,
  };
}

async function timed(
  plugin: AnyPlugin,
  params: unknown,
  inputs: Record<string, unknown> = {},
  defer?: string[],
): Promise<{ out: Record<string, unknown>; s: number }> {
  const schema: z.ZodType = plugin.params;
  const t0 = performance.now();
  const out = await plugin.run(ctx(defer), schema.parse(params), inputs);
  return { out: out as Record<string, unknown>, s: (performance.now() - t0) / 1000 };
}

async function epochsPerSecond(): Promise<Record<string, number | string>> {
  if (process.env['BENCH_TRAIN_BACKEND']) {
    // Child mode: one backend, print the rate.
    const housing = join(import.meta.dirname, '..', 'pipelines', 'data', 'california-housing.csv');
    const ds = (await timed(ingestFile, { path: housing })).out['dataset'];
    const parts = (await timed(split, { test: 0.2 }, { dataset: ds })).out;
    const t = await timed(
      transform,
      {
        exclude: ['median_house_value'],
        steps: [
          { op: 'impute', columns: ['total_bedrooms'], strategy: 'median' },
          { op: 'onehot', columns: ['ocean_proximity'] },
          { op: 'standardize', columns: 'numeric' },
        ],
      },
      { train: parts['train'] },
    );
    const epochs = 5;
    const r = await timed(
      trainMlp,
      {
        target: 'median_house_value',
        hidden: [128, 64],
        batchSize: 128,
        epochs,
        backend: process.env['BENCH_TRAIN_BACKEND'],
        checkpoint: { everyEpochs: 1000 },
      },
      { train: t.out['train'] },
    );
    console.log(
      JSON.stringify({ backend: r.out['backend'], epochsPerSecond: 1 / (r.out['metrics'] as { secondsPerEpoch: number }).secondsPerEpoch }),
    );
    return {};
  }
  const result: Record<string, number | string> = {};
  for (const backend of ['tfjs-node-gpu', 'tfjs-node', 'wasm', 'cpu']) {
    try {
      const outText = execFileSync(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'data.ts')], {
        env: { ...process.env, BENCH_TRAIN_BACKEND: backend },
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const line = JSON.parse(outText.trim().split('\n').pop()!) as { epochsPerSecond: number };
      result[backend] = Math.round(line.epochsPerSecond * 100) / 100;
    } catch (e) {
      const stderr = String((e as { stderr?: string }).stderr ?? e);
      result[backend] = /Cannot find (package|module)|ERR_MODULE_NOT_FOUND/.test(stderr) ? 'not installed' : 'failed to load';
    }
  }
  return result;
}

/**
 * The transform fitted BENCH_TRANSFORM_REPEATS more times (default 5) on the same input: its times and how
 * many distinct train digests it wrote (1: deterministic). With BENCH_BASELINE=<a checkout>, that
 * checkout's process.transform runs alternately with this one, on the same input, in this process.
 */
async function repeatTransform(
  params: unknown,
  train: ArtifactRef,
): Promise<Record<string, { seconds: number[]; digests: number; digest: string }>> {
  const n = Number(process.env['BENCH_TRANSFORM_REPEATS'] ?? 5);
  const sides: [string, AnyPlugin][] = [['this checkout', transform]];
  const baseline = process.env['BENCH_BASELINE'];
  if (baseline) {
    const mod = (await import(join(baseline, 'plugins', 'process', 'transform.ts'))) as { transform: AnyPlugin };
    sides.push([`baseline ${baseline}`, mod.transform]);
  }
  const out: Record<string, { seconds: number[]; digests: number; digest: string }> = {};
  const digests: Record<string, Set<string>> = {};
  for (let k = 0; k < n; k++) {
    for (const [side, plugin] of k % 2 ? [...sides].reverse() : sides) {
      const r = await timed(plugin, params, { train });
      const digest = (r.out['train'] as ArtifactRef).sha256;
      (out[side] ??= { seconds: [], digests: 0, digest }).seconds.push(r.s);
      (digests[side] ??= new Set()).add(digest);
      out[side].digests = digests[side].size;
    }
  }
  return out;
}

/** One pass of the chain ingest -> sql (deferred) -> transform with these plugins: seconds per stage and the train digest. */
async function chainOnce(
  plugins: { ingestFile: AnyPlugin; sql: AnyPlugin; transform: AnyPlugin },
  csv: string,
  featureSql: string,
  transformParams: unknown,
): Promise<{ ingest: number; sql: number; transform: number; total: number; ingestDigest: string; digest: string }> {
  const i = await timed(plugins.ingestFile, { path: csv });
  const q = await timed(plugins.sql, { sql: featureSql }, { input: i.out['dataset'] as ArtifactRef }, ['dataset']);
  const t = await timed(plugins.transform, transformParams, { train: q.out['dataset'] as ArtifactRef });
  return {
    ingest: i.s,
    sql: q.s,
    transform: t.s,
    total: i.s + q.s + t.s,
    ingestDigest: (i.out['dataset'] as ArtifactRef).sha256,
    digest: (t.out['train'] as ArtifactRef).sha256,
  };
}

/**
 * The same chain in plain DuckDB, the floor it is compared with: one session of the same two
 * threads, the CSV copied to Parquet with DuckDB's defaults, then the transform written by hand
 * in SQL (the same feature query, medians, categories, log, one-hot, means and deviations, each
 * statistic in one multi-threaded query, in no fixed order) and copied to Parquet. The same two
 * files materialised as mlpipe's chain (the ingest's dataset and the transform's train), no
 * artifact store, no hashing, no checks of the data.
 */
async function chainFloor(csv: string, featureSql: string): Promise<{ ingest: number; sql: number; transform: number; total: number }> {
  const a = join(scratch, 'floor-chain-ingest.parquet');
  const b = join(scratch, 'floor-chain-train.parquet');
  return withDuckDB(async (db) => {
    const t0 = performance.now();
    await db.run(`COPY (FROM read_csv(${sqlString(csv)}, header=true)) TO ${sqlString(a)} (FORMAT parquet)`);
    const t1 = performance.now();
    await db.run(`CREATE VIEW input AS FROM read_parquet(${sqlString(a)})`);
    await db.run(`CREATE VIEW features AS ${featureSql}`);
    const t2 = performance.now();
    const [m] = await db.rows<{ tb: number; bpr: number }>(
      'SELECT median(total_bedrooms) AS tb, median(bedrooms_per_room) AS bpr FROM features',
    );
    const cats = (
      await db.rows<{ v: string }>(
        'SELECT ocean_proximity AS v FROM features WHERE ocean_proximity IS NOT NULL GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 50',
      )
    ).map((r) => r.v);
    const onehot = cats.map((c) => `CASE WHEN ocean_proximity = ${sqlString(c)} THEN 1.0 ELSE 0.0 END AS ${ident(`ocean_proximity=${c}`)}`);
    await db.run(
      `CREATE VIEW pre AS SELECT * EXCLUDE (ocean_proximity) REPLACE (coalesce(total_bedrooms, ${m!.tb}) AS total_bedrooms,
         coalesce(bedrooms_per_room, ${m!.bpr}) AS bedrooms_per_room, ln(greatest(total_rooms, 0) + 1) AS total_rooms,
         ln(greatest(population, 0) + 1) AS population), ${onehot.join(', ')} FROM features`,
    );
    const numeric = (await db.rows<{ column_name: string }>('DESCRIBE pre'))
      .map((c) => c.column_name)
      .filter((c) => c !== 'median_house_value');
    const [stats] = await db.rows<Record<string, number>>(
      `SELECT ${numeric.map((c, i) => `avg(${ident(c)}) AS m${i}, stddev_pop(${ident(c)}) AS s${i}`).join(', ')} FROM pre`,
    );
    const scaled = numeric.map((c, i) => `(${ident(c)} - ${stats![`m${i}`]}) / ${stats![`s${i}`] || 1} AS ${ident(c)}`);
    await db.run(`COPY (SELECT * REPLACE (${scaled.join(', ')}) FROM pre) TO ${sqlString(b)} (FORMAT parquet)`);
    const t3 = performance.now();
    return { ingest: (t1 - t0) / 1000, sql: (t2 - t1) / 1000, transform: (t3 - t2) / 1000, total: (t3 - t0) / 1000 };
  });
}

/** One chain run: seconds per stage, and the ingest and train digests (none for the floor). */
type ChainRun = { ingest: number; sql: number; transform: number; total: number; ingestDigest?: string; digest?: string };

const FLOOR_SIDE = 'plain DuckDB (floor)';

/** Seconds per run, and each run's ingest and train digests (12 hex digits). */
type ChainSide = { ingest: number[]; sql: number[]; transform: number[]; total: number[]; ingestDigests: string[]; digests: string[] };

/**
 * The deferred chain with this checkout's plugins and the plain DuckDB floor (chainFloor), and with
 * BENCH_BASELINE=<a checkout> that checkout's plugins too, in turn (this, floor, that, then the
 * other way round, ...), BENCH_CHAIN_REPEATS times each, in this process: ratios from one run,
 * under the same load.
 */
async function pairedChain(csv: string, featureSql: string, transformParams: unknown): Promise<Record<string, ChainSide>> {
  const baseline = process.env['BENCH_BASELINE'];
  const load = async <T>(path: string, name: string): Promise<T> => ((await import(join(baseline!, path))) as Record<string, T>)[name]!;
  const sides: [string, () => Promise<ChainRun>][] = [
    ['this checkout', () => chainOnce({ ingestFile, sql, transform }, csv, featureSql, transformParams)],
    [FLOOR_SIDE, () => chainFloor(csv, featureSql)],
  ];
  if (baseline) {
    const plugins = {
      ingestFile: await load<AnyPlugin>('plugins/ingest/file.ts', 'ingestFile'),
      sql: await load<AnyPlugin>('plugins/process/sql.ts', 'sql'),
      transform: await load<AnyPlugin>('plugins/process/transform.ts', 'transform'),
    };
    sides.push([`baseline ${baseline}`, () => chainOnce(plugins, csv, featureSql, transformParams)]);
  }
  const n = Number(process.env['BENCH_CHAIN_REPEATS'] ?? 4);
  const out: Record<string, ChainSide> = {};
  for (let k = 0; k < n; k++) {
    for (const [side, run] of k % 2 ? [...sides].reverse() : sides) {
      const [keptStore, keptScratch] = [store, scratch];
      scratch = mkdtempSync(join(dir, 'chain-'));
      store = new LocalArtifactStore(join(scratch, 'store'));
      const r = await run().finally(() => {
        rmSync(scratch, { recursive: true, force: true });
        [store, scratch] = [keptStore, keptScratch];
      });
      const o = (out[side] ??= { ingest: [], sql: [], transform: [], total: [], ingestDigests: [], digests: [] });
      o.ingest.push(r.ingest);
      o.sql.push(r.sql);
      o.transform.push(r.transform);
      o.total.push(r.total);
      if (r.ingestDigest) o.ingestDigests.push(r.ingestDigest.slice(0, 12));
      if (r.digest) o.digests.push(r.digest.slice(0, 12));
    }
  }
  return out;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

async function main(): Promise<void> {
  if (process.env['BENCH_TRAIN_BACKEND']) {
    await epochsPerSecond();
    return;
  }
  const csv = join(dir, 'generated.csv');
  const g0 = performance.now();
  await withDuckDB((db) =>
    db.run(
      `COPY (SELECT -124 + random() * 10 AS longitude, 32 + random() * 10 AS latitude, floor(random() * 52) AS housing_median_age,
         1 + floor(random() * 10000) AS total_rooms, CASE WHEN random() < 0.01 THEN NULL ELSE floor(random() * 2000) END AS total_bedrooms,
         floor(random() * 5000) AS population, 1 + floor(random() * 2000) AS households, random() * 15 AS median_income,
         floor(15000 + random() * 485000) AS median_house_value,
         ['<1H OCEAN', 'INLAND', 'NEAR BAY', 'NEAR OCEAN', 'ISLAND'][1 + floor(random() * 5)::INT] AS ocean_proximity
       FROM range(${ROWS})) TO ${sqlString(csv)} (HEADER, DELIMITER ',')`,
    ),
  );
  const genS = (performance.now() - g0) / 1000;
  const bytes = statSync(csv).size;

  const featureSql =
    'SELECT *, total_rooms / households AS rooms_per_household, total_bedrooms / total_rooms AS bedrooms_per_room, population / households AS population_per_household FROM input';
  // The floor, in the same run: the same reading and the same query as plain DuckDB COPYs (one
  // in-process database, default Parquet settings, no artifact store).
  const floor = await withDuckDB(async (db) => {
    const a = join(dir, 'floor-ingest.parquet');
    const b = join(dir, 'floor-sql.parquet');
    const t0 = performance.now();
    await db.run(`COPY (FROM read_csv(${sqlString(csv)}, header=true)) TO ${sqlString(a)} (FORMAT parquet)`);
    const t1 = performance.now();
    await db.run(`COPY (${featureSql.replace('FROM input', `FROM read_parquet(${sqlString(a)})`)}) TO ${sqlString(b)} (FORMAT parquet)`);
    const t2 = performance.now();
    return { ingest: (t1 - t0) / 1000, sql: (t2 - t1) / 1000 };
  });

  const ingest = await timed(ingestFile, { path: csv });
  const features = await timed(
    sql,
    {
      sql: featureSql,
    },
    { input: ingest.out['dataset'] as ArtifactRef },
  );
  const transformParams = {
    exclude: ['median_house_value'],
    steps: [
      { op: 'impute', columns: ['total_bedrooms', 'bedrooms_per_room'], strategy: 'median' },
      { op: 'log', columns: ['total_rooms', 'population'] },
      { op: 'onehot', columns: ['ocean_proximity'] },
      { op: 'standardize', columns: 'numeric' },
    ],
  };
  const fitted = await timed(transform, transformParams, { train: features.out['dataset'] as ArtifactRef });
  // The same chain with the sql step's dataset passed on deferred (what a run does when only DuckDB
  // steps read it): the same ingest output, the recipe computed in the transform's session.
  const deferredSql = await timed(sql, { sql: featureSql }, { input: ingest.out['dataset'] as ArtifactRef }, ['dataset']);
  const deferredFit = await timed(transform, transformParams, { train: deferredSql.out['dataset'] as ArtifactRef });
  const sameTrain = (deferredFit.out['train'] as ArtifactRef).sha256 === (fitted.out['train'] as ArtifactRef).sha256;
  const repeats = await repeatTransform(transformParams, features.out['dataset'] as ArtifactRef);
  const paired = await pairedChain(csv, featureSql, transformParams);
  const total = ingest.s + features.s + fitted.s;
  const deferredTotal = ingest.s + deferredSql.s + deferredFit.s;
  const training = process.env['BENCH_SKIP_TRAINING'] === '1' ? {} : await epochsPerSecond();

  const result = {
    date: new Date().toISOString(),
    machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model, memoryGiB: Math.round(totalmem() / 2 ** 30), node: process.version },
    rows: ROWS,
    csvMiB: Math.round(bytes / 2 ** 20),
    generateSeconds: Math.round(genS * 10) / 10,
    seconds: {
      ingest: ingest.s,
      sql: features.s,
      transform: fitted.s,
      sqlDeferred: deferredSql.s,
      transformOfDeferred: deferredFit.s,
    },
    floorSeconds: floor,
    rowsPerSecond: {
      ingest: Math.round(ROWS / ingest.s),
      sql: Math.round(ROWS / features.s),
      transform: Math.round(ROWS / fitted.s),
      ingestAndProcess: Math.round(ROWS / total),
      ingestAndProcessDeferred: Math.round(ROWS / deferredTotal),
    },
    deferredTrainIdentical: sameTrain,
    transformRepeated: repeats,
    chainPaired: paired,
    trainingEpochsPerSecond: training,
  };
  mkdirSync(join(import.meta.dirname, 'results'), { recursive: true });
  const out = join(import.meta.dirname, 'results', `data-${result.date.slice(0, 10)}.json`);
  writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
  const floorOf = (k: string): string => {
    const f = (floor as Record<string, number>)[k];
    return f === undefined ? '-' : `${f.toFixed(2)} s (${Math.round(ROWS / f).toLocaleString('en-US')} rows/s)`;
  };
  console.log(
    `| stage (${ROWS.toLocaleString('en-US')} rows, ${result.csvMiB} MiB CSV) | seconds | rows/s | floor: plain DuckDB COPY |\n|---|---|---|---|`,
  );
  for (const k of ['ingest', 'sql', 'transform'] as const)
    console.log(`| ${k} | ${result.seconds[k].toFixed(2)} | ${result.rowsPerSecond[k].toLocaleString('en-US')} | ${floorOf(k)} |`);
  console.log(`| ingest + sql + transform | ${total.toFixed(2)} | ${result.rowsPerSecond.ingestAndProcess.toLocaleString('en-US')} | - |`);
  const rate = (s: number): string => Math.round(ROWS / s).toLocaleString('en-US');
  console.log(`| sql, deferred | ${deferredSql.s.toFixed(2)} | ${rate(deferredSql.s)} | - |`);
  console.log(`| transform of the deferred sql | ${deferredFit.s.toFixed(2)} | ${rate(deferredFit.s)} | - |`);
  console.log(`| ingest + sql + transform, sql deferred | ${deferredTotal.toFixed(2)} | ${rate(deferredTotal)} | - |`);
  console.log(`\ntransform's train output identical with the sql deferred: ${sameTrain}`);
  for (const [side, r] of Object.entries(repeats))
    console.log(
      `transform again, ${side}: ${r.seconds.map((x) => x.toFixed(2)).join(' ')} s; ${r.digests} distinct train digest(s) in ${r.seconds.length} runs; the first ${r.digest.slice(0, 12)}`,
    );
  {
    const floorTotal = median(paired[FLOOR_SIDE]!.total);
    console.log(
      `\nthe chain (sql deferred), in turn with the plain DuckDB floor${process.env['BENCH_BASELINE'] ? ' and the baseline' : ''}; median seconds (rows/s) over ${paired[FLOOR_SIDE]!.total.length} runs each:`,
    );
    console.log('| side | ingest | sql | transform | all three | × floor | train digests |\n|---|---|---|---|---|---|---|');
    for (const [side, r] of Object.entries(paired)) {
      const cell = (xs: number[]): string => `${median(xs).toFixed(2)} (${rate(median(xs))})`;
      console.log(
        `| ${side} | ${cell(r.ingest)} | ${median(r.sql).toFixed(2)} | ${cell(r.transform)} | ${cell(r.total)} | ${(median(r.total) / floorTotal).toFixed(2)} | ${[...new Set(r.digests)].join(' ') || '-'} |`,
      );
    }
    for (const [side, r] of Object.entries(paired))
      console.log(
        `${side}, all three, each run: ${r.total.map((x) => x.toFixed(2)).join(' ')} s; ingest: ${r.ingest.map((x) => x.toFixed(2)).join(' ')} s`,
      );
  }
  console.log(`\ntraining (housing train split, 128-64 MLP, batch 128), epochs/s: ${JSON.stringify(training)}`);
  console.log(`written to ${out}`);
}

await main();
