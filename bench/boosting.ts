/**
 * Boosting speed side by side: train.xgboost / train.lightgbm against the Python packages of the
 * same library versions (provision.sh --with-boosting-bench), with identical library params and
 * threads, on the same Parquet files: the housing split (process.split + process.transform, as the
 * pipeline makes it) and a generated 1,000,000 x 50 table. Each run is its own process; the order
 * alternates between mlpipe and Python; per-round train and validation metrics on both sides.
 *
 *   npm run bench:boosting
 *   BENCH_REPEATS=3 BENCH_THREADS=2 BENCH_ROWS=200000 node --import tsx bench/boosting.ts
 *
 * Times: load = Parquet to float32 matrices; train = the library's datasets, the rounds (mlpipe:
 * with its checkpoints every minute, the default) and the model dump. Peak memory: the process's max RSS.
 * Results: bench/results/boosting-<date>.json.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { sqlString, withDuckDB } from '../adapters/duckdb.js';
import { boostingCacheDir } from '../adapters/boosting/library.js';
import { testContext } from '../api/testing.js';
import type { ArtifactRef } from '../engine/types.js';
import { ingestFile } from '../plugins/ingest/file.js';
import { split } from '../plugins/process/split.js';
import { transform } from '../plugins/process/transform.js';
import {
  lightgbmParams,
  trainLightgbm,
  trainXgboost,
  xgboostParams,
  type LightgbmParams,
  type XgboostParams,
} from '../plugins/train/boosting.js';
import { benchDir } from './tmp.js';

const REPO = join(dirname(fileURLToPath(import.meta.url)), '..');
const REPEATS = Number(process.env['BENCH_REPEATS'] ?? 2);
// One thread by default: on a shared machine, OpenMP threads that wait for a busy core distort both sides.
const THREADS = Number(process.env['BENCH_THREADS'] ?? 1);
const PY = join(dirname(boostingCacheDir()), 'boosting-bench-venv', 'bin', 'python');

interface RunResult {
  impl: string;
  loadSeconds: number;
  trainSeconds: number;
  valMetric: number;
  maxRssMB: number;
  rows: number;
  features: number;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

async function housing(dir: string): Promise<{ train: string; validation: string }> {
  const ctx = testContext({ projectDir: REPO });
  const run = async (plugin: typeof ingestFile | typeof split | typeof transform, params: unknown, inputs: Record<string, unknown> = {}) =>
    plugin.run(ctx, plugin.params.parse(params) as never, inputs as never) as Promise<Record<string, unknown>>;
  const ingested = await run(ingestFile, { path: 'pipelines/data/california-housing.csv' });
  const parts = await run(
    split,
    { method: 'stratified', stratifyBy: 'median_house_value', test: 0.2, validation: 0.1, seed: 42 },
    { dataset: ingested['dataset'] },
  );
  const t = await run(
    transform,
    {
      exclude: ['median_house_value'],
      steps: [
        { op: 'derive', name: 'rooms_per_household', expr: 'total_rooms / households' },
        { op: 'derive', name: 'bedrooms_per_room', expr: 'total_bedrooms / total_rooms' },
        { op: 'derive', name: 'population_per_household', expr: 'population / households' },
        { op: 'impute', columns: ['total_bedrooms', 'bedrooms_per_room'], strategy: 'median' },
        { op: 'onehot', columns: ['ocean_proximity'] },
      ],
    },
    { train: parts['train'], validation: parts['validation'], test: parts['test'] },
  );
  const file = async (ref: unknown, name: string): Promise<string> => {
    const src = await ctx.store.getFile(ref as ArtifactRef);
    const dst = join(dir, name);
    await withDuckDB((db) => db.run(`COPY (SELECT * FROM read_parquet(${sqlString(src)})) TO ${sqlString(dst)} (FORMAT parquet)`));
    return dst;
  };
  return { train: await file(t['train'], 'housing-train.parquet'), validation: await file(t['validation'], 'housing-validation.parquet') };
}

/** 50 uniform features; y mixes linear terms, interactions, a step and noise. */
async function generated(dir: string, rows: number): Promise<{ train: string; validation: string }> {
  const cols = Array.from({ length: 50 }, (_, j) => `(random() * 2 - 1)::FLOAT AS f${j}`).join(', ');
  const y = 'f0 * 3 - f1 * 2 + f2 * f3 * 4 + CASE WHEN f4 > 0.3 THEN 2 ELSE 0 END + sin(f5 * 3) + f6 * f6 + (random() - 0.5) * 0.5';
  const make = async (n: number, name: string): Promise<string> => {
    const file = join(dir, name);
    await withDuckDB(async (db) => {
      await db.run('SELECT setseed(0.42)');
      await db.run(`COPY (SELECT *, (${y})::DOUBLE AS y FROM (SELECT ${cols} FROM range(${n}))) TO ${sqlString(file)} (FORMAT parquet)`);
    });
    return file;
  };
  return { train: await make(rows, 'gen-train.parquet'), validation: await make(Math.round(rows / 10), 'gen-validation.parquet') };
}

async function runOne(cmd: string, args: string[]): Promise<RunResult> {
  const { stdout } = await promisify(execFile)(cmd, args, { cwd: REPO, maxBuffer: 64 * 2 ** 20 });
  return JSON.parse(stdout.trim().split('\n').pop()!) as RunResult;
}

