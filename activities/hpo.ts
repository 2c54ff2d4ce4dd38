/** The planning activity of a hyperparameter search: compile, generate the trials, check each. */
import { PipelineError, SpecErrors } from '../engine/errors.js';
import { generateTrials, type HpoSpec, type Trial } from '../engine/hpo.js';
import { checkInput } from '../engine/limits.js';
import { Context } from '@temporalio/activity';
import { CancelledFailure } from '@temporalio/common';
import type { TuningStatus } from '../adapters/vertex/tuning.js';

/** The Vertex client library loads in about a second: only searches on Vertex pay for it. */
const vertexTuning = () => importOptional('@google-cloud/aiplatform', 'A Vertex AI tuning job (hpo.vertex)', () => import('../adapters/vertex/tuning.js'));
import type { ProjectPipelines, TrackingBackend } from '../engine/ports.js';
import type { Registry } from '../plugins/registry.js';
import { toApplicationFailure } from './run-step.js';
import { importOptional } from '../adapters/optional.js';

export interface HpoInput {
  pipeline: string;
  /** Overrides for every trial (before the trial's own). */
  overrides?: string[];
  /** Override the spec's trials / parallel. */
  trials?: number;
  parallel?: number;
  /** Override the spec's backend. */
  backend?: 'temporal' | 'vertex';
  /** false: trials reuse no cached step (benchmarks comparing the same trials). */
  cache?: boolean;
  /** Continue as new after this many trials (default: when Temporal suggests it, about 4,096 events). */
  trialsPerGeneration?: number;
}

export interface HpoPlan {
  pipeline: string;
  overrides: string[];
  spec: HpoSpec;
  trials: Trial[];
}

