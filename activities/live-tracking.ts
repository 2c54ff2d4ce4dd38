/**
 * A step's MLflow run while it runs: created RUNNING (or found, on a retry) once the step has run
 * for LIVE_START_MS, its metric points (`ctx.logMetrics`: training curves, system metrics) sent in
 * batches every couple of seconds, ended FINISHED or FAILED when the step ends. So the MLflow UI
 * shows a curve growing while the model trains.
 *
 * It is best effort and off the step's critical path: the step does not wait for its run to be
 * made (only a call of the step's model registry waits for it, so `deploy.mlflow-register` finds
 * this run by its tag instead of racing it), and a step that succeeds returns at once while its run
 * is ended in the background. A step that ends before its run was even asked for (a step shorter
 * than LIVE_START_MS) leaves the making of it to the delivery. An MLflow that is down or slow only
 * means the points arrive later, with the step's record, through the tracking workflow
 * (activities/tracking.ts). That delivery finds this run by its `mlpipe.step_key` tag (the same
 * idempotency tag it uses itself), adds the parent tag if this run was made before its parent, and
 * sends only the points MLflow does not hold yet (same key, step, timestamp and value), so nothing is
 * logged twice. When the step's record says its run may still be in the making (`liveRun`), the
 * delivery waits for it (`liveRunSettled` in the same process, else until the run appears or
 * LIVE_SETTLE_MS after the step's end) rather than make a second one.
 */
import type { Logger, TrackedRun, TrackingBackend } from '../engine/ports.js';
import { sanitizeKey, tag, type MetricPoint, type Tag } from '../engine/tracking.js';

/** Points go out at most this often, or sooner when this many wait. */
export const LIVE_FLUSH_MS = 2_000;
export const LIVE_BATCH_POINTS = 500;
/** How long a model registry call waits for the step's run to exist, and a failed step's end for the last batch and the status. */
const START_WAIT_MS = 3_000;
const END_WAIT_MS = 5_000;
/** How long after a step's end its delivery waits for a live run that was being made when the step ended. */
export const LIVE_SETTLE_MS = 10_000;
/**
 * A step's run is asked for this long after the step starts (at once when its model registry needs
 * it): a step that ends sooner leaves it to the delivery, and costs MLflow and the worker nothing
 * while it runs (a stat, a search by tag and a new run of the file store per step: 100 parallel
 * steps of a few milliseconds spent more on their live runs than on themselves).
 */
export const LIVE_START_MS = 500;

export interface LiveRunOptions {
  experiment: string;
  /** The pipeline run's tracking key: `<workflowId>/<runId>`. */
  key: string;
  stepId: string;
  uses: string;
  pluginVersion: string;
  attempt: number;
  logger: Logger;
  /** When to ask for the run, after the start (default LIVE_START_MS; 0: at once). */
  startAfterMs?: number;
}

export interface LiveRun {
  /**
   * Resolves once the run exists (or could not be made), within START_WAIT_MS. The step does not
   * wait for it; its model registry does, before publishing (see buildStepContext).
   */
  ready(): Promise<void>;
  log(points: MetricPoint[]): void;
  /**
   * Sends what is left and sets the run's status in the background, and says whether an MLflow run
   * of this attempt exists or is being made (`pending`): the step's record then tells the delivery
   * to wait for it. A run not asked for yet is not made any more.
   */
  finish(status: 'FINISHED' | 'FAILED' | 'KILLED'): { pending: boolean };
  /** finish(), waiting for it within END_WAIT_MS whatever MLflow does. */
  end(status: 'FINISHED' | 'FAILED' | 'KILLED'): Promise<void>;
}

/** The live runs of this process not ended yet, by backend location and step key. */
const unsettled = new Map<string, Promise<void>>();

/** Resolves when this process's live run of `stepKey` (if any) has been ended, or after `ms`. */
export async function liveRunSettled(location: string, stepKey: string, ms = LIVE_SETTLE_MS): Promise<void> {
  const p = unsettled.get(`${location}\n${stepKey}`);
  if (p) await within(p, ms);
}

async function within(p: Promise<unknown>, ms: number): Promise<void> {
  let bound: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([p, new Promise<void>((resolve) => (bound = setTimeout(resolve, ms).unref()))]);
  clearTimeout(bound);
}

