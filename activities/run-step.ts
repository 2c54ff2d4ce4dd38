/**
 * The generic step activity: runs one step through the plugin registry. It is the only place where
 * Temporal's activity context meets a plugin: it builds the StepContext, serves cache hits, keeps the
 * step heartbeating, and turns errors into ApplicationFailures with stable types.
 */
import { Context } from '@temporalio/activity';
import type { z } from 'zod';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { mkdtempSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stepCacheKey } from '../engine/cache-key.js';
import { artifactRefs, keySegment, paramsHash, writeStepManifest, type StepManifest } from '../engine/lineage.js';
import { PipelineError } from '../engine/errors.js';
import { ServiceUnavailable, untilAvailable } from '../engine/service-wait.js';
import { errorRetryDelayMs, heartbeatEveryMs, STEP_DEFAULTS } from '../engine/step-defaults.js';
import type { ArtifactStore, Logger, ModelRegistry } from '../engine/ports.js';
import { scrubberFor, scrubError, stepEnvironment } from '../engine/secrets.js';
import type { RetrySpec, StepCall, StepResult } from '../engine/types.js';
import type { Registry } from '../plugins/registry.js';
import { checkPluginInputs, checkPluginOutputs } from '../plugins/registry.js';
import type { StepContext } from '../plugins/sdk.js';
import { stepAttemptSignalName } from '../engine/contracts.js';
import { createCheckpoints } from './checkpoints.js';

/** Outputs travel through Temporal history: keep them small, store data as artifacts. */
export const MAX_OUTPUT_BYTES = 256 * 1024;
/** Metric points a step may report for tracking (they travel through history too). */
export const MAX_SERIES_POINTS = 10_000;

export interface StepDeps {
  registry: Registry;
  store: ArtifactStore;
  projectDir: string;
  /** The model registry of this worker's tracking server, if it has one. */
  models?: () => ModelRegistry | undefined;
}

/**
 * The step's error count, kept in the store (`attempts/<workflow>/<run>/<step>`) so that it
 * survives any attempt: Temporal counts lost attempts too, runStep counts only the step's errors.
 */
