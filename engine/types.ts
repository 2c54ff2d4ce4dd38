/**
 * Plain-JSON shapes that cross Temporal (compiled pipeline, step calls and results); the workflows'
 * own inputs, signals and results are in contracts.ts.
 * Everything here must survive a JSON round trip: no classes, no Dates, no undefined-only meaning.
 */

/** A reference to bytes in an artifact store. Steps exchange these, never the data itself. */
export interface ArtifactRef {
  kind: 'artifact';
  uri: string;
  sha256: string;
  size: number;
  mediaType: string;
  /** Optional logical name (file name) for humans. */
  name?: string;
  /**
   * The artifacts this one is computed from when it is a recipe rather than the data (a deferred
   * dataset, lib/dataset.ts): whatever keeps it (a cache entry, a manifest) keeps them too.
   */
  derivedFrom?: ArtifactRef[];
}

export function isArtifactRef(v: unknown): v is ArtifactRef {
  return (
    v !== null &&
    typeof v === 'object' &&
    (v as ArtifactRef).kind === 'artifact' &&
    typeof (v as ArtifactRef).uri === 'string' &&
    typeof (v as ArtifactRef).sha256 === 'string'
  );
}

export interface RetrySpec {
  maximumAttempts?: number;
  maximumInfraAttempts?: number;
  serviceWaitMs?: number;
  initialIntervalMs?: number;
  backoffCoefficient?: number;
  maximumIntervalMs?: number;
  nonRetryableErrorTypes?: string[];
}

export interface CompiledStep {
  id: string;
  uses: string;
  pluginVersion: string;
  description?: string;
  /** Params with params/config expressions resolved; `${steps...}` templates left for run time; a literal `${` is written `$${`. */
  with: Record<string, unknown>;
  /** Plugin input name -> template (usually `${steps.x.outputs.y}`) resolved at run time. */
  inputs: Record<string, string>;
  needs: string[];
  when?: string | boolean;
  ifNeedsSkipped: 'skip' | 'run';
  retry: RetrySpec;
  timeoutMs: number;
  heartbeatMs?: number;
  cache: boolean;
  /** Param paths left out of the cache key (`cache: { ignore: [...] }`). */
  cacheIgnore?: string[];
  taskQueue?: string;
  /** Worker environment variables the step asked for (`env: [NAME]`). */
  env?: string[];
  /** Source position of the step, for messages at run time. */
  line?: number;
  /** Path params (top-level names) that name a client's file of a submitted pipeline: the step reads it from the store. */
  files?: Record<string, SubmittedFile>;
  /** Dataset outputs the step passes on deferred -> the steps that read them (lib/dataset.ts). */
  defer?: Record<string, string[]>;
}

export interface CompiledPipeline {
  name: string;
  description?: string;
  file: string;
  params: Record<string, unknown>;
  config: Record<string, unknown>;
  configChoices: Record<string, string>;
  configSources: string[];
  overrides: string[];
  maxParallel: number;
  cache: boolean;
  /** Step ids in declaration order: the fixed order in which ready steps start. */
  order: string[];
  steps: Record<string, CompiledStep>;
  /** From the spec's `tracking:`; the worker fills in the experiment default and the git commit. */
  tracking?: PipelineTracking;
  /** From the spec's `monitor:`, expressions resolved. */
  monitor?: PipelineMonitor;
  /** From the spec's `hpo:` (engine/hpo.ts). */
  hpo?: HpoSpec;
  /**
   * Set when the pipeline came in the workflow input (`submitted`) rather than from the worker's
   * project: untrusted, so no worker runs its code-running steps unless it trusts submitted pipelines.
   */
  submitted?: boolean;
  /**
   * Set by the worker that compiled the run when its namespace has mlpipe's search attributes
   * (engine/contracts.ts SEARCH_ATTRIBUTES): the run then sets them, with this mlpipe version.
   * Runs compiled without it (a server lacking them, histories from before) set none.
   */
  searchAttributes?: { version: string };
}

