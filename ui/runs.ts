/**
 * What the web UI shows of pipeline runs, read from Temporal and the artifact store:
 *
 * - the runs list: Temporal visibility (`WorkflowType = 'pipelineWorkflow'`), each run's pipeline and
 *   labels from its run manifest in the store;
 * - a run: the workflow's history (the compiled pipeline is the result of its first activity, each
 *   step's resolved params and inputs are its activity's input, attempts and failures are in the
 *   started and failed events), the `status` query while it runs (or the state the history closed
 *   with), the heartbeat details of its pending activities (progress, what a step waits for), and
 *   the step manifests (cache provenance).
 *
 * Histories are decoded once per length: a closed run's is kept, a running one's is fetched again
 * only when it grew. Nothing here writes to Temporal but `cancel`.
 */
import type { Client, WorkflowExecutionDescription } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import { PIPELINE_WORKFLOW, statusQueryName, type PipelineInput, type PipelineResult, type PipelineStatus } from '../engine/contracts.js';
import { runKey, stepKey, type RunManifest, type StepManifest } from '../engine/lineage.js';
import type { ArtifactStore } from '../engine/ports.js';
import type { CompiledPipeline, StepCall, StepResult, StepState, StepStatus } from '../engine/types.js';

/** A step's state as the UI colours it: the run state's, plus `retrying` (running again after a failed or lost attempt). */
export type UiStepStatus = StepStatus | 'retrying';

/** Progress a step reports in its heartbeat details (`progress`); every field optional. */
export interface UiProgress {
  done?: number;
  total?: number;
  unit?: string;
  metrics?: Record<string, number>;
  message?: string;
  etaMs?: number;
}

export interface UiFailure {
  /** The attempt that failed, when known. */
  attempt?: number;
  type?: string;
  message: string;
}

export interface UiStep {
  id: string;
  uses?: string;
  pluginVersion?: string;
  description?: string;
  needs: string[];
  when?: string | boolean;
  status: UiStepStatus;
  attempt: number;
  errors?: number;
  startedAt?: string;
  endedAt?: string;
  durationMs?: number;
  params?: Record<string, unknown>;
  inputs?: Record<string, unknown>;
  outputs?: Record<string, unknown>;
  error?: { type?: string; message: string };
  reason?: string;
  cacheKey?: string;
  /** A cache hit: the run whose outputs were reused. */
  cachedFrom?: { runId: string; stepId: string };
  failures: UiFailure[];
  progress?: UiProgress;
  waiting?: string;
  /** A checkpoint the running attempt resumed from or saved (heartbeat details). */
  checkpoint?: Record<string, unknown>;
}

export interface UiRun {
  workflowId: string;
  runId: string;
  pipeline: string;
  /** Temporal's execution status: Running, Completed, Failed, Canceled, Terminated, TimedOut, ContinuedAsNew. */
  temporalStatus: string;
  state: PipelineStatus['state'] | 'unknown';
  labels: Record<string, string>;
  overrides: string[];
  params?: Record<string, unknown>;
  startedAt: string;
  closedAt?: string;
  durationMs?: number;
  error?: string;
  order: string[];
  steps: Record<string, UiStep>;
  /** Set when the store could not be read (the run is shown from Temporal alone). */
  storeError?: string;
}

/** What the event stream sends: the part of a run that changes while it runs. */
export interface LiveRun {
  temporalStatus: string;
  state: UiRun['state'];
  error?: string;
  steps: Record<string, Pick<UiStep, 'status' | 'attempt' | 'startedAt' | 'endedAt' | 'progress' | 'waiting' | 'error'>>;
}

export interface RunRow {
  workflowId: string;
  runId: string;
  pipeline?: string;
  status: string;
  startedAt: string;
  closedAt?: string;
  durationMs?: number;
  labels: Record<string, string>;
}

/** Temporal execution statuses a runs filter may name, mapped to visibility's words (never text from a request). */
const STATUS_QUERY: Record<string, string> = {
  running: 'Running',
  completed: 'Completed',
  succeeded: 'Completed',
  failed: 'Failed',
  cancelled: 'Canceled',
  canceled: 'Canceled',
  terminated: 'Terminated',
  timedout: 'TimedOut',
};
export const RUN_STATUSES = Object.keys(STATUS_QUERY);

