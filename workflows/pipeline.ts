/**
 * pipelineWorkflow: the one generic workflow that interprets a pipeline DAG.
 *
 * 1. `compilePipeline` (a local activity, run in the run's first workflow task) reads and validates
 *    the YAML; the compiled pipeline lands in history, so everything after it is deterministic.
 * 2. RunState (pure, engine/) decides which steps start, in declaration order, up to maxParallel.
 * 3. Each step is one `runStep` activity with the step's own timeouts, a heartbeat timeout (30 s by
 *    default), and a retry model in two parts (docs/resilience.md): Temporal retries every attempt,
 *    at a short fixed interval, up to maximumAttempts + maximumInfraAttempts; runStep counts the
 *    errors the step itself throws, backs them off and makes the failure final at maximumAttempts.
 *    So a lost worker never uses up the step's retries.
 * 4. A failed step stops new starts; the run fails with a non-retryable ApplicationFailure once the
 *    running steps have finished. Cancelling the run cancels running steps and waits for them.
 * 5. Tracking: when the compiled pipeline says so, a child `trackingWorkflow` (parent-close policy
 *    ABANDON) receives the run's events by signal, in batches (TRACKING_FLUSH), and delivers them to
 *    MLflow on its own time: no step waits for tracking.
 *    Whether it runs is decided by the compiled pipeline, which is in history, so replay is stable.
 *
 * Clock: Date.now() inside a workflow is the deterministic activation time provided by the SDK.
 */
import {
  ActivityCancellationType,
  ApplicationFailure,
  CancellationScope,
  ChildWorkflowCancellationType,
  ParentClosePolicy,
  startChild,
  log,
  type ChildWorkflowHandle,
  condition,
  defineQuery,
  defineSignal,
  isCancellation,
  patched,
  proxyActivities,
  proxyLocalActivities,
  setHandler,
  sleep,
  upsertSearchAttributes,
  workflowInfo,
  type WorkflowInfo,
} from '@temporalio/workflow';
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';
import type { Activities } from '../activities/index.js';
import { describeFailure, errorFromFailure, failureOptions, NON_RETRYABLE_CODES, PipelineError } from '../engine/errors.js';
import { RunState } from '../engine/run-state.js';
import { ACTIVITY_DEFAULTS, STEP_DEFAULTS } from '../engine/step-defaults.js';
import type { RunStatus, StepRecord } from '../engine/tracking.js';
import { isArtifactRef, type CompiledPipeline, type StepCall, type StepResult } from '../engine/types.js';
import {
  labelKeywords,
  statusQueryName,
  stepAttemptSignalName,
  stepSummary,
  trackingSummary,
  trackingWorkflowId,
  type PipelineInput,
  type PipelineResult,
  type PipelineStatus,
  type StepAttempt,
  type TrackingEvent,
} from '../engine/contracts.js';
import { trackEventsSignal, trackingWorkflow } from './tracking.js';

export const statusQuery = defineQuery<PipelineStatus>(statusQueryName);
export const stepAttemptSignal = defineSignal<[StepAttempt]>(stepAttemptSignalName);

/** Error types that no retry can fix: spec and input problems, and unknown activities. */
const NON_RETRYABLE = [...NON_RETRYABLE_CODES, 'NotFoundError'];

const compileOptions = {
  startToCloseTimeout: ACTIVITY_DEFAULTS.compile.startToCloseTimeoutMs,
  retry: { maximumAttempts: ACTIVITY_DEFAULTS.compile.maximumAttempts, nonRetryableErrorTypes: NON_RETRYABLE },
};
const { compilePipeline } = proxyActivities<Activities>(compileOptions);
/**
 * The same activity run locally, by the worker that runs the workflow task, in that task: no
 * activity task to dispatch and no workflow task to schedule on its result, so the first steps go
 * out in the run's first workflow task. Its result is recorded in history (a marker) as the
 * activity's was. Runs without the `local-compile` marker replay the activity.
 */
