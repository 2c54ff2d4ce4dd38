/**
 * Tracking off the critical path: a tracked run signals its tracking child a few times, not once per
 * step, and every step still reaches the MLflow file store, each exactly once, with the run's end.
 * Runs recorded before batching (one signal per step, committed under test/fixtures/histories/
 * as tracked-*.json) replay with the current code: see replay.test.ts.
 */
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '@temporalio/client';
import { MlflowFileStore } from '../../adapters/mlflow/file-store.js';
import { PIPELINE_WORKFLOW, trackingWorkflowId, type KnownRuns } from '../../engine/contracts.js';
import { createClient, createTestProject, REPO, startWorker, uniqueId, waitFor, waitForTracking } from './helpers.js';

const STEPS = 30;
const project = createTestProject('tracking-batches');
const root = join(project.dir, 'mlruns');
let client: Client;
let stop: () => Promise<void>;

beforeAll(async () => {
  const steps = Array.from({ length: STEPS }, (_, i) => `  s${i}:\n    uses: util.echo${i ? `\n    needs: s${i - 1}` : ''}`);
  project.write('pipelines/long-chain.yaml', `name: long-chain\ncache: false\nsteps:\n${steps.join('\n')}\n`);
  ({ stop } = await startWorker(project, { tracking: new MlflowFileStore(root) }));
  client = await createClient();
});

afterAll(async () => {
  await stop?.();
  await client?.connection.close();
});

/** The events of a workflow's history, by type name (e.g. SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED). */
async function eventTypes(workflowId: string): Promise<string[]> {
  const history = await client.workflow.getHandle(workflowId).fetchHistory();
  return (history.events ?? []).map((e) => String(e.eventType));
}

describe('tracking in batches', () => {
  it(`a ${STEPS}-step run signals its tracking a few times, and every step reaches MLflow once`, async () => {
    const handle = await client.workflow.start(PIPELINE_WORKFLOW, {
      taskQueue: project.taskQueue,
      workflowId: uniqueId('long-chain'),
      args: [{ pipeline: 'long-chain' }],
    });
    await handle.result();
    const trackingId = await waitForTracking(client, handle);

    // SignalExternalWorkflowExecutionInitiated is event type 37 (as a number in fetchHistory's events).
    const types = await eventTypes(handle.workflowId);
    const signals = types.filter((t) => t === '37' || t === 'EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED').length;
    expect(signals).toBeGreaterThanOrEqual(1);
    expect(signals).toBeLessThan(STEPS / 3);
    // The marker that makes old histories replay the per-step signals.
    expect(types.filter((t) => t === '25' || t === 'EVENT_TYPE_MARKER_RECORDED').length).toBeGreaterThanOrEqual(1);

    const known = (await client.workflow.getHandle(trackingId).result()) as KnownRuns;
    expect(Object.keys(known.steps).sort()).toEqual(Array.from({ length: STEPS }, (_, i) => `s${i}`).sort());

    // In the file store: the parent and one run per step, all FINISHED, no duplicates.
    const exp = join(root, known.parent!.experimentId);
    const runs = readdirSync(exp, { withFileTypes: true }).filter((d) => d.isDirectory() && existsSync(join(exp, d.name, 'meta.yaml')));
    const ofThisRun = runs.filter((d) => {
      const parent = join(exp, d.name, 'tags', 'mlflow.parentRunId');
      return d.name === known.parent!.mlflowRunId || (existsSync(parent) && readFileSync(parent, 'utf8') === known.parent!.mlflowRunId);
    });
    expect(ofThisRun).toHaveLength(STEPS + 1);
    for (const d of ofThisRun) expect(readFileSync(join(exp, d.name, 'meta.yaml'), 'utf8')).toMatch(/^status: 3$/m);
    const stepNames = ofThisRun
      .filter((d) => d.name !== known.parent!.mlflowRunId)
      .map((d) => readFileSync(join(exp, d.name, 'tags', 'mlpipe.step'), 'utf8'))
      .sort();
    expect(stepNames).toEqual(Object.keys(known.steps).sort());

    // The tracking workflow's deliveries pass only the runs their events need: its history stays
    // far below the O(steps²) of passing the whole table in and out of each delivery.
    const trackingHistory = await client.workflow
      .getHandle(trackingWorkflowId(`${handle.workflowId}/${handle.firstExecutionRunId}`))
      .fetchHistory();
    expect(JSON.stringify(trackingHistory).length).toBeLessThan(200_000);
  });

  it('mlpipe run --worker exits when the run ends and says where tracking continues; --wait-tracking waits for MLflow', async () => {
    // A queue of its own: only the command's in-process worker serves these runs.
    const queue = `${project.taskQueue}-cli`;
    const cli = (...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> =>
      new Promise((resolve, reject) => {
        const child = spawn(process.execPath, [join(REPO, 'bin', 'mlpipe.mjs'), ...args], {
          cwd: project.dir,
          env: {
            ...process.env,
            TEMPORAL_ADDRESS: project.settings.temporalAddress,
            MLPIPE_TASK_QUEUE: queue,
            MLPIPE_PROJECT_DIR: project.dir,
          },
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
        child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
        child.on('error', reject);
        child.on('close', (code) => resolve({ code, stdout, stderr }));
      });
    const first = await cli('run', 'long-chain', '--worker', '--id', uniqueId('cli-nowait'));
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    expect(first.stdout).toMatch(/long-chain: succeeded/);
    // Delivered already, or still going on in its own workflow, which the output names.
    const line = first.stdout.split('\n').find((l) => l.startsWith('MLflow: '));
    expect(line).toMatch(
      /^MLflow: (run [0-9a-f]{32} in experiment \d+ \(file store |tracking continues in workflow .+-tracking \(task queue .+-cli-tracking;)/,
    );
    const firstId = /as workflow (\S+) on task queue/.exec(first.stdout)![1]!;

    const second = await cli('run', 'long-chain', '--worker', '--wait-tracking', '--id', uniqueId('cli-wait'));
    expect(second.stderr).toBe('');
    expect(second.code).toBe(0);
    expect(second.stdout).toMatch(/^MLflow: run [0-9a-f]{32} in experiment \d+ \(file store /m);
    // The first run's tracking goes on in its workflow: a worker on the queue finishes it (the second
    // command's did, or one started now, as \`mlpipe worker\` would).
    const firstRun = await client.workflow.getHandle(firstId).describe();
    const tracking = client.workflow.getHandle(trackingWorkflowId(`${firstId}/${firstRun.runId}`));
    if ((await tracking.describe()).status.name !== 'COMPLETED') {
      const late = await startWorker(
        { ...project, taskQueue: queue, settings: { ...project.settings, taskQueue: queue } },
        { tracking: new MlflowFileStore(root) },
      );
      try {
        await waitFor(async () => (await tracking.describe()).status.name === 'COMPLETED', "the first run's tracking to complete");
      } finally {
        await late.stop();
      }
    }
    const known = (await tracking.result()) as KnownRuns;
    expect(Object.keys(known.steps)).toHaveLength(STEPS);
  });
});
