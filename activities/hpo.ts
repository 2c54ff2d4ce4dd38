/** The planning activity of a hyperparameter search: compile, generate the trials, check each. */
import { loadPipeline } from '../adapters/load-pipeline.js';
import { PipelineError, SpecErrors } from '../engine/errors.js';
import { generateTrials, type HpoSpec, type Trial } from '../engine/hpo.js';
import type { Registry } from '../plugins/registry.js';
import { toApplicationFailure } from './run-step.js';

export interface HpoInput {
  pipeline: string;
  /** Overrides for every trial (before the trial's own). */
  overrides?: string[];
  /** Override the spec's trials / parallel. */
  trials?: number;
  parallel?: number;
  /** Continue as new after this many trials (default: when Temporal suggests it, about 4,096 events). */
  trialsPerGeneration?: number;
}

export interface HpoPlan {
  pipeline: string;
  overrides: string[];
  spec: HpoSpec;
  trials: Trial[];
}

export function createHpoActivities(deps: { registry: Registry; projectDir: string }) {
  return {
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