export function createHpoActivities(deps: { registry: Registry; project: ProjectPipelines; tracking: () => TrackingBackend | undefined; experimentName?: string }) {
  const experimentOf = (plan: HpoPlan, compiledExperiment?: string): string => compiledExperiment ?? deps.experimentName ?? plan.pipeline;
  return {
    /**
     * Runs the search as a Vertex AI HyperparameterTuningJob: submits it (once: the job's name is
     * heartbeated, and a retried attempt resumes polling that job), polls it while heartbeating, and
     * cancels it when the workflow cancels. MLPIPE_VERTEX_ENDPOINT (http://host:port) points the
     * client at another endpoint (tests); credentials are the worker's.
     */
    async runVertexTuning(input: { plan: HpoPlan; displayName: string }): Promise<{ job: string; state: string; trials: { id: string; state: string; overrides: string[]; value?: number }[] }> {
      const ctx = Context.current();
      const v = input.plan.spec.vertex!;
      const endpoint = process.env['MLPIPE_VERTEX_ENDPOINT'] ? new URL(process.env['MLPIPE_VERTEX_ENDPOINT']) : undefined;
      const { VertexTuner, buildTuningJob } = await vertexTuning();
      const tuner = VertexTuner.create({ project: v.project, location: v.location, ...(endpoint ? { endpoint: { host: endpoint.hostname, port: Number(endpoint.port), protocol: endpoint.protocol === 'https:' ? 'https' : 'http' } } : {}) });
      try {
        let name = (ctx.info.heartbeatDetails as { job?: string } | undefined)?.job;
        if (!name) {
          const job = buildTuningJob(input.displayName, input.plan.spec, {
            imageUri: v.imageUri,
            machineType: v.machineType,
            args: ['--pipeline', input.plan.pipeline, ...input.plan.overrides.flatMap((o) => ['--override', o])],
            ...(v.baseOutputUri ? { baseOutputUri: v.baseOutputUri } : {}),
            ...(v.serviceAccount ? { serviceAccount: v.serviceAccount } : {}),
          });
          name = await tuner.submit(job);
          ctx.heartbeat({ job: name });
        }
        let status: TuningStatus;
        for (;;) {
          if (ctx.cancellationSignal.aborted) {
            await tuner.cancel(name);
            throw new CancelledFailure(`Vertex job ${name} cancelled`);
          }
          status = await tuner.status(name, input.plan.spec.metric.key);
          ctx.heartbeat({ job: name, state: status.state, trials: status.trials.length });
          if (status.done) break;
          await new Promise<void>((resolve) => {
            const t = setTimeout(resolve, v.pollMs);
            ctx.cancellationSignal.addEventListener('abort', () => (clearTimeout(t), resolve()), { once: true });
          });
        }
        if (status.state !== 'JOB_STATE_SUCCEEDED' && status.state !== 'JOB_STATE_PARTIALLY_SUCCEEDED') {
          throw new PipelineError('STEP_FAILED', `Vertex job ${name} ended ${status.state}${status.error ? `: ${status.error}` : ''}.`, { retryable: false });
        }
        return {
          job: name,
          state: status.state,
          trials: status.trials.map((t) => ({ id: t.id, state: t.state, overrides: Object.entries(t.values).map(([k, val]) => `${k}=${String(val)}`), ...(t.metric !== undefined ? { value: t.metric } : {}) })),
        };
      } catch (e) {
        throw toApplicationFailure(e);
      } finally {
        await tuner.close();
      }
    },

    /** Trials that ran elsewhere (Vertex) as nested MLflow runs under the search's run, idempotent by `mlpipe.run_key`. */
    async trackExternalTrials(input: { runId: string; experimentId: string; job: string; metricKey: string; trials: { id: string; state: string; overrides: string[]; value?: number }[] }): Promise<void> {
      const backend = deps.tracking();
      if (!backend) return;
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
              { key: 'mlflow.parentRunId', value: input.runId },
              { key: 'mlpipe.vertex_trial_state', value: t.state },
            ],
          }));
        if (t.value !== undefined && !(await backend.metricHistory(run.runId, input.metricKey)).length) {
          await backend.logBatch(run.runId, {
            metrics: [{ key: input.metricKey, value: t.value, timestamp: Date.now(), step: 0 }],
            params: t.overrides.map((o) => ({ key: o.slice(0, o.indexOf('=')), value: o.slice(o.indexOf('=') + 1) })),
            tags: [],
          });
        }
        await backend.updateRun(run.runId, t.state === 'SUCCEEDED' ? 'FINISHED' : 'FAILED', Date.now());
      }
    },

    /**
     * The search's MLflow run (idempotent by the `mlpipe.hpo_key` tag): params = the search space and
     * settings. Trials nest under it. Undefined when tracking is off.
     */
    async startHpoTracking(input: { plan: HpoPlan; key: string }): Promise<{ runId: string; experimentId: string } | undefined> {
      const backend = deps.tracking();
      if (!backend) return undefined;
      const compiled = deps.project.compile(input.plan.pipeline, input.plan.overrides);
      if (compiled.tracking?.enabled === false) return undefined;
      const experiment = await backend.getOrCreateExperiment(experimentOf(input.plan, compiled.tracking?.experiment));
      const existing = await backend.findRunByTag(experiment, 'mlpipe.hpo_key', input.key);
      if (existing) return { runId: existing.runId, experimentId: experiment };
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
      const s = input.plan.spec;
      const params = [
        { key: 'hpo.metric', value: `${s.metric.step}.${s.metric.output}.${s.metric.key}` },
        { key: 'hpo.goal', value: s.metric.goal },
        { key: 'hpo.trials', value: String(s.trials) },
        { key: 'hpo.parallel', value: String(s.parallel) },
        { key: 'hpo.algorithm', value: s.algorithm },
        { key: 'hpo.seed', value: String(s.seed) },
        ...Object.entries(s.space).map(([k, v]) => ({ key: `space.${k}`, value: JSON.stringify(v).slice(0, 500) })),
      ];
      await backend.logBatch(run.runId, { metrics: [], params, tags: [] });
      return { runId: run.runId, experimentId: experiment };
    },

    /**
     * Ends the search's run: the best value as a metric, the best trial's overrides as tags, and the
     * best trial's own run tagged `mlpipe.hpo_best`. Trial runs are delivered by their own tracking
     * workflows; if the best one is not in MLflow yet, this fails and is retried.
     */
    async finishHpoTracking(input: { runId: string; experimentId: string; best: { index: number; value: number; overrides: string[]; runKey: string }; metricKey: string; status: 'FINISHED' | 'FAILED' }): Promise<void> {
      const backend = deps.tracking();
      if (!backend) return;
      const experiment = input.experimentId;
      const now = Date.now();
      if (!(await backend.metricHistory(input.runId, `best_${input.metricKey}`)).length) {
        await backend.logBatch(input.runId, {
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
      await backend.logBatch(trialRun.runId, { metrics: [], params: [], tags: [{ key: 'mlpipe.hpo_best', value: 'true' }] });
      await backend.updateRun(input.runId, input.status, now);
    },

    async planHpo(input: HpoInput): Promise<HpoPlan> {
      try {
        checkInput(input);
        const base = input.overrides ?? [];
        const compiled = deps.project.compile(input.pipeline, base);
        if (!compiled.hpo) {
          throw new PipelineError('SPEC_INVALID', `Pipeline '${compiled.name}' has no hpo: section.`, {
            hint: 'Add hpo: { metric: { step, key, goal }, space: { training.lr: { type: double, min, max, scale: log } }, trials, parallel }.',
          });
        }
        const spec: HpoSpec = { ...compiled.hpo, ...(input.trials ? { trials: input.trials } : {}), ...(input.parallel ? { parallel: input.parallel } : {}), ...(input.backend ? { backend: input.backend } : {}) };
        if (spec.backend === 'vertex') {
          if (!spec.vertex) throw new PipelineError('SPEC_INVALID', `hpo.backend is vertex, but hpo.vertex (project, location, imageUri) is not set.`);
          // Built and checked against the API's protos now, so a bad job fails before anything runs.
          (await vertexTuning()).buildTuningJob(`${compiled.name}-check`, spec, { imageUri: spec.vertex.imageUri, machineType: spec.vertex.machineType, args: ['--pipeline', input.pipeline, ...base.flatMap((o) => ['--override', o])] });
        }
        if (spec.earlyStopping) {
          const step = compiled.steps[spec.earlyStopping.step];
          const shape = step ? (deps.registry.require(step.uses).params as unknown as { shape?: Record<string, unknown> }).shape : undefined;
          if (!step || !shape?.['stopIfWorseThan']) {
            throw new PipelineError('SPEC_INVALID', `hpo.earlyStopping.step: ${step ? `step '${spec.earlyStopping.step}' (${step.uses}) takes no stopIfWorseThan, so the median rule cannot stop it` : `no step '${spec.earlyStopping.step}'`}.`, {
              hint: 'Name the training step (train.tfjs-mlp).',
            });
          }
        }
        const trials = generateTrials(spec.space, spec.trials, spec.algorithm, spec.seed);
        // Every trial must compile: a bad key or value fails the search before anything runs.
        for (const t of trials) {
          try {
            deps.project.compile(input.pipeline, [...base, ...t.overrides]);
          } catch (e) {
            const detail = e instanceof SpecErrors ? e.problems.map((p) => p.message).join('; ') : (e as Error).message;
            throw new PipelineError('SPEC_INVALID', `hpo.space: trial ${t.index} (${t.overrides.join(' ')}) does not compile: ${detail}`, { hint: 'Space keys are overrides: config keys (training.lr), params (params.seed) or config groups (model).' });
          }
        }
        return { pipeline: input.pipeline, overrides: base, spec, trials };
      } catch (e) {
        throw toApplicationFailure(e);
      }
    },
  };
}
