/** The planning activity of a hyperparameter search: compile, generate the trials, check each. */
import { loadPipeline } from '../adapters/load-pipeline.js';
import { PipelineError, SpecErrors } from '../engine/errors.js';
import { generateTrials, type HpoSpec, type Trial } from '../engine/hpo.js';
import type { TrackingBackend } from '../engine/ports.js';
import type { Registry } from '../plugins/registry.js';
import { toApplicationFailure } from './run-step.js';

export interface HpoInput {
  pipeline: string;
  /** Overrides for every trial (before the trial's own). */
  overrides?: string[];
  /** Override the spec's trials / parallel. */
  trials?: number;
  parallel?: number;
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

export function createHpoActivities(deps: { registry: Registry; projectDir: string; tracking: () => TrackingBackend | undefined; experimentName?: string }) {
  const experimentOf = (plan: HpoPlan, compiledExperiment?: string): string => compiledExperiment ?? deps.experimentName ?? plan.pipeline;
  return {
    /**
     * The search's MLflow run (idempotent by the `mlpipe.hpo_key` tag): params = the search space and
     * settings. Trials nest under it. Undefined when tracking is off.
     */
    async startHpoTracking(input: { plan: HpoPlan; key: string }): Promise<{ runId: string; experimentId: string } | undefined> {
      const backend = deps.tracking();
      if (!backend) return undefined;
      const compiled = loadPipeline(deps.projectDir, input.plan.pipeline, deps.registry, input.plan.overrides);
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
        const base = input.overrides ?? [];
        const compiled = loadPipeline(deps.projectDir, input.pipeline, deps.registry, base);
        if (!compiled.hpo) {
          throw new PipelineError('SPEC_INVALID', `Pipeline '${compiled.name}' has no hpo: section.`, {
            hint: 'Add hpo: { metric: { step, key, goal }, space: { training.lr: { type: double, min, max, scale: log } }, trials, parallel }.',
          });
        }
        const spec: HpoSpec = { ...compiled.hpo, ...(input.trials ? { trials: input.trials } : {}), ...(input.parallel ? { parallel: input.parallel } : {}) };
        const trials = generateTrials(spec.space, spec.trials, spec.algorithm, spec.seed);
        // Every trial must compile: a bad key or value fails the search before anything runs.
        for (const t of trials) {
          try {
            loadPipeline(deps.projectDir, input.pipeline, deps.registry, [...base, ...t.overrides]);
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
