/**
 * The retry model on a real Temporal server: a step's own errors count against maximumAttempts
 * (with its backoff) although Temporal allows many more attempts for lost workers; and a register
 * step waits out an MLflow that is down for minutes (a real `mlflow server`, stopped and started
 * again on the same port and database), then registers exactly one version.
 */
import { ApplicationFailure, WorkflowFailedError, type Client } from '@temporalio/client';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MlflowRestClient } from '../../adapters/mlflow/rest.js';
import { findMlflow, startMlflowServer, type MlflowServer } from '../../dev/mlflow-server.js';
import { loadSettings } from '../../app/project.js';
import { freePort } from '../../dev/temporal-server.js';
import { PIPELINE_WORKFLOW, type PipelineResult, type PipelineStatus } from '../../engine/contracts.js';
import { createClient, createTestProject, startWorker, uniqueId } from './helpers.js';
import { pendingStep, whileRunning } from './processes.js';

const MINUTE = 60_000;

describe('step errors against lost attempts', () => {
  const project = createTestProject('resilience');
  let client: Client;
  let stop: (() => Promise<void>) | undefined;
  beforeAll(async () => {
    client = await createClient();
    stop = (await startWorker(project, { tracking: null })).stop;
    for (const [name, attempts] of [
      ['flaky-2', 2],
      ['flaky-3', 3],
    ] as const) {
      project.write(
        `pipelines/${name}.yaml`,
        [
          `name: ${name}`,
          'params: { succeed: 3 }',
          'steps:',
          '  flaky:',
          '    uses: util.flaky',
          `    retry: { maximumAttempts: ${attempts}, initialInterval: 300ms, backoffCoefficient: 2 }`,
          '    with: { succeedOnAttempt: "${params.succeed}", journal: journal.jsonl }',
          '',
        ].join('\n'),
      );
    }
  });
  afterAll(async () => {
    await stop?.();
    await client?.connection.close();
  });

  it('fails a step after maximumAttempts errors, non-retryable, although Temporal would allow a thousand more attempts', async () => {
    const handle = await client.workflow.start(PIPELINE_WORKFLOW, {
      taskQueue: project.taskQueue,
      workflowId: uniqueId('flaky-fail'),
      args: [{ pipeline: 'flaky-2', overrides: ['params.succeed=5'] }],
    });
    const err = await handle.result().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WorkflowFailedError);
    const cause = (err as WorkflowFailedError).cause as ApplicationFailure;
    expect(cause.type).toBe('STEP_FAILED');
    expect(cause.message).toMatch(/Step 'flaky' failed \(STEP_FAILED\): simulated failure \(attempt 2\)/);
    const { runId } = await handle.describe();
    const starts = project.journal().filter((l) => l.runId === runId && l.event === 'start');
    expect(starts.map((l) => l.attempt)).toEqual([1, 2]);
    const status = (await handle.query<PipelineStatus>('status')).steps['flaky']!;
    expect(status).toMatchObject({ status: 'failed', attempt: 2 });
  });

  it('retries step errors with the step’s own backoff and reports how many there were', async () => {
    const handle = await client.workflow.start(PIPELINE_WORKFLOW, {
      taskQueue: project.taskQueue,
      workflowId: uniqueId('flaky-ok'),
      args: [{ pipeline: 'flaky-3' }],
    });
    const result = (await handle.result()) as PipelineResult;
    expect(result.steps['flaky']).toMatchObject({ status: 'succeeded', attempt: 3, errors: 2 });
    const { runId } = await handle.describe();
    const at = project
      .journal()
      .filter((l) => l.runId === runId && l.event === 'start')
      .map((l) => Date.parse(l.at));
    expect(at).toHaveLength(3);
    // nextRetryDelay: 300 ms after the first error, 600 ms after the second (lower bounds only).
    expect(at[1]! - at[0]!).toBeGreaterThanOrEqual(300);
    expect(at[2]! - at[1]!).toBeGreaterThanOrEqual(600);
  });
});

