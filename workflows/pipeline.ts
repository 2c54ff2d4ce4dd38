/**
 * pipelineWorkflow: the one generic workflow that interprets a pipeline DAG.
 *
 * 1. `compilePipeline` (an activity) reads and validates the YAML; the compiled pipeline lands in
 *    history, so everything after it is deterministic.
 * 2. RunState (pure, engine/) decides which steps start, in declaration order, up to maxParallel.
 * 3. Each step is one `runStep` activity with the step's own timeouts and retry policy.
 * 4. A failed step stops new starts; the run fails with a non-retryable ApplicationFailure once the
 *    running steps have finished. Cancelling the run cancels running steps and waits for them.
 *
 * Clock: Date.now() inside a workflow is the deterministic activation time provided by the SDK.
 */
import {
  ActivityCancellationType,
  ActivityFailure,
  ApplicationFailure,
  CancellationScope,
  condition,
  defineQuery,
  defineSignal,
  isCancellation,
  proxyActivities,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities/index.js';
import { NON_RETRYABLE_CODES } from '../engine/errors.js';
import { RunState } from '../engine/run-state.js';
import type { CompiledPipeline, PipelineInput, PipelineResult, PipelineStatus, StepCall } from '../engine/types.js';
import { statusQueryName, stepAttemptSignalName } from './names.js';

export const statusQuery = defineQuery<PipelineStatus>(statusQueryName);
export const stepAttemptSignal = defineSignal<[{ stepId: string; attempt: number }]>(stepAttemptSignalName);

/** Error types that no retry can fix: spec and input problems, and unknown activities. */
const NON_RETRYABLE = [...NON_RETRYABLE_CODES, 'NotFoundError'];

const { compilePipeline } = proxyActivities<Activities>({
  startToCloseTimeout: '2 minutes',
  retry: { maximumAttempts: 3, nonRetryableErrorTypes: NON_RETRYABLE },
});

function nowIso(): string {
  return new Date(Date.now()).toISOString();
}

/** The innermost failure: ActivityFailure -> ApplicationFailure (type + message). */
function describe(err: unknown): { type?: string; message: string } {
  let e: unknown = err;
  while (e instanceof ActivityFailure && e.cause) e = e.cause;
  if (e instanceof ApplicationFailure) return { type: e.type ?? undefined, message: e.message };
  if (e instanceof Error) return { type: e.name, message: e.message };
  return { message: String(e) };
}

function stepActivity(pipeline: CompiledPipeline, stepId: string) {
  const step = pipeline.steps[stepId]!;
  return proxyActivities<Activities>({
    activityId: stepId,
    taskQueue: step.taskQueue,
    startToCloseTimeout: step.timeoutMs,
    heartbeatTimeout: step.heartbeatMs,
    cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
    retry: {
      maximumAttempts: step.retry.maximumAttempts ?? 3,
      initialInterval: step.retry.initialIntervalMs ?? 1000,
      backoffCoefficient: step.retry.backoffCoefficient ?? 2,
      maximumInterval: step.retry.maximumIntervalMs ?? 60_000,
      nonRetryableErrorTypes: [...NON_RETRYABLE, ...(step.retry.nonRetryableErrorTypes ?? [])],
    },
  }).runStep;
}

export async function pipelineWorkflow(input: PipelineInput): Promise<PipelineResult> {
  const info = workflowInfo();
  // Handlers are registered before compiling (so the query answers at once); the state comes later.
  // eslint-disable-next-line prefer-const
  let state: RunState | undefined;
  let phase: PipelineStatus['state'] = 'compiling';
  setHandler(statusQuery, () => state?.status(phase) ?? { pipeline: input.pipeline, state: phase, order: [], steps: {} });
  setHandler(stepAttemptSignal, ({ stepId, attempt }) => state?.attempt(stepId, attempt));

  let compiled: CompiledPipeline;
  try {
    compiled = await compilePipeline(input);
  } catch (err) {
    if (isCancellation(err)) throw err;
    phase = 'failed';
    const { type, message } = describe(err);
    throw ApplicationFailure.create({ type: type ?? 'SPEC_INVALID', message, nonRetryable: true });
  }

  const run = new RunState(
    compiled,
    { id: info.runId, workflowId: info.workflowId, pipeline: compiled.name, labels: input.labels ?? {} },
    { maxParallel: input.maxParallel, cache: input.cache },
  );
  state = run;
  phase = 'running';
  let wake = false;

  const launch = (call: StepCall): void => {
    run.started(call.stepId, nowIso());
    void stepActivity(compiled, call.stepId)(call)
      .then(
        (result) => run.succeeded(call.stepId, result),
        (err: unknown) => {
          if (isCancellation(err)) run.stepCancelled(call.stepId, nowIso());
          else run.failed(call.stepId, nowIso(), describe(err), run.steps[call.stepId]!.attempt);
        },
      )
      .finally(() => {
        wake = true;
      });
  };

  try {
    for (;;) {
      const plan = run.plan(nowIso());
      for (const call of plan.start) launch(call);
      if (run.finished()) break;
      if (run.running().length === 0) {
        throw ApplicationFailure.nonRetryable(`No step can start and none is running (steps: ${JSON.stringify(run.status('running').steps)}).`, 'INTERNAL');
      }
      await condition(() => wake);
      wake = false;
    }
  } catch (err) {
    if (isCancellation(err)) {
      // Let running steps see the cancellation and stop before the run ends.
      await CancellationScope.nonCancellable(() => condition(() => run.running().length === 0));
      run.cancel(nowIso());
      phase = 'cancelled';
    } else phase = 'failed';
    throw err;
  }

  const failure = run.failedStep;
  if (failure) {
    phase = 'failed';
    const type = run.steps[failure.stepId]!.error?.type;
    throw ApplicationFailure.create({
      type: 'STEP_FAILED',
      nonRetryable: true,
      message: `Step '${failure.stepId}' failed${type ? ` (${type})` : ''}: ${failure.message}`,
      details: [run.status('failed')],
    });
  }
  phase = 'succeeded';
  return { pipeline: compiled.name, state: 'succeeded', steps: run.steps, outputs: run.outputs() };
}
