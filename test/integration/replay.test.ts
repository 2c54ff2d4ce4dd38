/**
 * Replay: the current workflow code must replay recorded histories without a determinism error.
 * - histories committed under test/fixtures/histories/ (recorded from real runs; they guard every
 *   future change of the interpreter: a change that breaks them needs `patched()`). The files without a
 *   prefix predate the `local-compile` patch (the compile as an activity) and tracked-diamond*.json
 *   predate tracking in batches (one signal per step); `<prefix>-*.json` were recorded later, with the
 *   patch markers of their day (2026-12: `local-compile`, `tracking-batches`, `tracking-batch-events`);
 * - fresh histories of runs made here (success, retries, skips, cache hits, failure, a tracked run and
 *   its tracking workflow).
 * MLPIPE_RECORD_HISTORIES=<prefix> adds the fresh runs as <prefix>-<name>.json (never over a file).
 */
import { execFileSync } from 'node:child_process';
import { bundleWorkflowCode, Worker } from '@temporalio/worker';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { MlflowFileStore } from '../../adapters/mlflow/file-store.js';
import { workflowBundle } from '../../app/worker.js';
import { PIPELINE_WORKFLOW, type PipelineInput } from '../../engine/contracts.js';
import { createTestProject, REPO, startWorker, uniqueId, useWorkerAndClient, waitForTracking } from './helpers.js';

const FIXTURES = join(REPO, 'test', 'fixtures', 'histories');
const RECORD = process.env['MLPIPE_RECORD_HISTORIES'];
const project = createTestProject('replay');
const env = useWorkerAndClient(project);
// A second worker that tracks to an MLflow file store: its runs start a tracking child workflow.
const tracked = createTestProject('replay-tracked');
let stopTracked: (() => Promise<void>) | undefined;
beforeAll(async () => {
  stopTracked = (await startWorker(tracked, { tracking: new MlflowFileStore(join(tracked.dir, 'mlruns')) })).stop;
});
afterAll(async () => {
  await stopTracked?.();
});

const RUNS: Record<string, PipelineInput> = {
  diamond: { pipeline: 'diamond' },
  'diamond-cached': { pipeline: 'diamond' },
  'conditional-wide': { pipeline: 'conditional', overrides: ['model=wide'] },
  'conditional-small': { pipeline: 'conditional' },
  retry: { pipeline: 'retry' },
  'compile-error': { pipeline: 'conditional', overrides: ['model=huge'] },
};

/** The JSON that `temporal workflow show --output json` prints: what users attach to bug reports. */
function show(workflowId: string): string {
  return execFileSync(
    inject('temporalBin'),
    ['workflow', 'show', '--address', project.settings.temporalAddress, '-w', workflowId, '--output', 'json'],
    { encoding: 'utf8' },
  );
}

/** Fresh histories by workflow ID (replay names a tracked run's child after the run's own ID). */
async function recordFresh(): Promise<Record<string, { workflowId: string; json: string }>> {
  const out: Record<string, { workflowId: string; json: string }> = {};
  for (const [name, input] of Object.entries(RUNS)) {
    const handle = await env.client.workflow.start(PIPELINE_WORKFLOW, {
      taskQueue: project.taskQueue,
      workflowId: uniqueId(`replay-${name}`),
      args: [input],
    });
    await handle.result().catch(() => undefined);
    out[name] = { workflowId: handle.workflowId, json: show(handle.workflowId) };
  }
  // Recorded under the name its fixture will have: the tracking child's ID is derived from it.
  const trackedId = RECORD ? `${RECORD}-tracked-diamond` : uniqueId('replay-tracked-diamond');
  const handle = await env.client.workflow.start(PIPELINE_WORKFLOW, {
    taskQueue: tracked.taskQueue,
    workflowId: trackedId,
    args: [{ pipeline: 'diamond' }],
  });
  await handle.result();
  const trackingId = await waitForTracking(env.client, handle);
  out['tracked-diamond'] = { workflowId: trackedId, json: show(trackedId) };
  out['tracked-diamond-tracking'] = { workflowId: trackingId, json: show(trackingId) };
  return out;
}

describe('replay', () => {
  it('replays committed and fresh histories with the current workflow code', async () => {
    const fresh = await recordFresh();
    if (RECORD) {
      for (const [name, { json }] of Object.entries(fresh)) {
        const file = join(FIXTURES, `${RECORD}-${name}.json`);
        if (existsSync(file)) throw new Error(`${file} exists: pick another MLPIPE_RECORD_HISTORIES prefix`);
        writeFileSync(file, json);
      }
    }
    const committed = readdirSync(FIXTURES).filter((f) => f.endsWith('.json'));
    expect(committed.length).toBeGreaterThanOrEqual(5);
    const bundle = await workflowBundle();
    for (const f of committed) {
      await expect(
        // The workflow ID is the file's name: a run that starts a child (*tracked-*.json) names it after its own ID.
        Worker.runReplayHistory({ workflowBundle: bundle }, JSON.parse(readFileSync(join(FIXTURES, f), 'utf8')), f.replace(/\.json$/, '')),
      ).resolves.toBeUndefined();
    }
    for (const { workflowId, json } of Object.values(fresh)) {
      await expect(Worker.runReplayHistory({ workflowBundle: bundle }, JSON.parse(json), workflowId)).resolves.toBeUndefined();
    }
  });

  it('detects a workflow change that is not replay-safe', async () => {
    const other = await bundleWorkflowCode({
      workflowsPath: join(REPO, 'test', 'fixtures', 'nondeterministic-workflow.ts'),
      logger: {
        log: () => undefined,
        trace: () => undefined,
        debug: () => undefined,
        info: () => undefined,
        warn: () => undefined,
        error: () => undefined,
      },
    });
    // The worker parses `temporal workflow show` JSON itself.
    const history: unknown = JSON.parse(readFileSync(join(FIXTURES, 'diamond.json'), 'utf8'));
    await expect(Worker.runReplayHistory({ workflowBundle: other }, history, 'diamond')).rejects.toMatchObject({
      name: 'DeterminismViolationError',
      message: expect.stringContaining("'compilePipeline' does not match activity type of activity command 'runStep'"),
    });
  });
});
