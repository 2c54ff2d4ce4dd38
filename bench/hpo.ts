/**
 * Hyperparameter search on Temporal workers: 32 housing trials on each tfjs backend side by side
 * (tfjs-node and wasm by default; tfjs has one backend per process, so each backend's trials run on
 * a worker process of its own, started with MLPIPE_TF_BACKEND and its own artifact store), at
 * parallel 1 and 2, every trial running all its steps (no cache); the median time of each step of a
 * trial; and the orchestration overhead per trial (32 trials of a pipeline that does nothing, on an
 * in-process worker). Starts its own dev server.
 *
 *   npm run bench:hpo                                   # 32 trials, 8 epochs each, tfjs-node and wasm, parallel 1 and 2
 *   BENCH_TRIALS=8 BENCH_EPOCHS=4 BENCH_BACKENDS=wasm BENCH_PARALLEL=2 npm run bench:hpo
 *
 * Results: bench/results/hpo-<date>.json.
 */
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime } from '@temporalio/worker';
import { spawn, type ChildProcess } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { createPipelineWorker } from '../app/worker.js';
import { loadSettings } from '../app/project.js';
import { createArtifactStore } from '../adapters/stores.js';
import { requireTemporalCli, startDevServer } from '../dev/temporal-server.js';
import { HPO_WORKFLOW, type HpoResult } from '../engine/contracts.js';
import { runsOf } from '../engine/lineage.js';

const TRIALS = Number(process.env['BENCH_TRIALS'] ?? 32);
const EPOCHS = Number(process.env['BENCH_EPOCHS'] ?? 8);
const BACKENDS = (process.env['BENCH_BACKENDS'] ?? 'tfjs-node,wasm').split(',').filter(Boolean);
const PARALLEL = (process.env['BENCH_PARALLEL'] ?? '1,2').split(',').map(Number);

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? (s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2) : NaN;
};

