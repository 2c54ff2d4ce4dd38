/**
 * Retry and timeout defaults in one place: the steps' (the compiler fills them in, the workflow and
 * `runStep` read them) and those of the engine's own activities (compile, plan, tracking, monitor),
 * which the workflows schedule with them.
 *
 * The steps' retry model (docs/resilience.md): an attempt lost to the infrastructure (a dead or
 * stopped worker, an unreachable service) is retried up to `maximumInfraAttempts` times at a short
 * fixed interval; an error of the step itself counts against `maximumAttempts` and backs off as the
 * step's retry policy says.
 *
 * Pure: safe in workflow code.
 */

const MINUTE = 60_000;

/** Heartbeat timeout of a step that sets none: a dead worker is noticed within this time. */
export const STEP_HEARTBEAT_DEFAULT_MS = 30_000;

export const STEP_DEFAULTS = {
  timeoutMs: 60 * 60 * 1000,
  heartbeatMs: STEP_HEARTBEAT_DEFAULT_MS,
  /** Errors thrown by the step, the first attempt included. */
  maximumAttempts: 3,
  /** Attempts lost to the infrastructure that are retried before the step fails. */
  maximumInfraAttempts: 1000,
  /** How long a step waits for an unreachable service (MLflow, GCS) before it fails. */
  serviceWaitMs: 6 * 60 * 60 * 1000,
  initialIntervalMs: 1000,
  backoffCoefficient: 2,
  maximumIntervalMs: 60_000,
  /** Temporal's retry interval after a lost attempt: fixed, so a resume never waits on a long backoff. */
  infraRetryIntervalMs: 1000,
} as const;

/**
 * Timeouts and retries of the engine's own activities. Durations in milliseconds; an absent
 * `maximumAttempts` means no limit.
 */
export const ACTIVITY_DEFAULTS = {
  /** compilePipeline: reads and checks the files; a bad spec or input fails at once (non-retryable). */
  compile: { startToCloseTimeoutMs: 2 * MINUTE, maximumAttempts: 3 },
  /** planHpo: compiles the pipeline once per trial. */
  planHpo: { startToCloseTimeoutMs: 10 * MINUTE, maximumAttempts: 3 },
  /**
   * runVertexTuning: waits for a whole tuning job. It heartbeats once per poll, so its heartbeat
   * timeout is three polls, at least `minHeartbeatMs`; `pollMs` is the spec's default poll interval.
   */
  vertexTuning: { startToCloseTimeoutMs: 7 * 24 * 60 * MINUTE, maximumAttempts: 5, minHeartbeatMs: 10_000, pollMs: 30_000 },
  /** The search's MLflow run (start, finish, Vertex trials): bounded, then the search goes on untracked. */
  hpoTracking: { startToCloseTimeoutMs: MINUTE, maximumAttempts: 8, initialIntervalMs: 1000, maximumIntervalMs: 15_000 },
  /** deliverTracking: no attempt limit (an MLflow outage only delays delivery); heartbeats before each event and write. */
  deliverTracking: {
    startToCloseTimeoutMs: 5 * MINUTE,
    heartbeatTimeoutMs: MINUTE,
    initialIntervalMs: 1000,
    backoffCoefficient: 2,
    maximumIntervalMs: 15_000,
  },
  /** prepareMonitor, computeMonitorDrift: they heartbeat while they read and compute; the monitor input may set another heartbeat timeout. */
  monitorData: { startToCloseTimeoutMs: 30 * MINUTE, heartbeatTimeoutMs: 2 * MINUTE, maximumAttempts: 3 },
  /** postAlert: one webhook call. */
  postAlert: { startToCloseTimeoutMs: MINUTE, maximumAttempts: 5 },
} as const;

/**
 * The heartbeat timeout for a step that sets none: the default, or three times the longest stretch
 * the plugin says it blocks the event loop (heartbeats cannot be sent meanwhile).
 */
export function defaultHeartbeatMs(blocksEventLoopMs: number | undefined): number {
  return Math.max(STEP_HEARTBEAT_DEFAULT_MS, 3 * (blocksEventLoopMs ?? 0));
}

/** How often an activity heartbeats: a third of its heartbeat timeout, between 200 ms and 10 s. */
export function heartbeatEveryMs(heartbeatTimeoutMs: number | undefined, fallbackMs: number = STEP_HEARTBEAT_DEFAULT_MS): number {
  return Math.max(200, Math.min(10_000, (heartbeatTimeoutMs ?? fallbackMs) / 3));
}

/** The delay before the retry that follows the n-th error of a step (n >= 1). */
export function errorRetryDelayMs(
  errors: number,
  retry: { initialIntervalMs?: number; backoffCoefficient?: number; maximumIntervalMs?: number },
): number {
  const initial = retry.initialIntervalMs ?? STEP_DEFAULTS.initialIntervalMs;
  const coefficient = retry.backoffCoefficient ?? STEP_DEFAULTS.backoffCoefficient;
  const cap = retry.maximumIntervalMs ?? STEP_DEFAULTS.maximumIntervalMs;
  return Math.min(cap, initial * coefficient ** Math.max(0, errors - 1));
}