interface ParsedHistory {
  length: number;
  input?: PipelineInput;
  compiled?: CompiledPipeline;
  calls: Record<string, StepCall>;
  attempts: Record<string, number>;
  failures: Record<string, UiFailure[]>;
  results: Record<string, StepResult>;
  /** The state the run closed with: the result's steps, or the STEP_FAILED failure's details. */
  closed?: { state: PipelineStatus['state']; steps?: Record<string, StepState>; error?: string };
  /** Scheduled event ID -> activity (step) ID, kept so later events can be added (`parseHistory(events, into)`). */
  scheduled: Map<string, string>;
}

const fromPayload = (p: unknown): unknown => {
  try {
    return p ? defaultPayloadConverter.fromPayload(p as Parameters<typeof defaultPayloadConverter.fromPayload>[0]) : undefined;
  } catch {
    return undefined;
  }
};

interface FailureLike {
  message?: string | null;
  cause?: FailureLike | null;
  applicationFailureInfo?: { type?: string | null; details?: { payloads?: unknown[] | null } | null } | null;
}

/** The innermost failure's type and message (an activity failure wraps the step's ApplicationFailure). */
function describe(f: FailureLike | null | undefined, attempt?: number): UiFailure | undefined {
  if (!f) return undefined;
  let inner = f;
  while (inner.cause) inner = inner.cause;
  const type = inner.applicationFailureInfo?.type ?? undefined;
  return { ...(attempt ? { attempt } : {}), ...(type ? { type } : {}), message: inner.message ?? f.message ?? '(no message)' };
}

/** Decodes history events; with `into`, adds events that follow the ones it holds. */
export function parseHistory(events: readonly Record<string, unknown>[], into?: ParsedHistory): ParsedHistory {
  const h: ParsedHistory = into ?? { length: 0, calls: {}, attempts: {}, failures: {}, results: {}, scheduled: new Map() };
  h.length += events.length;
  /** Scheduled event ID -> activity (step) ID; the compile activity is '#compilePipeline'. */
  const scheduled = h.scheduled;
  const id = (v: unknown): string => String(v ?? '');
  for (const e of events) {
    const a = e as Record<string, Record<string, unknown> | undefined>;
    if (a['workflowExecutionStartedEventAttributes']) {
      const payloads = (a['workflowExecutionStartedEventAttributes']['input'] as { payloads?: unknown[] } | undefined)?.payloads;
      h.input = fromPayload(payloads?.[0]) as PipelineInput | undefined;
    } else if (a['activityTaskScheduledEventAttributes']) {
      const attrs = a['activityTaskScheduledEventAttributes'] as {
        activityId?: string;
        activityType?: { name?: string };
        input?: { payloads?: unknown[] };
      };
      const type = attrs.activityType?.name;
      const stepId = type === 'runStep' ? (attrs.activityId ?? '') : `#${type ?? ''}`;
      scheduled.set(id(e['eventId']), stepId);
      if (type === 'runStep') {
        const call = fromPayload(attrs.input?.payloads?.[0]) as StepCall | undefined;
        if (call) h.calls[stepId] = call;
      }
    } else if (a['activityTaskStartedEventAttributes']) {
      const attrs = a['activityTaskStartedEventAttributes'] as { scheduledEventId?: unknown; attempt?: number; lastFailure?: FailureLike };
      const stepId = scheduled.get(id(attrs.scheduledEventId));
      if (!stepId || stepId.startsWith('#')) continue;
      h.attempts[stepId] = attrs.attempt ?? 1;
      const last = describe(attrs.lastFailure, (attrs.attempt ?? 2) - 1);
      if (last) (h.failures[stepId] ??= []).push(last);
    } else if (a['activityTaskCompletedEventAttributes']) {
      const attrs = a['activityTaskCompletedEventAttributes'] as { scheduledEventId?: unknown; result?: { payloads?: unknown[] } };
      const stepId = scheduled.get(id(attrs.scheduledEventId));
      const result = fromPayload(attrs.result?.payloads?.[0]);
      if (stepId === '#compilePipeline') h.compiled = result as CompiledPipeline;
      else if (stepId && !stepId.startsWith('#')) h.results[stepId] = result as StepResult;
    } else if (a['activityTaskFailedEventAttributes']) {
      const attrs = a['activityTaskFailedEventAttributes'] as { scheduledEventId?: unknown; failure?: FailureLike };
      const stepId = scheduled.get(id(attrs.scheduledEventId));
      const f = describe(attrs.failure, stepId ? h.attempts[stepId] : undefined);
      if (stepId && f && !stepId.startsWith('#')) (h.failures[stepId] ??= []).push(f);
    } else if (a['markerRecordedEventAttributes']) {
      // A local activity's result: the compile of runs started since it runs locally (`local-compile`).
      const attrs = a['markerRecordedEventAttributes'] as { markerName?: string; details?: Record<string, { payloads?: unknown[] }> };
      if (attrs.markerName !== 'core_local_activity') continue;
      const data = fromPayload(attrs.details?.['data']?.payloads?.[0]) as { activityType?: string; activity_type?: string } | undefined;
      const result = attrs.details?.['result']?.payloads?.[0];
      if ((data?.activityType ?? data?.activity_type) === 'compilePipeline' && result) h.compiled = fromPayload(result) as CompiledPipeline;
    } else if (a['workflowExecutionCompletedEventAttributes']) {
      const attrs = a['workflowExecutionCompletedEventAttributes'] as { result?: { payloads?: unknown[] } };
      const result = fromPayload(attrs.result?.payloads?.[0]) as PipelineResult | undefined;
      h.closed = { state: 'succeeded', ...(result?.steps ? { steps: result.steps } : {}) };
    } else if (a['workflowExecutionFailedEventAttributes']) {
      const failure = (a['workflowExecutionFailedEventAttributes'] as { failure?: FailureLike }).failure;
      const details = fromPayload(failure?.applicationFailureInfo?.details?.payloads?.[0]) as PipelineStatus | undefined;
      h.closed = { state: 'failed', ...(details?.steps ? { steps: details.steps } : {}), error: failure?.message ?? undefined };
    } else if (a['workflowExecutionCanceledEventAttributes'] || a['workflowExecutionTerminatedEventAttributes']) {
      h.closed = { state: 'cancelled' };
    }
  }
  return h;
}

