/**
 * The activities a worker registers: `compilePipeline` (reads YAML and conf/, validates, composes)
 * and `runStep` (one step through the plugin registry). Everything else is a plugin.
 */
import { Context } from '@temporalio/activity';
import { pruneUntil } from '../engine/compile.js';
import type { PipelineInput } from '../engine/contracts.js';
import { pipelineInputSchema } from '../engine/pipeline-input.js';
import { writeRunManifest } from '../engine/lineage.js';
import { formatZodIssues, PipelineError } from '../engine/errors.js';
import { escapeTemplates } from '../engine/expressions.js';
import { checkInput } from '../engine/limits.js';
import type { CompiledPipeline } from '../engine/types.js';
import type { ArtifactStore, ProjectPipelines, TrackingBackend } from '../engine/ports.js';
import { createRunStep, submittedFileRef, toApplicationFailure, type StepDeps } from './run-step.js';
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
  /** Set when the namespace has mlpipe's search attributes (app/visibility.ts): runs then set them. */
  searchAttributes?: () => { version: string } | undefined;
}

export function createActivities(deps: ActivityDeps) {
  const tracking = deps.tracking ?? (() => undefined);
  return {
    async compilePipeline(input: PipelineInput): Promise<CompiledPipeline> {
      try {
        checkInput(input);
        const parsed = pipelineInputSchema.safeParse(input);
        if (!parsed.success) {
          const detail = formatZodIssues(parsed.error.issues, '(input)');
          throw new PipelineError('INPUT_INVALID', `Invalid workflow input: ${detail}.`, {
            hint: 'The input is {"pipeline": "<name or path>", "overrides": ["key=value", ...], "labels": {...}, "cache": true, "maxParallel": 8, "until": "<step>"}.',
          });
        }
        const { submitted } = parsed.data;
        let compiled = submitted
          ? deps.project.compileSubmitted(submitted, parsed.data.overrides ?? [], Context.current().info.taskQueue)
          : deps.project.compile(parsed.data.pipeline, parsed.data.overrides ?? []);
        if (compiled.submitted) await checkSubmittedFiles(deps.store, compiled);
        if (parsed.data.until) compiled = pruneUntil(compiled, parsed.data.until);
        if (parsed.data.trial && compiled.tracking) delete compiled.tracking.registerModel;
        for (const [stepId, extra] of Object.entries(parsed.data.trial?.stepParams ?? {})) {
          const step = Object.hasOwn(compiled.steps, stepId) ? compiled.steps[stepId] : undefined;
          if (!step) throw new PipelineError('INPUT_INVALID', `trial.stepParams: the pipeline runs no step '${stepId}'.`);
          // The input is untrusted: it may not reach a step whose params are code, and its values stay literal.
          if (deps.registry.get(step.uses)?.codeParams?.length) {
            throw new PipelineError(
              'INPUT_INVALID',
              `trial.stepParams: step '${stepId}' (${step.uses}) runs code; its params cannot be set from the workflow input.`,
              {
                hint: 'Trials set params through overrides (params.x=...), which the pipeline passes to its steps.',
              },
            );
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
          ? {
              ...compiled.tracking,
              enabled,
              experiment: compiled.tracking?.experiment ?? deps.experimentName ?? compiled.name,
              gitCommit: commit,
            }
          : { enabled: false };
        const searchAttributes = deps.searchAttributes?.();
        if (searchAttributes) compiled.searchAttributes = searchAttributes;
        const parentMlflowRunId = parsed.data.trial?.parentMlflowRunId ?? parsed.data.trial?.parentRunId;
        if (parentMlflowRunId && compiled.tracking.enabled) compiled.tracking.parentMlflowRunId = parentMlflowRunId;
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

/**
 * The client's files a submitted pipeline reads are in this worker's artifact store, intact: else
 * the run fails before any step starts (client and workers must share the store).
 */
async function checkSubmittedFiles(store: ArtifactStore, compiled: CompiledPipeline): Promise<void> {
  for (const id of compiled.order) {
    for (const [param, file] of Object.entries(compiled.steps[id]!.files ?? {})) {
      if (await store.verify(submittedFileRef(store, file))) continue;
      throw new PipelineError(
        'INPUT_INVALID',
        `Step '${id}' param '${param}': the client's file ${file.path} (sha256:${file.sha256.slice(0, 12)}, ${file.size} bytes) is not in this worker's artifact store (${store.location}).`,
        {
          hint: 'The client puts the files a submitted pipeline reads in its artifact store: give the client and the workers the same MLPIPE_ARTIFACTS (gs://bucket/prefix, or one folder on one machine).',
        },
      );
    }
  }
}
