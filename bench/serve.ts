/**
 * The prediction server under load: `mlpipe serve` in its own process (onnxruntime, prediction log
 * on, to a local store), this process as the client on loopback with a bounded number of requests
 * in flight. Scenarios: one record per request, and batches of 100 and 1,000 records.
 *
 *   npm run bench:serve
 *   BENCH_SECONDS=20 BENCH_CONCURRENCY=16 npm run bench:serve
 *   BENCH_MODEL=path/to/model.onnx npm run bench:serve   # else a housing model is trained (8 epochs)
 *
 * Results: bench/results/serve-<date>.json.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { Pool } from 'undici';
import { sqlString, withDuckDB } from '../adapters/duckdb.js';
import { LocalArtifactStore } from '../adapters/local-store.js';
import { freePort } from '../dev/temporal-server.js';
import type { ArtifactRef } from '../engine/types.js';
import { collectPredictions } from '../engine/prediction-log.js';
import { exportOnnx } from '../plugins/export/onnx.js';
import { ingestFile } from '../plugins/ingest/file.js';
import { split } from '../plugins/process/split.js';
import { transform } from '../plugins/process/transform.js';
import { trainMlp } from '../plugins/train/mlp.js';
import { loadPipeline } from '../app/load-pipeline.js';
import { createDefaultRegistry } from '../plugins/index.js';
import { runPlugin, testContext } from '../test/unit/step-context.js';
import { benchDir } from './tmp.js';

const SECONDS = Number(process.env['BENCH_SECONDS'] ?? 10);
const CONCURRENCY = Number(process.env['BENCH_CONCURRENCY'] ?? 8);
const REPO = resolve(import.meta.dirname, '..');
const DATA = join(REPO, 'pipelines', 'data', 'california-housing.csv');

/** The housing model as the pipeline builds it (its transform steps), trained briefly. */
async function housingModel(dir: string): Promise<string> {
  const ctx = testContext(REPO, new LocalArtifactStore(join(dir, 'store')));
  const spec = loadPipeline(REPO, 'california-housing', createDefaultRegistry());
  const dataset = (await runPlugin(ingestFile, ctx, { path: DATA }))['dataset'] as ArtifactRef;
  const parts = await runPlugin(split, ctx, { method: 'random', test: 0.2, seed: 1 }, { dataset });
  const fitted = await runPlugin(transform, ctx, spec.steps['transform']!.with, { train: parts['train'] });
  const trained = await runPlugin(
    trainMlp,
    ctx,
    { target: 'median_house_value', hidden: [128, 64], epochs: 8, batchSize: 512, learningRate: 0.006 },
    { train: fitted['train'] },
  );
  const out = await runPlugin(exportOnnx, ctx, {}, { model: trained['model'], state: fitted['state'], test: parts['test'] });
  const file = join(dir, 'model.onnx');
  writeFileSync(file, await ctx.store.get(out['onnx'] as ArtifactRef));
  return file;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

async function scenario(pool: Pool, body: string, rowsPerRequest: number): Promise<Record<string, number>> {
  const latencies: number[] = [];
  let errors = 0;
  const end = performance.now() + SECONDS * 1000;
  const loop = async (): Promise<void> => {
    while (performance.now() < end) {
      const t = performance.now();
      const res = await pool.request({ path: '/predict', method: 'POST', headers: { 'content-type': 'application/json' }, body });
      await res.body.arrayBuffer();
      if (res.statusCode === 200) latencies.push(performance.now() - t);
      else errors++;
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: CONCURRENCY }, loop));
  const wall = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  return {
    rowsPerRequest,
    requests: latencies.length,
    errors,
    seconds: Number(wall.toFixed(2)),
    requestsPerSecond: Math.round(latencies.length / wall),
    rowsPerSecond: Math.round((latencies.length * rowsPerRequest) / wall),
    p50Ms: Number(percentile(latencies, 50).toFixed(2)),
    p99Ms: Number(percentile(latencies, 99).toFixed(2)),
    maxMs: Number((latencies[latencies.length - 1] ?? NaN).toFixed(2)),
  };
}