interface AttemptsRecord {
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

interface CacheManifest {
  key: string;
  plugin: string;
  version: string;
  outputs: Record<string, unknown>;
  createdAt: string;
  runId: string;
  stepId: string;
}

export function toApplicationFailure(e: unknown): Error {
  if (e instanceof ApplicationFailure || e instanceof CancelledFailure) return e;
  if (e instanceof PipelineError) {
    // The failure's type carries the code; the message is the problem, where it is, and the hint.
    const where = e.format().split('\n  error ')[0];
    const head = where && !where.startsWith('  error') && where !== e.format() ? `${where}: ` : '';
    return ApplicationFailure.create({ type: e.code, message: `${head}${e.message}${e.hint ? `\n  hint: ${e.hint}` : ''}`, nonRetryable: !e.retryable, cause: e });
  }
  return e instanceof Error ? e : new Error(String(e));
}

function activityLogger(base: Record<string, unknown>): Logger {
  const log = Context.current().log;
  return {
    debug: (f, m) => log.debug(m, { ...base, ...f }),
    info: (f, m) => log.info(m, { ...base, ...f }),
    warn: (f, m) => log.warn(m, { ...base, ...f }),
    error: (f, m) => log.error(m, { ...base, ...f }),
  };
}

/** The cache entry of `cacheKey`; an unreadable one (truncated, not JSON) is a miss, with a warning. */
export async function readCacheRecord(store: ArtifactStore, cacheKey: string, logger: Logger): Promise<CacheManifest | undefined> {
  try {
    const hit = await store.getRecord<CacheManifest>(`cache/${cacheKey}`);
    if (hit === undefined || (typeof hit === 'object' && hit !== null && typeof hit.outputs === 'object' && hit.outputs !== null)) return hit;
    logger.warn({ cacheKey }, 'cache entry has no outputs; treating it as a miss');
  } catch (e) {
    if (!(e instanceof PipelineError) || e.code !== 'STORAGE_RECORD_CORRUPT') throw e;
    logger.warn({ cacheKey, err: e.message }, 'cache entry is unreadable; treating it as a miss');
  }
  return undefined;
}

export function createRunStep(deps: StepDeps) {
  return async function runStep(call: StepCall): Promise<StepResult> {
    const actx = Context.current();
    const info = actx.info;
    const execution = info.workflowExecution ?? { workflowId: call.runId, runId: call.runId };
    const startedAt = new Date().toISOString();
    const logger = activityLogger({ pipeline: call.pipeline, step: call.stepId, attempt: info.attempt });
    // Heartbeat from the first moment to the last, whatever the step does, so that a dead worker is
    // noticed within the heartbeat timeout and cancellation reaches the step. Plugins may add details.
    const previous = (info.heartbeatDetails ?? {}) as EngineDetails;
    let details: Record<string, unknown> = {};
    const heartbeat = (d?: Record<string, unknown>): void => {
      if (d) details = { ...details, ...d };
      actx.heartbeat(details);
    };
    const timer = setInterval(() => heartbeat(), heartbeatEveryMs(info.heartbeatTimeoutMs));
    const attemptsKey = `attempts/${keySegment(execution.workflowId)}/${keySegment(execution.runId)}/${call.stepId}`;
    let record: AttemptsRecord = { errors: previous.stepErrors ?? 0, ...(previous.waitingSince ? { waitingSince: previous.waitingSince } : {}), updatedAt: startedAt };
    if (info.attempt > 1) {
      const stored = await deps.store.getRecord<AttemptsRecord>(attemptsKey).catch((e: unknown) => logger.warn({ err: String(e) }, 'could not read the step error count; using the heartbeat copy'));
      if (stored && stored.errors >= record.errors) record = stored;
      heartbeat({ stepErrors: record.errors, ...(record.waitingSince ? { waitingSince: record.waitingSince } : {}) });
      // Let the workflow's status query show the retry; best effort, the result carries it too.
      try {
        await actx.client.workflow
          .getHandle(execution.workflowId, execution.runId)
          .signal(stepAttemptSignalName, { stepId: call.stepId, attempt: info.attempt, errors: record.errors });
      } catch (e) {
        logger.warn({ err: String(e) }, 'could not report the attempt number');
      }
    }
    const saveRecord = async (next: Omit<AttemptsRecord, 'updatedAt'>): Promise<void> => {
      record = { ...next, updatedAt: new Date().toISOString() };
      heartbeat({ stepErrors: record.errors, waitingSince: record.waitingSince });
      await deps.store.putRecord(attemptsKey, record).catch((e: unknown) => logger.warn({ err: String(e) }, 'could not store the step error count'));
    };
    let failedManifest: ((message: string) => Omit<StepManifest, 'kind'>) | undefined;
    // Failures and manifests leave the worker: no value of its secrets goes with them.
    const redact = scrubberFor(process.env, call.env);
    try {
      const plugin = deps.registry.require(call.uses);
      const schema: z.ZodType = plugin.params;
      const parsed = schema.safeParse(call.params);
      if (!parsed.success) {
        const detail = parsed.error.issues.map((i) => `${i.path.join('.') || '(params)'}: ${i.message}`).join('; ');
        throw new PipelineError('PLUGIN_PARAMS', `Step '${call.stepId}' (${plugin.name}): invalid params at run time: ${detail}`, {
          hint: 'A value computed from a step output has the wrong type; check the expression in `with:`.',
        });
      }
      checkPluginInputs(plugin, parsed.data, call.inputs, call.stepId);

      const params = parsed.data as Record<string, unknown>;
      const cacheKey = stepCacheKey(plugin.name, plugin.version, params, call.inputs, call.cacheIgnore);
      const manifest = (status: StepManifest['status'], outputs: Record<string, unknown>, extra: Partial<StepManifest> = {}): Omit<StepManifest, 'kind'> => {
        const endedAt = new Date().toISOString();
        return {
          workflowId: execution.workflowId,
          runId: call.runId,
          stepId: call.stepId,
          uses: plugin.name,
          pluginVersion: plugin.version,
          status,
          params,
          paramsHash: paramsHash(params),
          cacheKey,
          inputs: call.inputs,
          outputs,
          attempt: info.attempt,
          startedAt,
          endedAt,
          durationMs: Date.parse(endedAt) - Date.parse(startedAt),
          ...extra,
        };
      };
      failedManifest = (message) => manifest('failed', {}, { error: message });
      if (call.cache) {
        const hit = await readCacheRecord(deps.store, cacheKey, logger);
        if (hit) {
          // A hit is served only when every artifact it names is still there with its recorded
          // digest and size; otherwise the step runs again and the entry is replaced.
          const refs = artifactRefs(hit.outputs);
          const valid = await Promise.all(refs.map((r) => deps.store.verify(r)));
          if (valid.every(Boolean)) {
            logger.info({ cacheKey, from: hit.runId }, 'cache hit');
            await writeStepManifest(deps.store, manifest('cached', hit.outputs, { cachedFrom: { runId: hit.runId, stepId: hit.stepId } }));
            return { outputs: hit.outputs, cached: true, cacheKey, attempt: info.attempt, ...(record.errors ? { errors: record.errors } : {}), startedAt, endedAt: new Date().toISOString() };
          }
          const bad = refs.filter((_, i) => !valid[i]).map((r) => `${r.name ?? 'artifact'} sha256:${r.sha256.slice(0, 12)}`);
          logger.warn({ cacheKey, invalid: bad }, 'cache entry refers to missing or altered artifacts; running the step');
        }
      }

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
        store: deps.store,
        logger,
        signal: actx.cancellationSignal,
        heartbeat,
        untilAvailable: (service, fn) => {
          const timeout = info.startToCloseTimeoutMs;
          const margin = Math.min(30_000, timeout / 10);
          return untilAvailable(fn, {
            service: service.name,
            location: service.location,
            isUnavailable: (e) => service.isUnavailable(e),
            boundMs: call.retry?.serviceWaitMs ?? STEP_DEFAULTS.serviceWaitMs,
            since: record.waitingSince,
            attemptDeadline: info.currentAttemptScheduledTimestampMs + timeout - margin,
            signal: actx.cancellationSignal,
            onWaiting: (w) => {
              if (w.tries === 1) logger.warn({ service: w.service, location: w.location, error: w.error }, w.message);
              heartbeat({ waiting: w.message, waitingSince: w.since });
            },
            onRecovered: (w) => {
              logger.info({ service: w.service }, `${w.service} answers again`);
              details = Object.fromEntries(Object.entries(details).filter(([k]) => k !== 'waiting' && k !== 'waitingSince'));
              record = { ...record, waitingSince: undefined };
              heartbeat();
            },
          });
        },
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
          { store: deps.store, logger, heartbeat, heartbeatDetails: info.heartbeatDetails },
        ),
      };
      let outputs: Record<string, unknown>;
      try {
        logger.debug({ uses: plugin.name }, 'step started');
        outputs = await plugin.run(ctx, params, call.inputs);
      } finally {
        if (workDir) await rm(workDir, { recursive: true, force: true });
      }
      if (actx.cancellationSignal.aborted) throw new CancelledFailure('step cancelled');

      checkPluginOutputs(plugin, parsed.data, outputs);
      const size = JSON.stringify(outputs).length;
      if (size > MAX_OUTPUT_BYTES) {
        throw new PipelineError('PLUGIN_OUTPUT', `Step '${call.stepId}' returned ${size} bytes of outputs; the limit is ${MAX_OUTPUT_BYTES}.`, {
          hint: 'Write data to the artifact store (ctx.store.put) and return the reference.',
        });
      }
      // Lineage before the cache entry: whatever a cache entry points at has a producer on record.
      await writeStepManifest(deps.store, manifest('succeeded', outputs));
      if (call.cache) {
        const entry: CacheManifest = { key: cacheKey, plugin: plugin.name, version: plugin.version, outputs, createdAt: new Date().toISOString(), runId: call.runId, stepId: call.stepId };
        await deps.store.putRecord(`cache/${cacheKey}`, entry);
      }
      logger.debug({ uses: plugin.name }, 'step finished');
      if (seriesDropped) logger.warn({ dropped: seriesDropped, kept: MAX_SERIES_POINTS }, 'too many metric points for tracking; the rest were dropped');
      return { outputs, ...(series.length ? { series } : {}), cached: false, cacheKey, attempt: info.attempt, ...(record.errors ? { errors: record.errors } : {}), startedAt, endedAt: new Date().toISOString() };
    } catch (e) {
      if (actx.cancellationSignal.aborted) {
        // A timeout seen by a live worker is the step's own fault (too slow, or blocking the event
        // loop): it counts. A cancelled run or a worker shutting down does not.
        if (actx.cancellationDetails?.timedOut) await saveRecord({ errors: record.errors + 1, lastError: 'timed out' });
        throw new CancelledFailure('step cancelled');
      }
      scrubError(e, redact);
      if (e instanceof ServiceUnavailable) {
        // Still waiting for a service at the attempt's deadline: the next attempt goes on waiting.
        await saveRecord({ errors: record.errors, waitingSince: e.since });
        throw toApplicationFailure(e);
      }
      const message = redact(e instanceof Error ? e.message : String(e));
      if (failedManifest) {
        await writeStepManifest(deps.store, failedManifest(message)).catch((err: unknown) => logger.warn({ err: String(err) }, 'could not record the failed step'));
      }
      const errors = record.errors + 1;
      await saveRecord({ errors, lastError: message.slice(0, 2000) });
      throw countedFailure(toApplicationFailure(e instanceof Error ? e : message), errors, call.retry);
    } finally {
      clearInterval(timer);
    }
  };
}

/**
 * The failure of an attempt that ended with the step's `errors`-th error: final once the step's
 * maximumAttempts is reached, else retried after the step's own backoff (Temporal's retry policy
 * for steps has a short fixed interval, meant for lost attempts).
 */
export function countedFailure(failure: Error, errors: number, retry: RetrySpec | undefined): Error {
  if (failure instanceof CancelledFailure) return failure;
  const max = retry?.maximumAttempts ?? STEP_DEFAULTS.maximumAttempts;
  const app = failure instanceof ApplicationFailure ? failure : undefined;
  if (app?.nonRetryable) return failure;
  const type = app ? app.type : failure.name;
  if (retry?.nonRetryableErrorTypes?.includes(type ?? '')) return failure;
  const last = errors >= max;
  return ApplicationFailure.create({
    type: type ?? undefined,
    message: failure.message,
    details: app?.details ?? undefined,
    cause: app?.cause ?? failure,
    nonRetryable: last,
    ...(last ? {} : { nextRetryDelay: errorRetryDelayMs(errors, retry ?? {}) }),
  });
}