/** A worker process for one tfjs backend, on its own task queue and artifact store. */
function backendWorker(
  projectDir: string,
  dir: string,
  address: string,
  backend: string,
): { queue: string; artifacts: string; child: ChildProcess } {
  const queue = `bench-hpo-${backend}`;
  const artifacts = join(dir, `artifacts-${backend}`);
  const child = spawn(process.execPath, [join(projectDir, 'bin', 'mlpipe.mjs'), 'worker'], {
    cwd: dir,
    env: {
      ...process.env,
      TEMPORAL_ADDRESS: address,
      MLPIPE_TASK_QUEUE: queue,
      MLPIPE_ARTIFACTS: artifacts,
      MLPIPE_TF_BACKEND: backend,
      MLPIPE_TRACKING: 'off',
      MLPIPE_PROJECT_DIR: dir,
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  return { queue, artifacts, child };
}

async function main(): Promise<void> {
  Runtime.install({ logger: new DefaultLogger('ERROR') });
  const settings = loadSettings();
  const dir = mkdtempSync(join(tmpdir(), 'mlpipe-bench-hpo-'));
  cpSync(join(settings.projectDir, 'pipelines'), join(dir, 'pipelines'), { recursive: true });
  cpSync(join(settings.projectDir, 'conf'), join(dir, 'conf'), { recursive: true });
  // The housing search with short training, and a search whose trials do nothing.
  const housing = readFileSync(join(dir, 'pipelines', 'california-housing.yaml'), 'utf8')
    .replace(/  trials: \d+/, `  trials: ${TRIALS}`)
    .replace('    training.epochs: { type: int, min: 40, max: 90 }', `    training.epochs: { type: discrete, values: [${EPOCHS}] }`)
    .replace('  final: true', '  final: false');
  writeFileSync(
    join(dir, 'pipelines', 'housing-search.yaml'),
    housing.replace('name: california-housing', 'name: housing-search').replace('hpo:\n', 'hpo:\n  final: false\n'),
  );
  writeFileSync(
    join(dir, 'pipelines', 'empty-search.yaml'),
    `name: empty-search\nparams: { x: 0 }\nhpo:\n  metric: { step: a, output: score, key: score, goal: minimize }\n  space:\n    params.x: { type: int, min: 0, max: 1000 }\n  trials: ${TRIALS}\n  final: false\nsteps:\n  a:\n    uses: util.echo\n    cache: false\n    with:\n      values:\n        score: \${params.x}\n`,
  );
  writeFileSync(
    join(dir, 'pipelines', 'housing-warmup.yaml'),
    housing
      .replace('name: california-housing', 'name: housing-warmup')
      .replace('hpo:\n', 'hpo:\n  final: false\n')
      .replace(`  trials: ${TRIALS}`, '  trials: 1'),
  );
  const bin = requireTemporalCli(settings.cacheDir);
  const server = await startDevServer({ bin, headless: true, dbFile: join(dir, 'temporal.db'), logFile: join(dir, 'server.log') });
  const s = { ...settings, projectDir: dir, artifactsDir: join(dir, 'artifacts'), temporalAddress: server.address, taskQueue: 'bench-hpo' };
  const nativeConnection = await NativeConnection.connect({ address: server.address });
  const { worker } = await createPipelineWorker({ settings: s, connection: nativeConnection, tracking: null });
  const connection = await Connection.connect({ address: server.address });
  const client = new Client({ connection });
  const workers = Object.fromEntries(BACKENDS.map((b) => [b, backendWorker(settings.projectDir, dir, server.address, b)]));
  const results: Record<string, unknown> = { loadBefore: loadavg()[0] };
  let seq = 0;
  // cache: false: every search runs the same trials in full (no step served from another's cache).
  const search = async (
    pipeline: string,
    parallel: number,
    taskQueue = s.taskQueue,
    label = '',
  ): Promise<{ seconds: number; r: HpoResult }> => {
    const t0 = performance.now();
    const r = (await client.workflow.execute(HPO_WORKFLOW, {
      taskQueue,
      workflowId: `bench-${pipeline}-${parallel}-${++seq}`,
      args: [{ pipeline, parallel, cache: false }],
    })) as HpoResult;
    const seconds = (performance.now() - t0) / 1000;
    console.log(
      `${pipeline}${label} parallel ${parallel}: ${r.trials} trials in ${seconds.toFixed(1)} s (${r.failed} failed); best trial ${r.best.index} = ${r.best.value} (${r.best.overrides.join(' ')})`,
    );
    return { seconds, r };
  };
  /** The median seconds of each step over the trials of a search (from the step records in the backend's store). */
  const stepMedians = async (artifacts: string, r: HpoResult): Promise<Record<string, number>> => {
    const store = createArtifactStore(artifacts, { cacheDir: join(dir, '.mlpipe') });
    const times: Record<string, number[]> = {};
    for (const t of r.results) {
      if (!t.workflowId) continue;
      for (const view of await runsOf(store, t.workflowId))
        for (const step of view.steps)
          if (step.startedAt && step.endedAt)
            (times[step.stepId] ??= []).push((Date.parse(step.endedAt) - Date.parse(step.startedAt)) / 1000);
    }
    return Object.fromEntries(Object.entries(times).map(([k, v]) => [k, Math.round(median(v) * 100) / 100]));
  };
  try {
    await worker.runUntil(async () => {
      await search('empty-search', 1); // warm-up
      const empty1 = await search('empty-search', 1);
      const empty2 = await search('empty-search', 2);
      results['orchestrationPerTrialMs'] = {
        parallel1: Math.round((empty1.seconds * 1000) / TRIALS),
        parallel2: Math.round((empty2.seconds * 1000) / TRIALS),
      };
      // One trial per backend first: the worker process starts, bundles and loads its backend.
      for (const [b, w] of Object.entries(workers)) await search('housing-warmup', 1, w.queue, ` (${b})`);
      const housing: Record<string, Record<string, unknown>> = {};
      // Backends alternate within each parallelism, so a change in the machine's load hits both.
      for (const parallel of PARALLEL) {
        for (const [b, w] of Object.entries(workers)) {
          const { seconds, r } = await search('housing-search', parallel, w.queue, ` (${b})`);
          const row = (housing[b] ??= { epochs: EPOCHS });
          row[`parallel${parallel}Seconds`] = Math.round(seconds * 10) / 10;
          row[`parallel${parallel}SecondsPerTrial`] = Math.round((seconds / r.trials) * 100) / 100;
          row[`parallel${parallel}StepMedianSeconds`] = await stepMedians(w.artifacts, r);
          row[`parallel${parallel}BestRmse`] = r.best.value;
          row[`parallel${parallel}Failed`] = r.failed;
          console.log(
            `  ${b} parallel ${parallel}: median seconds per step ${JSON.stringify(row[`parallel${parallel}StepMedianSeconds`])}`,
          );
        }
      }
      results['housing'] = housing;
      const [first, second] = BACKENDS;
      if (first && second) {
        results['speedup'] = Object.fromEntries(
          PARALLEL.map((p) => [
            `parallel${p}`,
            Math.round(((housing[second]![`parallel${p}Seconds`] as number) / (housing[first]![`parallel${p}Seconds`] as number)) * 100) /
              100,
          ]),
        );
      }
    });
  } finally {
    for (const w of Object.values(workers)) w.child.kill('SIGTERM');
  }
  results['loadAfter'] = loadavg()[0];
  await connection.close();
  await nativeConnection.close();
  await server.stop();
  const date = new Date().toISOString().slice(0, 10);
  mkdirSync(join(settings.projectDir, 'bench', 'results'), { recursive: true });
  const file = join(settings.projectDir, 'bench', 'results', `hpo-${date}.json`);
  writeFileSync(
    file,
    `${JSON.stringify({ date, machine: { cpus: cpus().length, cpu: cpus()[0]?.model, memGiB: Math.round(totalmem() / 2 ** 30), node: process.version }, trials: TRIALS, ...results }, null, 2)}\n`,
  );
  console.log(JSON.stringify(results, null, 2));
  console.log(`wrote ${file}`);
}

await main();
