/**
 * MLflow tracking throughput against a local `mlflow server` (sqlite backend) started here, and the
 * file store:
 *
 *   npm run bench:tracking            # 100,000 metric points batched, 1,000 one per request
 *   BENCH_POINTS=20000 npm run bench:tracking
 *
 * Results: bench/results/tracking-<date>.json.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { MlflowFileStore } from '../adapters/mlflow/file-store.js';
import { MlflowRestClient } from '../adapters/mlflow/rest.js';
import { findMlflow, startMlflowServer } from '../dev/mlflow-server.js';
import { freePort } from '../dev/temporal-server.js';
import type { TrackingBackend } from '../engine/ports.js';
import type { MetricPoint } from '../engine/tracking.js';
import { mlpipeCacheDir } from '../engine/cache-dir.js';
import { benchDir } from './tmp.js';

const POINTS = Number(process.env['BENCH_POINTS'] ?? 100_000);
const SINGLE = Number(process.env['BENCH_SINGLE_POINTS'] ?? 1_000);
const cacheDir = mlpipeCacheDir();

function points(n: number, offset = 0): MetricPoint[] {
  // A training-curve shape: 10 keys, n/10 steps each.
  return Array.from({ length: n }, (_, i) => ({
    key: `metric_${i % 10}`,
    value: Math.sin(i),
    timestamp: 1_700_000_000_000 + offset + i,
    step: Math.floor(i / 10),
  }));
}

async function measure(backend: TrackingBackend, label: string): Promise<Record<string, number>> {
  const exp = await backend.getOrCreateExperiment(`bench-${label}-${Date.now()}`);
  const run = await backend.createRun({ experimentId: exp, runName: 'bench', startTime: Date.now(), tags: [] });
  let t0 = performance.now();
  await backend.logBatch(run.mlflowRunId, { metrics: points(POINTS), params: [], tags: [] });
  const batched = (performance.now() - t0) / 1000;
  t0 = performance.now();
  for (const p of points(SINGLE, POINTS)) await backend.logBatch(run.mlflowRunId, { metrics: [p], params: [], tags: [] });
  const single = (performance.now() - t0) / 1000;
  t0 = performance.now();
  const history = await backend.metricHistory(run.mlflowRunId, 'metric_0');
  const read = (performance.now() - t0) / 1000;
  if (history.length !== POINTS / 10 + SINGLE / 10)
    throw new Error(`${label}: expected ${POINTS / 10 + SINGLE / 10} points of metric_0, read ${history.length}`);
  return {
    batchedPointsPerSecond: Math.round(POINTS / batched),
    batchedSeconds: Math.round(batched * 100) / 100,
    singlePointsPerSecond: Math.round(SINGLE / single),
    historyReadPointsPerSecond: Math.round(history.length / read),
  };
}

async function main(): Promise<void> {
  const mlflow = findMlflow(cacheDir);
  if (!mlflow) throw new Error("mlflow is not installed: run 'bash deploy/provision.sh --with-mlflow'.");
  const dir = benchDir('mlflow');
  const port = await freePort();
  const server = await startMlflowServer({
    mlflow,
    backendStoreUri: `sqlite:///${join(dir, 'mlflow.db')}`,
    artifactsDir: join(dir, 'artifacts'),
    port,
    logFile: join(dir, 'server.log'),
  });
  try {
    const rest = new MlflowRestClient({ uri: server.url });
    const server_ = await measure(rest, 'server');
    await rest.close();
    const file = await measure(new MlflowFileStore(join(dir, 'mlruns')), 'file');
    const result = {
      date: new Date().toISOString(),
      machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model, memoryGiB: Math.round(totalmem() / 2 ** 30), node: process.version },
      points: POINTS,
      singlePoints: SINGLE,
      mlflowServerSqlite: server_,
      fileStore: file,
    };
    mkdirSync(join(import.meta.dirname, 'results'), { recursive: true });
    const out = join(import.meta.dirname, 'results', `tracking-${result.date.slice(0, 10)}.json`);
    writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
    console.log(
      '| backend | batched points/s (1000 per request) | one point per request, points/s | history read, points/s |\n|---|---|---|---|',
    );
    for (const [name, r] of [
      ['mlflow server (sqlite)', server_],
      ['file store', file],
    ] as const) {
      console.log(
        `| ${name} | ${r['batchedPointsPerSecond']!.toLocaleString('en-US')} | ${r['singlePointsPerSecond']!.toLocaleString('en-US')} | ${r['historyReadPointsPerSecond']!.toLocaleString('en-US')} |`,
      );
    }
    console.log(`written to ${out}`);
  } finally {
    await server.stop();
  }
}

await main();
