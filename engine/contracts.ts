/**
 * The contracts between workflows, activities and clients, each defined once: workflow, signal and
 * query names and IDs, and what the four workflows take, plan, signal, answer and return. Workflows,
 * activities, the CLI and tests all import them from here.
 *
 * Workflow code imports this module, so it stays pure: types, and engine modules without Node
 * built-ins or zod. A workflow evaluates the modules it imports anew at each run's start, and zod
 * with its schemas cost several milliseconds there: the schemas are in engine/pipeline-input.ts and
 * engine/progress.ts. Everything here crosses Temporal as JSON and is kept in workflow histories:
 * a renamed field must still be read under its old name (see `mlflowRunIdOf`).
 */
import type { HpoSpec, Trial } from './hpo.js';
import type { TrackedRun } from './ports.js';
import type { RunStatus, StepRecord, TrackingConfig } from './tracking.js';
import type { ArtifactRef, PipelineMonitor, StepState } from './types.js';

// ---- Names and IDs ----

export const DEFAULT_TASK_QUEUE = 'mlpipe';
export const PIPELINE_WORKFLOW = 'pipelineWorkflow';
export const statusQueryName = 'status';
export const stepAttemptSignalName = 'stepAttempt';
export const TRACKING_WORKFLOW = 'trackingWorkflow';
/**
 * The task queue of tracking deliveries (the tracking workflow's activities) for workers polling
 * `taskQueue`: their own queue and activity slots, so delivering to MLflow never takes a slot a
 * pipeline step needs, and a backlog of deliveries never holds up steps.
 */
export function trackingTaskQueue(taskQueue: string): string {
  return `${taskQueue}-tracking`;
}
export const trackEventsSignalName = 'trackEvents';
export const trackingStatusQueryName = 'trackingStatus';
/** The tracking workflow of a pipeline run: one per run, so a second start is refused. */
export function trackingWorkflowId(pipelineWorkflowId: string): string {
  return `${pipelineWorkflowId}-tracking`;
}
export const MONITOR_WORKFLOW = 'monitorWorkflow';
/** The retraining run a drift monitor starts: one fixed ID per pipeline, so at most one runs at a time. */
export function retrainWorkflowId(pipeline: string): string {
  return `retrain-${pipeline}`;
}
export const HPO_WORKFLOW = 'hpoWorkflow';
export const hpoStatusQueryName = 'hpoStatus';
/** The search's trials so far (the web UI's Search page): `HpoTrials`. */
export const hpoTrialsQueryName = 'hpoTrials';

/** Step IDs: letters, digits, _ and -, starting with a letter or _ (in the spec and in the workflow input). */
export const STEP_ID = /^[A-Za-z_][A-Za-z0-9_-]*$/;

/**
 * MLflow run IDs are named `mlflowRunId`, Temporal run IDs `runId`. What was recorded before that
 * rule (workflow histories, continue-as-new state, tracking results) names an MLflow run `runId`:
 * this reads either.
 */
export function mlflowRunIdOf(run: { mlflowRunId?: string } | { runId?: string } | undefined): string | undefined {
  const r = run as { mlflowRunId?: unknown; runId?: unknown } | undefined;
  const id = r?.mlflowRunId ?? r?.runId;
  return typeof id === 'string' ? id : undefined;
}

// ---- pipelineWorkflow ----

// The input's zod schema is in engine/pipeline-input.ts: workflow code imports this module, and
// a workflow evaluates its modules anew for every run, so zod stays out of it.
export type { PipelineInput, SubmittedPipeline } from './pipeline-input.js';

/** The `status` query's answer: the live run state. */
export interface PipelineStatus {
  pipeline: string;
  state: 'compiling' | 'running' | 'succeeded' | 'failed' | 'cancelled';
  order: string[];
  steps: Record<string, StepState>;
  error?: string;
}

export interface PipelineResult {
  pipeline: string;
  state: 'succeeded';
  steps: Record<string, StepState>;
  outputs: Record<string, Record<string, unknown>>;
}

/** The `stepAttempt` signal, from runStep at the start of a retry: the Temporal attempt, and how many of the earlier ones were step errors. */
export interface StepAttempt {
  stepId: string;
  attempt: number;
  errors?: number;
}

// ---- trackingWorkflow ----

/** Events the pipeline workflow sends to its tracking workflow (input, then `trackEvents` signals), in order (`seq` from 0). */
export type TrackingEvent =
  | {
      seq: number;
      type: 'run-started';
      pipeline: string;
      file: string;
      workflowId: string;
      runId: string;
      startedAt: string;
      params: Record<string, unknown>;
      config: Record<string, unknown>;
      labels: Record<string, string>;
    }
  | { seq: number; type: 'step-ended'; step: StepRecord }
  | {
      seq: number;
      type: 'run-ended';
      status: RunStatus;
      endedAt: string;
      error?: string;
      /** The output that tracking.registerModel names, when the run succeeded. */
      model?: ArtifactRef;
    };

export interface TrackingInput {
  /** The pipeline run's identity: `<workflowId>/<runId>`. */
  key: string;
  config: TrackingConfig;
  events: TrackingEvent[];
}

