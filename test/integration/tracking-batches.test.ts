/**
 * Tracking off the critical path: a tracked run signals its tracking child a few times, not once per
 * step, and every step still reaches the MLflow file store, each exactly once, with the run's end.
 * Runs recorded before batching (one signal per step, committed under test/fixtures/histories/
 * as tracked-*.json) replay with the current code: see replay.test.ts.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '@temporalio/client';
import { MlflowFileStore } from '../../adapters/mlflow/file-store.js';
import { PIPELINE_WORKFLOW, trackingWorkflowId, type KnownRuns } from '../../engine/contracts.js';
import { createClient, createTestProject, startWorker, uniqueId, waitForTracking } from './helpers.js';

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
    const trackingHistory = await client.workflow.getHandle(trackingWorkflowId(`${handle.workflowId}/${handle.firstExecutionRunId}`)).fetchHistory();
    expect(JSON.stringify(trackingHistory).length).toBeLessThan(200_000);
  });
});
