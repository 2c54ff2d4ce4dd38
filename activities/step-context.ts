/**
 * The StepContext runStep gives a plugin: the run's identity, the store, a logger, the attempt's
 * cancellation signal, progress reports (heartbeat details), service waits bounded by the step's `retry.serviceWait` and the
 * attempt's deadline, the step's environment, a scratch folder made on first use, metric points for
 * tracking, and the step's checkpoints (activities/checkpoints.ts).
 */
import { mkdtempSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ArtifactStore, ModelRegistry, TrackingBackend } from '../engine/ports.js';
import { PROGRESS_HEARTBEAT_MS, progressClock } from '../engine/progress.js';
import { stepEnvironment } from '../engine/secrets.js';
import type { StepCall, StepResult } from '../engine/types.js';
import type { StepContext } from '../plugins/sdk.js';
import type { Attempt } from './attempt.js';
import { createCheckpoints } from './checkpoints.js';
import { startLiveRun, type LiveRun } from './live-tracking.js';

/** Metric points a step may report for tracking (they travel through history too). */
export const MAX_SERIES_POINTS = 10_000;

export interface ContextDeps {
  store: ArtifactStore;
  projectDir: string;
  /** The model registry of this worker's tracking server, if it has one. */
  models?: () => ModelRegistry | undefined;
  /** This worker's MLflow backend, for the step's run while it runs (live-tracking.ts). */
  tracking?: () => TrackingBackend | undefined;
}

export interface BuiltContext {
  ctx: StepContext;
  /** The metric points the plugin reported, at most MAX_SERIES_POINTS. */
  series: NonNullable<StepResult['series']>;
  /** How many points past MAX_SERIES_POINTS were dropped. */
  seriesDropped: () => number;
  /** Removes the scratch folder, if the step made one. */
  cleanUp: () => Promise<void>;
  /** The step's MLflow run while it runs, when the run is tracked (`call.experiment`) and the worker has a backend. */
  live?: LiveRun;
}

export function buildStepContext(deps: ContextDeps, a: Attempt, call: StepCall, cacheKey: string, pluginVersion: string): BuiltContext {
  const { actx, info, execution, logger, heartbeat, redact } = a;
  // The scratch folder is made on first use: most steps never need one.
  let workDir: string | undefined;
  const series: NonNullable<StepResult['series']> = [];
  let seriesDropped = 0;
  const models = deps.models?.();
  const clock = progressClock();
  const backend = call.experiment ? deps.tracking?.() : undefined;
  const live =
    backend && call.experiment
      ? startLiveRun(backend, {
          experiment: call.experiment,
          key: `${execution.workflowId}/${execution.runId}`,
          stepId: call.stepId,
          uses: call.uses,
          pluginVersion,
          attempt: info.attempt,
          logger,
        })
      : undefined;
  let trailing: ReturnType<typeof setTimeout> | undefined;
  const registry = models && live ? afterLiveRun(models, live) : models;
  const ctx: StepContext = {
    ...(registry ? { models: { registry, experiment: call.experiment ?? call.pipeline } } : {}),
    runId: call.runId,
    workflowId: execution.workflowId,
    pipeline: call.pipeline,
    stepId: call.stepId,
    attempt: info.attempt,
    store: a.store,
    logger,
    signal: actx.cancellationSignal,
    progress(report) {
      const now = Date.now();
      const p = clock.next(report, now);
      // At most one heartbeat of its own a second; a report in between is sent when that second is up.
      a.details = { ...a.details, progress: p };
      if (clock.due(now)) heartbeat();
      else
        trailing ??= setTimeout(() => {
          trailing = undefined;
          if (clock.due(Date.now())) heartbeat();
        }, PROGRESS_HEARTBEAT_MS).unref();
    },
    untilAvailable: a.waitFor,
    projectDir: deps.projectDir,
    ...(call.defer?.length ? { defer: call.defer } : {}),
    env: stepEnvironment(process.env, call.env),
    redact,
    get workDir() {
      workDir ??= mkdtempSync(join(tmpdir(), `mlpipe-${call.stepId}-`));
      return workDir;
    },
    logMetrics(values, options) {
      const timestamp = options?.timestamp ?? Date.now();
      const system: Record<string, number> = {};
      const points: NonNullable<StepResult['series']> = [];
      for (const [key, value] of Object.entries(values)) {
        if (typeof value !== 'number' || !Number.isFinite(value)) continue;
        if (key.startsWith('system/')) system[key.slice('system/'.length)] = value;
        if (series.length >= MAX_SERIES_POINTS) seriesDropped++;
        else points.push({ key, value, timestamp, step: options?.step ?? 0 });
      }
      series.push(...points);
      // The same points, to the step's MLflow run now (the step record carries them too).
      live?.log(points);
      // The latest system sample also goes with the heartbeat, for progress views.
      if (Object.keys(system).length) a.details = { ...a.details, system };
    },
    checkpoint: createCheckpoints(
      { workflowId: execution.workflowId, runId: call.runId, stepId: call.stepId, cacheKey },
      { store: a.store, logger, heartbeat, heartbeatDetails: info.heartbeatDetails },
    ),
  };
  return {
    ctx,
    series,
    seriesDropped: () => seriesDropped,
    ...(live ? { live } : {}),
    cleanUp: async () => {
      clearTimeout(trailing);
      if (workDir) await rm(workDir, { recursive: true, force: true });
    },
  };
}

/**
 * The model registry as a step sees it: publishing (which finds or makes the step's run by its tag)
 * first waits for the step's live run, so it finds that run rather than make a second one.
 */
function afterLiveRun(registry: ModelRegistry, live: LiveRun): ModelRegistry {
  return {
    get location() {
      return registry.location;
    },
    async publish(input) {
      await live.ready();
      return registry.publish(input);
    },
    version: (name, version) => registry.version(name, version),
    byAlias: (name, alias) => registry.byAlias(name, alias),
    setAlias: (name, alias, version) => registry.setAlias(name, alias, version),
    modelTags: (name) => registry.modelTags(name),
    setModelTag: (name, key, value) => registry.setModelTag(name, key, value),
    readFile: (info, path) => registry.readFile(info, path),
    ...(registry.isUnavailable ? { isUnavailable: (e: unknown) => registry.isUnavailable!(e) } : {}),
  };
}
