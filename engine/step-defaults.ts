/**
 * Step defaults in one place: the compiler fills them in, the workflow and `runStep` read them.
 * The retry model (docs/resilience.md): an attempt lost to the infrastructure (a dead or stopped
 * worker, an unreachable service) is retried up to `maximumInfraAttempts` times at a short fixed
 * interval; an error of the step itself counts against `maximumAttempts` and backs off as the
 * step's retry policy says.
 *
 * Pure: safe in workflow code.
 */

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
 * The heartbeat timeout for a step that sets none: the default, or three times the longest stretch
 * the plugin says it blocks the event loop (heartbeats cannot be sent meanwhile).
 */
export function defaultHeartbeatMs(blocksEventLoopMs: number | undefined): number {
  return Math.max(STEP_HEARTBEAT_DEFAULT_MS, 3 * (blocksEventLoopMs ?? 0));
}

/** How often runStep heartbeats: a third of the timeout, between 200 ms and 10 s. */
export function heartbeatEveryMs(heartbeatTimeoutMs: number | undefined): number {
  return Math.max(200, Math.min(10_000, (heartbeatTimeoutMs ?? STEP_HEARTBEAT_DEFAULT_MS) / 3));
}

/** The delay before the retry that follows the n-th error of a step (n >= 1). */
export function errorRetryDelayMs(errors: number, retry: { initialIntervalMs?: number; backoffCoefficient?: number; maximumIntervalMs?: number }): number {
  const initial = retry.initialIntervalMs ?? STEP_DEFAULTS.initialIntervalMs;
  const coefficient = retry.backoffCoefficient ?? STEP_DEFAULTS.backoffCoefficient;
  const cap = retry.maximumIntervalMs ?? STEP_DEFAULTS.maximumIntervalMs;
  return Math.min(cap, initial * coefficient ** Math.max(0, errors - 1));
}