/** The MLflow runs a pipeline run's tracking made so far: the tracking workflow's result. */
export interface KnownRuns {
  experimentId?: string;
  parent?: TrackedRun;
  steps: Record<string, TrackedRun>;
  /** Model version registered for this run, once done. */
  modelVersion?: string;
  /** Where the worker tracked (the backend's printable location: a server URL or a file store). */
  location?: string;
}

/** Known runs as recorded, also from before MLflow run IDs were `mlflowRunId` (see `mlflowRunIdOf`). */
export function knownRunsOf(known: KnownRuns): KnownRuns {
  const run = (r: TrackedRun): TrackedRun => ({
    mlflowRunId: mlflowRunIdOf(r) ?? '',
    experimentId: r.experimentId,
    artifactUri: r.artifactUri,
  });
  return {
    ...known,
    ...(known.parent ? { parent: run(known.parent) } : {}),
    steps: Object.fromEntries(Object.entries(known.steps ?? {}).map(([k, r]) => [k, run(r)])),
  };
}

/** The `trackingStatus` query's answer. */
export interface TrackingStatus {
  delivered: number;
  inFlight: number;
  pending: number;
  known: KnownRuns;
}

// ---- monitorWorkflow ----

export interface MonitorInput {
  pipeline: string;
  overrides?: string[];
  /** Heartbeat timeout of the data activities (default 2 minutes): how soon a lost worker is noticed. */
  heartbeatTimeoutMs?: number;
}

/** What `prepareMonitor` found: the reference and current data of one drift check. */
export interface MonitorPlan {
  pipeline: string;
  overrides: string[];
  monitor: PipelineMonitor;
  reference: ArtifactRef;
  /** Where the reference came from: the run (and the model version, when found through one). */
  referenceFrom: { workflowId: string; runId: string; step: string; model?: string; version?: string };
  current: ArtifactRef;
  /** When the current data is a model's prediction log: which, and what it held. */
  currentFrom?: { predictions: string; rows: number; chunks: number; versions: string[]; since: string };
}

export interface MonitorOutcome {
  datasetDrift: boolean;
  share: number;
  driftedColumns: string[];
  numberOfColumns: number;
  report: ArtifactRef;
  html: ArtifactRef;
  recordKey: string;
}

export interface MonitorResult {
  pipeline: string;
  referenceFrom: MonitorPlan['referenceFrom'];
  /** Set when the current data was a model's prediction log. */
  currentFrom?: MonitorPlan['currentFrom'];
  drift: MonitorOutcome;
  /** 'started': this run started the retrain; 'already-running': another one was running; 'off' or 'no-drift'. */
  retrain: 'started' | 'already-running' | 'off' | 'no-drift';
  retrainWorkflowId?: string;
  alert?: { sent: boolean; status?: number; reason?: string };
}

// ---- hpoWorkflow ----

export interface HpoInput {
  pipeline: string;
  /** Overrides for every trial (before the trial's own). */
  overrides?: string[];
  /** Override the spec's trials / parallel. */
  trials?: number;
  parallel?: number;
  /** Override the spec's backend. */
  backend?: 'temporal' | 'vertex';
  /** false: trials reuse no cached step (benchmarks comparing the same trials). */
  cache?: boolean;
  /** Continue as new after this many trials (default: when Temporal suggests it, about 4,096 events). */
  trialsPerGeneration?: number;
}

/** What `planHpo` made of the input: the search, and every trial's overrides (each one compiled). */
export interface HpoPlan {
  pipeline: string;
  overrides: string[];
  spec: HpoSpec;
  trials: Trial[];
}

/** The search's own MLflow run. */
export interface HpoTracking {
  mlflowRunId: string;
  experimentId: string;
}

/** The search's run as recorded, also from before MLflow run IDs were `mlflowRunId`. */
export function hpoTrackingOf(t: HpoTracking | { runId: string; experimentId: string } | undefined): HpoTracking | undefined {
  const id = mlflowRunIdOf(t);
  return t && id ? { mlflowRunId: id, experimentId: t.experimentId } : undefined;
}

export interface TrialResult {
  index: number;
  /** The trial's Temporal run ID (its MLflow run's key is `<workflowId>/<runId>`). */
  runId?: string;
  overrides: string[];
  status: 'succeeded' | 'failed';
  value?: number;
  error?: string;
  workflowId: string;
  /** Set when the median stopping rule stopped the trial's training (at this epoch). */
  stoppedAtEpoch?: number;
}

/** Carried over by continue-as-new. */
export interface HpoState {
  plan: HpoPlan;
  tracking?: HpoTracking;
  results: TrialResult[];
  /** Continue-as-new generations so far. */
  generation: number;
  /** The median rule's input: best-loss curves of the most recent finished trials. */
  curves?: number[][];
}

export interface HpoWorkflowInput extends HpoInput {
  /** Set by continue-as-new. */
  state?: HpoState;
}

