/** The planning activity of a hyperparameter search: compile, generate the trials, check each. */
import { PipelineError, SpecErrors } from '../engine/errors.js';
import { generateTrials, type HpoSpec, type Trial } from '../engine/hpo.js';
import { checkInput } from '../engine/limits.js';
import { Context } from '@temporalio/activity';
import { CancelledFailure } from '@temporalio/common';
import type { TuningStatus, VertexTuner } from '../adapters/vertex/tuning.js';

/** The Vertex client library loads in about a second: only searches on Vertex pay for it. */
const vertexTuning = () =>
  importOptional('@google-cloud/aiplatform', 'A Vertex AI tuning job (hpo.vertex)', () => import('../adapters/vertex/tuning.js'));
import { mlflowRunIdOf, type HpoInput, type HpoPlan, type HpoTracking } from '../engine/contracts.js';
import type { ProjectPipelines, TrackingBackend } from '../engine/ports.js';
import type { CompiledPipeline } from '../engine/types.js';
import type { Registry } from '../plugins/registry.js';
import { toApplicationFailure } from './run-step.js';
import { importOptional } from '../adapters/optional.js';

export interface HpoDeps {
  registry: Registry;
  project: ProjectPipelines;
  tracking: () => TrackingBackend | undefined;
  experimentName?: string;
}

export function createHpoActivities(deps: HpoDeps) {
  /** An activity that reads the deps, as the worker registers it (input only). */
  const withDeps =
    <I, O>(fn: (deps: HpoDeps, input: I) => Promise<O>) =>
    (input: I): Promise<O> =>
      fn(deps, input);
  return {
    runVertexTuning,
    trackExternalTrials: withDeps(trackExternalTrials),
    startHpoTracking: withDeps(startHpoTracking),
    finishHpoTracking: withDeps(finishHpoTracking),
    planHpo: withDeps(planHpo),
  };
}

function experimentOf(deps: HpoDeps, plan: HpoPlan, compiledExperiment?: string): string {
  return compiledExperiment ?? deps.experimentName ?? plan.pipeline;
}

/**
 * Runs the search as a Vertex AI HyperparameterTuningJob: submits it (once: the job's name is
 * heartbeated, and a retried attempt resumes polling that job), polls it while heartbeating, and
 * cancels it when the workflow cancels. MLPIPE_VERTEX_ENDPOINT (http://host:port) points the
 * client at another endpoint (tests); credentials are the worker's.
 */
async function runVertexTuning(input: {
  plan: HpoPlan;
  displayName: string;
}): Promise<{ job: string; state: string; trials: { id: string; state: string; overrides: string[]; value?: number }[] }> {
  const ctx = Context.current();
  const v = input.plan.spec.vertex!;
  const endpoint = process.env['MLPIPE_VERTEX_ENDPOINT'] ? new URL(process.env['MLPIPE_VERTEX_ENDPOINT']) : undefined;
  const { VertexTuner, buildTuningJob } = await vertexTuning();
  const tuner = VertexTuner.create({
    project: v.project,
    location: v.location,
    ...(endpoint
      ? { endpoint: { host: endpoint.hostname, port: Number(endpoint.port), protocol: endpoint.protocol === 'https:' ? 'https' : 'http' } }
      : {}),
  });
  try {
    let name = (ctx.info.heartbeatDetails as { job?: string } | undefined)?.job;
    if (!name) name = await submitTuning(ctx, tuner, buildTuningJob, input);
    const status = await pollTuning(ctx, tuner, name, input.plan);
    if (status.state !== 'JOB_STATE_SUCCEEDED' && status.state !== 'JOB_STATE_PARTIALLY_SUCCEEDED') {
      throw new PipelineError('STEP_FAILED', `Vertex job ${name} ended ${status.state}${status.error ? `: ${status.error}` : ''}.`, {
        retryable: false,
      });
    }
    return {
      job: name,
      state: status.state,
      trials: status.trials.map((t) => ({
        id: t.id,
        state: t.state,
        overrides: Object.entries(t.values).map(([k, val]) => `${k}=${String(val)}`),
        ...(t.metric !== undefined ? { value: t.metric } : {}),
      })),
    };
  } catch (e) {
    throw toApplicationFailure(e);
  } finally {
    await tuner.close();
  }
}

