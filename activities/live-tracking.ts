/**
 * A step's MLflow run while it runs: created RUNNING (or found, on a retry) when the step starts,
 * its metric points (`ctx.logMetrics`: training curves, system metrics) sent in batches every
 * couple of seconds, ended FINISHED or FAILED when the step ends. So the MLflow UI shows a curve
 * growing while the model trains.
 *
 * It is best effort and never fails or holds up the step: an MLflow that is down or slow only means
 * the points arrive later, with the step's record, through the tracking workflow
 * (activities/tracking.ts). That delivery finds this run by its `mlpipe.step_key` tag (the same
 * idempotency tag it uses itself), adds the parent tag if this run was made before its parent, and
 * sends only the points MLflow does not hold yet (same key, step, timestamp and value), so nothing is
 * logged twice.
 */
import type { Logger, TrackedRun, TrackingBackend } from '../engine/ports.js';
import { sanitizeKey, tag, type MetricPoint, type Tag } from '../engine/tracking.js';

/** Points go out at most this often, or sooner when this many wait. */
export const LIVE_FLUSH_MS = 2_000;
export const LIVE_BATCH_POINTS = 500;
/** How long the start of a step waits for its run to exist, and its end for the last batch and the status. */
const START_WAIT_MS = 3_000;
const END_WAIT_MS = 5_000;

export interface LiveRunOptions {
  experiment: string;
  /** The pipeline run's tracking key: `<workflowId>/<runId>`. */
  key: string;
  stepId: string;
  uses: string;
  pluginVersion: string;
  attempt: number;
  logger: Logger;
}

export interface LiveRun {
  /**
   * Resolves once the run exists (or could not be made), within START_WAIT_MS: the step starts after
   * it, so a plugin that looks the run up by its tag (deploy.mlflow-register) finds this one.
   */
  ready(): Promise<void>;
  log(points: MetricPoint[]): void;
  /** Sends what is left and sets the run's status; resolves within END_WAIT_MS whatever MLflow does. */
  end(status: 'FINISHED' | 'FAILED' | 'KILLED'): Promise<void>;
}

export function startLiveRun(backend: TrackingBackend, o: LiveRunOptions): LiveRun {
  let pending: MetricPoint[] = [];
  let failed = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const off = (e: unknown): void => {
    if (!failed) o.logger.warn({ err: String(e) }, 'live MLflow tracking of the step stopped; its metrics go with the step record');
    failed = true;
    pending = [];
  };
  const stepKey = `${o.key}/${o.stepId}`;
  const run: Promise<TrackedRun | undefined> = (async () => {
    const experimentId = await backend.getOrCreateExperiment(o.experiment);
    const found = await backend.findRunByTag(experimentId, 'mlpipe.step_key', stepKey);
    if (found) {
      await backend.updateRun(found.mlflowRunId, 'RUNNING');
      return found;
    }
    const parent = await backend.findRunByTag(experimentId, 'mlpipe.run_key', o.key);
    const tags: Tag[] = [
      ...(parent ? [tag('mlflow.parentRunId', parent.mlflowRunId)] : []),
      tag('mlpipe.step_key', stepKey),
      tag('mlpipe.step', o.stepId),
      tag('mlpipe.plugin', o.uses),
      tag('mlpipe.plugin_version', o.pluginVersion),
      tag('mlpipe.status', 'running'),
      tag('mlpipe.attempt', o.attempt),
    ];
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

  const within = async (p: Promise<unknown>, ms: number): Promise<void> => {
    let bound: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([p, new Promise<void>((resolve) => (bound = setTimeout(resolve, ms).unref()))]);
    clearTimeout(bound);
  };

  return {
    ready: () => within(run, START_WAIT_MS),
    log(points) {
      if (failed) return;
      pending.push(...points.map((p) => ({ ...p, key: sanitizeKey(p.key) })));
      if (pending.length >= LIVE_BATCH_POINTS) void flush();
      else timer ??= setTimeout(() => void flush(), LIVE_FLUSH_MS).unref();
    },
    async end(status) {
      const done = (async () => {
        await flush();
        const r = await run;
        if (r && !failed) await backend.updateRun(r.mlflowRunId, status, Date.now()).catch(off);
      })();
      await within(done, END_WAIT_MS);
    },
  };
}