/** The `hpoStatus` query's answer. */
export interface HpoStatus {
  trials: number;
  finished: number;
  failed: number;
  running: number[];
  best?: TrialResult;
  generation: number;
}

/** The `hpoTrials` query's answer: the search and every trial finished or running so far. */
export interface HpoTrials {
  pipeline: string;
  metric: HpoPlan['spec']['metric'];
  trials: number;
  parallel: number;
  /** The median stopping rule, when the search has one. */
  earlyStopping?: { step: string; afterEpochs: number; minTrials: number };
  results: TrialResult[];
  running: { index: number; overrides: string[]; workflowId: string }[];
  best?: TrialResult;
  generation: number;
}

export interface HpoResult {
  pipeline: string;
  metric: HpoPlan['spec']['metric'];
  best: TrialResult;
  trials: number;
  failed: number;
  generations: number;
  results: TrialResult[];
  /** `metrics`: the metric step's; `evaluations`: every step's `metrics` output (e.g. the test split's). */
  final?: { workflowId: string; metrics?: Record<string, unknown>; evaluations?: Record<string, Record<string, unknown>> };
}

/**
 * What a step reports with `ctx.progress(...)` (plugins/sdk.ts): how far it is (`done` of `total`
 * `unit`s) and the latest values of its metrics. All optional; a note (`message`) alone is fine too.
 */
export interface ProgressReport {
  done?: number;
  total?: number;
  /** What `done` counts: epoch, batch, row, trial... (default: step). */
  unit?: string;
  /** Latest values, e.g. `{ loss: 0.183, val_loss: 0.192 }`: display only (tracking has `logMetrics`). */
  metrics?: Record<string, number>;
  /** One line of text, e.g. `uploading model`. */
  message?: string;
}

/** The progress as it travels in the step's heartbeat details (`progress`): the report plus the engine's timing. */
export interface StepProgress extends ProgressReport {
  /** When the step reported it (epoch ms, the worker's clock). */
  at: number;
  /** Units per second in this attempt, once two reports with different `done` were seen. */
  rate?: number;
  /** Estimated milliseconds until `done` reaches `total`, from `rate`. */
  etaMs?: number;
}

/**
 * The heartbeat details of a running step (`runStep`), as `describe()` of the workflow shows them
 * for its pending activities (the activity ID is the step ID). Readers (the CLI, the web UI) must
 * accept details with only some of these fields, or with others.
 */
export interface StepHeartbeatDetails {
  /** The plugin's latest `ctx.progress` report. */
  progress?: StepProgress;
  /** The latest system metrics sample (`cpu_utilization_percentage`, `system_memory_usage_megabytes`, ...), when the step samples them. */
  system?: Record<string, number>;
  /** What the step waits for: `waiting for MLflow at ... (unreachable for 12s): ...`. */
  waiting?: string;
  waitingSince?: number;
  /** Errors the step threw so far (lost attempts not counted). */
  stepErrors?: number;
  /** The newest checkpoint. */
  checkpoint?: { key: string; ref: ArtifactRef; meta: Record<string, unknown>; savedAt: string };
}

/**
 * The search attributes of a pipeline run (Temporal visibility), with their types: the pipeline's
 * name, its labels as `key=value` keywords, and the mlpipe version that ran it. `mlpipe dev` and the
 * test servers register them (`--search-attribute`); elsewhere, `searchAttributeCommand` says how.
 * `temporal workflow list --query 'MlpipePipeline="california-housing"'` then finds a pipeline's runs.
 */
export const SEARCH_ATTRIBUTES = { MlpipePipeline: 'Keyword', MlpipeLabels: 'KeywordList', MlpipeVersion: 'Keyword' } as const;
export type SearchAttributeName = keyof typeof SEARCH_ATTRIBUTES;

/** The `temporal operator search-attribute create` command that registers `missing` in `namespace`. */
export function searchAttributeCommand(namespace: string, missing: readonly SearchAttributeName[]): string {
  return `temporal operator search-attribute create --namespace ${namespace} ${missing
    .map((n) => `--name ${n} --type ${SEARCH_ATTRIBUTES[n]}`)
    .join(' ')}`;
}

/** A run's labels as the keywords of MlpipeLabels: `key=value`, sorted. */
export function labelKeywords(labels: Record<string, string> | undefined): string[] {
  return Object.entries(labels ?? {})
    .map(([k, v]) => `${k}=${v}`)
    .sort();
}

/** The static summary of a pipeline run (Temporal UI, `temporal workflow describe`): `california-housing · team=ml purpose=demo`. */
export function runSummary(pipeline: string, labels?: Record<string, string>): string {
  const l = labelKeywords(labels);
  return `${pipeline}${l.length ? ` · ${l.join(' ')}` : ''}`.slice(0, 400);
}

/** The summary of a step's activity: `train · train.tfjs-mlp`. */
export function stepSummary(stepId: string, uses: string): string {
  return `${stepId} · ${uses}`;
}

/** The static summary of a run's tracking workflow. */
export function trackingSummary(pipelineWorkflowId: string): string {
  return `MLflow tracking of ${pipelineWorkflowId}`;
}