/** Submits the tuning job and heartbeats its name, so a retried attempt polls it instead of submitting another. */
async function submitTuning(
  ctx: Context,
  tuner: VertexTuner,
  buildTuningJob: typeof import('../adapters/vertex/tuning.js').buildTuningJob,
  input: { plan: HpoPlan; displayName: string },
): Promise<string> {
  const v = input.plan.spec.vertex!;
  const job = buildTuningJob(input.displayName, input.plan.spec, {
    imageUri: v.imageUri,
    machineType: v.machineType,
    args: ['--pipeline', input.plan.pipeline, ...input.plan.overrides.flatMap((o) => ['--override', o])],
    ...(v.baseOutputUri ? { baseOutputUri: v.baseOutputUri } : {}),
    ...(v.serviceAccount ? { serviceAccount: v.serviceAccount } : {}),
  });
  const name = await tuner.submit(job);
  ctx.heartbeat({ job: name });
  return name;
}

/** Polls the job every `vertex.pollMs` while heartbeating, until it is done; cancels it when the activity is cancelled. */
async function pollTuning(ctx: Context, tuner: VertexTuner, name: string, plan: HpoPlan): Promise<TuningStatus> {
  const v = plan.spec.vertex!;
  let status: TuningStatus;
  for (;;) {
    if (ctx.cancellationSignal.aborted) {
      await tuner.cancel(name);
      throw new CancelledFailure(`Vertex job ${name} cancelled`);
    }
    status = await tuner.status(name, plan.spec.metric.key);
    ctx.heartbeat({ job: name, state: status.state, trials: status.trials.length });
    if (status.done) break;
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, v.pollMs);
      ctx.cancellationSignal.addEventListener('abort', () => (clearTimeout(t), resolve()), { once: true });
    });
  }
  return status;
}

/** Trials that ran elsewhere (Vertex) as nested MLflow runs under the search's run, idempotent by `mlpipe.run_key`. */
async function trackExternalTrials(
  deps: HpoDeps,
  input: HpoTracking & { job: string; metricKey: string; trials: { id: string; state: string; overrides: string[]; value?: number }[] },
): Promise<void> {
  const backend = deps.tracking();
  if (!backend) return;
  // An attempt scheduled before MLflow run IDs were `mlflowRunId` has the search's run as `runId`.
  const parentMlflowRunId = mlflowRunIdOf(input)!;
  for (const t of input.trials) {
    const key = `${input.job}/trial-${t.id}`;
    const run =
      (await backend.findRunByTag(input.experimentId, 'mlpipe.run_key', key)) ??
      (await backend.createRun({
        experimentId: input.experimentId,
        runName: `trial-${t.id}`,
        startTime: Date.now(),
        tags: [
          { key: 'mlpipe.run_key', value: key },
          { key: 'mlflow.parentRunId', value: parentMlflowRunId },
          { key: 'mlpipe.vertex_trial_state', value: t.state },
        ],
      }));
    if (t.value !== undefined && !(await backend.metricHistory(run.mlflowRunId, input.metricKey)).length) {
      await backend.logBatch(run.mlflowRunId, {
        metrics: [{ key: input.metricKey, value: t.value, timestamp: Date.now(), step: 0 }],
        params: t.overrides.map((o) => ({ key: o.slice(0, o.indexOf('=')), value: o.slice(o.indexOf('=') + 1) })),
        tags: [],
      });
    }
    await backend.updateRun(run.mlflowRunId, t.state === 'SUCCEEDED' ? 'FINISHED' : 'FAILED', Date.now());
  }
}