const { compilePipeline: compileLocally } = proxyLocalActivities<Activities>(compileOptions);

function nowIso(): string {
  return new Date(Date.now()).toISOString();
}

function stepActivity(pipeline: CompiledPipeline, stepId: string) {
  const step = pipeline.steps[stepId]!;
  const errors = step.retry.maximumAttempts ?? STEP_DEFAULTS.maximumAttempts;
  const lost = step.retry.maximumInfraAttempts ?? STEP_DEFAULTS.maximumInfraAttempts;
  return proxyActivities<Activities>({
    activityId: stepId,
    // What the Temporal UI and CLI show for the activity: `train · train.tfjs-mlp`.
    summary: stepSummary(stepId, step.uses),
    taskQueue: step.taskQueue,
    startToCloseTimeout: step.timeoutMs,
    heartbeatTimeout: step.heartbeatMs ?? STEP_DEFAULTS.heartbeatMs,
    cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
    // Temporal sees every failed attempt, lost ones included, and retries it after a fixed second.
    // The step's own backoff comes with each error it throws (nextRetryDelay, set by runStep).
    retry: {
      maximumAttempts: errors + lost,
      initialInterval: STEP_DEFAULTS.infraRetryIntervalMs,
      backoffCoefficient: 1,
      maximumInterval: STEP_DEFAULTS.infraRetryIntervalMs,
      nonRetryableErrorTypes: [...NON_RETRYABLE, ...(step.retry.nonRetryableErrorTypes ?? [])],
    },
  }).runStep;
}

/** What the status query and the stepAttempt signal read: the phase, and the run's state once compiled. */
interface Live {
  phase: PipelineStatus['state'];
  state?: RunState;
}

type TrackedEvent =
  Omit<Extract<TrackingEvent, { type: 'step-ended' }>, 'seq'> | Omit<Extract<TrackingEvent, { type: 'run-ended' }>, 'seq'>;

/** The run's tracking: events go to the tracking child by signal; both do nothing when the run is not tracked. */
interface Tracking {
  track(event: TrackedEvent): void;
  endTracking(status: RunStatus, error?: string): Promise<void>;
}

export async function pipelineWorkflow(input: PipelineInput): Promise<PipelineResult> {
  const info = workflowInfo();
  // Handlers are registered before compiling (so the query answers at once); the state comes later.
  const live: Live = { phase: 'compiling' };
  setHandler(statusQuery, () => live.state?.status(live.phase) ?? { pipeline: input.pipeline, state: live.phase, order: [], steps: {} });
  setHandler(stepAttemptSignal, ({ stepId, attempt, errors }) => live.state?.attempt(stepId, attempt, errors));

  const compiled = await compile(input, live);
  setSearchAttributes(compiled, input);
  const tracking = await startTracking(compiled, input, info, live);

  const run = new RunState(
    compiled,
    { id: info.runId, workflowId: info.workflowId, pipeline: compiled.name, labels: input.labels ?? {} },
    { maxParallel: input.maxParallel, cache: input.cache },
  );
  live.state = run;
  live.phase = 'running';
  await runSteps({ compiled, run, track: tracking.track, wake: false }, live, tracking);
  return finish(run, compiled, live, tracking);
}

/** The compiled pipeline, from the `compilePipeline` activity; its failure fails the run, non-retryably. */
async function compile(input: PipelineInput, live: Live): Promise<CompiledPipeline> {
  let compiled: CompiledPipeline;
  try {
    compiled = await (patched('local-compile') ? compileLocally : compilePipeline)(input);
  } catch (err) {
    if (isCancellation(err)) throw err;
    live.phase = 'failed';
    // The activity's failure as it came (type and message), with the error's fields it carries.
    const { type, message } = describeFailure(err);
    const carried = errorFromFailure(err);
    throw ApplicationFailure.create({
      type: type ?? 'SPEC_INVALID',
      message,
      nonRetryable: true,
      ...(carried ? { details: failureOptions(carried).details } : {}),
    });
  }
  return compiled;
}

