/**
 * Hyperparameter search on Temporal workers: 32 housing trials on each tfjs backend side by side
 * (tfjs-node and wasm by default; tfjs has one backend per process, so each backend's trials run on
 * a worker process of its own, started with MLPIPE_TF_BACKEND and its own artifact store), at
 * parallel 1 and 2; the median time of each step of a trial and of a whole trial (start to close of
 * its workflow, and how much of that no step accounts for); and the orchestration overhead per trial
 * (32 trials of a pipeline that does nothing, on an in-process worker). Starts its own dev server.
 *
 * Cache: `on` (the default, what `mlpipe hpo` does): trials share the step cache, so the steps
 * upstream of the searched keys run in the first trials and are served from the cache in the rest;
 * every search starts with an empty cache (the backend's cache entries are deleted before it), so
 * each search pays for its own first trials. `off`: every trial runs every step (the input's
 * `cache: false`). BENCH_CACHE=off,on measures both.
 *
 *   npm run bench:hpo                                   # 32 trials, 8 epochs each, tfjs-node and wasm, parallel 1 and 2, cache on
 *   BENCH_TRIALS=8 BENCH_EPOCHS=4 BENCH_BACKENDS=wasm BENCH_PARALLEL=2 BENCH_CACHE=off,on npm run bench:hpo
 *
 * Results: bench/results/hpo-<date>.json (BENCH_TAG=x: hpo-<date>-x.json). BENCH_WORKER_NODE_ARGS: node
 * flags for the backend workers (e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof`).
 */
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime } from '@temporalio/worker';
import { spawn, type ChildProcess } from 'node:child_process';
import { cpSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import { createPipelineWorker } from '../app/worker.js';
import { loadSettings } from '../app/project.js';
import { createArtifactStore } from '../adapters/stores.js';
import { requireTemporalCli, startDevServer } from '../dev/temporal-server.js';
import { HPO_WORKFLOW, type HpoResult } from '../engine/contracts.js';
import { runsOf } from '../engine/lineage.js';
import { benchDir } from './tmp.js';

const TRIALS = Number(process.env['BENCH_TRIALS'] ?? 32);
const EPOCHS = Number(process.env['BENCH_EPOCHS'] ?? 8);
const BACKENDS = (process.env['BENCH_BACKENDS'] ?? 'tfjs-node,wasm').split(',').filter(Boolean);
const PARALLEL = (process.env['BENCH_PARALLEL'] ?? '1,2').split(',').map(Number);
const CACHE = (process.env['BENCH_CACHE'] ?? 'on').split(',').filter(Boolean);
if (CACHE.some((c) => c !== 'on' && c !== 'off')) throw new Error(`BENCH_CACHE: on, off or off,on, not ${CACHE.join(',')}`);

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
  // BENCH_WORKER_NODE_ARGS: node flags for the backend workers, e.g. --cpu-prof --cpu-prof-dir=/tmp/prof.
  const nodeArgs = (process.env['BENCH_WORKER_NODE_ARGS'] ?? '').split(' ').filter(Boolean);
  const child = spawn(process.execPath, [...nodeArgs, join(projectDir, 'bin', 'mlpipe.mjs'), 'worker'], {
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
  const dir = benchDir('hpo');
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
  const search = async (
    pipeline: string,
    parallel: number,
    taskQueue = s.taskQueue,
    label = '',
    cache = false,
  ): Promise<{ seconds: number; r: HpoResult }> => {
    const t0 = performance.now();
    const r = (await client.workflow.execute(HPO_WORKFLOW, {
      taskQueue,
      workflowId: `bench-${pipeline}-${parallel}-${++seq}`,
      args: [{ pipeline, parallel, ...(cache ? {} : { cache: false }) }],
    })) as HpoResult;
    const seconds = (performance.now() - t0) / 1000;
    console.log(
      `${pipeline}${label} parallel ${parallel}: ${r.trials} trials in ${seconds.toFixed(1)} s (${r.failed} failed); best trial ${r.best.index} = ${r.best.value} (${r.best.overrides.join(' ')})`,
    );
    return { seconds, r };
  };
  /** Deletes the cache entries of a backend's store, so the next search starts with an empty cache. */
  const clearCache = async (artifacts: string): Promise<void> => {
    const store = createArtifactStore(artifacts, { cacheDir: join(dir, '.mlpipe') });
    for (const key of await store.listRecords('cache/')) await store.deleteRecord(key);
  };
  /**
   * Where the time of a search's trials goes (medians over its trials, seconds): each step (from the
   * step records in the backend's store; a cached step counts its lookup), a whole trial (its
   * workflow from start to close), the sum of its steps, and the rest (the trial's workflow tasks,
   * compile activity, scheduling between steps); and how many trials had each step served from the cache.
   */
  const breakdown = async (
    artifacts: string,
    r: HpoResult,
  ): Promise<{ steps: Record<string, number>; cached: Record<string, number>; trial: number; stepsSum: number; outsideSteps: number }> => {
    const store = createArtifactStore(artifacts, { cacheDir: join(dir, '.mlpipe') });
    const times: Record<string, number[]> = {};
    const cached: Record<string, number> = {};
    const walls: number[] = [];
    const sums: number[] = [];
    const outside: number[] = [];
    for (const t of r.results) {
      if (!t.workflowId) continue;
      const d = await client.workflow.getHandle(t.workflowId).describe();
      const wall = d.closeTime ? (d.closeTime.getTime() - d.startTime.getTime()) / 1000 : NaN;
      let sum = 0;
      for (const view of await runsOf(store, t.workflowId))
        for (const step of view.steps)
          if (step.startedAt && step.endedAt) {
            const sec = (Date.parse(step.endedAt) - Date.parse(step.startedAt)) / 1000;
            (times[step.stepId] ??= []).push(sec);
            sum += sec;
            if (step.status === 'cached') cached[step.stepId] = (cached[step.stepId] ?? 0) + 1;
          }
      walls.push(wall);
      sums.push(sum);
      outside.push(wall - sum);
    }
    const r2 = (x: number): number => Math.round(x * 100) / 100;
    return {
      steps: Object.fromEntries(Object.entries(times).map(([k, v]) => [k, r2(median(v))])),
      cached,
      trial: r2(median(walls)),
      stepsSum: r2(median(sums)),
      outsideSteps: r2(median(outside)),
    };
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
      // Backends alternate within each cache mode and parallelism, so a change in the machine's load hits both.
      for (const mode of CACHE) {
        for (const parallel of PARALLEL) {
          for (const [b, w] of Object.entries(workers)) {
            await clearCache(w.artifacts);
            const { seconds, r } = await search('housing-search', parallel, w.queue, ` (${b}, cache ${mode})`, mode === 'on');
            const row = (housing[`${b} cache ${mode}`] ??= { backend: b, cache: mode, epochs: EPOCHS });
            const k = `parallel${parallel}`;
            const bd = await breakdown(w.artifacts, r);
            row[`${k}Seconds`] = Math.round(seconds * 10) / 10;
            row[`${k}SecondsPerTrial`] = Math.round((seconds / r.trials) * 100) / 100;
            row[`${k}StepMedianSeconds`] = bd.steps;
            row[`${k}TrialsWithStepCached`] = bd.cached;
            row[`${k}TrialMedianSeconds`] = { trial: bd.trial, steps: bd.stepsSum, outsideSteps: bd.outsideSteps };
            row[`${k}BestRmse`] = r.best.value;
            row[`${k}Failed`] = r.failed;
            console.log(
              `  ${b} cache ${mode} parallel ${parallel}: median seconds per step ${JSON.stringify(bd.steps)}; cached ${JSON.stringify(bd.cached)}; trial ${bd.trial} s (steps ${bd.stepsSum} s, outside them ${bd.outsideSteps} s)`,
            );
          }
        }
      }
      results['housing'] = housing;
      const [first, second] = BACKENDS;
      if (first && second) {
        results['speedup'] = Object.fromEntries(
          CACHE.flatMap((mode) =>
            PARALLEL.map((p) => [
              `cache ${mode} parallel${p}`,
              Math.round(
                ((housing[`${second} cache ${mode}`]![`parallel${p}Seconds`] as number) /
                  (housing[`${first} cache ${mode}`]![`parallel${p}Seconds`] as number)) *
                  100,
              ) / 100,
            ]),
          ),
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
  const tag = process.env['BENCH_TAG'] ? `-${process.env['BENCH_TAG']}` : '';
  const file = join(settings.projectDir, 'bench', 'results', `hpo-${date}${tag}.json`);
  writeFileSync(
    file,
    `${JSON.stringify({ date, machine: { cpus: cpus().length, cpu: cpus()[0]?.model, memGiB: Math.round(totalmem() / 2 ** 30), node: process.version }, trials: TRIALS, cache: CACHE, ...results }, null, 2)}\n`,
  );
  console.log(JSON.stringify(results, null, 2));
  console.log(`wrote ${file}`);
}

await main();