async function main(): Promise<void> {
  if (!existsSync(PY)) throw new Error(`no Python venv at ${PY}: run bash deploy/provision.sh --with-boosting-bench`);
  const dir = benchDir('boosting');
  const loadBefore = loadavg();
  const genRows = Number(process.env['BENCH_ROWS'] ?? 1_000_000);
  const sets = [
    { name: 'housing', files: await housing(dir), target: 'median_house_value', rounds: 500, repeats: REPEATS },
    {
      name: `generated ${genRows.toLocaleString('en-US')} x 50`,
      files: await generated(dir, genRows),
      target: 'y',
      rounds: 100,
      repeats: Number(process.env['BENCH_REPEATS'] ?? 1),
    },
  ];
  const table: Record<string, unknown>[] = [];
  for (const set of sets) {
    for (const lib of ['xgboost', 'lightgbm'] as const) {
      const pluginParams = {
        target: set.target,
        rounds: set.rounds,
        learningRate: 0.05,
        ...(lib === 'xgboost' ? { maxDepth: 6 } : { numLeaves: 31 }),
        seed: 42,
        threads: THREADS,
      };
      const libParams =
        lib === 'xgboost'
          ? xgboostParams(trainXgboost.params.parse(pluginParams) as XgboostParams, 1)
          : lightgbmParams(trainLightgbm.params.parse(pluginParams) as LightgbmParams, 1);
      const runs: { mlpipe: RunResult[]; python: RunResult[] } = { mlpipe: [], python: [] };
      for (let r = 0; r < (set.repeats ?? REPEATS); r++) {
        const order = r % 2 === 0 ? (['mlpipe', 'python'] as const) : (['python', 'mlpipe'] as const);
        for (const impl of order) {
          const res =
            impl === 'mlpipe'
              ? await runOne(process.execPath, [
                  '--import',
                  'tsx',
                  join(REPO, 'bench', 'boosting-run.ts'),
                  lib,
                  set.files.train,
                  set.files.validation,
                  JSON.stringify(pluginParams),
                ])
              : await runOne(PY, [
                  join(REPO, 'bench', 'boosting.py'),
                  lib,
                  set.files.train,
                  set.files.validation,
                  JSON.stringify({ target: set.target, rounds: set.rounds, params: libParams }),
                ]);
          runs[impl].push(res);
          console.log(
            `${set.name} ${lib} ${impl}: load ${res.loadSeconds.toFixed(2)} s, train ${res.trainSeconds.toFixed(2)} s, val ${res.valMetric.toFixed(4)}, peak ${Math.round(res.maxRssMB)} MB`,
          );
        }
      }
      const m = (rs: RunResult[], k: 'loadSeconds' | 'trainSeconds' | 'maxRssMB'): number => median(rs.map((x) => x[k]));
      const row = {
        data: set.name,
        rows: runs.mlpipe[0]!.rows,
        features: runs.mlpipe[0]!.features,
        library: lib,
        rounds: set.rounds,
        threads: THREADS,
        mlpipeTrainSeconds: Number(m(runs.mlpipe, 'trainSeconds').toFixed(2)),
        pythonTrainSeconds: Number(m(runs.python, 'trainSeconds').toFixed(2)),
        trainRatio: Number((m(runs.mlpipe, 'trainSeconds') / m(runs.python, 'trainSeconds')).toFixed(3)),
        mlpipeLoadSeconds: Number(m(runs.mlpipe, 'loadSeconds').toFixed(2)),
        pythonLoadSeconds: Number(m(runs.python, 'loadSeconds').toFixed(2)),
        mlpipePeakMB: Math.round(m(runs.mlpipe, 'maxRssMB')),
        pythonPeakMB: Math.round(m(runs.python, 'maxRssMB')),
        mlpipeValMetric: Number(runs.mlpipe[0]!.valMetric.toPrecision(6)),
        pythonValMetric: Number(runs.python[0]!.valMetric.toPrecision(6)),
        runs,
      };
      table.push(row);
    }
  }
  const loadAfter = loadavg();
  console.log(
    '\n| data | library | rounds | mlpipe train s | Python train s | ratio | mlpipe load s | Python load s | mlpipe peak MB | Python peak MB | val RMSE mlpipe / Python |',
  );
  console.log('|---|---|---|---|---|---|---|---|---|---|---|');
  for (const r of table) {
    console.log(
      `| ${String(r['data'])} | ${String(r['library'])} | ${String(r['rounds'])} | ${String(r['mlpipeTrainSeconds'])} | ${String(r['pythonTrainSeconds'])} | ${String(r['trainRatio'])} | ${String(r['mlpipeLoadSeconds'])} | ${String(r['pythonLoadSeconds'])} | ${String(r['mlpipePeakMB'])} | ${String(r['pythonPeakMB'])} | ${String(r['mlpipeValMetric'])} / ${String(r['pythonValMetric'])} |`,
    );
  }
  const out = join(REPO, 'bench', 'results', `boosting-${new Date().toISOString().slice(0, 10)}.json`);
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(
    out,
    `${JSON.stringify({ date: new Date().toISOString(), cpus: cpus().length, cpu: cpus()[0]?.model, memoryGB: Math.round(totalmem() / 2 ** 30), repeats: REPEATS, loadBefore, loadAfter, table }, null, 2)}\n`,
  );
  console.log(`results: ${out}`);
}

await main();
