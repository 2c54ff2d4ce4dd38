/**
 * Hyperparameter search on Temporal workers: 32 housing trials at parallel 1 and 2 on this machine
 * (one worker process; every trial runs all its steps, no cache), and the orchestration overhead per
 * trial (32 trials of a pipeline that does nothing). Starts its own dev server.
 *
 *   npm run bench:hpo                       # 32 trials, 8 epochs each
 *   BENCH_TRIALS=8 BENCH_EPOCHS=4 npm run bench:hpo
 *
 * Results: bench/results/hpo-<date>.json.
 */
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime } from '@temporalio/worker';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { createPipelineWorker } from '../app/worker.js';
import { loadSettings } from '../app/project.js';
import { requireTemporalCli, startDevServer } from '../dev/temporal-server.js';
import { HPO_WORKFLOW, type HpoResult } from '../engine/contracts.js';

const TRIALS = Number(process.env['BENCH_TRIALS'] ?? 32);
const EPOCHS = Number(process.env['BENCH_EPOCHS'] ?? 8);

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
  const bin = requireTemporalCli(settings.cacheDir);
  const server = await startDevServer({ bin, headless: true, dbFile: join(dir, 'temporal.db'), logFile: join(dir, 'server.log') });
  const s = { ...settings, projectDir: dir, artifactsDir: join(dir, 'artifacts'), temporalAddress: server.address, taskQueue: 'bench-hpo' };
  const nativeConnection = await NativeConnection.connect({ address: server.address });
  const { worker } = await createPipelineWorker({ settings: s, connection: nativeConnection, tracking: null });
  const connection = await Connection.connect({ address: server.address });
  const client = new Client({ connection });
  const results: Record<string, unknown> = {};
  let seq = 0;
  // cache: false: both searches run the same trials in full (no step served from the other's cache).
  const search = async (pipeline: string, parallel: number): Promise<{ seconds: number; best: HpoResult['best'] }> => {
    const t0 = performance.now();
    const r = (await client.workflow.execute(HPO_WORKFLOW, {
      taskQueue: s.taskQueue,
      workflowId: `bench-${pipeline}-${parallel}-${++seq}`,
      args: [{ pipeline, parallel, cache: false }],
    })) as HpoResult;
    const seconds = (performance.now() - t0) / 1000;
    console.log(
      `${pipeline} parallel ${parallel}: ${TRIALS} trials in ${seconds.toFixed(1)} s; best trial ${r.best.index} = ${r.best.value} (${r.best.overrides.join(' ')})`,
    );
    return { seconds, best: r.best };
  };
  await worker.runUntil(async () => {
    await search('empty-search', 1); // warm-up
    const empty1 = await search('empty-search', 1);
    const empty2 = await search('empty-search', 2);
    results['orchestrationPerTrialMs'] = {
      parallel1: Math.round((empty1.seconds * 1000) / TRIALS),
      parallel2: Math.round((empty2.seconds * 1000) / TRIALS),
    };
    const h1 = await search('housing-search', 1);
    const h2 = await search('housing-search', 2);
    results['housing'] = {
      epochs: EPOCHS,
      parallel1Seconds: Math.round(h1.seconds * 10) / 10,
      parallel2Seconds: Math.round(h2.seconds * 10) / 10,
      speedup: Math.round((h1.seconds / h2.seconds) * 100) / 100,
      bestRmse: h2.best.value,
      bestOverrides: h2.best.overrides,
    };
  });
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