/**
 * How the run's events reach the tracking child: in batches, one signal at a time, so a run makes
 * a few signals, not one per step (each signal costs the run a workflow task). A batch goes out
 * when `events` events or `bytes` of them are waiting, when an `ms` timer started by the first
 * waiting event fires (so a long step does not hold back the events before it), and at the
 * run's end. Runs started before batching (no `tracking-batches` marker in history) signal each
 * event as it comes, as they did.
 *
 * `bytes` bounds a signal's payload; `events` only lets a burst of small events go before the
 * timer. It was 100: a wide layer's 100 step ends then went out as soon as they were in, and their
 * delivery (100 MLflow runs) ran on the worker beside the run's last steps and workflow tasks. Runs
 * started before 1000 (no `tracking-batch-events` marker) keep 100 (LEGACY_FLUSH_EVENTS).
 */
export const TRACKING_FLUSH = { events: 1000, bytes: 256 * 1024, ms: 1000 } as const;
const LEGACY_FLUSH_EVENTS = 100;
/** Search attributes (engine/contracts.ts SEARCH_ATTRIBUTES), keys typed as registered. */
const searchKeys = {
  pipeline: defineSearchAttributeKey('MlpipePipeline', SearchAttributeType.KEYWORD),
  labels: defineSearchAttributeKey('MlpipeLabels', SearchAttributeType.KEYWORD_LIST),
  version: defineSearchAttributeKey('MlpipeVersion', SearchAttributeType.KEYWORD),
};

/**
 * The run's search attributes: pipeline, labels, mlpipe version. Only when the worker that compiled
 * the run found them registered (`compiled.searchAttributes`, in history): a server lacking them
 * would fail the workflow task, and runs compiled before this existed replay without the upsert.
 */
function setSearchAttributes(compiled: CompiledPipeline, input: PipelineInput): void {
  if (!compiled.searchAttributes) return;
  const labels = labelKeywords(input.labels);
  upsertSearchAttributes([
    { key: searchKeys.pipeline, value: compiled.name },
    ...(labels.length ? [{ key: searchKeys.labels, value: labels }] : []),
    { key: searchKeys.version, value: compiled.searchAttributes.version },
  ]);
}

