/**
 * A search of 1,000 trials (a pipeline that does nothing, parallel 20): shows that history stays
 * bounded through continue-as-new and how long orchestration takes at that scale.
 *
 *   npm run bench:hpo-scale            # BENCH_TRIALS=1000
 */
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime } from '@temporalio/worker';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { createPipelineWorker } from '../app/worker.js';
import { loadSettings } from '../app/project.js';
import { requireTemporalCli, startDevServer } from '../dev/temporal-server.js';
import { HPO_WORKFLOW, type HpoResult } from '../engine/contracts.js';
import { benchDir } from './tmp.js';

const TRIALS = Number(process.env['BENCH_TRIALS'] ?? 1000);

async function main(): Promise<void> {
  Runtime.install({ logger: new DefaultLogger('ERROR') });
  const settings = loadSettings();
  const dir = benchDir('hpo-scale');
  mkdirSync(join(dir, 'pipelines'));
  writeFileSync(
    join(dir, 'pipelines', 'scale.yaml'),
    `name: scale\nparams: { x: 0 }\nhpo:\n  metric: { step: a, output: score, key: score, goal: minimize }\n  space:\n    params.x: { type: int, min: 0, max: 1000000 }\n  trials: ${TRIALS}\n  parallel: 20\n  final: false\nsteps:\n  a:\n    uses: util.echo\n    with:\n      values:\n        score: \${params.x}\n`,
  );
  const server = await startDevServer({
    bin: requireTemporalCli(settings.cacheDir),
    headless: true,
    dbFile: join(dir, 'temporal.db'),
    logFile: join(dir, 'server.log'),
  });
  const s = {
    ...settings,
    projectDir: dir,
    artifactsDir: join(dir, 'artifacts'),
    temporalAddress: server.address,
    taskQueue: 'bench-scale',
  };
  const nativeConnection = await NativeConnection.connect({ address: server.address });
  const { worker } = await createPipelineWorker({ settings: s, connection: nativeConnection, tracking: null });
  const connection = await Connection.connect({ address: server.address });
  const client = new Client({ connection });
  let out: Record<string, unknown> = {};
  await worker.runUntil(async () => {
    const t0 = performance.now();
    const h = await client.workflow.start(HPO_WORKFLOW, {
      taskQueue: s.taskQueue,
      workflowId: 'scale-search',
      args: [{ pipeline: 'scale' }],
    });
    const r = (await h.result()) as HpoResult;
    const seconds = (performance.now() - t0) / 1000;
    const last = await h.describe();
    out = {
      trials: r.trials,
      failed: r.failed,
      generations: r.generations,
      seconds: Math.round(seconds * 10) / 10,
      msPerTrial: Math.round((seconds * 1000) / r.trials),
      lastGenerationHistoryLength: last.historyLength,
    };
    console.log(out);
  });
  await connection.close();
  await nativeConnection.close();
  await server.stop();
  const date = new Date().toISOString().slice(0, 10);
  const file = join(settings.projectDir, 'bench', 'results', `hpo-scale-${date}.json`);
  writeFileSync(
    file,
    `${JSON.stringify({ date, machine: { cpus: cpus().length, cpu: cpus()[0]?.model, memGiB: Math.round(totalmem() / 2 ** 30), node: process.version }, parallel: 20, ...out }, null, 2)}\n`,
  );
  console.log(`wrote ${file}`);
}

await main();
