/**
 * `mlpipe`: the client API and the worker factory. Plugins are written against `mlpipe/sdk`;
 * tests use `mlpipe/testing`.
 */
export { compile, connect, listRuns, MlpipeClient, RunFailedError, validate } from './client.js';
export type { ConnectOptions, FollowOptions, ProjectOptions, RunOptions, Settings, StartedRun, Validation } from './client.js';
export { createPipelineWorker, type PipelineWorkerOptions } from '../app/worker.js';
export { loadSettings } from '../app/project.js';
export { PipelineError, SpecErrors } from '../engine/errors.js';
export type { CompiledPipeline, StepState } from '../engine/types.js';
export type { PipelineInput, PipelineResult, PipelineStatus } from '../engine/contracts.js';
export type { RunManifest } from '../engine/lineage.js';