export function startLiveRun(backend: TrackingBackend, o: LiveRunOptions): LiveRun {
  let pending: MetricPoint[] = [];
  let failed = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  /** Set when the step ended: no run is asked for after that. */
  let ended = false;
  /** Set once a run of this attempt exists or has been asked for. */
  let mayExist = false;
  const off = (e: unknown): void => {
    if (!failed) o.logger.warn({ err: String(e) }, 'live MLflow tracking of the step stopped; its metrics go with the step record');
    failed = true;
    pending = [];
  };
  const stepKey = `${o.key}/${o.stepId}`;
  const registryKey = `${backend.location}\n${stepKey}`;
  let settle: () => void = () => undefined;
  const settled = new Promise<void>((resolve) => (settle = resolve));
  unsettled.set(registryKey, settled);
  /** Asks for the run: after startAfterMs, or when the registry needs it, or (to let it go) at the end. */
  let ask: () => void = () => undefined;
  const asked = new Promise<void>((resolve) => (ask = resolve));
  const after = o.startAfterMs ?? LIVE_START_MS;
  const askTimer = after > 0 ? setTimeout(() => ask(), after).unref() : undefined;
  if (!askTimer) ask();
  const run: Promise<TrackedRun | undefined> = (async () => {
    if (askTimer) {
      await asked;
      if (ended) return undefined;
    }
    const experimentId = await backend.getOrCreateExperiment(o.experiment);
    const found = await backend.findRunByTag(experimentId, 'mlpipe.step_key', stepKey);
    if (found) {
      mayExist = true;
      if (!ended) await backend.updateRun(found.mlflowRunId, 'RUNNING');
      return found;
    }
    if (ended) return undefined;
    const parent = await backend.findRunByTag(experimentId, 'mlpipe.run_key', o.key);
    if (ended) return undefined;
    const tags: Tag[] = [
      ...(parent ? [tag('mlflow.parentRunId', parent.mlflowRunId)] : []),
      tag('mlpipe.step_key', stepKey),
      tag('mlpipe.step', o.stepId),
      tag('mlpipe.plugin', o.uses),
      tag('mlpipe.plugin_version', o.pluginVersion),
      tag('mlpipe.status', 'running'),
      tag('mlpipe.attempt', o.attempt),
    ];
    mayExist = true;
    return backend.createRun({ experimentId, runName: o.stepId, startTime: Date.now(), tags });
  })().catch((e: unknown) => {
    off(e);
    return undefined;
  });

  // One batch in flight at a time, in order.
  let chain: Promise<void> = Promise.resolve();
  const flush = (): Promise<void> => {
    clearTimeout(timer);
    timer = undefined;
    const batch = pending;
    pending = [];
    if (!batch.length || failed) return chain;
    chain = chain.then(async () => {
      const r = await run;
      if (!r || failed) return;
      // MLflow takes at most 1000 metrics per log-batch.
      for (let i = 0; i < batch.length; i += 1000)
        await backend.logBatch(r.mlflowRunId, { metrics: batch.slice(i, i + 1000), params: [], tags: [] }).catch(off);
    });
    return chain;
  };

  let done: Promise<void> | undefined;
  const finish = (status: 'FINISHED' | 'FAILED' | 'KILLED'): Promise<void> => {
    if (done) return done;
    ended = true;
    clearTimeout(askTimer);
    ask();
    const endTime = Date.now();
    done = (async () => {
      await flush();
      const r = await run;
      if (r && !failed) await backend.updateRun(r.mlflowRunId, status, endTime).catch(off);
    })().finally(() => {
      if (unsettled.get(registryKey) === settled) unsettled.delete(registryKey);
      settle();
    });
    return done;
  };

  return {
    ready: () => {
      ask();
      return within(run, START_WAIT_MS);
    },
    log(points) {
      if (failed || ended) return;
      pending.push(...points.map((p) => ({ ...p, key: sanitizeKey(p.key) })));
      if (pending.length >= LIVE_BATCH_POINTS) void flush();
      else timer ??= setTimeout(() => void flush(), LIVE_FLUSH_MS).unref();
    },
    finish(status) {
      void finish(status);
      return { pending: mayExist && !failed };
    },
    async end(status) {
      await within(finish(status), END_WAIT_MS);
    },
  };
}
