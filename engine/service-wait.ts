/**
 * Waiting out an unreachable service (MLflow, GCS): a call that fails because the service cannot be
 * reached is tried again with capped, jittered backoff until it works, until the step's
 * `retry.serviceWait` bound has passed since the service was first found unreachable (then the step
 * fails for good), or until the attempt's own deadline is near (then the attempt ends with a
 * retryable SERVICE_UNAVAILABLE that does not count as a step error, and the next attempt goes on
 * waiting from the same `since`). A rejection (anything `isUnavailable` says no to) is thrown at once.
 *
 * Pure: the clock and sleep are parameters.
 */
import { formatDuration } from './duration.js';
import { PipelineError } from './errors.js';
import type { ArtifactStore } from './ports.js';

export interface Waiting {
  service: string;
  location?: string;
  /** When the service was first found unreachable (epoch ms). */
  since: number;
  /** Tries so far in this attempt. */
  tries: number;
  error: string;
  message: string;
}

export interface ServiceWaitOptions {
  service: string;
  location?: string;
  isUnavailable: (e: unknown) => boolean;
  /** The step's bound (retry.serviceWait). */
  boundMs: number;
  /** Carried over from an earlier attempt. */
  since?: number;
  /** Epoch ms by which this attempt must have ended (its start-to-close deadline, less a margin). */
  attemptDeadline?: number;
  signal?: AbortSignal;
  /** Called before every wait: heartbeat it, so `mlpipe status` and the Temporal UI show it. */
  onWaiting?: (w: Waiting) => void;
  /** Called once the service answers again after a wait. */
  onRecovered?: (w: Waiting) => void;
  initialDelayMs?: number;
  maxDelayMs?: number;
  now?: () => number;
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  random?: () => number;
}

function abortableSleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason as Error);
    const onAbort = (): void => {
      clearTimeout(t);
      reject(signal!.reason as Error);
    };
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

export async function untilAvailable<T>(fn: () => Promise<T>, o: ServiceWaitOptions): Promise<T> {
  const now = o.now ?? Date.now;
  const sleep = o.sleep ?? abortableSleep;
  const random = o.random ?? Math.random;
  const initial = o.initialDelayMs ?? 1000;
  const cap = o.maxDelayMs ?? 30_000;
  let since = o.since;
  let waiting: Waiting | undefined;
  for (let tries = 1; ; tries++) {
    try {
      const result = await fn();
      if (waiting) o.onRecovered?.(waiting);
      return result;
    } catch (e) {
      if (!o.isUnavailable(e)) throw e;
      const t = now();
      since ??= t;
      const error = e instanceof Error ? e.message : String(e);
      const where = `${o.service}${o.location ? ` at ${o.location}` : ''}`;
      if (t - since >= o.boundMs) {
        throw new PipelineError(
          'SERVICE_UNAVAILABLE',
          `${where} has been unreachable for ${formatDuration(t - since)}, longer than the step waits (retry.serviceWait ${formatDuration(o.boundMs)}): ${error}`,
          {
            hint: `Bring ${o.service} back, or set a longer retry.serviceWait on the step.`,
            retryable: false,
            cause: e,
          },
        );
      }
      const delay = Math.min(cap, initial * 2 ** Math.min(tries - 1, 30)) * (0.5 + random() / 2);
      if (o.attemptDeadline !== undefined && t + delay >= o.attemptDeadline) {
        // The next attempt goes on waiting; this one ends before its timeout does.
        throw new ServiceUnavailable(
          `waiting for ${where} (unreachable since ${new Date(since).toISOString()}); this attempt ends, the next goes on waiting: ${error}`,
          since,
          e,
        );
      }
      waiting = {
        service: o.service,
        location: o.location,
        since,
        tries,
        error,
        message: `waiting for ${where} (unreachable for ${formatDuration(t - since)}): ${error}`,
      };
      o.onWaiting?.(waiting);
      await sleep(delay, o.signal);
    }
  }
}

/** Ends an attempt that is still waiting for a service: retryable, and not an error of the step. */
export class ServiceUnavailable extends PipelineError {
  constructor(
    message: string,
    readonly since: number,
    cause?: unknown,
  ) {
    super('SERVICE_UNAVAILABLE', message, { retryable: true, cause });
  }
}

/**
 * The store, with each call made through `wait` (in a step: `untilAvailable` for the store's
 * service), so that a step's cache checks, manifests, checkpoints and the plugin's own reads and
 * writes wait out an outage of a remote store. A store without a service is returned as it is.
 * Listing objects (garbage collection, not steps) is passed through.
 */
export function waitingStore(store: ArtifactStore, wait: <T>(fn: () => Promise<T>) => Promise<T>): ArtifactStore {
  if (!store.service) return store;
  return {
    kind: store.kind,
    location: store.location,
    service: store.service,
    put: (data, options) => wait(() => store.put(data, options)),
    putFile: (path, options) => wait(() => store.putFile(path, options)),
    get: (ref) => wait(() => store.get(ref)),
    getFile: (ref) => wait(() => store.getFile(ref)),
    exists: (ref) => wait(() => store.exists(ref)),
    verify: (ref) => wait(() => store.verify(ref)),
    listObjects: () => store.listObjects(),
    delete: (ref) => wait(() => store.delete(ref)),
    putRecord: (key, value) => wait(() => store.putRecord(key, value)),
    getRecord: <T>(key: string) => wait(() => store.getRecord<T>(key)),
    listRecords: (prefix) => wait(() => store.listRecords(prefix)),
    deleteRecord: (key) => wait(() => store.deleteRecord(key)),
  };
}