function progressOf(details: unknown): UiProgress | undefined {
  const p = (details as { progress?: unknown } | undefined)?.progress;
  if (typeof p !== 'object' || p === null) return undefined;
  const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
  const q = p as Record<string, unknown>;
  const metrics: Record<string, number> = {};
  if (typeof q['metrics'] === 'object' && q['metrics'] !== null)
    for (const [k, v] of Object.entries(q['metrics'] as Record<string, unknown>).slice(0, 20))
      if (num(v) !== undefined) metrics[k.slice(0, 100)] = v as number;
  const out: UiProgress = {};
  for (const k of ['done', 'total', 'etaMs'] as const) if (num(q[k]) !== undefined) out[k] = num(q[k]);
  if (typeof q['unit'] === 'string') out.unit = q['unit'].slice(0, 40);
  if (typeof q['message'] === 'string') out.message = q['message'].slice(0, 500);
  if (Object.keys(metrics).length) out.metrics = metrics;
  return Object.keys(out).length ? out : undefined;
}

interface Pending {
  attempt: number;
  /** The server has handed the attempt to a worker (PENDING_ACTIVITY_STATE_STARTED). */
  started: boolean;
  progress?: UiProgress;
  waiting?: string;
  checkpoint?: Record<string, unknown>;
  lastFailure?: UiFailure;
}

function pendingOf(d: WorkflowExecutionDescription): Map<string, Pending> {
  const found = new Map<string, Pending>();
  for (const a of d.raw.pendingActivities ?? []) {
    if (!a.activityId) continue;
    const details = fromPayload(a.heartbeatDetails?.payloads?.[0]) as Record<string, unknown> | undefined;
    const waiting = typeof details?.['waiting'] === 'string' ? details['waiting'] : undefined;
    const progress = progressOf(details);
    const ckpt = details?.['checkpoint'];
    const lastFailure = describe(a.lastFailure as FailureLike | null | undefined, (a.attempt ?? 2) - 1);
    found.set(a.activityId, {
      attempt: a.attempt ?? 1,
      started: a.state === 2,
      ...(progress ? { progress } : {}),
      ...(waiting ? { waiting } : {}),
      ...(ckpt && typeof ckpt === 'object' ? { checkpoint: { meta: (ckpt as { meta?: unknown }).meta } } : {}),
      ...(lastFailure ? { lastFailure } : {}),
    });
  }
  return found;
}

