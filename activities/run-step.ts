/**
 * The generic step activity: runs one step through the plugin registry. It is the only place where
 * Temporal's activity context meets a plugin: it builds the StepContext (step-context.ts), serves
 * cache hits, keeps the step heartbeating and counts its errors (attempt.ts), and turns errors into
 * ApplicationFailures with stable types.
 */
import type { z } from 'zod';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { stepCacheKey } from '../engine/cache-key.js';
import { artifactRefs, paramsHash, writeStepManifest, type StepManifest } from '../engine/lineage.js';
import { failureOptions, formatZodIssues, PipelineError } from '../engine/errors.js';
import { ServiceUnavailable } from '../engine/service-wait.js';
import { errorRetryDelayMs, STEP_DEFAULTS } from '../engine/step-defaults.js';
import type { ArtifactStore, Logger, ModelRegistry, TrackingBackend } from '../engine/ports.js';
import { scrubError } from '../engine/secrets.js';
import { versionMismatch } from '../engine/submitted.js';
import {
  type ArtifactRef,
  type RetrySpec,
  type StepCall,
  type StepRecordBase,
  type StepResult,
  type SubmittedFile,
} from '../engine/types.js';
import type { Registry } from '../plugins/registry.js';
import { checkPluginInputs, checkPluginOutputs } from '../plugins/registry.js';
import type { AnyPlugin } from '../plugins/sdk.js';
import { beginAttempt, type Attempt } from './attempt.js';
import { buildStepContext, MAX_SERIES_POINTS } from './step-context.js';

/** Outputs travel through Temporal history: keep them small, store data as artifacts. */
export const MAX_OUTPUT_BYTES = 256 * 1024;
export { MAX_SERIES_POINTS };

export interface StepDeps {
  registry: Registry;
  store: ArtifactStore;
  projectDir: string;
  /** The model registry of this worker's tracking server, if it has one. */
  models?: () => ModelRegistry | undefined;
  /** Steps of submitted pipelines may use code-running plugins (MLPIPE_TRUST_SUBMITTED_PIPELINES). */
  trustSubmitted?: boolean;
  /** This worker's MLflow backend: a tracked step's run is made when it starts and gets its metrics as they come. */
  tracking?: () => TrackingBackend | undefined;
}

/** The store reference of a client's file that a submitted pipeline reads (content-addressed: the digest finds it). */
export function submittedFileRef(store: ArtifactStore, file: SubmittedFile): ArtifactRef {
  return {
    kind: 'artifact',
    uri: `${store.location}#sha256:${file.sha256}`,
    sha256: file.sha256,
    size: file.size,
    mediaType: 'application/octet-stream',
    name: file.path.split('/').pop() || file.path,
  };
}

/**
 * A cache entry (`cache/<cacheKey>`): the outputs of the run that made them. Entries written before
 * this shape name the plugin `plugin` and `version` and the key `key`; a hit reads only `outputs`,
 * `runId` and `stepId`, which every entry has.
 */
interface CacheManifest extends StepRecordBase {
  cacheKey: string;
  outputs: Record<string, unknown>;
  createdAt: string;
  /** The Temporal run whose outputs these are. */
  runId: string;
}

/** A PipelineError as an ApplicationFailure built from its fields (engine/errors.ts `failureOptions`); other errors as they are. */
export function toApplicationFailure(e: unknown): Error {
  if (e instanceof ApplicationFailure || e instanceof CancelledFailure) return e;
  if (e instanceof PipelineError) return ApplicationFailure.create({ ...failureOptions(e), cause: e });
  return e instanceof Error ? e : new Error(String(e));
}

/** The cache entry of `cacheKey`; an unreadable one (truncated, not JSON) is a miss, with a warning. */
export async function readCacheRecord(store: ArtifactStore, cacheKey: string, logger: Logger): Promise<CacheManifest | undefined> {
  try {
    const hit = await store.getRecord<CacheManifest>(`cache/${cacheKey}`);
    if (hit === undefined || (typeof hit === 'object' && hit !== null && typeof hit.outputs === 'object' && hit.outputs !== null))
      return hit;
    logger.warn({ cacheKey }, 'cache entry has no outputs; treating it as a miss');
  } catch (e) {
    if (!(e instanceof PipelineError) || e.code !== 'STORAGE_RECORD_CORRUPT') throw e;
    logger.warn({ cacheKey, err: e.message }, 'cache entry is unreadable; treating it as a miss');
  }
  return undefined;
}