/**
 * The search's MLflow run (idempotent by the `mlpipe.hpo_key` tag): params = the search space and
 * settings. Trials nest under it. Undefined when tracking is off.
 */
async function startHpoTracking(deps: HpoDeps, input: { plan: HpoPlan; key: string }): Promise<HpoTracking | undefined> {
  const backend = deps.tracking();
  if (!backend) return undefined;
  const compiled = deps.project.compile(input.plan.pipeline, input.plan.overrides);
  if (compiled.tracking?.enabled === false) return undefined;
  const experiment = await backend.getOrCreateExperiment(experimentOf(deps, input.plan, compiled.tracking?.experiment));
  const existing = await backend.findRunByTag(experiment, 'mlpipe.hpo_key', input.key);
  if (existing) return { mlflowRunId: existing.mlflowRunId, experimentId: experiment };
  const run = await backend.createRun({
    experimentId: experiment,
    runName: input.key,
    startTime: Date.now(),
    tags: [
      { key: 'mlpipe.hpo_key', value: input.key },
      { key: 'mlpipe.pipeline', value: compiled.name },
      { key: 'mlpipe.kind', value: 'hpo' },
    ],
  });
  await backend.logBatch(run.mlflowRunId, { metrics: [], params: searchParams(input.plan.spec), tags: [] });
  return { mlflowRunId: run.mlflowRunId, experimentId: experiment };
}

/** The search's settings and space as MLflow params. */
function searchParams(s: HpoSpec): { key: string; value: string }[] {
  const params = [
    { key: 'hpo.metric', value: `${s.metric.step}.${s.metric.output}.${s.metric.key}` },
    { key: 'hpo.goal', value: s.metric.goal },
    { key: 'hpo.trials', value: String(s.trials) },
    { key: 'hpo.parallel', value: String(s.parallel) },
    { key: 'hpo.algorithm', value: s.algorithm },
    { key: 'hpo.seed', value: String(s.seed) },
    ...Object.entries(s.space).map(([k, v]) => ({ key: `space.${k}`, value: JSON.stringify(v).slice(0, 500) })),
  ];
  return params;
}

/**
 * Ends the search's run: the best value as a metric, the best trial's overrides as tags, and the
 * best trial's own run tagged `mlpipe.hpo_best`. Trial runs are delivered by their own tracking
 * workflows; if the best one is not in MLflow yet, this fails and is retried.
 */
async function finishHpoTracking(
  deps: HpoDeps,
  input: HpoTracking & {
    best: { index: number; value: number; overrides: string[]; runKey: string };
    metricKey: string;
    status: 'FINISHED' | 'FAILED';
  },
): Promise<void> {
  const backend = deps.tracking();
  if (!backend) return;
  const experiment = input.experimentId;
  const searchRun = mlflowRunIdOf(input)!; // `runId` in an attempt scheduled before the rename
  const now = Date.now();
  if (!(await backend.metricHistory(searchRun, `best_${input.metricKey}`)).length) {
    await backend.logBatch(searchRun, {
      metrics: [{ key: `best_${input.metricKey}`, value: input.best.value, timestamp: now, step: 0 }],
      params: [],
      tags: [
        { key: 'mlpipe.hpo_best_trial', value: String(input.best.index) },
        { key: 'mlpipe.hpo_best_overrides', value: input.best.overrides.join(' ').slice(0, 5000) },
      ],
    });
  }
  const trialRun = await backend.findRunByTag(experiment, 'mlpipe.run_key', input.best.runKey);
  if (!trialRun) throw new PipelineError('TRACKING_ERROR', `The best trial's MLflow run (${input.best.runKey}) is not delivered yet.`);
  await backend.logBatch(trialRun.mlflowRunId, { metrics: [], params: [], tags: [{ key: 'mlpipe.hpo_best', value: 'true' }] });
  await backend.updateRun(searchRun, input.status, now);
}