const ms = (a?: string, b?: string): number | undefined => (a && b ? Date.parse(b) - Date.parse(a) : undefined);

export interface RunSourceOptions {
  /** How long a query of a running workflow may take before the UI answers without it. */
  queryTimeoutMs?: number;
}

/** Reads runs for the UI. One per server; keeps what never changes (closed histories, step manifests, run manifests). */
export class RunSource {
  private readonly histories = new Map<string, ParsedHistory>();
  private readonly manifests = new Map<string, RunManifest | null>();
  private readonly stepManifests = new Map<string, StepManifest>();
  /** The last answer of each running run's status query (by run ID). */
  private readonly statuses = new Map<string, PipelineStatus>();

  constructor(
    readonly client: Client,
    readonly store: ArtifactStore,
    private readonly options: RunSourceOptions = {},
  ) {}

  async listRuns(filter: { pipeline?: string; status?: string; label?: string; limit?: number } = {}): Promise<RunRow[]> {
    let query = `WorkflowType = '${PIPELINE_WORKFLOW}'`;
    if (filter.status) {
      const word = STATUS_QUERY[filter.status.toLowerCase()];
      if (!word) throw new UiRequestError(400, `Unknown status '${filter.status.slice(0, 40)}': one of ${RUN_STATUSES.join(', ')}.`);
      query += ` AND ExecutionStatus = '${word}'`;
    }
    const limit = Math.min(filter.limit ?? 100, 500);
    const label = filter.label ? splitLabel(filter.label) : undefined;
    const rows: RunRow[] = [];
    let scanned = 0;
    for await (const w of this.client.workflow.list({ query, pageSize: 100 })) {
      if (++scanned > 2000) break;
      const m = await this.runManifest(w.workflowId, w.runId);
      const labels = m?.labels ?? {};
      const pipeline = m?.pipeline;
      if (filter.pipeline && pipeline !== filter.pipeline) continue;
      if (label && (label.value === undefined ? !(label.key in labels) : labels[label.key] !== label.value)) continue;
      const startedAt = w.startTime.toISOString();
      const closedAt = w.closeTime?.toISOString();
      rows.push({
        workflowId: w.workflowId,
        runId: w.runId,
        ...(pipeline ? { pipeline } : {}),
        status: w.status.name,
        startedAt,
        ...(closedAt ? { closedAt, durationMs: ms(startedAt, closedAt) } : {}),
        labels,
      });
      if (rows.length >= limit) break;
    }
    return rows;
  }

  private async runManifest(workflowId: string, runId: string): Promise<RunManifest | undefined> {
    const key = runKey(workflowId, runId);
    if (this.manifests.has(key)) return this.manifests.get(key) ?? undefined;
    const m = await this.store.getRecord<RunManifest>(key).catch(() => undefined);
    // A missing manifest may still come (the run is compiling); only a found one is kept.
    if (m) this.manifests.set(key, m);
    return m;
  }

  private async history(handle: ReturnType<Client['workflow']['getHandle']>, runId: string, length: number): Promise<ParsedHistory> {
    const known = this.histories.get(runId);
    if (known && known.length >= length) return known;
    const history = await handle.fetchHistory();
    const parsed = parseHistory((history.events ?? []) as unknown as Record<string, unknown>[]);
    this.histories.set(runId, parsed);
    if (this.histories.size > 500) this.histories.delete(this.histories.keys().next().value!);
    return parsed;
  }

  /**
   * Follows a run's history as Temporal appends to it (a long poll: `waitNewEvent`), keeping the
   * decoded history current and calling `onChange` after each new batch of events, until the run
   * closes or `signal` aborts. A step's activity completing is in the history at once, before the
   * workflow (and so its status query) has seen it: this is the UI's change signal.
   */
  async followHistory(workflowId: string, runId: string, signal: AbortSignal, onChange: () => void): Promise<void> {
    const parsed = parseHistory([]);
    let token: Uint8Array | undefined;
    while (!signal.aborted) {
      const r = await this.client.connection.withAbortSignal(signal, () =>
        this.client.workflowService.getWorkflowExecutionHistory({
          namespace: this.client.options.namespace,
          execution: { workflowId, runId },
          waitNewEvent: true,
          maximumPageSize: 1000,
          ...(token ? { nextPageToken: token } : {}),
        }),
      );
      const events = (r.history?.events ?? []) as unknown as Record<string, unknown>[];
      if (events.length) {
        parseHistory(events, parsed);
        if ((this.histories.get(runId)?.length ?? 0) <= parsed.length) this.histories.set(runId, parsed);
        onChange();
      }
      if (!r.nextPageToken?.length) return;
      token = r.nextPageToken;
    }
  }

