/**
 * One attempt of a step, as runStep sees it: the activity's context, a heartbeat from the first
 * moment to the last, and the step's error count. The count is kept in the store
 * (`attempts/<workflow>/<run>/<step>`) and copied into the heartbeat details, so it survives any
 * attempt: Temporal counts lost attempts too, runStep counts only the step's errors.
 */
import { Context, type Info } from '@temporalio/activity';
import { keySegment } from '../engine/lineage.js';
import { untilAvailable, waitingStore } from '../engine/service-wait.js';
import { heartbeatEveryMs, STEP_DEFAULTS } from '../engine/step-defaults.js';
import type { ArtifactStore, Logger, RemoteService } from '../engine/ports.js';
import { scrubberFor } from '../engine/secrets.js';
import type { StepCall } from '../engine/types.js';
import { stepAttemptSignalName } from '../engine/contracts.js';

/** The step's error count as stored. */
export interface AttemptsRecord {
  errors: number;
  lastError?: string;
  /** While the step waits for a service: since when it has been unreachable (epoch ms). */
  waitingSince?: number;
  updatedAt: string;
}

/** What runStep keeps in the heartbeat details besides the plugin's own (a copy of the record). */
interface EngineDetails {
  stepErrors?: number;
  waitingSince?: number;
  waiting?: string;
}

export interface Attempt {
  actx: Context;
  info: Info;
  execution: { workflowId: string; runId: string };
  startedAt: string;
  logger: Logger;
  /** The heartbeat details: the engine's copy of the record, and what the plugin adds. */
  details: Record<string, unknown>;
  record: AttemptsRecord;
  /** Heartbeats the details, with `d` merged in. */
  heartbeat: (d?: Record<string, unknown>) => void;
  /** Stores the error count (and heartbeats its copy); a store failure is only a warning. */
  saveRecord: (next: Omit<AttemptsRecord, 'updatedAt'>) => Promise<void>;
  /** Failures and manifests leave the worker: no value of its secrets goes with them. */
  redact: (text: string) => string;
  /** Runs `fn`, waiting while `service` is unreachable (engine/service-wait.ts), heartbeating what it waits for. */
  waitFor: <T>(service: RemoteService, fn: () => Promise<T>) => Promise<T>;
  /**
   * The store for the step's calls (cache checks, manifests, checkpoints, the plugin's own): they wait
   * out an outage of a remote store (GCS) like any service. The error count stays best effort.
   */
  store: ArtifactStore;
  timer: ReturnType<typeof setInterval>;
}

export function activityLogger(base: Record<string, unknown>): Logger {
  const log = Context.current().log;
  return {
    debug: (f, m) => log.debug(m, { ...base, ...f }),
    info: (f, m) => log.info(m, { ...base, ...f }),
    warn: (f, m) => log.warn(m, { ...base, ...f }),
    error: (f, m) => log.error(m, { ...base, ...f }),
  };
}

/**
 * Starts heartbeating and reads the error count: from the heartbeat copy, or on a retry the stored
 * record when it counts more. A retry tells the workflow its attempt number (best effort).
 */
export async function beginAttempt(store: ArtifactStore, call: StepCall): Promise<Attempt> {
  const actx = Context.current();
  const info = actx.info;
  const execution = info.workflowExecution ?? { workflowId: call.runId, runId: call.runId };
  const startedAt = new Date().toISOString();
  const logger = activityLogger({ pipeline: call.pipeline, step: call.stepId, attempt: info.attempt });
  // Heartbeat from the first moment to the last, whatever the step does, so that a dead worker is
  // noticed within the heartbeat timeout and cancellation reaches the step. Plugins may add details.
  const previous = (info.heartbeatDetails ?? {}) as EngineDetails;
  let scrubber: ((text: string) => string) | undefined;
  const attemptsKey = `attempts/${keySegment(execution.workflowId)}/${keySegment(execution.runId)}/${call.stepId}`;
  const a: Attempt = {
    actx,
    info,
    execution,
    startedAt,
    logger,
    details: {},
    record: {
      errors: previous.stepErrors ?? 0,
      ...(previous.waitingSince ? { waitingSince: previous.waitingSince } : {}),
      updatedAt: startedAt,
    },
    heartbeat: (d?: Record<string, unknown>): void => {
      if (d) a.details = { ...a.details, ...d };
      actx.heartbeat(a.details);
    },
    saveRecord: async (next: Omit<AttemptsRecord, 'updatedAt'>): Promise<void> => {
      a.record = { ...next, updatedAt: new Date().toISOString() };
      a.heartbeat({ stepErrors: a.record.errors, waitingSince: a.record.waitingSince });
      await store
        .putRecord(attemptsKey, a.record)
        .catch((e: unknown) => logger.warn({ err: String(e) }, 'could not store the step error count'));
    },
    // The secret values are gathered from the environment on first use: most steps never fail.
    redact: (text: string): string => (scrubber ??= scrubberFor(process.env, call.env))(text),
    waitFor: <T>(service: RemoteService, fn: () => Promise<T>): Promise<T> => {
      const timeout = info.startToCloseTimeoutMs;
      const margin = Math.min(30_000, timeout / 10);
      return untilAvailable(fn, {
        service: service.name,
        location: service.location,
        isUnavailable: (e) => service.isUnavailable(e),
        boundMs: call.retry?.serviceWaitMs ?? STEP_DEFAULTS.serviceWaitMs,
        since: a.record.waitingSince,
        attemptDeadline: info.currentAttemptScheduledTimestampMs + timeout - margin,
        signal: actx.cancellationSignal,
        onWaiting: (w) => {
          if (w.tries === 1) logger.warn({ service: w.service, location: w.location, error: w.error }, w.message);
          a.heartbeat({ waiting: w.message, waitingSince: w.since });
        },
        onRecovered: (w) => {
          logger.info({ service: w.service }, `${w.service} answers again`);
          a.details = Object.fromEntries(Object.entries(a.details).filter(([k]) => k !== 'waiting' && k !== 'waitingSince'));
          a.record = { ...a.record, waitingSince: undefined };
          a.heartbeat();
        },
      });
    },
    store,
    timer: setInterval(() => a.heartbeat(), heartbeatEveryMs(info.heartbeatTimeoutMs)),
  };
  if (store.service) a.store = waitingStore(store, (fn) => a.waitFor(store.service!, fn));
  if (info.attempt > 1) {
    const stored = await store
      .getRecord<AttemptsRecord>(attemptsKey)
      .catch((e: unknown) => logger.warn({ err: String(e) }, 'could not read the step error count; using the heartbeat copy'));
    if (stored && stored.errors >= a.record.errors) a.record = stored;
    a.heartbeat({ stepErrors: a.record.errors, ...(a.record.waitingSince ? { waitingSince: a.record.waitingSince } : {}) });
    // Let the workflow's status query show the retry; best effort, the result carries it too.
    try {
      await actx.client.workflow
        .getHandle(execution.workflowId, execution.runId)
        .signal(stepAttemptSignalName, { stepId: call.stepId, attempt: info.attempt, errors: a.record.errors });
    } catch (e) {
      logger.warn({ err: String(e) }, 'could not report the attempt number');
    }
  }
  return a;
}