/** The step's manifest (lineage) with this status and outputs; `endedAt` is now. */
type Manifest = (
  status: StepManifest['status'],
  outputs: Record<string, unknown>,
  extra?: Partial<StepManifest>,
) => Omit<StepManifest, 'kind'>;

/** runStep: validate -> cache -> execute -> check outputs -> record; a failure is counted and recorded. */
export function createRunStep(deps: StepDeps) {
  return async function runStep(call: StepCall): Promise<StepResult> {
    const a = await beginAttempt(deps.store, call);
    let failedManifest: ((message: string) => Omit<StepManifest, 'kind'>) | undefined;
    try {
      const { plugin, data } = validateCall(deps, call, a.info.taskQueue);
      const params = data as Record<string, unknown>;
      // A client's file counts by its digest: the same path with other bytes is another key.
      const keyInputs = {
        ...call.inputs,
        ...(call.files ? fileKeyInputs(call.files) : {}),
        // A deferred output is a recipe, not the Parquet file: another cache entry than the materialised one.
        ...(call.defer?.length ? { 'defer:outputs': [...call.defer].sort() } : {}),
      };
      const cacheKey = stepCacheKey(plugin.name, plugin.version, params, keyInputs, call.cacheIgnore);
      const manifest = manifestOf(a, call, plugin, params, cacheKey);
      failedManifest = (message) => manifest('failed', {}, { error: message });
      if (call.cache) {
        const cached = await fromCache(deps, a, cacheKey, manifest);
        if (cached) return cached;
      }
      const { outputs, series, seriesDropped, liveRun } = await execute(
        deps,
        a,
        call,
        plugin,
        await withFiles(a.store, params, call.files),
        cacheKey,
      );
      checkOutputs(call, plugin, data, outputs);
      return await recordSuccess(deps, a, call, plugin, cacheKey, manifest, outputs, series, seriesDropped, liveRun);
    } catch (e) {
      throw await attemptFailure(deps, a, call, e, failedManifest);
    } finally {
      clearInterval(a.timer);
    }
  };
}

/** Cache-key inputs for a step's client files: `file:<param>` -> the digest. */
function fileKeyInputs(files: Record<string, SubmittedFile>): Record<string, string> {
  return Object.fromEntries(Object.entries(files).map(([param, f]) => [`file:${param}`, `sha256:${f.sha256}`]));
}

/** The params the plugin runs with: a client's file param names the verified local copy from the store. */
async function withFiles(
  store: ArtifactStore,
  params: Record<string, unknown>,
  files: Record<string, SubmittedFile> | undefined,
): Promise<Record<string, unknown>> {
  if (!files) return params;
  const out = { ...params };
  for (const [param, file] of Object.entries(files)) out[param] = await store.getFile(submittedFileRef(store, file));
  return out;
}

/**
 * The plugin of the call on this worker (task queue `taskQueue`), at the version the run was
 * compiled with; a submitted pipeline's code-running step only on a worker that trusts them.
 */
function pluginOf(deps: StepDeps, call: StepCall, taskQueue: string): AnyPlugin {
  const plugin = deps.registry.plugin(call.uses);
  if (!plugin) {
    throw new PipelineError(
      'PLUGIN_UNKNOWN',
      `Step '${call.stepId}': the run needs plugin '${call.uses}'${call.pluginVersion ? ` version ${call.pluginVersion}` : ''}; this worker (task queue '${taskQueue}') has no plugin of that name.`,
      { hint: `Start the workers of task queue '${taskQueue}' with the plugins the pipeline uses (the project's mlpipe.plugins.ts).` },
    );
  }
  if (call.pluginVersion !== undefined && call.pluginVersion !== plugin.version)
    throw versionMismatch(plugin.name, call.pluginVersion, plugin.version, taskQueue, call.stepId);
  if (call.submitted && plugin.runsCode && !deps.trustSubmitted) {
    throw new PipelineError(
      'SUBMITTED_CODE_REFUSED',
      `Step '${call.stepId}' uses ${plugin.name}, which runs commands or code from its params; this worker (task queue '${taskQueue}') does not run them from a pipeline submitted with the run.`,
      {
        hint: "Start this task queue's workers with MLPIPE_TRUST_SUBMITTED_PIPELINES=1, or run the pipeline by name from the workers' project.",
      },
    );
  }
  return plugin;
}

