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
import type { HpoInput, HpoPlan } from '../activities/hpo.js';
import { describeFailure, failureOptions, NON_RETRYABLE_CODES, PipelineError } from '../engine/errors.js';
import { MEDIAN_RULE_CURVES, medianCurve } from '../engine/hpo.js';
import type { PipelineResult } from '../engine/types.js';
import { hpoStatusQueryName } from '../engine/contracts.js';
import { pipelineWorkflow } from './pipeline.js';

const { planHpo } = proxyActivities<Activities>({ startToCloseTimeout: '10 minutes', retry: { maximumAttempts: 3, nonRetryableErrorTypes: [...NON_RETRYABLE_CODES] } });
/** The Vertex activity heartbeats once per poll; its heartbeat timeout (and so how fast a cancel reaches it) follows the poll interval. */
const vertexActivity = (pollMs: number) =>
  proxyActivities<Activities>({ startToCloseTimeout: '7 days', heartbeatTimeout: Math.max(10_000, 3 * pollMs), retry: { maximumAttempts: 5, nonRetryableErrorTypes: [...NON_RETRYABLE_CODES] } }).runVertexTuning;
// Tracking never fails the search: bounded retries, then the search goes on untracked.
const { startHpoTracking, finishHpoTracking, trackExternalTrials } = proxyActivities<Activities>({ startToCloseTimeout: '1 minute', retry: { maximumAttempts: 8, initialInterval: '1s', maximumInterval: '15s' } });

export interface TrialResult {
  index: number;
  /** The trial's Temporal run ID (its MLflow run's key is `<workflowId>/<runId>`). */
  runId?: string;
  overrides: string[];
  status: 'succeeded' | 'failed';
  value?: number;
  error?: string;
  workflowId: string;
  /** Set when the median stopping rule stopped the trial's training (at this epoch). */
  stoppedAtEpoch?: number;
}

export interface HpoState {
  plan: HpoPlan;
  tracking?: { runId: string; experimentId: string };
  results: TrialResult[];
  /** Continue-as-new generations so far. */
  generation: number;
  /** The median rule's input: best-loss curves of the most recent finished trials. */
  curves?: number[][];
}

export interface HpoWorkflowInput extends HpoInput {
  /** Set by continue-as-new. */
  state?: HpoState;
}

export interface HpoStatus {
  trials: number;
  finished: number;
  failed: number;
  running: number[];
  best?: TrialResult;
  generation: number;
}

export interface HpoResult {
  pipeline: string;
  metric: HpoPlan['spec']['metric'];
  best: TrialResult;
  trials: number;
  failed: number;
  generations: number;
  results: TrialResult[];
  /** `metrics`: the metric step's; `evaluations`: every step's `metrics` output (e.g. the test split's). */
  final?: { workflowId: string; metrics?: Record<string, unknown>; evaluations?: Record<string, Record<string, unknown>> };
}

export const hpoStatusQuery = defineQuery<HpoStatus>(hpoStatusQueryName);

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