/** Compiles the pipeline, builds the search spec (input over the pipeline's hpo:), generates the trials and checks that each compiles. */
async function planHpo(deps: HpoDeps, input: HpoInput): Promise<HpoPlan> {
  try {
    checkInput(input);
    const base = input.overrides ?? [];
    const compiled = deps.project.compile(input.pipeline, base);
    if (!compiled.hpo) {
      throw new PipelineError('SPEC_INVALID', `Pipeline '${compiled.name}' has no hpo: section.`, {
        hint: 'Add hpo: { metric: { step, key, goal }, space: { training.lr: { type: double, min, max, scale: log } }, trials, parallel }.',
      });
    }
    const spec: HpoSpec = {
      ...compiled.hpo,
      ...(input.trials ? { trials: input.trials } : {}),
      ...(input.parallel ? { parallel: input.parallel } : {}),
      ...(input.backend ? { backend: input.backend } : {}),
    };
    if (spec.backend === 'vertex') await checkVertexJob(spec, compiled, input.pipeline, base);
    if (spec.earlyStopping) checkEarlyStopping(deps, spec.earlyStopping, compiled);
    const trials = generateTrials(spec.space, spec.trials, spec.algorithm, spec.seed);
    checkTrialsCompile(deps, input.pipeline, base, trials);
    return { pipeline: input.pipeline, overrides: base, spec, trials };
  } catch (e) {
    throw toApplicationFailure(e);
  }
}

/** A search on Vertex needs `hpo.vertex`, and a job that the API would accept. */
async function checkVertexJob(spec: HpoSpec, compiled: CompiledPipeline, pipeline: string, base: string[]): Promise<void> {
  if (!spec.vertex)
    throw new PipelineError('SPEC_INVALID', `hpo.backend is vertex, but hpo.vertex (project, location, imageUri) is not set.`);
  // Built and checked against the API's protos now, so a bad job fails before anything runs.
  (await vertexTuning()).buildTuningJob(`${compiled.name}-check`, spec, {
    imageUri: spec.vertex.imageUri,
    machineType: spec.vertex.machineType,
    args: ['--pipeline', pipeline, ...base.flatMap((o) => ['--override', o])],
  });
}

/** The median rule stops a step that takes `stopIfWorseThan` (train.tfjs-mlp). */
function checkEarlyStopping(deps: HpoDeps, earlyStopping: NonNullable<HpoSpec['earlyStopping']>, compiled: CompiledPipeline): void {
  const step = compiled.steps[earlyStopping.step];
  const shape = step ? (deps.registry.require(step.uses).params as unknown as { shape?: Record<string, unknown> }).shape : undefined;
  if (!step || !shape?.['stopIfWorseThan']) {
    throw new PipelineError(
      'SPEC_INVALID',
      `hpo.earlyStopping.step: ${step ? `step '${earlyStopping.step}' (${step.uses}) takes no stopIfWorseThan, so the median rule cannot stop it` : `no step '${earlyStopping.step}'`}.`,
      {
        hint: 'Name the training step (train.tfjs-mlp).',
      },
    );
  }
}

/** Every trial must compile: a bad key or value fails the search before anything runs. */
function checkTrialsCompile(deps: HpoDeps, pipeline: string, base: string[], trials: Trial[]): void {
  for (const t of trials) {
    try {
      deps.project.compile(pipeline, [...base, ...t.overrides]);
    } catch (e) {
      const detail = e instanceof SpecErrors ? e.problems.map((p) => p.message).join('; ') : (e as Error).message;
      throw new PipelineError('SPEC_INVALID', `hpo.space: trial ${t.index} (${t.overrides.join(' ')}) does not compile: ${detail}`, {
        hint: 'Space keys are overrides: config keys (training.lr), params (params.seed) or config groups (model).',
      });
    }
  }
}