  /** Asks a running run's status query and keeps the answer for `live(..., { query: false })`. */
  async refreshStatus(workflowId: string, runId: string): Promise<void> {
    await this.status(this.client.workflow.getHandle(workflowId, runId), runId);
  }

  private async status(handle: ReturnType<Client['workflow']['getHandle']>, runId: string): Promise<PipelineStatus | undefined> {
    const s = await this.query(handle);
    if (s) {
      this.statuses.set(runId, s);
      if (this.statuses.size > 500) this.statuses.delete(this.statuses.keys().next().value!);
    }
    return s;
  }

  /** The live state of a running run (the `status` query), undefined when the query does not answer in time. */
  private async query(handle: ReturnType<Client['workflow']['getHandle']>): Promise<PipelineStatus | undefined> {
    const timeout = this.options.queryTimeoutMs ?? 5000;
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        handle.query<PipelineStatus>(statusQueryName),
        new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), timeout))),
      ]);
    } catch {
      return undefined;
    } finally {
      clearTimeout(timer);
    }
  }

  /** The live part of a run: what the event stream sends. */
  async live(workflowId: string, runId?: string, options: { query?: boolean } = {}): Promise<LiveRun> {
    const run = await this.run(workflowId, runId, { manifests: false, ...options });
    const steps: LiveRun['steps'] = {};
    for (const [id, s] of Object.entries(run.steps)) {
      steps[id] = {
        status: s.status,
        attempt: s.attempt,
        ...(s.startedAt ? { startedAt: s.startedAt } : {}),
        ...(s.endedAt ? { endedAt: s.endedAt } : {}),
        ...(s.progress ? { progress: s.progress } : {}),
        ...(s.waiting ? { waiting: s.waiting } : {}),
        ...(s.error ? { error: s.error } : {}),
      };
    }
    return { temporalStatus: run.temporalStatus, state: run.state, ...(run.error ? { error: run.error } : {}), steps };
  }

  /** `query: false`: the status query's last answer (`refreshStatus`) stands in for a new one; the history and pending activities are read now. */
  async run(workflowId: string, runId?: string, options: { manifests?: boolean; query?: boolean } = {}): Promise<UiRun> {
    const handle = this.client.workflow.getHandle(workflowId, runId);
    const d = await handle.describe();
    const running = d.status.name === 'RUNNING';
    // The live view of a running run needs no history (the query has the states): the one known is used as it is.
    const liveOnly = options.manifests === false && running;
    const known = this.histories.get(d.runId);
    const [h, live] = await Promise.all([
      liveOnly && known ? known : this.history(handle, d.runId, d.historyLength),
      running
        ? options.query === false
          ? this.statuses.get(d.runId)
          : // A query that does not answer (the workflow's worker busy or away): its last answer, if any.
            this.status(handle, d.runId).then((st) => st ?? this.statuses.get(d.runId))
        : undefined,
    ]);
    const compiled = h.compiled;
    const stateSteps: Record<string, StepState> = live?.steps ?? h.closed?.steps ?? {};
    const order = compiled?.order ?? live?.order ?? Object.keys(stateSteps);
    const pending = running ? pendingOf(d) : new Map<string, Pending>();
    const steps: Record<string, UiStep> = {};
    for (const id of order) {
      const spec = compiled?.steps[id];
      const state = stateSteps[id];
      const call = h.calls[id];
      const result = h.results[id];
      const p = pending.get(id);
      // A step whose activity has completed in the history is done, even before the workflow (and so its status query) has seen it.
      const stale = result && (!state || state.status === 'running' || state.status === 'pending');
      let status: UiStepStatus =
        (stale ? undefined : state?.status) ??
        (result ? (result.cached ? 'cached' : 'succeeded') : h.failures[id] && !running ? 'failed' : 'pending');
      if (!state && !result && !h.failures[id] && h.closed) status = call ? 'cancelled' : 'pending';
      // An activity the server has started for it: running, whatever an older state says.
      if (running && p?.started && status === 'pending') status = 'running';
      const attempt = Math.max(state?.attempt ?? 0, p?.attempt ?? 0, h.attempts[id] ?? 0);
      if (status === 'running' && attempt > 1) status = 'retrying';
      const failures = [...(h.failures[id] ?? [])];
      if (p?.lastFailure && !failures.some((f) => f.message === p.lastFailure!.message && f.attempt === p.lastFailure!.attempt))
        failures.push(p.lastFailure);
      const startedAt = state?.startedAt ?? result?.startedAt;
      const endedAt = state?.endedAt ?? result?.endedAt;
      const outputs = state?.outputs ?? result?.outputs;
      steps[id] = {
        id,
        ...(spec ? { uses: spec.uses, pluginVersion: spec.pluginVersion, needs: spec.needs } : { uses: call?.uses, needs: [] }),
        ...(spec?.description ? { description: spec.description } : {}),
        ...(spec?.when !== undefined ? { when: spec.when } : {}),
        status,
        attempt,
        ...(state?.errors ? { errors: state.errors } : {}),
        ...(startedAt ? { startedAt } : {}),
        ...(endedAt ? { endedAt } : {}),
        ...(startedAt && endedAt ? { durationMs: ms(startedAt, endedAt) } : {}),
        params: call?.params ?? spec?.with,
        ...(call?.inputs ? { inputs: call.inputs } : spec ? { inputs: spec.inputs } : {}),
        ...(outputs ? { outputs } : {}),
        ...(state?.error ? { error: state.error } : {}),
        ...(state?.reason ? { reason: state.reason } : {}),
        ...((state?.cacheKey ?? result?.cacheKey) ? { cacheKey: state?.cacheKey ?? result?.cacheKey } : {}),
        failures,
        ...(p?.progress ? { progress: p.progress } : {}),
        ...(p?.waiting ? { waiting: p.waiting } : {}),
        ...(p?.checkpoint ? { checkpoint: p.checkpoint } : {}),
      } as UiStep;
    }
    const startedAt = d.startTime.toISOString();
    const closedAt = d.closeTime?.toISOString();
    const run: UiRun = {
      workflowId,
      runId: d.runId,
      pipeline: compiled?.name ?? live?.pipeline ?? h.input?.pipeline ?? '?',
      temporalStatus: d.status.name,
      state: live?.state ?? h.closed?.state ?? (running ? 'running' : 'unknown'),
      labels: h.input?.labels ?? {},
      overrides: h.input?.overrides ?? [],
      ...(compiled ? { params: compiled.params } : {}),
      startedAt,
      ...(closedAt ? { closedAt } : {}),
      durationMs: ms(startedAt, closedAt ?? new Date().toISOString()),
      ...((live?.error ?? h.closed?.error) ? { error: live?.error ?? h.closed?.error } : {}),
      order,
      steps,
    };
    if (options.manifests !== false) await this.addManifests(run);
    return run;
  }

  /** Cache provenance from the step manifests (written by runStep when a step ends). */
  private async addManifests(run: UiRun): Promise<void> {
    const wanted = run.order.filter((id) => ['succeeded', 'cached', 'failed'].includes(run.steps[id]!.status));
    try {
      await Promise.all(
        wanted.map(async (id) => {
          const key = stepKey(run.workflowId, run.runId, id);
          let m = this.stepManifests.get(key);
          if (!m) {
            m = await this.store.getRecord<StepManifest>(key);
            if (m) this.stepManifests.set(key, m);
          }
          if (m?.cachedFrom) run.steps[id]!.cachedFrom = m.cachedFrom;
        }),
      );
    } catch (e) {
      run.storeError = `The artifact store at ${this.store.location} could not be read: ${(e as Error).message}`;
    }
  }

  async cancel(workflowId: string, runId?: string): Promise<void> {
    await this.client.workflow.getHandle(workflowId, runId).cancel();
  }
}

function splitLabel(text: string): { key: string; value?: string } {
  const i = text.indexOf('=');
  return i < 0 ? { key: text } : { key: text.slice(0, i), value: text.slice(i + 1) };
}

/** A request the API refuses: its HTTP status and a message for the page. */
export class UiRequestError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}