async function main(): Promise<void> {
  const dir = benchDir('serve');
  const model = process.env['BENCH_MODEL'] ? resolve(process.env['BENCH_MODEL']) : await housingModel(dir);
  const rows = await withDuckDB((db) =>
    db.rows<Record<string, unknown>>(`SELECT * EXCLUDE (median_house_value) FROM read_csv(${sqlString(DATA)}) LIMIT 1000`),
  );
  const runs: Record<string, unknown> = {};
  for (const log of [true, false]) {
    const port = await freePort();
    const logStore = join(dir, `log-store-${log}`);
    const server = spawn(
      process.execPath,
      [join(REPO, 'bin', 'mlpipe.mjs'), 'serve', model, '--port', String(port), '--name', 'bench', ...(log ? [] : ['--no-log'])],
      {
        env: { ...process.env, MLPIPE_ARTIFACTS: logStore, MLPIPE_TRACKING: 'off' },
        stdio: ['ignore', 'ignore', 'inherit'],
      },
    );
    const base = `http://127.0.0.1:${port}`;
    for (let i = 0; ; i++) {
      if (
        await fetch(`${base}/health`).then(
          (r) => r.ok,
          () => false,
        )
      )
        break;
      if (i > 200 || server.exitCode !== null) throw new Error('the server did not start');
      await new Promise((r) => setTimeout(r, 100));
    }
    const pool = new Pool(base, { connections: CONCURRENCY, pipelining: 1 });
    const results: Record<string, Record<string, number>> = {};
    let metrics = '';
    try {
      // Warm-up: the first requests pay for JIT and session setup.
      await scenario(pool, JSON.stringify(rows[0]), 1);
      results['single'] = await scenario(pool, JSON.stringify(rows[0]), 1);
      results['batch100'] = await scenario(pool, JSON.stringify({ instances: rows.slice(0, 100) }), 100);
      results['batch1000'] = await scenario(pool, JSON.stringify({ instances: rows.slice(0, 1000) }), 1000);
      metrics = await (await fetch(`${base}/metrics`)).text();
      console.log(`prediction log ${log ? 'on' : 'off'}:`);
      for (const [name, r] of Object.entries(results)) {
        console.log(
          `  ${name.padEnd(10)} ${String(r['requestsPerSecond']).padStart(6)} req/s ${String(r['rowsPerSecond']).padStart(8)} rows/s  p50 ${r['p50Ms']} ms  p99 ${r['p99Ms']} ms  errors ${r['errors']}`,
        );
      }
    } finally {
      await pool.close();
      server.kill('SIGTERM');
      await new Promise((r) => server.once('exit', r));
    }
    const gauge = (name: string): number => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(metrics)?.[1] ?? NaN);
    let logState: Record<string, number> | undefined;
    if (log) {
      // What reached the log (flushed on SIGTERM) and what the server dropped: the log does not
      // hold back predictions; past its buffer (100,000 rows) the oldest waiting rows are dropped.
      const logged = await collectPredictions(new LocalArtifactStore(logStore), 'bench');
      logState = {
        predicted: gauge('mlpipe_predictions_total'),
        logged: logged.rows,
        chunks: logged.chunks,
        droppedAtScrape: gauge('mlpipe_prediction_log_dropped_rows'),
      };
      console.log(
        `  log: ${logged.rows} of ${logState['predicted']} predictions written in ${logged.chunks} chunks; ${logState['droppedAtScrape']} dropped`,
      );
    }
    runs[log ? 'logOn' : 'logOff'] = { results, ...(logState ? { log: logState } : {}) };
  }
  const date = new Date().toISOString().slice(0, 10);
  mkdirSync(join(REPO, 'bench', 'results'), { recursive: true });
  const file = join(REPO, 'bench', 'results', `serve-${date}.json`);
  const machine = { cpus: cpus().length, cpu: cpus()[0]?.model, memGiB: Math.round(totalmem() / 2 ** 30), node: process.version };
  writeFileSync(file, `${JSON.stringify({ date, machine, seconds: SECONDS, concurrency: CONCURRENCY, ...runs }, null, 2)}\n`);
  console.log(`results: ${file}`);
}

await main();