/** Tracking: a child workflow that outlives this run and gets events by signal. */
async function startTracking(compiled: CompiledPipeline, input: PipelineInput, info: WorkflowInfo, live: Live): Promise<Tracking> {
  let tracker: ChildWorkflowHandle<typeof trackingWorkflow> | undefined;
  let seq = 0;
  let batched = false;
  let flushEvents = LEGACY_FLUSH_EVENTS;
  /** Events not signalled yet, their size, and whether a batch is due (timer fired, run ending). */
  let buffer: TrackingEvent[] = [];
  let bufferBytes = 0;
  let due = false;
  let timer = false;
  let inFlight: Promise<void> | undefined;
  const signals: Promise<void>[] = [];
  const signal = (handle: ChildWorkflowHandle<typeof trackingWorkflow>, events: TrackingEvent[]): Promise<void> =>
    // Not cancellable: the events of a cancelled run (its cancelled steps, its end) must still go out.
    CancellationScope.nonCancellable(() => handle.signal(trackEventsSignal, events)).catch((e: unknown) =>
      log.warn('tracking signal failed', { error: String(e) }),
    );
  /** Sends the waiting events as one signal when a batch is due and none is in flight. */
  const flush = (): void => {
    if (!tracker || inFlight || buffer.length === 0) return;
    if (!due && buffer.length < flushEvents && bufferBytes < TRACKING_FLUSH.bytes) return;
    const events = buffer;
    buffer = [];
    bufferBytes = 0;
    due = false;
    inFlight = signal(tracker, events).finally(() => {
      inFlight = undefined;
      flush();
    });
  };
  /** Batched runs only: the child's start, which the steps do not wait for; events wait in the buffer meanwhile. */
  let starting: Promise<void> | undefined;
  const track = (event: TrackedEvent): void => {
    if (!tracker && !starting) return;
    const payload = { ...event, seq: seq++ } as TrackingEvent;
    if (!batched) {
      signals.push(signal(tracker!, [payload]));
      return;
    }
    buffer.push(payload);
    bufferBytes += JSON.stringify(payload).length;
    if (!timer) {
      timer = true;
      void CancellationScope.nonCancellable(() => sleep(TRACKING_FLUSH.ms)).then(() => {
        timer = false;
        due = buffer.length > 0;
        flush();
      });
    }
    flush();
  };
  if (compiled.tracking?.enabled) {
    batched = patched('tracking-batches');
    if (batched && patched('tracking-batch-events')) flushEvents = TRACKING_FLUSH.events;
    const startedSeq = seq++;
    const start = (): Promise<ChildWorkflowHandle<typeof trackingWorkflow>> =>
      startChild(trackingWorkflow, {
        workflowId: trackingWorkflowId(`${info.workflowId}/${info.runId}`),
        staticSummary: trackingSummary(info.workflowId),
        parentClosePolicy: ParentClosePolicy.ABANDON,
        cancellationType: ChildWorkflowCancellationType.ABANDON,
        args: [
          {
            key: `${info.workflowId}/${info.runId}`,
            config: { ...compiled.tracking!, experiment: compiled.tracking!.experiment ?? compiled.name },
            events: [
              {
                seq: startedSeq,
                type: 'run-started',
                pipeline: compiled.name,
                file: compiled.file,
                workflowId: info.workflowId,
                runId: info.runId,
                startedAt: new Date(info.startTime.getTime()).toISOString(),
                params: compiled.params,
                config: compiled.config,
                labels: input.labels ?? {},
              },
            ],
          },
        ],
      });
    const notStarted = (e: unknown): void => log.warn('tracking workflow did not start; this run is not tracked', { error: String(e) });
    if (batched) {
      // The first steps start at once; the child's start is not cancellable, so a run cancelled
      // meanwhile still tracks its end.
      starting = CancellationScope.nonCancellable(start).then(
        (handle) => {
          tracker = handle;
          flush();
        },
        (e: unknown) => {
          notStarted(e);
          buffer = [];
          starting = undefined;
        },
      );
    } else {
      try {
        tracker = await start();
      } catch (e) {
        if (isCancellation(e)) throw e;
        notStarted(e);
      }
    }
  }
  /** Every event signalled (the in-flight batch, then what waits). */
  const drain = async (): Promise<void> => {
    await starting;
    await Promise.all(signals);
    for (;;) {
      if (inFlight) await inFlight;
      else if (buffer.length && tracker) {
        due = true;
        flush();
      } else return;
    }
  };
  const endTracking = async (status: RunStatus, error?: string): Promise<void> => {
    await CancellationScope.nonCancellable(async () => {
      await starting;
      if (!tracker) return;
      // Batched, run-ended goes in the last batch with what still waits (batches go one at a time,
      // in order); before batching it went alone, after every earlier signal was acknowledged.
      if (!batched) await drain();
      const reg = compiled.tracking?.registerModel;
      const model = reg && status === 'FINISHED' ? live.state?.steps[reg.step]?.outputs?.[reg.output] : undefined;
      track({ type: 'run-ended', status, endedAt: nowIso(), ...(error ? { error } : {}), ...(isArtifactRef(model) ? { model } : {}) });
      await drain();
    });
  };
  return { track, endTracking };
}

/** What the step loop and the steps' callbacks share. */
interface Steps {
  compiled: CompiledPipeline;
  run: RunState;
  track: Tracking['track'];
  /** Set when a step ends: the loop plans again. */
  wake: boolean;
}

