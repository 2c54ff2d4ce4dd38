/**
 * Engine overhead on a local Temporal dev server (SQLite file), with an in-process worker.
 *
 *   npm run bench               # 7 timed runs of each case after one warm-up
 *   BENCH_RUNS=15 npm run bench
 *
 * Cases (util.echo steps that do nothing, cache off, so every step is a real activity):
 * - chain-1 and chain-50: a linear chain. Per-step overhead = (T(chain-50) - T(chain-1)) / 49, the
 *   marginal cost of one more sequential step (workflow task + activity task round trips).
 * - wide-200: `start`, 200 parallel steps, `join`, at maxParallel 16.
 * Wall time is measured from the client's start call to the result. Results: bench/results/.
 */
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime } from '@temporalio/worker';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { createPipelineWorker } from '../app/worker.js';
import { loadSettings } from '../app/project.js';
import { requireTemporalCli, startDevServer, temporalCliVersion } from '../dev/temporal-server.js';
import { PIPELINE_WORKFLOW } from '../engine/contracts.js';

const RUNS = Number(process.env['BENCH_RUNS'] ?? 7);

function chain(n: number): string {
  const steps = Array.from({ length: n }, (_, i) => `  s${i}:\n    uses: util.echo${i ? `\n    needs: s${i - 1}` : ''}`);
  return `name: chain-${n}\ncache: false\nsteps:\n${steps.join('\n')}\n`;
}

function wide(n: number, parallel: number): string {
  const lines = [`name: wide-${n}`, 'cache: false', `maxParallel: ${parallel}`, 'steps:', '  start: { uses: util.echo }'];
  for (let i = 0; i < n; i++) lines.push(`  w${i}: { uses: util.echo, needs: start }`);
  lines.push(`  join: { uses: util.echo, needs: [${Array.from({ length: n }, (_, i) => `w${i}`).join(', ')}] }`);
  return `${lines.join('\n')}\n`;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

async function main(): Promise<void> {
  Runtime.install({ logger: new DefaultLogger('ERROR') });
  const settings = loadSettings();
  const dir = mkdtempSync(join(tmpdir(), 'mlpipe-bench-'));
  mkdirSync(join(dir, 'pipelines'));
  writeFileSync(join(dir, 'pipelines', 'chain-1.yaml'), chain(1));
  writeFileSync(join(dir, 'pipelines', 'chain-50.yaml'), chain(50));
  writeFileSync(join(dir, 'pipelines', 'wide-200.yaml'), wide(200, 16));

  const bin = requireTemporalCli(settings.cacheDir);
  const server = await startDevServer({
    bin,
    headless: true,
    dbFile: process.env['BENCH_DB'] === 'memory' ? undefined : join(dir, 'temporal.db'),
    logFile: join(dir, 'server.log'),
  });
  const s = { ...settings, projectDir: dir, artifactsDir: join(dir, 'artifacts'), temporalAddress: server.address, taskQueue: 'bench' };
  const nativeConnection = await NativeConnection.connect({ address: server.address });
  const { worker } = await createPipelineWorker({ settings: s, connection: nativeConnection });
  const connection = await Connection.connect({ address: server.address });
  const client = new Client({ connection });

  const times: Record<string, number[]> = { 'chain-1': [], 'chain-50': [], 'wide-200': [] };
  let seq = 0;
  await worker.runUntil(async () => {
    for (let round = 0; round <= RUNS; round++) {
      for (const name of Object.keys(times)) {
        const t0 = performance.now();
        await client.workflow.execute(PIPELINE_WORKFLOW, {
          taskQueue: s.taskQueue,
          workflowId: `bench-${name}-${++seq}`,
          args: [{ pipeline: name }],
        });
        const ms = performance.now() - t0;
        if (round > 0) times[name]!.push(ms); // round 0 warms up
      }
    }
  });
  await connection.close();
  await nativeConnection.close();
  await server.stop();

  const med = Object.fromEntries(Object.entries(times).map(([k, v]) => [k, median(v)]));
  const perStep = (med['chain-50']! - med['chain-1']!) / 49;
  const result = {
    date: new Date().toISOString(),
    machine: {
      cpus: cpus().length,
      cpuModel: cpus()[0]?.model,
      memoryGiB: Math.round(totalmem() / 2 ** 30),
      node: process.version,
      temporal: temporalCliVersion(bin),
    },
    runs: RUNS,
    medianMs: Object.fromEntries(Object.entries(med).map(([k, v]) => [k, Math.round(v)])),
    perStepOverheadMs: Math.round(perStep * 10) / 10,
    samplesMs: Object.fromEntries(Object.entries(times).map(([k, v]) => [k, v.map((x) => Math.round(x))])),
  };
  const out = join(import.meta.dirname, 'results', `${result.date.slice(0, 10)}.json`);
  mkdirSync(join(import.meta.dirname, 'results'), { recursive: true });
  writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
  console.log(`| case | median wall time (${RUNS} runs) |\n|---|---|`);
  for (const [k, v] of Object.entries(result.medianMs)) console.log(`| ${k} | ${v} ms |`);
  console.log(`\nper-step overhead (chain-50 − chain-1) / 49: ${result.perStepOverheadMs} ms`);
  console.log(
    `machine: ${result.machine.cpus} × ${result.machine.cpuModel}, ${result.machine.memoryGiB} GiB, node ${result.machine.node}; written to ${out}`,
  );
}

await main();