/** A client's data file in the artifact store, named by a submitted pipeline's path param. */
export interface SubmittedFile {
  sha256: string;
  size: number;
  /** The path as the pipeline wrote it (pipelines/data/x.csv). */
  path: string;
}

import type { HpoSpec } from './hpo.js';

export interface PipelineMonitor {
  current: string;
  /** For a prediction log as current data: milliseconds back from the check. */
  windowMs?: number;
  reference: { step: string; output: string; model?: string };
  /** monitor.drift's params (engine/drift/params.ts). */
  drift: Record<string, unknown>;
  retrain: boolean;
  alert?: { webhookEnv: string; always: boolean };
}

export interface PipelineTracking {
  enabled: boolean;
  experiment?: string;
  registerModel?: { name: string; step: string; output: string; aliases: string[] };
  gitCommit?: string;
  /** The MLflow run this run nests under (an HPO trial under its search). */
  parentMlflowRunId?: string;
}

export type StepStatus = 'pending' | 'running' | 'succeeded' | 'cached' | 'skipped' | 'failed' | 'cancelled';

/**
 * What every record of one step names: the step, the plugin and version that ran it, its cache key
 * and its outputs. The records extend it: the cache entry (`CacheManifest`, activities/run-step.ts),
 * and through `StepRunRecord` the tracking record (`StepRecord`, tracking.ts) and the lineage
 * manifest (`StepManifest`, lineage.ts).
 */
export interface StepRecordBase {
  stepId: string;
  uses: string;
  pluginVersion: string;
  cacheKey?: string;
  outputs?: Record<string, unknown>;
}

/** A step that has ended, as recorded: how it ended, with which params, at which attempt, when. */
export interface StepRunRecord extends StepRecordBase {
  status: Extract<StepStatus, 'succeeded' | 'cached' | 'failed' | 'cancelled' | 'skipped'>;
  params: Record<string, unknown>;
  attempt: number;
  startedAt?: string;
  endedAt?: string;
  /** The error message of a failed step. */
  error?: string;
}

export interface StepResult {
  outputs: Record<string, unknown>;
  /** Metric series the plugin reported (training curves): tracked, not part of the outputs. */
  series?: { key: string; value: number; timestamp: number; step: number }[];
  /**
   * Set when the attempt's live MLflow run exists or was being made as the step ended
   * (activities/live-tracking.ts): the tracking delivery waits for it rather than make a second.
   */
  liveRun?: boolean;
  cached: boolean;
  cacheKey?: string;
  attempt: number;
  /** Errors the step threw before this attempt succeeded (the other earlier attempts were lost). */
  errors?: number;
  startedAt: string;
  endedAt: string;
}

/** Activity input for one step: everything resolved, nothing left to evaluate. */
export interface StepCall {
  runId: string;
  pipeline: string;
  stepId: string;
  uses: string;
  params: Record<string, unknown>;
  inputs: Record<string, unknown>;
  cache: boolean;
  /** Param paths left out of the cache key. */
  cacheIgnore?: string[];
  /** The MLflow experiment the run tracks to (deploy steps register models under it). */
  experiment?: string;
  /** Worker environment variables the step may see. */
  env?: string[];
  /** The step's retry policy: runStep counts the step's errors against it (docs/resilience.md). */
  retry?: RetrySpec;
  /** The plugin version the run was compiled with: a worker with another version refuses the step (PLUGIN_VERSION_MISMATCH). */
  pluginVersion?: string;
  /** The step belongs to a submitted pipeline (untrusted: code-running plugins need a trusting worker). */
  submitted?: boolean;
  /** Path params served from the artifact store (a submitted pipeline's client files). */
  files?: Record<string, SubmittedFile>;
  /** Dataset outputs the step may pass on deferred (CompiledStep.defer). */
  defer?: string[];
}

export interface StepState {
  status: StepStatus;
  attempt: number;
  /** Errors the step itself threw so far (attempts lost to the infrastructure are not counted). */
  errors?: number;
  startedAt?: string;
  endedAt?: string;
  outputs?: Record<string, unknown>;
  cacheKey?: string;
  error?: { type?: string; message: string };
  reason?: string;
}
