/**
 * The plugin SDK: what a step implementation sees. Plugins never import Temporal; the generic
 * `runStep` activity turns Temporal's activity context into a `StepContext`.
 */
import type { z } from 'zod';
import type { ArtifactStore, Logger, ModelRegistry } from '../engine/ports.js';
import type { ArtifactRef } from '../engine/types.js';
import type { ProgressReport } from '../engine/contracts.js';

export type { ArtifactRef } from '../engine/types.js';
export type { ArtifactStore, Logger } from '../engine/ports.js';
export type { ProgressReport, StepHeartbeatDetails, StepProgress } from '../engine/contracts.js';

export interface Checkpoint<M = Record<string, unknown>> {
  ref: ArtifactRef;
  meta: M;
  savedAt: string;
  /** The newest checkpoints, newest first (this one included), up to `keep`. */
  recent?: ArtifactRef[];
}

export interface Checkpoints {
  /**
   * Stores a checkpoint durably, then heartbeats a pointer to it. With `keep`, checkpoints older
   * than the newest `keep` are deleted from the store.
   */
  save<M extends Record<string, unknown>>(data: Uint8Array | string, meta: M, options?: { keep?: number }): Promise<Checkpoint<M>>;
  /** The newest checkpoint of this step in this run (from heartbeat details, else the store). */
  latest<M extends Record<string, unknown>>(): Promise<(Checkpoint<M> & { data: Buffer }) | undefined>;
  /**
   * Another sequence of checkpoints of this step beside this one, by name (say `folds`: the finished
   * folds of a walk-forward backtest, while the main sequence holds the model's epochs). Same key
   * rules (this run, this step's cache key) and the same `save`/`latest`; its record is the
   * store's alone (no heartbeat pointer, so the main sequence's pointer stays).
   */
  stream(name: string): Checkpoints;
}

/** A service a step depends on, for `ctx.untilAvailable`. */
export interface ServiceRef {
  /** For messages: MLflow, GCS. */
  name: string;
  location?: string;
  isUnavailable(error: unknown): boolean;
}

export interface StepContext {
  runId: string;
  workflowId: string;
  pipeline: string;
  stepId: string;
  /** 1 on the first attempt, 2 on the first retry, ... */
  attempt: number;
  store: ArtifactStore;
  logger: Logger;
  /** Aborted when the run is cancelled or the step timed out: stop work and throw. */
  signal: AbortSignal;
  /**
   * Reports how far the step is: `ctx.progress({ done: 12, total: 40, unit: 'epoch', metrics: { loss: 0.183, val_loss: 0.192 } })`.
   * The engine adds the time, the rate and an ETA and sends it with the step's heartbeat (at most
   * about once a second; the latest report wins), where `mlpipe run`, `mlpipe status` and the web UI
   * read it (the `progress` field of `StepHeartbeatDetails`, engine/contracts.ts). Every field is
   * optional; `message` alone is a one-line note. Metrics here are for display: curves for tracking
   * go through `logMetrics`. Liveness needs no call: the engine heartbeats on its own while the event
   * loop is free (see `heartbeat` in PluginDefinition).
   */
  progress(report: ProgressReport): void;
  /**
   * Runs `fn`; while it fails because `service` is unreachable (`isUnavailable(error)`: connection
   * refused, timeouts, 5xx; never a 4xx rejection), waits with capped backoff and tries again,
   * heartbeating "waiting for <name> at <location>", up to the step's `retry.serviceWait`.
   */
  untilAvailable<T>(service: ServiceRef, fn: () => Promise<T>): Promise<T>;
  checkpoint: Checkpoints;
  /** Project folder: relative paths in params are read from here. */
  projectDir: string;
  /** A scratch folder for this step attempt, removed afterwards. */
  workDir: string;
  /**
   * The environment for processes the step starts: PATH, HOME, LANG, LC_ALL, TZ, TMPDIR and the
   * worker variables the step asked for (`env: [NAME]`), never the rest of the worker's (credentials).
   */
  env: Record<string, string>;
  /** Replaces the values of the worker's secrets (and of the variables the step asked for) by `***`. */
  redact(text: string): string;
  /**
   * Reports metric series (training curves) to experiment tracking: each call adds one point per
   * key at `step` (default 0), stamped `timestamp` (default now). Numeric outputs are tracked anyway.
   */
  logMetrics(values: Record<string, number>, options?: { step?: number; timestamp?: number }): void;
  /**
   * The worker's model registry (an MLflow tracking server), and the experiment this run tracks
   * to; absent when the worker has none (file store, tracking off). For deploy steps.
   */
  models?: { registry: ModelRegistry; experiment: string };
  /**
   * Dataset outputs the step may pass on deferred (PluginDefinition.deferred): only DuckDB steps
   * read them, and none is a result of the run nobody reads.
   */
  defer?: readonly string[];
}

/** Input and output kinds: documentation and light checking ('artifact' values must be ArtifactRefs). */
export type IoKind = 'artifact' | 'dataset' | 'model' | 'metrics' | 'json' | 'any';