describe('MLflow down across register', () => {
  const project = createTestProject('mlflow-outage');
  const MLFLOW = findMlflow(loadSettings().cacheDir);
  const dataDir = mkdtempSync(join(tmpdir(), 'mlpipe-outage-mlflow-'));
  let port = 0;
  let server: MlflowServer | undefined;
  let client: Client;
  let stopWorker: (() => Promise<void>) | undefined;
  const start = (): Promise<MlflowServer> =>
    startMlflowServer({
      mlflow: MLFLOW!,
      backendStoreUri: `sqlite:///${join(dataDir, 'mlflow.db')}`,
      artifactsDir: join(dataDir, 'artifacts'),
      port,
      logFile: join(dataDir, 'server.log'),
    });

  beforeAll(async () => {
    if (!MLFLOW) throw new Error(`mlflow is not installed: run 'bash deploy/provision.sh --with-mlflow'.`);
    port = await freePort();
    server = await start();
    client = await createClient();
    const backend = new MlflowRestClient({ uri: server.url, backoffMs: 100, maxBackoffMs: 1000, timeoutMs: 10_000 });
    stopWorker = (await startWorker(project, { tracking: backend })).stop;
    project.write(
      'pipelines/outage.yaml',
      [
        'name: outage',
        'tracking: { experiment: outage }',
        'steps:',
        '  model:',
        '    uses: util.write',
        '    with: { content: "model bytes", name: model.onnx }',
        '  score:',
        '    uses: util.echo',
        '    with: { values: { metrics: { rmse: 1.5 } } }',
        '  register:',
        '    uses: deploy.mlflow-register',
        '    needs: [model, score]',
        '    inputs:',
        '      model: ${steps.model.outputs.artifact}',
        '      metrics: ${steps.score.outputs.metrics}',
        '    with: { name: outage-model, metric: { key: rmse, goal: minimize } }',
        '',
      ].join('\n'),
    );
  }, 5 * MINUTE);
  afterAll(async () => {
    await stopWorker?.();
    await client?.connection.close();
    await server?.stop();
  });

  it(
    'waits for MLflow for 3 minutes, heartbeating what it waits for, and registers one version when it is back',
    async () => {
      await server!.stop();
      const downAt = Date.now();
      const handle = await client.workflow.start(PIPELINE_WORKFLOW, {
        taskQueue: project.taskQueue,
        workflowId: uniqueId('outage'),
        args: [{ pipeline: 'outage' }],
      });
      // The step says what it waits for, in its heartbeat details (what `temporal workflow describe` and the UI show).
      const waiting = await whileRunning(
        handle,
        async () => {
          const d = await handle.describe();
          const a = d.raw.pendingActivities?.find((p) => p.activityId === 'register');
          const payload = a?.heartbeatDetails?.payloads?.[0]?.data;
          const details = payload ? (JSON.parse(Buffer.from(payload).toString('utf8')) as { waiting?: string }) : undefined;
          return details?.waiting;
        },
        'register to report that it waits for MLflow',
      );
      expect(waiting).toMatch(new RegExp(`^waiting for MLflow at http://127\\.0\\.0\\.1:${port} \\(unreachable for `));
      // MLflow stays down for 3 minutes in all (the outage of issue 22), then comes back on the same port and database.
      await new Promise((r) => setTimeout(r, Math.max(0, 3 * MINUTE - (Date.now() - downAt))));
      expect((await handle.describe()).status.name).toBe('RUNNING');
      const pending = await pendingStep(handle, 'register');
      expect(pending?.attempt).toBe(1);
      server = await start();
      const result = (await handle.result()) as PipelineResult;
      expect(result.steps['register']).toMatchObject({ status: 'succeeded', attempt: 1 });
      expect(result.outputs['register']).toMatchObject({ registered: true, version: '1' });
      const rest = new MlflowRestClient({ uri: server.url });
      const versions = await rest.call<{ model_versions?: { version: string }[] }>(
        'GET',
        'api/2.0/mlflow/model-versions/search',
        { filter: "name='outage-model'" },
        true,
      );
      expect((versions.model_versions ?? []).map((v) => v.version)).toEqual(['1']);
      console.info(
        `MLflow outage: down ${((Date.now() - downAt) / 1000).toFixed(0)} s until the run ended; register waited in attempt 1 and registered version 1 once`,
      );
    },
    12 * MINUTE,
  );
});