export async function hpoWorkflow(input: HpoWorkflowInput): Promise<HpoResult> {
  const info = workflowInfo();
  const plan = input.state?.plan ?? (await planHpo(input));
  let tracking = input.state?.tracking;
  if (!input.state) {
    try {
      tracking = await startHpoTracking({ plan, key: info.workflowId });
    } catch (e) {
      log.warn('the search is not tracked in MLflow', { error: String(e) });
    }
  }
  const results: TrialResult[] = input.state?.results ?? [];
  const generation = input.state?.generation ?? 0;
  const { spec } = plan;
  const done = new Set(results.map((r) => r.index));
  const es = spec.earlyStopping;
  const curves: number[][] = input.state?.curves ?? [];
  const running = new Map<number, Promise<void>>();
  let failed = results.filter((r) => r.status === 'failed').length;
  let draining = false;
  setHandler(hpoStatusQuery, () => ({ trials: plan.trials.length, finished: results.length, failed, running: [...running.keys()], best: bestOf(results, spec.metric.goal), generation }));

  if (spec.backend === 'vertex' && !input.state) {
    // The whole search runs as one Vertex AI tuning job; this workflow waits for it durably.
    const job = await vertexActivity(spec.vertex?.pollMs ?? 30_000)({ plan, displayName: info.workflowId });
    for (const t of job.trials) {
      const index = Number(t.id);
      results.push(t.value !== undefined && t.state === 'SUCCEEDED' ? { index, overrides: t.overrides, status: 'succeeded', value: t.value, workflowId: job.job, runId: `trial-${t.id}` } : { index, overrides: t.overrides, status: 'failed', error: `Vertex trial ${t.state}`, workflowId: job.job });
    }
    failed = results.filter((r) => r.status === 'failed').length;
    if (tracking) {
      try {
        await trackExternalTrials({ ...tracking, job: job.job, metricKey: spec.metric.key, trials: job.trials });
      } catch (e) {
        log.warn('the Vertex trials are not tracked in MLflow', { error: String(e) });
      }
    }
  }
  // Continue-as-new keeps the workflow ID, so trial IDs stay stable across generations.
  const root = info.workflowId;
  let launchedThisGeneration = 0;
  const pending = spec.backend === 'vertex' ? [] : plan.trials.filter((t) => !done.has(t.index));
  let next = 0;
  const launch = (t: (typeof pending)[number]): void => {
    const workflowId = `${root}/trial-${t.index}`;
    // The median rule's bar for this trial: from the trials finished before it starts.
    const bar = es ? medianCurve(curves, es.minTrials) : [];
    const stepParams = es && bar.some((v) => v !== null) ? { [es.step]: { stopIfWorseThan: { curve: bar, afterEpochs: es.afterEpochs } } } : undefined;
    const p = (async () => {
      try {
        const handle = await startChild(pipelineWorkflow, {
          workflowId,
          args: [{ pipeline: plan.pipeline, overrides: [...plan.overrides, ...t.overrides], until: spec.metric.step, trial: { hpo: root, index: t.index, ...(tracking ? { parentRunId: tracking.runId } : {}), ...(stepParams ? { stepParams } : {}) }, labels: { hpo: root, trial: String(t.index) }, ...(input.cache === false ? { cache: false } : {}) }],
        });
        const runId = handle.firstExecutionRunId;
        const result = (await handle.result()) as PipelineResult;
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
        results.push(
          value === undefined
            ? { index: t.index, runId, overrides: t.overrides, status: 'failed', error: `no numeric ${spec.metric.step}.${spec.metric.output}.${spec.metric.key}`, workflowId }
            : { index: t.index, runId, overrides: t.overrides, status: 'succeeded', value, workflowId, ...(stoppedAtEpoch ? { stoppedAtEpoch } : {}) },
        );
      } catch (e) {
        const cause = describeFailure(e).message;
        results.push({ index: t.index, overrides: t.overrides, status: 'failed', error: cause, workflowId });
      }
      if (results[results.length - 1]!.status === 'failed') failed++;
      running.delete(t.index);
    })();
    running.set(t.index, p);
  };

  while (next < pending.length || running.size > 0) {
    if (failed > spec.maxFailed) draining = true;
    if (!draining && (workflowInfo().continueAsNewSuggested || (input.trialsPerGeneration !== undefined && launchedThisGeneration >= input.trialsPerGeneration))) draining = true;
    while (!draining && running.size < spec.parallel && next < pending.length && (input.trialsPerGeneration === undefined || launchedThisGeneration < input.trialsPerGeneration)) {
      launch(pending[next++]!);
      launchedThisGeneration++;
    }
    if (running.size === 0) break;
    const before = results.length;
    await condition(() => results.length > before);
  }
  if (failed > spec.maxFailed) {
    throw ApplicationFailure.create(failureOptions(new PipelineError('HPO_FAILED', `${failed} trials failed, more than maxFailed (${spec.maxFailed}). Last error: ${results.filter((r) => r.status === 'failed').pop()?.error ?? ''}`)));
  }
  if (spec.backend !== 'vertex' && results.length < plan.trials.length) {
    // History is large: start over with the results so far (running trials have all finished).
    await continueAsNew<typeof hpoWorkflow>({ ...input, state: { plan, results, generation: generation + 1, ...(tracking ? { tracking } : {}), ...(es ? { curves } : {}) } });
  }
  const best = bestOf(results, spec.metric.goal);
  if (!best) throw ApplicationFailure.create(failureOptions(new PipelineError('HPO_FAILED', 'No trial produced the metric.')));
  if (tracking && best.runId) {
    try {
      await finishHpoTracking({ ...tracking, best: { index: best.index, value: best.value!, overrides: best.overrides, runKey: `${best.workflowId}/${best.runId}` }, metricKey: spec.metric.key, status: 'FINISHED' });
    } catch (e) {
      log.warn('the search result is not tracked in MLflow', { error: String(e) });
    }
  }
  let final: HpoResult['final'];
  if (spec.final) {
    const workflowId = `${root}/final`;
    const handle = await startChild(pipelineWorkflow, { workflowId, args: [{ pipeline: plan.pipeline, overrides: [...plan.overrides, ...best.overrides], labels: { hpo: root, role: 'final', trial: String(best.index) } }] });
    const r = (await handle.result()) as PipelineResult;
    const evaluations = Object.fromEntries(
      Object.entries(r.outputs).flatMap(([step, o]) => (o && typeof o['metrics'] === 'object' && o['metrics'] !== null ? [[step, o['metrics'] as Record<string, unknown>]] : [])),
    );
    final = { workflowId, metrics: r.outputs[spec.metric.step]?.[spec.metric.output] as Record<string, unknown> | undefined, evaluations };
  }
  return { pipeline: plan.pipeline, metric: spec.metric, best, trials: results.length, failed, generations: generation + 1, results: [...results].sort((a, b) => a.index - b.index), ...(final ? { final } : {}) };
}
