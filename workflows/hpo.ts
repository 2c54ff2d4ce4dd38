/**
 * hpoWorkflow: a hyperparameter search on Temporal workers. Each trial is a child pipelineWorkflow
 * (`<hpo id>/trial-<n>`) with the trial's overrides that runs the pipeline up to the metric's step.
 * At most `parallel` run at once. Failed trials are tolerated up to `maxFailed`. When history grows
 * large (Temporal suggests continue-as-new), it stops launching, waits for the running trials, and
 * continues as new with the results so far, so a search of thousands of trials keeps a bounded
 * history. After a worker crash it resumes from history: finished trials are never run again. The
 * best trial's overrides then drive a final full run (`<hpo id>/final`).
 */
import { ApplicationFailure } from '@temporalio/common';
import { condition, continueAsNew, defineQuery, log, proxyActivities, setHandler, startChild, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities/index.js';
import { describeFailure, failureOptions, NON_RETRYABLE_CODES, PipelineError } from '../engine/errors.js';
import type { Trial } from '../engine/hpo.js';
import { MEDIAN_RULE_CURVES, medianCurve } from '../engine/median-rule.js';
import { ACTIVITY_DEFAULTS } from '../engine/step-defaults.js';
import {
  hpoStatusQueryName,
  hpoTrackingOf,
  hpoTrialsQueryName,
  runSummary,
  type HpoPlan,
  type HpoResult,
  type HpoStatus,
  type HpoTracking,
  type HpoTrials,
  type HpoWorkflowInput,
  type PipelineResult,
  type TrialResult,
} from '../engine/contracts.js';
import { pipelineWorkflow } from './pipeline.js';

const { vertexTuning, hpoTracking } = ACTIVITY_DEFAULTS;
const { planHpo } = proxyActivities<Activities>({
  startToCloseTimeout: ACTIVITY_DEFAULTS.planHpo.startToCloseTimeoutMs,
  retry: { maximumAttempts: ACTIVITY_DEFAULTS.planHpo.maximumAttempts, nonRetryableErrorTypes: [...NON_RETRYABLE_CODES] },
});
/** The Vertex activity heartbeats once per poll; its heartbeat timeout (and so how fast a cancel reaches it) follows the poll interval. */
const vertexActivity = (pollMs: number) =>
  proxyActivities<Activities>({
    startToCloseTimeout: vertexTuning.startToCloseTimeoutMs,
    heartbeatTimeout: Math.max(vertexTuning.minHeartbeatMs, 3 * pollMs),
    retry: { maximumAttempts: vertexTuning.maximumAttempts, nonRetryableErrorTypes: [...NON_RETRYABLE_CODES] },
  }).runVertexTuning;
// Tracking never fails the search: bounded retries, then the search goes on untracked.
const { startHpoTracking, finishHpoTracking, trackExternalTrials } = proxyActivities<Activities>({
  startToCloseTimeout: hpoTracking.startToCloseTimeoutMs,
  retry: {
    maximumAttempts: hpoTracking.maximumAttempts,
    initialInterval: hpoTracking.initialIntervalMs,
    maximumInterval: hpoTracking.maximumIntervalMs,
  },
});

export const hpoStatusQuery = defineQuery<HpoStatus>(hpoStatusQueryName);
export const hpoTrialsQuery = defineQuery<HpoTrials>(hpoTrialsQueryName);

function metricOf(result: PipelineResult, m: HpoPlan['spec']['metric']): number | undefined {
  const out = result.outputs[m.step]?.[m.output];
  const v = m.output === m.key ? out : (out as Record<string, unknown> | undefined)?.[m.key];
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}

function bestOf(results: TrialResult[], goal: 'minimize' | 'maximize'): TrialResult | undefined {
  let best: TrialResult | undefined;
  for (const r of results) {
    if (r.status !== 'succeeded' || r.value === undefined) continue;
    if (!best || (goal === 'minimize' ? r.value < best.value! : r.value > best.value!)) best = r;
  }
  return best;
}

/** What the parts of one generation of a search read and update. */
interface Search {
  input: HpoWorkflowInput;
  plan: HpoPlan;
  spec: HpoPlan['spec'];
  /** Continue-as-new keeps the workflow ID, so trial IDs stay stable across generations. */
  root: string;
  tracking?: HpoTracking;
  results: TrialResult[];
  failed: number;
  /** The median rule's input: best-loss curves of the most recent finished trials. */
  curves: number[][];
  running: Map<number, Promise<void>>;
}

export async function hpoWorkflow(input: HpoWorkflowInput): Promise<HpoResult> {
  const info = workflowInfo();
  const plan = input.state?.plan ?? (await planHpo(input));
  // Read through hpoTrackingOf: state and results recorded before the rename name the MLflow run `runId`.
  const tracking = input.state ? hpoTrackingOf(input.state.tracking) : await startTracking(plan, info.workflowId);
  const results: TrialResult[] = input.state?.results ?? [];
  const generation = input.state?.generation ?? 0;
  const { spec } = plan;
  const done = new Set(results.map((r) => r.index));
  const es = spec.earlyStopping;
  const s: Search = {
    input,
    plan,
    spec,
    root: info.workflowId,
    tracking,
    results,
    failed: results.filter((r) => r.status === 'failed').length,
    curves: input.state?.curves ?? [],
    running: new Map<number, Promise<void>>(),
  };
  setHandler(hpoStatusQuery, () => ({
    trials: plan.trials.length,
    finished: results.length,
    failed: s.failed,
    running: [...s.running.keys()],
    best: bestOf(results, spec.metric.goal),
    generation,
  }));
  setHandler(hpoTrialsQuery, () => ({
    pipeline: plan.pipeline,
    metric: spec.metric,
    trials: plan.trials.length,
    parallel: spec.parallel,
    ...(es ? { earlyStopping: { step: es.step, afterEpochs: es.afterEpochs, minTrials: es.minTrials } } : {}),
    results: [...results].sort((a, b) => a.index - b.index),
    running: [...s.running.keys()].map((index) => ({
      index,
      overrides: plan.trials.find((t) => t.index === index)?.overrides ?? [],
      workflowId: `${s.root}/trial-${index}`,
    })),
    best: bestOf(results, spec.metric.goal),
    generation,
  }));

  if (spec.backend === 'vertex' && !input.state) await runOnVertex(s, info.workflowId);
  const pending = spec.backend === 'vertex' ? [] : plan.trials.filter((t) => !done.has(t.index));
  await runTrials(s, pending);
  if (s.failed > spec.maxFailed) {
    throw ApplicationFailure.create(
      failureOptions(
        new PipelineError(
          'HPO_FAILED',
          `${s.failed} trials failed, more than maxFailed (${spec.maxFailed}). Last error: ${results.filter((r) => r.status === 'failed').pop()?.error ?? ''}`,
        ),
      ),
    );
  }
  if (spec.backend !== 'vertex' && results.length < plan.trials.length) {
    // History is large: start over with the results so far (running trials have all finished).
    await continueAsNew<typeof hpoWorkflow>({
      ...input,
      state: { plan, results, generation: generation + 1, ...(tracking ? { tracking } : {}), ...(es ? { curves: s.curves } : {}) },
    });
  }
  const best = bestOf(results, spec.metric.goal);
  if (!best) throw ApplicationFailure.create(failureOptions(new PipelineError('HPO_FAILED', 'No trial produced the metric.')));
  if (tracking && best.runId) await finishTracking(s, tracking, best);
  const final = spec.final ? await runFinal(s, best) : undefined;
  return {
    pipeline: plan.pipeline,
    metric: spec.metric,
    best,
    trials: results.length,
    failed: s.failed,
    generations: generation + 1,
    results: [...results].sort((a, b) => a.index - b.index),
    ...(final ? { final } : {}),
  };
}

/** The search's MLflow run; undefined (the search goes on untracked) when tracking is off or fails. */
async function startTracking(plan: HpoPlan, key: string): Promise<Search['tracking']> {
  try {
    return hpoTrackingOf(await startHpoTracking({ plan, key }));
  } catch (e) {
    log.warn('the search is not tracked in MLflow', { error: String(e) });
    return undefined;
  }
}

/** The whole search runs as one Vertex AI tuning job; this workflow waits for it durably. */
async function runOnVertex(s: Search, displayName: string): Promise<void> {
  const { plan, spec, results, tracking } = s;
  const job = await vertexActivity(spec.vertex?.pollMs ?? vertexTuning.pollMs)({ plan, displayName });
  for (const t of job.trials) {
    const index = Number(t.id);
    results.push(
      t.value !== undefined && t.state === 'SUCCEEDED'
        ? { index, overrides: t.overrides, status: 'succeeded', value: t.value, workflowId: job.job, runId: `trial-${t.id}` }
        : { index, overrides: t.overrides, status: 'failed', error: `Vertex trial ${t.state}`, workflowId: job.job },
    );
  }
  s.failed = results.filter((r) => r.status === 'failed').length;
  if (tracking) {
    try {
      await trackExternalTrials({ ...tracking, job: job.job, metricKey: spec.metric.key, trials: job.trials });
    } catch (e) {
      log.warn('the Vertex trials are not tracked in MLflow', { error: String(e) });
    }
  }
}

/**
 * Launches the pending trials, at most `parallel` at once, until every one has finished. Too many
 * failures, or a generation that is full (Temporal suggests continue-as-new, or `trialsPerGeneration`),
 * stop the launches; the running trials still finish.
 */
async function runTrials(s: Search, pending: Trial[]): Promise<void> {
  const { input, spec, results, running } = s;
  let launchedThisGeneration = 0;
  let next = 0;
  let draining = false;
  while (next < pending.length || running.size > 0) {
    if (s.failed > spec.maxFailed) draining = true;
    if (
      !draining &&
      (workflowInfo().continueAsNewSuggested ||
        (input.trialsPerGeneration !== undefined && launchedThisGeneration >= input.trialsPerGeneration))
    )
      draining = true;
    while (
      !draining &&
      running.size < spec.parallel &&
      next < pending.length &&
      (input.trialsPerGeneration === undefined || launchedThisGeneration < input.trialsPerGeneration)
    ) {
      launchTrial(s, pending[next++]!);
      launchedThisGeneration++;
    }
    if (running.size === 0) break;
    const before = results.length;
    await condition(() => results.length > before);
  }
}

function launchTrial(s: Search, t: Trial): void {
  const p = runTrial(s, t);
  s.running.set(t.index, p);
}

/** One trial: a child pipelineWorkflow up to the metric's step, with the trial's overrides (and the median rule's bar). */
async function runTrial(s: Search, t: Trial): Promise<void> {
  const { input, plan, spec, root, tracking, curves, results, running } = s;
  const es = spec.earlyStopping;
  const workflowId = `${root}/trial-${t.index}`;
  // The median rule's bar for this trial: from the trials finished before it starts.
  const bar = es ? medianCurve(curves, es.minTrials) : [];
  const stepParams =
    es && bar.some((v) => v !== null) ? { [es.step]: { stopIfWorseThan: { curve: bar, afterEpochs: es.afterEpochs } } } : undefined;
  try {
    const handle = await startChild(pipelineWorkflow, {
      workflowId,
      staticSummary: runSummary(plan.pipeline, { hpo: root, trial: String(t.index) }),
      args: [
        {
          pipeline: plan.pipeline,
          overrides: [...plan.overrides, ...t.overrides],
          until: spec.metric.step,
          trial: {
            hpo: root,
            index: t.index,
            ...(tracking ? { parentMlflowRunId: tracking.mlflowRunId } : {}),
            ...(stepParams ? { stepParams } : {}),
          },
          labels: { hpo: root, trial: String(t.index) },
          ...(input.cache === false ? { cache: false } : {}),
        },
      ],
    });
    const runId = handle.firstExecutionRunId;
    const result = (await handle.result()) as PipelineResult;
    results.push(trialResult(s, t, workflowId, runId, result));
  } catch (e) {
    const cause = describeFailure(e).message;
    results.push({ index: t.index, overrides: t.overrides, status: 'failed', error: cause, workflowId });
  }
  if (results[results.length - 1]!.status === 'failed') s.failed++;
  running.delete(t.index);
}

/** A finished trial's result: its metric, and (with the median rule) its curve kept for the bars of later trials. */
function trialResult(s: Search, t: Trial, workflowId: string, runId: string, result: PipelineResult): TrialResult {
  const { spec, curves } = s;
  const es = spec.earlyStopping;
  const value = metricOf(result, spec.metric);
  let stoppedAtEpoch: number | undefined;
  if (es) {
    const out = result.outputs[es.step];
    const curve = out?.['curve'];
    stoppedAtEpoch = Number((out?.['metrics'] as Record<string, unknown> | undefined)?.['stoppedByMedianRule'] ?? 0) || undefined;
    // A stopped trial's short curve would drag the median down: only full runs set the bar.
    if (Array.isArray(curve) && !stoppedAtEpoch) {
      curves.push(curve as number[]);
      if (curves.length > MEDIAN_RULE_CURVES) curves.shift();
    }
  }
  return value === undefined
    ? {
        index: t.index,
        runId,
        overrides: t.overrides,
        status: 'failed',
        error: `no numeric ${spec.metric.step}.${spec.metric.output}.${spec.metric.key}`,
        workflowId,
      }
    : {
        index: t.index,
        runId,
        overrides: t.overrides,
        status: 'succeeded',
        value,
        workflowId,
        ...(stoppedAtEpoch ? { stoppedAtEpoch } : {}),
      };
}

async function finishTracking(s: Search, tracking: NonNullable<Search['tracking']>, best: TrialResult): Promise<void> {
  const { spec } = s;
  try {
    await finishHpoTracking({
      ...tracking,
      best: { index: best.index, value: best.value!, overrides: best.overrides, runKey: `${best.workflowId}/${best.runId}` },
      metricKey: spec.metric.key,
      status: 'FINISHED',
    });
  } catch (e) {
    log.warn('the search result is not tracked in MLflow', { error: String(e) });
  }
}

/** The full run with the best trial's overrides: its metric step's output and every step's `metrics`. */
async function runFinal(s: Search, best: TrialResult): Promise<HpoResult['final']> {
  const { plan, spec, root } = s;
  const workflowId = `${root}/final`;
  const handle = await startChild(pipelineWorkflow, {
    workflowId,
    staticSummary: runSummary(plan.pipeline, { hpo: root, role: 'final', trial: String(best.index) }),
    args: [
      {
        pipeline: plan.pipeline,
        overrides: [...plan.overrides, ...best.overrides],
        labels: { hpo: root, role: 'final', trial: String(best.index) },
      },
    ],
  });
  const r = (await handle.result()) as PipelineResult;
  const evaluations = Object.fromEntries(
    Object.entries(r.outputs).flatMap(([step, o]) =>
      o && typeof o['metrics'] === 'object' && o['metrics'] !== null ? [[step, o['metrics'] as Record<string, unknown>]] : [],
    ),
  );
  return { workflowId, metrics: r.outputs[spec.metric.step]?.[spec.metric.output] as Record<string, unknown> | undefined, evaluations };
}
