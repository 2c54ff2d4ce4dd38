/**
 * Tracking under load: BENCH_RUNS (20) concurrent runs of a 200-step wide pipeline (start, 200
 * parallel util.echo steps, join) on a local Temporal dev server, tracked to MLflow's file store,
 * measuring how long after the last run ends every tracking workflow has delivered everything.
 *
 *   node --import tsx bench/tracking-load.ts
 *   BENCH_RUNS=5 BENCH_DEADLINE_S=600 node --import tsx bench/tracking-load.ts
 *
 * Gives up waiting after BENCH_DEADLINE_S (default 2,700 s) and reports how many events were
 * delivered by then. Results: bench/results/tracking-load-<date>.json.
 */
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime } from '@temporalio/worker';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { createPipelineWorker } from '../app/worker.js';
import { MlflowFileStore } from '../adapters/mlflow/file-store.js';
import { loadSettings } from '../app/project.js';
import { requireTemporalCli, startDevServer, temporalCliVersion } from '../dev/temporal-server.js';
import { PIPELINE_WORKFLOW, trackingWorkflowId } from '../engine/contracts.js';
import { benchDir } from './tmp.js';

const RUNS = Number(process.env['BENCH_RUNS'] ?? 20);
const STEPS = Number(process.env['BENCH_STEPS'] ?? 200);
const DEADLINE_S = Number(process.env['BENCH_DEADLINE_S'] ?? 2700);

function wide(n: number): string {
  const lines = [`name: wide-load`, 'cache: false', 'maxParallel: 16', 'steps:', '  start: { uses: util.echo }'];
  for (let i = 0; i < n; i++) lines.push(`  w${i}: { uses: util.echo, needs: start }`);
  lines.push(`  join: { uses: util.echo, needs: [${Array.from({ length: n }, (_, i) => `w${i}`).join(', ')}] }`);
  return `${lines.join('\n')}\n`;
}

/** MLflow runs in the file store (folders with a meta.yaml), over all experiments. */
function trackedRuns(root: string): number {
  if (!existsSync(root)) return 0;
  let n = 0;
  for (const e of readdirSync(root, { withFileTypes: true })) {
    if (!e.isDirectory() || e.name.startsWith('.')) continue;
    for (const r of readdirSync(join(root, e.name), { withFileTypes: true }))
      if (r.isDirectory() && existsSync(join(root, e.name, r.name, 'meta.yaml'))) n++;
  }
  return n;
}

async function main(): Promise<void> {
  Runtime.install({ logger: new DefaultLogger('ERROR') });
  const settings = loadSettings();
  const dir = benchDir('tracking-load');
  mkdirSync(join(dir, 'pipelines'));
  writeFileSync(join(dir, 'pipelines', 'wide-load.yaml'), wide(STEPS));
  const mlruns = join(dir, 'mlruns');

  const bin = requireTemporalCli(settings.cacheDir);
  const server = await startDevServer({ bin, headless: true, dbFile: join(dir, 'temporal.db'), logFile: join(dir, 'server.log') });
  const s = {
    ...settings,
    projectDir: dir,
    artifactsDir: join(dir, 'artifacts'),
    temporalAddress: server.address,
    taskQueue: 'bench-tracking',
  };
  const nativeConnection = await NativeConnection.connect({ address: server.address });
  const { worker } = await createPipelineWorker({ settings: s, connection: nativeConnection, tracking: new MlflowFileStore(mlruns) });
  const connection = await Connection.connect({ address: server.address });
  const client = new Client({ connection });

  let result: Record<string, unknown> = {};
  await worker.runUntil(async () => {
    const t0 = performance.now();
    const handles = await Promise.all(
      Array.from({ length: RUNS }, (_, i) =>
        client.workflow.start(PIPELINE_WORKFLOW, { taskQueue: s.taskQueue, workflowId: `load-${i}`, args: [{ pipeline: 'wide-load' }] }),
      ),
    );
    await Promise.all(handles.map((h) => h.result()));
    const runsEnded = performance.now();
    const trackers = handles.map((h) => client.workflow.getHandle(trackingWorkflowId(`${h.workflowId}/${h.firstExecutionRunId}`)));
    let done = 0;
    for (;;) {
      const states = await Promise.all(
        trackers.map((t) =>
          t.describe().then(
            (d) => d.status.name,
            () => 'NOT_FOUND',
          ),
        ),
      );
      done = states.filter((x) => x === 'COMPLETED').length;
      if (done === RUNS || (performance.now() - runsEnded) / 1000 > DEADLINE_S) break;
      await new Promise((r) => setTimeout(r, 1000));
    }
    const deliveredAfter = performance.now();
    const status = await Promise.all(
      trackers.map((t) =>
        t.query<{ delivered: number; pending: number }>('trackingStatus').catch(() => ({ delivered: STEPS + 3, pending: 0 })),
      ),
    );
    result = {
      runs: RUNS,
      stepsPerRun: STEPS + 2,
      runsWallSeconds: Math.round((runsEnded - t0) / 100) / 10,
      trackingCompleted: done,
      deliveredWithinSeconds: done === RUNS ? Math.round((deliveredAfter - runsEnded) / 100) / 10 : null,
      gaveUpAfterSeconds: done === RUNS ? null : Math.round((deliveredAfter - runsEnded) / 1000),
      eventsDelivered: status.reduce((n, x) => n + x.delivered, 0),
      eventsExpected: RUNS * (STEPS + 4),
      mlflowRuns: trackedRuns(mlruns),
      mlflowRunsExpected: RUNS * (STEPS + 3),
    };
  });
  await connection.close();
  await nativeConnection.close();
  await server.stop();

  const memoryGiB = Math.round(totalmem() / 2 ** 30);
  const machine = { cpus: cpus().length, cpuModel: cpus()[0]?.model, memoryGiB, node: process.version, temporal: temporalCliVersion(bin) };
  const out = { date: new Date().toISOString(), machine, ...result };
  mkdirSync(join(import.meta.dirname, 'results'), { recursive: true });
  const label = process.env['BENCH_LABEL'] ? `-${process.env['BENCH_LABEL']}` : '';
  const file = join(import.meta.dirname, 'results', `tracking-load-${out.date.slice(0, 10)}${label}.json`);
  writeFileSync(file, `${JSON.stringify(out, null, 2)}\n`);
  console.log(JSON.stringify(out, null, 2));
  console.log(`written to ${file}`);
}

await main();