/**
 * Starts the steps RunState plans, as they become ready, until the run is finished. On
 * cancellation, waits for the running steps to stop; either way the tracking learns how it ended.
 */
async function runSteps(r: Steps, live: Live, { endTracking }: Tracking): Promise<void> {
  const { run } = r;
  try {
    for (;;) {
      const plan = run.plan(nowIso());
      for (const call of plan.start) launch(r, call);
      if (run.finished()) break;
      if (run.running().length === 0) {
        throw ApplicationFailure.create(
          failureOptions(
            new PipelineError('INTERNAL', `No step can start and none is running (steps: ${JSON.stringify(run.status('running').steps)}).`),
          ),
        );
      }
      await condition(() => r.wake);
      r.wake = false;
    }
  } catch (err) {
    if (isCancellation(err)) {
      // Let running steps see the cancellation and stop before the run ends.
      await CancellationScope.nonCancellable(() => condition(() => run.running().length === 0));
      run.cancel(nowIso());
      live.phase = 'cancelled';
      await endTracking('KILLED', 'cancelled');
    } else {
      live.phase = 'failed';
      await endTracking('FAILED', describeFailure(err).message);
    }
    throw err;
  }
}

/** One `runStep` activity; its end updates the run state, goes to tracking and wakes the loop. */
function launch(r: Steps, call: StepCall): void {
  const { compiled, run } = r;
  run.started(call.stepId, nowIso());
  // One `then` with both handlers, each waking the loop itself: every promise the workflow makes
  // costs the SDK a stack trace, and a `finally` would make one more per step.
  void stepActivity(
    compiled,
    call.stepId,
  )({ ...call, retry: compiled.steps[call.stepId]!.retry }).then(
    (result) => {
      try {
        run.succeeded(call.stepId, result);
        stepEnded(r, call, result);
      } finally {
        r.wake = true;
      }
    },
    (err: unknown) => {
      try {
        if (isCancellation(err)) run.stepCancelled(call.stepId, nowIso());
        else run.failed(call.stepId, nowIso(), describeFailure(err), run.steps[call.stepId]!.attempt);
        stepEnded(r, call);
      } finally {
        r.wake = true;
      }
    },
  );
}

/** The step's record, as tracking receives it. */
function stepEnded({ compiled, run, track }: Steps, call: StepCall, result?: StepResult): void {
  const s = run.steps[call.stepId]!;
  const c = compiled.steps[call.stepId]!;
  const step: StepRecord = {
    stepId: call.stepId,
    uses: c.uses,
    pluginVersion: c.pluginVersion,
    status: s.status as StepRecord['status'],
    params: call.params,
    outputs: s.outputs,
    series: result?.series,
    ...(result?.liveRun ? { liveRun: true } : {}),
    attempt: s.attempt,
    cacheKey: s.cacheKey,
    startedAt: s.startedAt,
    endedAt: s.endedAt,
    error: s.error?.message,
  };
  track({ type: 'step-ended', step });
}

/** The run's result; a failed step fails the run (non-retryably) with the status as details. */
async function finish(run: RunState, compiled: CompiledPipeline, live: Live, { endTracking }: Tracking): Promise<PipelineResult> {
  const failure = run.failedStep;
  if (failure) {
    live.phase = 'failed';
    const type = run.steps[failure.stepId]!.error?.type;
    await endTracking('FAILED', `step '${failure.stepId}': ${failure.message}`);
    const message = `Step '${failure.stepId}' failed${type ? ` (${type})` : ''}: ${failure.message}`;
    throw ApplicationFailure.create(
      failureOptions(new PipelineError('STEP_FAILED', message, { retryable: false, details: run.status('failed') })),
    );
  }
  await endTracking('FINISHED');
  live.phase = 'succeeded';
  return { pipeline: compiled.name, state: 'succeeded', steps: run.steps, outputs: run.outputs() };
}
