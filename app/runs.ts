/**
 * Starting a pipeline run from a client: compile the pipeline here first (so a bad spec fails
 * before anything starts, with file and line), then start `pipelineWorkflow` with a small input
 * that carries the pipeline (`submitted`: the spec, the config files it composed, the plugin
 * versions, and the digests of the project's files its steps read, which go to the artifact store),
 * so a worker needs the plugins, not the project's files. The CLI and the client API
 * (api/client.ts) both start runs through here, so what a run's input holds is decided in one place.
 */
import type { Client } from '@temporalio/client';
import { randomUUID } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { hashFile } from '../adapters/local-store.js';
import { createArtifactStore } from '../adapters/stores.js';
import { PIPELINE_WORKFLOW, runSummary } from '../engine/contracts.js';
import { PipelineError } from '../engine/errors.js';
import { checkInput } from '../engine/limits.js';
import type { ArtifactStore } from '../engine/ports.js';
import type { CompiledPipeline } from '../engine/types.js';
import type { PipelineInput } from '../engine/contracts.js';
import type { PluginCatalog } from '../engine/catalog.js';
import { loadPipeline, loadPipelineSource, localPath } from './load-pipeline.js';
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
  /**
   * false: send only the pipeline's name, for a pipeline that sits in the workers' project (what
   * `temporal workflow start` does). Default true: the run carries the pipeline.
   */
  submit?: boolean;
}

/** Compiles a pipeline of the project (by name or path) with the project's plugins. Throws SpecError(s). */
export async function compileProjectPipeline(
  settings: Pick<Settings, 'projectDir'>,
  ref: string,
  overrides: string[] = [],
): Promise<CompiledPipeline> {
  return loadPipeline(settings.projectDir, ref, await loadProjectRegistry(settings.projectDir), overrides);
}

/** The workflow input of a run by name, checked against the limits the worker applies. */
export function pipelineInput(ref: string, options: RunOptions = {}): PipelineInput {
  const input: PipelineInput = { pipeline: ref, overrides: options.overrides ?? [] };
  if (options.cache === false) input.cache = false;
  if (options.maxParallel) input.maxParallel = options.maxParallel;
  if (options.labels && Object.keys(options.labels).length) input.labels = options.labels;
  checkInput(input); // what the worker would refuse, refused before anything starts
  return input;
}

/** A project file a submitted pipeline reads: where it is here, and its digest. */
export interface RunFile {
  /** The path as the pipeline names it. */
  path: string;
  /** Where it is on this machine. */
  file: string;
  sha256: string;
  size: number;
}

export interface PreparedRun {
  compiled: CompiledPipeline;
  input: PipelineInput;
  /** Files to put in the artifact store before the run starts (uploadRunFiles). */
  files: RunFile[];
}

/**
 * Compiles the pipeline here and builds the run's input: with the pipeline in it (`submitted`)
 * unless `submit: false`. Checked against the limits the worker applies: past them it throws
 * INPUT_INVALID, and nothing was uploaded or started.
 */
export async function prepareRun(settings: Pick<Settings, 'projectDir'>, ref: string, options: RunOptions = {}): Promise<PreparedRun> {
  const registry = await loadProjectRegistry(settings.projectDir);
  const source = loadPipelineSource(settings.projectDir, ref, registry, options.overrides ?? []);
  const { compiled } = source;
  if (options.submit === false) return { compiled, input: pipelineInput(ref, options), files: [] };
  const files = await projectFiles(settings.projectDir, compiled, registry);
  const plugins = Object.fromEntries(compiled.order.map((id) => [compiled.steps[id]!.uses, compiled.steps[id]!.pluginVersion]));
  const input: PipelineInput = {
    pipeline: compiled.name,
    overrides: options.overrides ?? [],
    submitted: {
      file: source.file,
      text: source.text,
      ...(Object.keys(source.conf).length ? { conf: source.conf } : {}),
      ...(files.length ? { files: Object.fromEntries(files.map((f) => [f.path, { sha256: f.sha256, size: f.size }])) } : {}),
      plugins,
    },
  };
  if (options.cache === false) input.cache = false;
  if (options.maxParallel) input.maxParallel = options.maxParallel;
  if (options.labels && Object.keys(options.labels).length) input.labels = options.labels;
  checkInput(input);
  return { compiled, input, files };
}

/**
 * The regular files inside the project that the steps' path params name (after params, config and
 * overrides): a worker elsewhere reads them from the artifact store by digest. Paths outside the
 * project, URLs and folders are left as they are (a worker confines them to its own project).
 */
async function projectFiles(projectDir: string, compiled: CompiledPipeline, catalog: PluginCatalog): Promise<RunFile[]> {
  const found = new Map<string, RunFile>();
  for (const id of compiled.order) {
    const step = compiled.steps[id]!;
    for (const name of catalog.get(step.uses)?.pathParams ?? []) {
      const value = Object.hasOwn(step.with, name) ? step.with[name] : undefined;
      if (typeof value !== 'string' || value.includes('${') || found.has(value)) continue;
      let file: string | undefined;
      try {
        file = localPath(projectDir, value, `step '${id}' param '${name}'`);
      } catch {
        continue; // outside the project: not sent
      }
      if (!file || !existsSync(file) || !statSync(file).isFile()) continue;
      found.set(value, { path: value, file, sha256: await hashFile(file), size: statSync(file).size });
    }
  }
  return [...found.values()];
}

/** Puts a run's files in the store; a file that changed since it was hashed fails (INPUT_INVALID), before the run starts. */
export async function uploadRunFiles(store: ArtifactStore, files: RunFile[]): Promise<void> {
  for (const f of files) {
    const ref = await store.putFile(f.file, { name: f.path.split('/').pop() });
    if (ref.sha256 !== f.sha256) {
      throw new PipelineError('INPUT_INVALID', `${f.path} changed while the run was being prepared.`, { hint: 'Start the run again.' });
    }
  }
}

/** The artifact store of these settings (the client's side of the store the workers share). */
export function clientStore(settings: Pick<Settings, 'projectDir' | 'artifactsDir'>): ArtifactStore {
  return createArtifactStore(settings.artifactsDir, { cacheDir: join(settings.projectDir, '.mlpipe') });
}

export interface StartedRun {
  workflowId: string;
  /** The first run ID of the workflow. */
  runId: string;
  taskQueue: string;
  compiled: CompiledPipeline;
}

/** Compiles, puts the run's files in the store, then starts the run; returns once the server has accepted it. */
export async function startPipelineRun(
  client: Client,
  settings: Pick<Settings, 'projectDir' | 'taskQueue' | 'artifactsDir'>,
  ref: string,
  options: RunOptions = {},
): Promise<StartedRun> {
  const { compiled, input, files } = await prepareRun(settings, ref, options);
  if (files.length) await uploadRunFiles(clientStore(settings), files);
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
