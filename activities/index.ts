/**
 * The activities a worker registers: `compilePipeline` (reads YAML and conf/, validates, composes)
 * and `runStep` (one step through the plugin registry). Everything else is a plugin.
 */
import { Context } from '@temporalio/activity';
import { z } from 'zod';
import { writeRunManifest } from '../engine/lineage.js';
import { formatZodIssues, PipelineError } from '../engine/errors.js';
import { escapeTemplates } from '../engine/expressions.js';
import { checkInput, LIMITS } from '../engine/limits.js';
import { STEP_ID } from '../engine/spec.js';
import type { CompiledPipeline, PipelineInput } from '../engine/types.js';
import type { ProjectPipelines, TrackingBackend } from '../engine/ports.js';
import { createRunStep, toApplicationFailure, type StepDeps } from './run-step.js';
import { createDeliverTracking } from './tracking.js';
import { createMonitorActivities } from './monitor.js';
import { createHpoActivities } from './hpo.js';

export interface ActivityDeps extends StepDeps {
  /** The project's pipelines (app/load-pipeline.ts makes it). */
  project: ProjectPipelines;
  /** The MLflow backend of this worker; undefined when tracking is off. Made on first use. */
  tracking?: () => TrackingBackend | undefined;
  /** MLFLOW_EXPERIMENT_NAME, for pipelines whose spec names no experiment. */
  experimentName?: string;
}

/** The workflow input: untrusted (whoever may start a workflow on the queue writes it), so bounded everywhere. */
const inputSchema = z
  .object({
    pipeline: z.string().min(1).max(LIMITS.pipelineRefChars),
    overrides: z.array(z.string().max(LIMITS.overrideChars)).max(LIMITS.overrides).optional(),
    labels: z.record(z.string().max(LIMITS.labelKeyChars), z.string().max(LIMITS.labelValueChars)).optional(),
    cache: z.boolean().optional(),
    maxParallel: z.number().int().min(1).max(LIMITS.maxParallel).optional(),
    until: z.string().regex(STEP_ID, 'a step id').optional(),
    trial: z
      .object({
        hpo: z.string().min(1),
        index: z.number().int().min(0),
        parentRunId: z.string().optional(),
        /** Extra params for named steps (the search's median stopping bar for the training step). */
        stepParams: z.record(z.string().regex(STEP_ID), z.record(z.string(), z.unknown())).optional(),
      })
      .strict()
      .optional(),
  })
  .strict();

/** Keeps `until` and the steps it needs, transitively: the part of the DAG an HPO trial runs. */
function pruneUntil(compiled: CompiledPipeline, until: string): void {
  if (!Object.hasOwn(compiled.steps, until)) {
    throw new PipelineError('INPUT_INVALID', `until: pipeline '${compiled.name}' has no step '${until}'.`, { hint: `Steps: ${compiled.order.join(', ')}.` });
  }
  const keep = new Set<string>();
  const visit = (id: string): void => {
    if (keep.has(id)) return;
    keep.add(id);
    for (const n of compiled.steps[id]!.needs) visit(n);
  };
  visit(until);
  compiled.order = compiled.order.filter((id) => keep.has(id));
  compiled.steps = Object.fromEntries(Object.entries(compiled.steps).filter(([id]) => keep.has(id)));
}

export function createActivities(deps: ActivityDeps) {
  const tracking = deps.tracking ?? (() => undefined);
  return {
    async compilePipeline(input: PipelineInput): Promise<CompiledPipeline> {
      try {
        checkInput(input);
        const parsed = inputSchema.safeParse(input);
        if (!parsed.success) {
          const detail = formatZodIssues(parsed.error.issues, '(input)');
          throw new PipelineError('INPUT_INVALID', `Invalid workflow input: ${detail}.`, {
            hint: 'The input is {"pipeline": "<name or path>", "overrides": ["key=value", ...], "labels": {...}, "cache": true, "maxParallel": 8, "until": "<step>"}.',
          });
        }
        const compiled = deps.project.compile(parsed.data.pipeline, parsed.data.overrides ?? []);
        if (parsed.data.until) pruneUntil(compiled, parsed.data.until);
        if (parsed.data.trial && compiled.tracking) delete compiled.tracking.registerModel;
        for (const [stepId, extra] of Object.entries(parsed.data.trial?.stepParams ?? {})) {
          const step = Object.hasOwn(compiled.steps, stepId) ? compiled.steps[stepId] : undefined;
          if (!step) throw new PipelineError('INPUT_INVALID', `trial.stepParams: the pipeline runs no step '${stepId}'.`);
          // The input is untrusted: it may not reach a step whose params are code, and its values stay literal.
          if (deps.registry.get(step.uses)?.codeParams?.length) {
            throw new PipelineError('INPUT_INVALID', `trial.stepParams: step '${stepId}' (${step.uses}) runs code; its params cannot be set from the workflow input.`, {
              hint: 'Trials set params through overrides (params.x=...), which the pipeline passes to its steps.',
            });
          }
          for (const name of deps.registry.get(step.uses)?.pathParams ?? []) {
            const v = extra[name];
            if (typeof v === 'string') deps.project.localPath(v, `trial.stepParams.${stepId}.${name}`);
            else if (v !== undefined) throw new PipelineError('INPUT_INVALID', `trial.stepParams.${stepId}.${name} must be a path.`);
          }
          step.with = { ...step.with, ...(escapeTemplates(extra) as Record<string, unknown>) };
        }
        const enabled = (compiled.tracking?.enabled ?? true) && tracking() !== undefined;
        const commit = deps.project.gitCommit();
        compiled.tracking = enabled
          ? { ...compiled.tracking, enabled, experiment: compiled.tracking?.experiment ?? deps.experimentName ?? compiled.name, gitCommit: commit }
          : { enabled: false };
        if (parsed.data.trial?.parentRunId && compiled.tracking.enabled) compiled.tracking.parentRunId = parsed.data.trial.parentRunId;
        const execution = Context.current().info.workflowExecution;
        if (execution) {
          await writeRunManifest(deps.store, {
            pipeline: compiled.name,
            file: compiled.file,
            workflowId: execution.workflowId,
            runId: execution.runId,
            startedAt: new Date().toISOString(),
            params: compiled.params,
            config: compiled.config,
            overrides: compiled.overrides,
            labels: parsed.data.labels ?? {},
            ...(commit ? { gitCommit: commit } : {}),
            store: deps.store.location,
          });
        }
        return compiled;
      } catch (e) {
        throw toApplicationFailure(e);
      }
    },
    runStep: createRunStep(deps),
    ...createHpoActivities({ registry: deps.registry, project: deps.project, tracking, experimentName: deps.experimentName }),
    ...createMonitorActivities({ project: deps.project, store: deps.store, tracking }),
    deliverTracking: createDeliverTracking({ tracking, store: deps.store }),
  };
}

export type Activities = ReturnType<typeof createActivities>;
