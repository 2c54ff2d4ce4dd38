/**
 * The StepContext runStep gives a plugin: the run's identity, the store, a logger, the attempt's
 * cancellation signal and heartbeat, service waits bounded by the step's `retry.serviceWait` and the
 * attempt's deadline, the step's environment, a scratch folder made on first use, metric points for
 * tracking, and the step's checkpoints (activities/checkpoints.ts).
 */
import { mkdtempSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ArtifactStore, ModelRegistry } from '../engine/ports.js';
import { stepEnvironment } from '../engine/secrets.js';
import type { StepCall, StepResult } from '../engine/types.js';
import type { StepContext } from '../plugins/sdk.js';
import type { Attempt } from './attempt.js';
import { createCheckpoints } from './checkpoints.js';

/** Metric points a step may report for tracking (they travel through history too). */
export const MAX_SERIES_POINTS = 10_000;

export interface ContextDeps {
  store: ArtifactStore;
  projectDir: string;
  /** The model registry of this worker's tracking server, if it has one. */
  models?: () => ModelRegistry | undefined;
}

export interface BuiltContext {
  ctx: StepContext;
  /** The metric points the plugin reported, at most MAX_SERIES_POINTS. */
  series: NonNullable<StepResult['series']>;
  /** How many points past MAX_SERIES_POINTS were dropped. */
  seriesDropped: () => number;
  /** Removes the scratch folder, if the step made one. */
  cleanUp: () => Promise<void>;
}

export function buildStepContext(deps: ContextDeps, a: Attempt, call: StepCall, cacheKey: string): BuiltContext {
  const { actx, info, execution, logger, heartbeat, redact } = a;
  // The scratch folder is made on first use: most steps never need one.
  let workDir: string | undefined;
  const series: NonNullable<StepResult['series']> = [];
  let seriesDropped = 0;
  const models = deps.models?.();
  const ctx: StepContext = {
    ...(models ? { models: { registry: models, experiment: call.experiment ?? call.pipeline } } : {}),
    runId: call.runId,
    workflowId: execution.workflowId,
    pipeline: call.pipeline,
    stepId: call.stepId,
    attempt: info.attempt,
    store: a.store,
    logger,
    signal: actx.cancellationSignal,
    heartbeat,
    untilAvailable: a.waitFor,
    projectDir: deps.projectDir,
    env: stepEnvironment(process.env, call.env),
    redact,
    get workDir() {
      workDir ??= mkdtempSync(join(tmpdir(), `mlpipe-${call.stepId}-`));
      return workDir;
    },
    logMetrics(values, options) {
      const timestamp = options?.timestamp ?? Date.now();
      for (const [key, value] of Object.entries(values)) {
        if (typeof value !== 'number' || !Number.isFinite(value)) continue;
        if (series.length >= MAX_SERIES_POINTS) seriesDropped++;
        else series.push({ key, value, timestamp, step: options?.step ?? 0 });
      }
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
    cleanUp: async () => {
      if (workDir) await rm(workDir, { recursive: true, force: true });
    },
  };
}