/** The plugin, and the params checked against its schema; every declared input is there (artifacts as references). */
function validateCall(deps: StepDeps, call: StepCall, taskQueue: string): { plugin: AnyPlugin; data: unknown } {
  const plugin = pluginOf(deps, call, taskQueue);
  const schema: z.ZodType = plugin.params;
  const parsed = schema.safeParse(call.params);
  if (!parsed.success) {
    const detail = formatZodIssues(parsed.error.issues, '(params)');
    throw new PipelineError('PLUGIN_PARAMS', `Step '${call.stepId}' (${plugin.name}): invalid params at run time: ${detail}`, {
      hint: 'A value computed from a step output has the wrong type; check the expression in `with:`.',
    });
  }
  checkPluginInputs(plugin, parsed.data, call.inputs, call.stepId);
  return { plugin, data: parsed.data };
}

function manifestOf(
  { info, execution, startedAt }: Attempt,
  call: StepCall,
  plugin: AnyPlugin,
  params: Record<string, unknown>,
  cacheKey: string,
): Manifest {
  const manifest = (
    status: StepManifest['status'],
    outputs: Record<string, unknown>,
    extra: Partial<StepManifest> = {},
  ): Omit<StepManifest, 'kind'> => {
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
  return manifest;
}

/** The cached result, when the cache has an entry for `cacheKey` whose artifacts are all intact. */
async function fromCache(deps: StepDeps, a: Attempt, cacheKey: string, manifest: Manifest): Promise<StepResult | undefined> {
  const { info, startedAt, logger } = a;
  const hit = await readCacheRecord(a.store, cacheKey, logger);
  if (hit) {
    // A hit is served only when every artifact it names is still there with its recorded
    // digest and size; otherwise the step runs again and the entry is replaced.
    const refs = artifactRefs(hit.outputs);
    const valid = await Promise.all(refs.map((r) => a.store.verify(r)));
    if (valid.every(Boolean)) {
      logger.info({ cacheKey, from: hit.runId }, 'cache hit');
      await writeStepManifest(a.store, manifest('cached', hit.outputs, { cachedFrom: { runId: hit.runId, stepId: hit.stepId } }));
      return {
        outputs: hit.outputs,
        cached: true,
        cacheKey,
        attempt: info.attempt,
        ...(a.record.errors ? { errors: a.record.errors } : {}),
        startedAt,
        endedAt: new Date().toISOString(),
      };
    }
    const bad = refs.filter((_, i) => !valid[i]).map((r) => `${r.name ?? 'artifact'} sha256:${r.sha256.slice(0, 12)}`);
    logger.warn({ cacheKey, invalid: bad }, 'cache entry refers to missing or altered artifacts; running the step');
  }
  return undefined;
}

/** Runs the plugin with its StepContext; its scratch folder is removed afterwards. */
async function execute(
  deps: StepDeps,
  a: Attempt,
  call: StepCall,
  plugin: AnyPlugin,
  params: Record<string, unknown>,
  cacheKey: string,
): Promise<{ outputs: Record<string, unknown>; series: NonNullable<StepResult['series']>; seriesDropped: number; liveRun: boolean }> {
  const { actx, logger } = a;
  const built = buildStepContext(deps, a, call, cacheKey, plugin.version);
  let outputs: Record<string, unknown>;
  let status: 'FINISHED' | 'FAILED' | 'KILLED' = 'FAILED';
  let liveRun = false;
  try {
    logger.debug({ uses: plugin.name }, 'step started');
    outputs = await plugin.run(built.ctx, params, call.inputs);
    status = actx.cancellationSignal.aborted ? 'KILLED' : 'FINISHED';
  } catch (e) {
    if (actx.cancellationSignal.aborted) status = 'KILLED';
    throw e;
  } finally {
    // A step that succeeded does not wait for MLflow: its run is ended in the background, and its
    // record tells the delivery when that run may still be in the making. A failed or cancelled
    // step's run is ended before the failure is reported (within a bound).
    if (status === 'FINISHED') liveRun = built.live?.finish(status).pending ?? false;
    else await built.live?.end(status);
    await built.cleanUp();
  }
  if (actx.cancellationSignal.aborted) throw new CancelledFailure('step cancelled');
  return { outputs, series: built.series, seriesDropped: built.seriesDropped(), liveRun };
}

/** The plugin returned every output it declares, and they fit in history. */
function checkOutputs(call: StepCall, plugin: AnyPlugin, data: unknown, outputs: Record<string, unknown>): void {
  checkPluginOutputs(plugin, data, outputs);
  const size = JSON.stringify(outputs).length;
  if (size > MAX_OUTPUT_BYTES) {
    throw new PipelineError('PLUGIN_OUTPUT', `Step '${call.stepId}' returned ${size} bytes of outputs; the limit is ${MAX_OUTPUT_BYTES}.`, {
      hint: 'Write data to the artifact store (ctx.store.put) and return the reference.',
    });
  }
}

/** Records the success (the manifest, then the cache entry) and returns the step's result. */
async function recordSuccess(
  deps: StepDeps,
  a: Attempt,
  call: StepCall,
  plugin: AnyPlugin,
  cacheKey: string,
  manifest: Manifest,
  outputs: Record<string, unknown>,
  series: NonNullable<StepResult['series']>,
  seriesDropped: number,
  liveRun: boolean,
): Promise<StepResult> {
  const { info, startedAt, logger } = a;
  // Lineage before the cache entry: whatever a cache entry points at has a producer on record.
  await writeStepManifest(a.store, manifest('succeeded', outputs));
  if (call.cache) {
    const entry: CacheManifest = {
      stepId: call.stepId,
      uses: plugin.name,
      pluginVersion: plugin.version,
      cacheKey,
      outputs,
      createdAt: new Date().toISOString(),
      runId: call.runId,
    };
    await a.store.putRecord(`cache/${cacheKey}`, entry);
  }
  logger.debug({ uses: plugin.name }, 'step finished');
  if (seriesDropped)
    logger.warn({ dropped: seriesDropped, kept: MAX_SERIES_POINTS }, 'too many metric points for tracking; the rest were dropped');
  return {
    outputs,
    ...(series.length ? { series } : {}),
    ...(liveRun ? { liveRun } : {}),
    cached: false,
    cacheKey,
    attempt: info.attempt,
    ...(a.record.errors ? { errors: a.record.errors } : {}),
    startedAt,
    endedAt: new Date().toISOString(),
  };
}

/**
 * What the attempt fails with. A cancellation counts only when it is a timeout; a service still
 * unavailable keeps waiting in the next attempt; any other error is recorded (the failed manifest)
 * and counted, and is final at the step's maximumAttempts.
 */
async function attemptFailure(
  deps: StepDeps,
  a: Attempt,
  call: StepCall,
  e: unknown,
  failedManifest: ((message: string) => Omit<StepManifest, 'kind'>) | undefined,
): Promise<Error> {
  const { actx, logger, redact } = a;
  if (actx.cancellationSignal.aborted) {
    // A timeout seen by a live worker is the step's own fault (too slow, or blocking the event
    // loop): it counts. A cancelled run or a worker shutting down does not.
    if (actx.cancellationDetails?.timedOut) await a.saveRecord({ errors: a.record.errors + 1, lastError: 'timed out' });
    return new CancelledFailure('step cancelled');
  }
  scrubError(e, redact);
  if (e instanceof ServiceUnavailable) {
    // Still waiting for a service at the attempt's deadline: the next attempt goes on waiting.
    await a.saveRecord({ errors: a.record.errors, waitingSince: e.since });
    return toApplicationFailure(e);
  }
  const message = redact(e instanceof Error ? e.message : String(e));
  if (failedManifest) {
    await writeStepManifest(deps.store, failedManifest(message)).catch((err: unknown) =>
      logger.warn({ err: String(err) }, 'could not record the failed step'),
    );
  }
  const errors = a.record.errors + 1;
  await a.saveRecord({ errors, lastError: message.slice(0, 2000) });
  return countedFailure(toApplicationFailure(e instanceof Error ? e : message), errors, call.retry);
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
