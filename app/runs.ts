/**
 * Starting a pipeline run from a client: compile the pipeline here first (so a bad spec fails
 * before anything starts, with file and line), then start `pipelineWorkflow` with a small input.
 * The CLI and the client API (api/client.ts) both start runs through here, so what a run's input
 * holds is decided in one place.
 */
import type { Client } from '@temporalio/client';
import { randomUUID } from 'node:crypto';
import { PIPELINE_WORKFLOW, runSummary } from '../engine/contracts.js';
import { checkInput } from '../engine/limits.js';
import type { CompiledPipeline } from '../engine/types.js';
import type { PipelineInput } from '../engine/contracts.js';
import { loadPipeline } from './load-pipeline.js';
import { loadProjectRegistry } from './project-plugins.js';
import type { Settings } from './project.js';

export interface RunOptions {
  overrides?: string[];
  labels?: Record<string, string>;
  /** false: do not reuse cached step results. */
  cache?: boolean;
  maxParallel?: number;
  /** Workflow ID (default <pipeline>-<random>). */
  workflowId?: string;
  /** Task queue (default the settings'). */
  taskQueue?: string;
}

/** Compiles a pipeline of the project (by name or path) with the project's plugins. Throws SpecError(s). */
export async function compileProjectPipeline(
  settings: Pick<Settings, 'projectDir'>,
  ref: string,
  overrides: string[] = [],
): Promise<CompiledPipeline> {
  return loadPipeline(settings.projectDir, ref, await loadProjectRegistry(settings.projectDir), overrides);
}

/** The workflow input of a run, checked against the limits the worker applies. */
export function pipelineInput(ref: string, options: RunOptions = {}): PipelineInput {
  const input: PipelineInput = { pipeline: ref, overrides: options.overrides ?? [] };
  if (options.cache === false) input.cache = false;
  if (options.maxParallel) input.maxParallel = options.maxParallel;
  if (options.labels && Object.keys(options.labels).length) input.labels = options.labels;
  checkInput(input); // what the worker would refuse, refused before anything starts
  return input;
}

export interface StartedRun {
  workflowId: string;
  /** The first run ID of the workflow. */
  runId: string;
  taskQueue: string;
  compiled: CompiledPipeline;
}

/** Compiles, then starts the run; returns once the server has accepted it. */
export async function startPipelineRun(
  client: Client,
  settings: Pick<Settings, 'projectDir' | 'taskQueue'>,
  ref: string,
  options: RunOptions = {},
): Promise<StartedRun> {
  const compiled = await compileProjectPipeline(settings, ref, options.overrides);
  const input = pipelineInput(ref, options);
  const workflowId = options.workflowId ?? `${compiled.name}-${randomUUID().slice(0, 8)}`;
  const taskQueue = options.taskQueue ?? settings.taskQueue;
  const handle = await client.workflow.start(PIPELINE_WORKFLOW, {
    taskQueue,
    workflowId,
    args: [input],
    staticSummary: runSummary(compiled.name, input.labels),
  });
  return { workflowId, runId: handle.firstExecutionRunId, taskQueue, compiled };
}
