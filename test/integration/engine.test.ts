/**
 * The engine on a real Temporal dev server with a real worker and the real plugins.
 */
import { WorkflowFailedError } from '@temporalio/client';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { describe, expect, it } from 'vitest';
import {
  PIPELINE_WORKFLOW,
  statusQueryName,
  type PipelineInput,
  type PipelineResult,
  type PipelineStatus,
} from '../../engine/contracts.js';
import { createTestProject, uniqueId, useWorkerAndClient, waitFor, type JournalLine } from './helpers.js';
import { errorFromFailure } from '../../engine/errors.js';

const project = createTestProject('engine');
const env = useWorkerAndClient(project);

function start(input: PipelineInput, id = uniqueId(input.pipeline.replace(/\W/g, '')), workflowRunTimeout = '2 minutes') {
  return env.client.workflow.start(PIPELINE_WORKFLOW, { taskQueue: project.taskQueue, workflowId: id, args: [input], workflowRunTimeout });
}

async function run(input: PipelineInput): Promise<PipelineResult> {
  return (await start(input)).result() as Promise<PipelineResult>;
}

async function failure(input: PipelineInput): Promise<{ error: WorkflowFailedError; cause: ApplicationFailure }> {
  const handle = await start(input);
  const error = await handle.result().then(
    () => {
      throw new Error('expected the run to fail');
    },
    (e: unknown) => e as WorkflowFailedError,
  );
  expect(error).toBeInstanceOf(WorkflowFailedError);
  return { error, cause: error.cause as ApplicationFailure };
}

function linesFor(runId: string): JournalLine[] {
  return project.journal().filter((l) => l.runId === runId);
}

