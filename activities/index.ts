/**
 * The activities a worker registers: `compilePipeline` (reads YAML and conf/, validates, composes)
 * and `runStep` (one step through the plugin registry). Everything else is a plugin.
 */
import { z } from 'zod';
import { loadPipeline } from '../adapters/load-pipeline.js';
import { PipelineError } from '../engine/errors.js';
import type { CompiledPipeline, PipelineInput } from '../engine/types.js';
import { createRunStep, toApplicationFailure, type StepDeps } from './run-step.js';

const inputSchema = z
  .object({
    pipeline: z.string().min(1),
    overrides: z.array(z.string()).optional(),
    labels: z.record(z.string(), z.string()).optional(),
    cache: z.boolean().optional(),
    maxParallel: z.number().int().min(1).optional(),
  })
  .strict();

export function createActivities(deps: StepDeps) {
  return {
    async compilePipeline(input: PipelineInput): Promise<CompiledPipeline> {
      try {
        const parsed = inputSchema.safeParse(input);
        if (!parsed.success) {
          const detail = parsed.error.issues.map((i) => `${i.path.join('.') || '(input)'}: ${i.message}`).join('; ');
          throw new PipelineError('INPUT_INVALID', `Invalid workflow input: ${detail}.`, {
            hint: 'The input is {"pipeline": "<name or path>", "overrides": ["key=value", ...], "labels": {...}, "cache": true, "maxParallel": 8}.',
          });
        }
        return loadPipeline(deps.projectDir, parsed.data.pipeline, deps.registry, parsed.data.overrides ?? []);
      } catch (e) {
        throw toApplicationFailure(e);
      }
    },
    runStep: createRunStep(deps),
  };
}

export type Activities = ReturnType<typeof createActivities>;
