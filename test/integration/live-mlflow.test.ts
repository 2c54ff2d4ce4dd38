/**
 * A run while it runs and after, against a real Temporal dev server and a real `mlflow server`
 * (sqlite, served artifacts): a step's MLflow run exists RUNNING while the step runs and its metric
 * history grows point by point, then ends FINISHED with each point once; a housing run's artifacts
 * come out with `mlpipe show` (Parquet through DuckDB, the evaluation table, the ONNX contract) and
 * `mlpipe artifacts get`, and `mlpipe serve --run` serves the model that run exported.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Client } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MlflowRestClient } from '../../adapters/mlflow/rest.js';
import { findMlflow, startMlflowServer, type MlflowServer } from '../../dev/mlflow-server.js';
import { freePort } from '../../dev/temporal-server.js';
import { PIPELINE_WORKFLOW, type PipelineResult } from '../../engine/contracts.js';
import type { ArtifactRef } from '../../engine/types.js';
import { createClient, createTestProject, REPO, startWorker, uniqueId, waitFor, waitForTracking } from './helpers.js';
import { mlpipeCacheDir } from '../../engine/cache-dir.js';

const CACHE = mlpipeCacheDir();
const MLFLOW = findMlflow(CACHE);

const project = createTestProject('live-mlflow');
symlinkSync(join(REPO, 'node_modules'), join(project.dir, 'node_modules'));
project.write('package.json', JSON.stringify({ name: 'live-mlflow-project', private: true, type: 'module' }));
// A training curve of three points, one per gate file the test creates.
project.write(
  'mlpipe.plugins.ts',
  `import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { definePlugin } from ${JSON.stringify(join(REPO, 'plugins', 'sdk.ts'))};

export const plugins = [
  definePlugin({
    name: 'custom.curve',
    version: '1',
    description: 'Logs a loss point per epoch, one epoch per gate file.',
    params: z.object({ epochs: z.number() }).strict(),
    outputs: { epochs: 'json' },
    async run(ctx, p) {
      for (let i = 1; i <= p.epochs; i++) {
        ctx.logMetrics({ loss: 1 / i }, { step: i });
        ctx.progress({ done: i, total: p.epochs, unit: 'epoch', metrics: { loss: 1 / i } });
        while (!existsSync(join(ctx.projectDir, 'gate-' + i))) await new Promise((r) => setTimeout(r, 100));
      }
      return { epochs: p.epochs };
    },
  }),
];
`,
);
project.write('pipelines/curve.yaml', 'name: curve\nsteps:\n  curve:\n    uses: custom.curve\n    with: { epochs: 3 }\n    cache: false\n');

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

describe('a run while it runs, and its artifacts after', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'mlpipe-live-mlflow-'));
  let server: MlflowServer;
  let client: Client;
  let stopWorker: () => Promise<void>;
  let rest: MlflowRestClient;

  const cliEnv = (): NodeJS.ProcessEnv => ({
    ...process.env,
    TEMPORAL_ADDRESS: project.settings.temporalAddress,
    MLPIPE_TASK_QUEUE: project.taskQueue,
    MLPIPE_PROJECT_DIR: project.dir,
    MLPIPE_ARTIFACTS: project.settings.artifactsDir,
    MLFLOW_TRACKING_URI: server.url,
  });
  const spawnCli = (args: string[]): ChildProcess =>
    spawn(process.execPath, [join(REPO, 'bin', 'mlpipe.mjs'), ...args], { cwd: project.dir, env: cliEnv() });
  const cli = (args: string[]): Promise<Ran> =>
    new Promise((resolve, reject) => {
      const child = spawnCli(args);
      let stdout = '';
      let stderr = '';
      child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('error', reject);
      child.on('close', (code) => resolve({ code, stdout, stderr }));
    });

  /** The MLflow run of a step (found by its idempotency tag) with its status, or undefined. */
  async function stepRun(key: string, stepId: string): Promise<{ mlflowRunId: string; status: string } | undefined> {
    const experimentId = await rest.getOrCreateExperiment('curve');
    const run = await rest.findRunByTag(experimentId, 'mlpipe.step_key', `${key}/${stepId}`);
    if (!run) return undefined;
    const res = await fetch(`${server.url}/api/2.0/mlflow/runs/get?run_id=${run.mlflowRunId}`);
    const body = (await res.json()) as { run: { info: { status: string } } };
    return { mlflowRunId: run.mlflowRunId, status: body.run.info.status };
  }

  beforeAll(async () => {
    if (!MLFLOW)
      throw new Error(`mlflow is not installed (looked in ${CACHE}/mlflow-venv and PATH): run 'bash deploy/provision.sh --with-mlflow'.`);
    server = await startMlflowServer({
      mlflow: MLFLOW,
      backendStoreUri: `sqlite:///${join(dataDir, 'mlflow.db')}`,
      artifactsDir: join(dataDir, 'artifacts'),
      port: await freePort(),
      logFile: join(dataDir, 'server.log'),
    });
    rest = new MlflowRestClient({ uri: server.url });
    client = await createClient();
    stopWorker = (await startWorker(project, { tracking: rest })).stop;
  }, 180_000);

  afterAll(async () => {
    await stopWorker?.();
    await client?.connection.close();
    await server?.stop();
  });

  it("shows the step's MLflow run RUNNING with a growing curve, then FINISHED with each point once", async () => {
    const handle = await client.workflow.start(PIPELINE_WORKFLOW, {
      taskQueue: project.taskQueue,
      workflowId: uniqueId('curve'),
      args: [{ pipeline: 'curve' }],
    });
    const key = `${handle.workflowId}/${handle.firstExecutionRunId}`;
    const history = async (): Promise<number[]> => {
      const r = await stepRun(key, 'curve');
      return r ? (await rest.metricHistory(r.mlflowRunId, 'loss')).map((p) => p.step).sort() : [];
    };
    // Epoch 1: the run exists, RUNNING, with one point; the step is still waiting for its gate.
    await waitFor(async () => (await history()).length === 1, 'the first point in MLflow');
    expect(await stepRun(key, 'curve')).toMatchObject({ status: 'RUNNING' });
    project.write('gate-1', '');
    await waitFor(async () => (await history()).length === 2, 'the second point in MLflow');
    expect(await stepRun(key, 'curve')).toMatchObject({ status: 'RUNNING' });
    expect(await history()).toEqual([1, 2]);
    project.write('gate-2', '');
    project.write('gate-3', '');
    await handle.result();
    await waitForTracking(client, handle);
    const done = (await stepRun(key, 'curve'))!;
    expect(done.status).toBe('FINISHED');
    // The delivery after the step found this run and sent none of its points again.
    expect(await history()).toEqual([1, 2, 3]);
    const experimentId = await rest.getOrCreateExperiment('curve');
    const parent = await rest.findRunByTag(experimentId, 'mlpipe.run_key', key);
    const res = await fetch(`${server.url}/api/2.0/mlflow/runs/get?run_id=${done.mlflowRunId}`);
    const tags = ((await res.json()) as { run: { data: { tags: { key: string; value: string }[] } } }).run.data.tags;
    expect(tags).toContainEqual({ key: 'mlflow.parentRunId', value: parent!.mlflowRunId });
  });

  it("gets a housing run's artifacts out: show, artifacts get, serve --run", async () => {
    const workflowId = uniqueId('housing-out');
    const r = (await client.workflow.execute(PIPELINE_WORKFLOW, {
      taskQueue: project.taskQueue,
      workflowId,
      args: [{ pipeline: 'california-housing', overrides: ['training.epochs=2'] }],
    })) as PipelineResult;
    const onnx = r.outputs['export']!['onnx'] as ArtifactRef;

    const dataset = await cli(['show', `${workflowId}/transform.train`, '--rows', '2']);
    expect(dataset.code).toBe(0);
    expect(dataset.stdout).toMatch(/Parquet: [\d,]+ rows, \d+ columns/);
    expect(dataset.stdout).toMatch(/median_house_value +DOUBLE/);
    const evaluation = await cli(['show', `${workflowId}/evaluate.report`]);
    expect(evaluation.stdout).toContain('evaluation: model metrics against the baseline');
    expect(evaluation.stdout).toMatch(/rmse +[\d,]+ +[\d,]+ +0\.\d{3}/);
    const model = await cli(['show', `sha256:${onnx.sha256.slice(0, 10)}`]);
    expect(model.stdout).toContain("ONNX model: regression of 'median_house_value'");
    expect(model.stdout).toMatch(/ocean_proximity +string/);

    const file = join(dataDir, 'model.onnx');
    const got = await cli(['artifacts', 'get', `${workflowId}/export.onnx`, '-o', file]);
    expect(got.code).toBe(0);
    expect(createHash('sha256').update(readFileSync(file)).digest('hex')).toBe(onnx.sha256);
    for (const bad of ['../../etc/passwd', "x/evaluate.report'; DROP TABLE t; --", 'sha256:zzzzzz']) {
      const refused = await cli(['show', bad]);
      expect(refused.code, bad).toBe(2);
      expect(refused.stderr).toContain('INPUT_INVALID');
    }

    const port = await freePort();
    const serve = spawnCli(['serve', '--run', workflowId, '--port', String(port), '--no-log']);
    try {
      let out = '';
      serve.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      await waitFor(() => out.includes('listening on'), 'the prediction server', 120_000);
      expect(out).toContain(`from ${workflowId}/export.onnx`);
      const [header, first] = readFileSync(join(REPO, 'pipelines', 'data', 'california-housing.csv'), 'utf8').split('\n');
      const cols = header!.split(',');
      const cells = first!.split(',');
      const record = Object.fromEntries(
        cols.map((c, i) => [c, c === 'ocean_proximity' ? cells[i] : Number(cells[i])] as const).filter(([c]) => c !== 'median_house_value'),
      );
      const res = await fetch(`http://127.0.0.1:${port}/predict`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(record),
      });
      expect(res.status).toBe(200);
      const body = (await res.json()) as { prediction: number; model: { name: string } };
      expect(Number.isFinite(body.prediction)).toBe(true);
      expect(body.model.name).toBe('california-housing');
    } finally {
      serve.kill('SIGTERM');
    }
  });
});