describe('pipelineWorkflow', () => {
  it('runs a diamond in dependency order and passes artifact references between steps', async () => {
    const r = await run({ pipeline: 'diamond', cache: false });
    expect(Object.values(r.steps).map((s) => s.status)).toEqual(['succeeded', 'succeeded', 'succeeded', 'succeeded']);
    const artifact = r.outputs['prepare']!['artifact'] as { sha256: string; size: number; uri: string };
    expect(artifact).toMatchObject({ kind: 'artifact', size: 6, mediaType: 'text/plain' });
    expect(r.outputs['left']).toMatchObject({ lines: 3, size: 6, sha256: artifact.sha256 });
    expect(r.outputs['report']).toEqual({ lines: 3, message: 'hello from the right branch' });
    const t = (id: string, k: 'startedAt' | 'endedAt'): number => Date.parse(r.steps[id]![k]!);
    expect(t('left', 'startedAt')).toBeGreaterThanOrEqual(t('prepare', 'endedAt'));
    expect(t('right', 'startedAt')).toBeGreaterThanOrEqual(t('prepare', 'endedAt'));
    expect(t('report', 'startedAt')).toBeGreaterThanOrEqual(Math.max(t('left', 'endedAt'), t('right', 'endedAt')));
  });

  it('never runs more than maxParallel steps at once', async () => {
    const steps = Array.from(
      { length: 9 },
      (_, i) => `  s${i}:\n    uses: util.echo\n    with: { sleepMs: 400, journal: journal.jsonl, values: { i: ${i} } }`,
    ).join('\n');
    project.write('pipelines/parallel.yaml', `name: parallel\nmaxParallel: 3\nsteps:\n${steps}\n`);
    const handle = await start({ pipeline: 'parallel', cache: false });
    await handle.result();
    const events = linesFor((await handle.describe()).runId).filter((l) => l.event === 'start' || l.event === 'finish');
    // Sweep start/finish events in time order to find the largest overlap.
    const timeline = events.map((l) => ({ t: Date.parse(l.at), d: l.event === 'start' ? 1 : -1 })).sort((a, b) => a.t - b.t || a.d - b.d);
    let cur = 0;
    let max = 0;
    for (const e of timeline) max = Math.max(max, (cur += e.d));
    expect(events.filter((e) => e.event === 'start')).toHaveLength(9);
    expect(max).toBe(3);
  });

  it('runs the 200-step fan-out and its fan-in, at most 16 at a time', async () => {
    const r = await run({ pipeline: 'wide', cache: false });
    const ids = Object.keys(r.steps);
    expect(ids).toHaveLength(202);
    expect(ids.every((id) => r.steps[id]!.status === 'succeeded')).toBe(true);
    expect(r.outputs['w199']).toEqual({ i: 199 });
    expect(r.outputs['join']).toEqual({ done: true });
    // The fan-in started after the last branch ended; no more than 16 branches overlapped.
    const branches = ids.filter((id) => id.startsWith('w'));
    const lastEnd = Math.max(...branches.map((id) => Date.parse(r.steps[id]!.endedAt!)));
    expect(Date.parse(r.steps['join']!.startedAt!)).toBeGreaterThanOrEqual(lastEnd);
    const timeline = branches
      .flatMap((id) => [
        { t: Date.parse(r.steps[id]!.startedAt!), d: 1 },
        { t: Date.parse(r.steps[id]!.endedAt!), d: -1 },
      ])
      .sort((a, b) => a.t - b.t || a.d - b.d);
    let cur = 0;
    let max = 0;
    for (const e of timeline) max = Math.max(max, (cur += e.d));
    expect(max).toBeLessThanOrEqual(16);
  });

  it('runs the California housing pipeline: data preparation, training, evaluation against the baseline', async () => {
    const r = await run({ pipeline: 'california-housing', overrides: ['params.seed=3', 'training.epochs=8'] });
    expect(Object.values(r.steps).every((s) => s.status === 'succeeded' || s.status === 'cached')).toBe(true);
    expect(r.outputs['ingest']).toMatchObject({ rows: 20640, badRows: 0 });
    expect(r.outputs['validate']).toMatchObject({ passed: true, violations: 0 });
    expect(r.outputs['split']!['counts']).toEqual({ train: 14450, validation: 2070, test: 4120 });
    expect(r.outputs['transform']!['features']).toEqual(
      expect.arrayContaining(['median_income', 'rooms_per_household', 'ocean_proximity=INLAND']),
    );
    expect(r.outputs['transform']!['test']).toMatchObject({ kind: 'artifact', mediaType: 'application/vnd.apache.parquet' });
    expect(r.outputs['train']!['metrics']).toMatchObject({ epochs: 8, resumedFromEpoch: 0, rows: 14450 });
    const metrics = r.outputs['evaluate']!['metrics'] as Record<string, number>;
    const baseline = r.outputs['evaluate']!['baseline'] as Record<string, number>;
    expect(metrics['rmse']!).toBeLessThan(0.6 * baseline['rmse']!);
    expect(r.outputs['evaluate']!['passed']).toBe(true);
    // The ONNX export reproduces the trained model on the raw test rows; no registry on this worker.
    expect(r.outputs['export']!['parity']).toMatchObject({ rows: 4120 });
    expect((r.outputs['export']!['parity'] as { maxRelativeError: number }).maxRelativeError).toBeLessThan(1e-4);
    expect(r.outputs['register']).toMatchObject({ registered: false, promoted: false });
  });

  it('retries a step under its retry policy and reports the attempt', async () => {
    const r = await run({ pipeline: 'retry' });
    expect(r.outputs['flaky']).toEqual({ attempts: 3 });
    expect(r.steps['flaky']).toMatchObject({ status: 'succeeded', attempt: 3 });
    expect(r.outputs['after']).toEqual({ attempts: 3 });
  });

  it('fails the run with a clear non-retryable failure when a step exhausts its retries', async () => {
    project.write(
      'pipelines/broken.yaml',
      'name: broken\nsteps:\n  ok: { uses: util.echo }\n  bad:\n    uses: util.flaky\n    needs: ok\n    with: { message: disk full, journal: journal.jsonl }\n    retry: { maximumAttempts: 2, initialInterval: 100ms }\n  never: { uses: util.echo, needs: bad, with: { journal: journal.jsonl } }\n',
    );
    const handle = await start({ pipeline: 'broken', cache: false });
    const err = await handle.result().catch((e: unknown) => e as WorkflowFailedError);
    expect(err).toBeInstanceOf(WorkflowFailedError);
    const cause = (err as WorkflowFailedError).cause as ApplicationFailure;
    expect(cause.type).toBe('STEP_FAILED');
    expect(cause.nonRetryable).toBe(true);
    expect(cause.message).toContain("Step 'bad' failed (STEP_FAILED)");
    expect(cause.message).toContain('disk full (attempt 2)');
    const { runId } = await handle.describe();
    const lines = linesFor(runId);
    expect(lines.filter((l) => l.step === 'bad' && l.event === 'start').map((l) => l.attempt)).toEqual([1, 2]);
    expect(lines.some((l) => l.step === 'never')).toBe(false);
    const status = (errorFromFailure(cause)?.details ?? {}) as PipelineStatus;
    expect(status.steps['never']!.status).toBe('pending');
    expect(status.steps['bad']).toMatchObject({ status: 'failed', attempt: 2 });
    expect((await handle.describe()).status.name).toBe('FAILED');
  });

  it('does not retry a non-retryable step error', async () => {
    project.write(
      'pipelines/fatal.yaml',
      'name: fatal\nsteps:\n  bad:\n    uses: util.flaky\n    with: { retryable: false, journal: journal.jsonl }\n    retry: { maximumAttempts: 5, initialInterval: 100ms }\n',
    );
    const handle = await start({ pipeline: 'fatal' });
    await handle.result().catch(() => undefined);
    const { runId } = await handle.describe();
    expect(linesFor(runId).filter((l) => l.event === 'start')).toHaveLength(1);
  });

  it('skips a step whose when is false, and its dependents unless they opt in', async () => {
    const small = await run({ pipeline: 'conditional', cache: false });
    expect(small.steps['deploy']!.status).toBe('skipped');
    expect(small.steps['announce']!.status).toBe('skipped');
    expect(small.outputs['notify']).toEqual({ deployStatus: 'skipped' });
    const wide = await run({ pipeline: 'conditional', overrides: ['model=wide'], cache: false });
    expect(wide.outputs['deploy']).toEqual({ deployed: 'wide-mlp' });
    expect(wide.outputs['announce']).toEqual({ text: 'deployed wide-mlp' });
    expect(wide.outputs['notify']).toEqual({ deployStatus: 'succeeded' });
  });

  it('serves the second identical run from the cache, and recomputes what changed', async () => {
    const first = await run({ pipeline: 'diamond' });
    const second = await run({ pipeline: 'diamond' });
    expect(Object.values(second.steps).map((s) => s.status)).toEqual(['cached', 'cached', 'cached', 'cached']);
    expect(second.outputs).toEqual(first.outputs);
    const changed = await run({ pipeline: 'diamond', overrides: ['params.greeting=bonjour'] });
    expect(['prepare', 'left', 'right', 'report'].map((id) => changed.steps[id]!.status)).toEqual([
      'cached',
      'cached',
      'succeeded',
      'succeeded',
    ]);
    const off = await run({ pipeline: 'diamond', cache: false });
    expect(Object.values(off.steps).every((s) => s.status === 'succeeded')).toBe(true);
  });

  it('answers the status query with live step states while a step runs', async () => {
    project.write(
      'pipelines/slow.yaml',
      'name: slow\nsteps:\n  first: { uses: util.echo, with: { values: { a: 1 } } }\n  long:\n    uses: util.sleep\n    needs: first\n    heartbeat: 5s\n    with: { ticks: 30, tickMs: 100 }\n  last: { uses: util.echo, needs: long }\n',
    );
    const handle = await start({ pipeline: 'slow', cache: false });
    const live = await waitFor(async () => {
      const s = await handle.query<PipelineStatus>(statusQueryName).catch(() => undefined);
      return s?.steps['long']?.status === 'running' ? s : undefined;
    }, 'long to be running');
    expect(live.state).toBe('running');
    expect(live.order).toEqual(['first', 'long', 'last']);
    expect(live.steps['first']).toMatchObject({ status: 'succeeded', attempt: 1, outputs: { a: 1 } });
    expect(live.steps['long']).toMatchObject({ status: 'running', attempt: 1 });
    expect(live.steps['long']!.startedAt).toBeTruthy();
    expect(live.steps['last']!.status).toBe('pending');
    await handle.result();
    const done = await handle.query<PipelineStatus>(statusQueryName);
    expect(done.state).toBe('succeeded');
    expect(done.steps['long']!.outputs).toEqual({ ticks: 30, resumedFrom: 0 });
  });

  it('cancelling the run cancels the running step', async () => {
    project.write(
      'pipelines/cancel.yaml',
      'name: cancel\nsteps:\n  long:\n    uses: util.sleep\n    heartbeat: 2s\n    with: { ticks: 200, tickMs: 100, journal: journal.jsonl }\n  after: { uses: util.echo, needs: long, with: { journal: journal.jsonl } }\n',
    );
    const handle = await start({ pipeline: 'cancel', cache: false });
    const { runId } = await handle.describe();
    await waitFor(() => linesFor(runId).some((l) => l.event === 'tick'), 'the first tick');
    await handle.cancel();
    const err = await handle.result().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WorkflowFailedError);
    expect((err as WorkflowFailedError).cause).toBeInstanceOf(CancelledFailure);
    const status = await handle.query<PipelineStatus>(statusQueryName);
    expect(status.state).toBe('cancelled');
    expect(status.steps['long']!.status).toBe('cancelled');
    expect(status.steps['after']!.status).toBe('cancelled');
    const ticks = linesFor(runId).filter((l) => l.event === 'tick').length;
    expect(ticks).toBeLessThan(200);
    await new Promise((r) => setTimeout(r, 500));
    expect(linesFor(runId).filter((l) => l.event === 'tick').length).toBe(ticks);
    expect(linesFor(runId).some((l) => l.step === 'after' || l.event === 'finish')).toBe(false);
  });

  it('fails at once, without retries, when the pipeline does not compile', async () => {
    const missing = await failure({ pipeline: 'no-such-pipeline' });
    expect(missing.cause.type).toBe('SPEC_NOT_FOUND');
    expect(missing.cause.message).toContain("Pipeline 'no-such-pipeline' not found");
    const badOverride = await failure({ pipeline: 'conditional', overrides: ['model.hiden=[1]'] });
    expect(badOverride.cause.type).toBe('OVERRIDE_UNKNOWN_KEY');
    expect(badOverride.cause.message).toContain("Did you mean 'model.hidden'");
    const badInput = await failure({ pipeline: 'diamond', overides: [] } as unknown as PipelineInput);
    expect(badInput.cause.type).toBe('INPUT_INVALID');
  });
});