/** Declared inputs or outputs: name -> kind. An input name ending in '?' is optional. */
export type IoMap = Record<string, IoKind>;

/** The value of an input of this kind: artifact kinds are checked to be references before `run`. */
export type InputValue<K extends IoKind> = K extends 'artifact' | 'dataset' | 'model' ? ArtifactRef : unknown;

/** The value a plugin returns for an output of this kind: null when it has none this time (an optional input was absent). */
export type OutputValue<K extends IoKind> = K extends 'artifact' | 'dataset' | 'model'
  ? ArtifactRef | null
  : K extends 'metrics'
    ? object | null
    : unknown;

type RequiredName<N> = N extends `${string}?` ? never : N;
type OptionalName<N> = N extends `${infer B}?` ? B : never;

/**
 * What `run` receives for a declared input map: required inputs as their values, `name?` inputs
 * under `name`, possibly undefined (or null when an expression gave null).
 */
export type InputsOf<I extends IoMap> = { [N in keyof I as RequiredName<N>]: InputValue<I[N]> } & {
  [N in keyof I as OptionalName<N>]?: InputValue<I[N]> | null;
};

/** What `run` must return for a declared output map: every declared output, under its name. */
export type OutputsOf<O extends IoMap> = { -readonly [N in keyof O]: OutputValue<O[N]> };

/**
 * A plugin. `I` and `O` are the declared input and output maps when they are literal objects: `run`
 * gets typed inputs and must return the declared outputs. When `inputs` or `outputs` is a function of
 * the params, the names are only known at run time and `run` sees (or returns) a plain record.
 */
export interface PluginDefinition<P extends z.ZodType = z.ZodType, I extends IoMap = IoMap, O extends IoMap = IoMap> {
  /** Dotted by stage: ingest.csv, train.tfjs-mlp, util.echo. */
  name: string;
  /** Bump when results would change for the same params and inputs: it is part of the cache key. */
  version: string;
  /** One paragraph: what the step does and what it expects. */
  description: string;
  params: P;
  /** Input name -> kind (a name ending in '?' is optional), or a function of the params. */
  inputs?: I | ((params: z.infer<P>) => IoMap);
  /** Output name -> kind, or a function of the params for plugins whose outputs depend on them. */
  outputs: O | ((params: z.infer<P>) => IoMap);
  /** Whether a result may be served from the cache by default (false for side effects). */
  cacheable?: boolean;
  /**
   * Params that are code (a shell line, SQL): dotted paths into the params, `*` for any key or index
   * (`command`, `derive.*.sql`). The compiler rejects a `${...}` expression anywhere inside them, so a
   * value from params, overrides or step outputs never becomes code; `codeHint` says how to pass values.
   */
  codeParams?: string[];
  codeHint?: string;
  /**
   * Top-level params that name local files or folders. When a run's overrides set one, the value
   * must stay inside the project folder (unless the pipeline lists the override in `overridablePaths`).
   */
  pathParams?: string[];
  /**
   * The plugin executes commands or code that come from its params outside a sandbox (a shell line,
   * a script, a program to start): its steps are code. Such steps run from pipelines in the worker's
   * project only; a worker refuses them in a pipeline submitted with the run (SUBMITTED_CODE_REFUSED)
   * unless it was started to trust submitted pipelines (MLPIPE_TRUST_SUBMITTED_PIPELINES=1).
   */
  runsCode?: boolean;
  /**
   * Heartbeats are sent from the event loop. A plugin that keeps it busy for long stretches
   * (synchronous compute) says for how long at most; the step's default heartbeat timeout is then
   * three times that (at least 30 s), so a busy step is not taken for a dead worker.
   */
  heartbeat?: { blocksEventLoopMs: number };
  /**
   * Deferred datasets (lib/dataset.ts): `outputs` are the dataset outputs the plugin can pass on as
   * a recipe (a query over its inputs) instead of Parquet; the compiler lets it (`ctx.defer`) when
   * every step reading the output takes it in an input listed in its own `inputs` (a DuckDB step
   * that reads its datasets through `loadDatasets`, which computes a recipe in its session).
   */
  deferred?: { outputs?: (params: z.infer<P>) => string[]; inputs?: (params: z.infer<P>) => string[] };
  run(ctx: StepContext, params: z.infer<P>, inputs: InputsOf<I>): Promise<OutputsOf<O>>;
}

/**
 * Typed identity helper: infers the params type from the zod schema, the inputs `run` receives from
 * the declared input map, and requires `run` to return the declared outputs (a misnamed or missing
 * output is a compile error).
 */
export function definePlugin<P extends z.ZodType, const I extends IoMap = IoMap, const O extends IoMap = IoMap>(
  def: PluginDefinition<P, I, O>,
): PluginDefinition<P, I, O> {
  return def;
}

// A registry holds plugins of many param and io types; this is the erased form.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyPlugin = PluginDefinition<any, any, any>;
