/**
 * `deliverTracking`: sends a batch of tracking events of one pipeline run to MLflow. The tracking
 * workflow calls it with events in order and retries it until MLflow takes them, so a pipeline
 * never waits on (or fails because of) MLflow.
 *
 * Exactly once, on top of at-least-once activity retries:
 * - runs carry an idempotency tag (`mlpipe.run_key`, `mlpipe.step_key`); before creating one, the
 *   activity looks it up, so a retry after a lost `runs/create` response finds the first run;
 * - metric points carry the timestamp taken when they were produced. When a run existed before
 *   this attempt, the activity reads its metric history and sends only the points not there yet;
 * - params, tags, run status, aliases and artifact uploads are idempotent in MLflow;
 * - a model version is looked up by (model name, run id) before one is created.
 */
import { Context } from '@temporalio/activity';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { failureOptions, PipelineError } from '../engine/errors.js';
import { knownRunsOf, type KnownRuns, type TrackingInput } from '../engine/contracts.js';
import type { ArtifactStore, TrackedRun, TrackingBackend } from '../engine/ports.js';
import {
  flattenParams,
  missingPoints,
  numericLeaves,
  sanitizeKey,
  statusOf,
  tag,
  type Batch,
  type MetricPoint,
  type StepRecord,
  type Tag,
  type TrackingConfig,
} from '../engine/tracking.js';
import { isArtifactRef, type ArtifactRef } from '../engine/types.js';
import { LIVE_SETTLE_MS, liveRunSettled } from './live-tracking.js';

/** How often a delivery looks again for a step's live run still in the making. */
const LIVE_POLL_MS = 250;

/** One batch of a run's events, with the MLflow runs its tracking made so far. */
export interface DeliverInput extends TrackingInput {
  known: KnownRuns;
}

export interface DeliverDeps {
  tracking: () => TrackingBackend | undefined;
  store: ArtifactStore;
}

interface Log {
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
}

/**
 * The delivery logic without Temporal, so unit tests can drive it with a fake backend. `progress`
 * is called before each event and each write: the activity heartbeats there, and it throws when
 * the attempt was cancelled or timed out, so an abandoned attempt stops instead of racing its retry.
 */
export async function deliver(
  backend: TrackingBackend,
  store: ArtifactStore,
  input: DeliverInput,
  retry: boolean,
  log: Log,
  progress: (delivered: number) => void = () => undefined,
): Promise<KnownRuns> {
  // Known runs as recorded: a tracking workflow from before the rename holds them with `runId`.
  const before = knownRunsOf(input.known);
  const known: KnownRuns = { ...before, steps: { ...before.steps }, location: backend.location };
  const created = new Set<string>();
  const knownBefore = new Set([before.parent?.mlflowRunId, ...Object.values(before.steps).map((r) => r.mlflowRunId)]);
  const config = input.config;
  const parentMlflowRunId = config.parentMlflowRunId ?? config.parentRunId;

  const experimentId = async (): Promise<string> => (known.experimentId ??= await backend.getOrCreateExperiment(config.experiment));

  /**
   * The run tagged `tagKey`=`tagValue`, made by `create` when there is none. `liveUntil`: the step's
   * live run may still be in the making (StepRecord.liveRun) until then (epoch ms): first its end in
   * this process is awaited, then, while there is no run, it is looked for again until that time.
   */
  const ensureRun = async (
    cached: TrackedRun | undefined,
    tagKey: string,
    tagValue: string,
    create: () => Promise<TrackedRun>,
    liveUntil?: number,
  ): Promise<TrackedRun> => {
    if (cached) return cached;
    if (liveUntil !== undefined) await liveRunSettled(backend.location, tagValue, Math.max(0, liveUntil - Date.now()));
    let found = await backend.findRunByTag(await experimentId(), tagKey, tagValue);
    while (!found && liveUntil !== undefined && Date.now() < liveUntil) {
      progress(delivered);
      await new Promise((resolve) => setTimeout(resolve, LIVE_POLL_MS));
      found = await backend.findRunByTag(await experimentId(), tagKey, tagValue);
    }
    if (found) return found;
    const run = await create();
    created.add(run.mlflowRunId);
    return run;
  };

  /** Metric points, deduplicated against what the run holds when it may already hold some. */
  const logMetrics = async (
    run: TrackedRun,
    points: MetricPoint[],
    rest: Omit<Batch, 'metrics'> = { params: [], tags: [] },
  ): Promise<void> => {
    let send = points;
    if (points.length && !created.has(run.mlflowRunId) && (retry || !knownBefore.has(run.mlflowRunId))) {
      const keys = [...new Set(points.map((p) => p.key))];
      const present = (await Promise.all(keys.map((k) => backend.metricHistory(run.mlflowRunId, k)))).flat();
      send = missingPoints(points, present);
      if (send.length < points.length)
        log.info('metric points already in MLflow were not sent again', { run: run.mlflowRunId, skipped: points.length - send.length });
    }
    progress(delivered);
    if (send.length || rest.params.length || rest.tags.length) await backend.logBatch(run.mlflowRunId, { metrics: send, ...rest });
  };

  const parentOf = async (): Promise<TrackedRun> => {
    if (known.parent) return known.parent;
    const found = await backend.findRunByTag(await experimentId(), 'mlpipe.run_key', input.key);
    if (!found)
      throw new PipelineError(
        'TRACKING_ERROR',
        `No MLflow run for pipeline run ${input.key}: the run-started event was not delivered first.`,
      );
    known.parent = found;
    return found;
  };

  let delivered = 0;
  for (const event of [...input.events].sort((a, b) => a.seq - b.seq)) {
    progress(delivered++);
    if (event.type === 'run-started') {
      const tags: Tag[] = [
        tag('mlpipe.run_key', input.key),
        tag('mlflow.source.name', event.file),
        tag('mlflow.source.type', 'JOB'),
        tag('mlpipe.pipeline', event.pipeline),
        tag('mlpipe.workflow_id', event.workflowId),
        tag('mlpipe.run_id', event.runId),
        ...(config.gitCommit ? [tag('mlflow.source.git.commit', config.gitCommit)] : []),
        // An HPO trial's run nests under the search's run.
        ...(parentMlflowRunId ? [tag('mlflow.parentRunId', parentMlflowRunId)] : []),
        ...Object.entries(event.labels).map(([k, v]) => tag(`mlpipe.label.${sanitizeKey(k)}`, v)),
      ];
      known.parent = await ensureRun(known.parent, 'mlpipe.run_key', input.key, async () =>
        backend.createRun({ experimentId: await experimentId(), runName: event.workflowId, startTime: Date.parse(event.startedAt), tags }),
      );
      const params = [...flattenParams(event.config), ...flattenParams(event.params, 'params')];
      // A run made just now has its tags already: only params go in the batch.
      await backend.logBatch(known.parent.mlflowRunId, { metrics: [], params, tags: created.has(known.parent.mlflowRunId) ? [] : tags });
    } else if (event.type === 'step-ended') {
      const s = event.step;
      if (s.status === 'skipped') continue;
      const parent = await parentOf();
      const stepKey = `${input.key}/${s.stepId}`;
      const start = s.startedAt ? Date.parse(s.startedAt) : Date.now();
      const end = s.endedAt ? Date.parse(s.endedAt) : start;
      const tags: Tag[] = [
        tag('mlflow.parentRunId', parent.mlflowRunId),
        tag('mlpipe.step_key', stepKey),
        tag('mlpipe.step', s.stepId),
        tag('mlpipe.plugin', s.uses),
        tag('mlpipe.plugin_version', s.pluginVersion),
        tag('mlpipe.status', s.status),
        tag('mlpipe.cached', s.status === 'cached'),
        tag('mlpipe.attempt', s.attempt),
        ...(s.cacheKey ? [tag('mlpipe.cache_key', s.cacheKey)] : []),
        ...(s.error ? [tag('mlpipe.error', s.error)] : []),
      ];
      const run = await ensureRun(
        known.steps[s.stepId],
        'mlpipe.step_key',
        stepKey,
        () => backend.createRun({ experimentId: parent.experimentId, runName: s.stepId, startTime: start, tags }),
        s.liveRun ? end + LIVE_SETTLE_MS : undefined,
      );
      known.steps[s.stepId] = run;
      const points: MetricPoint[] = [
        ...stepMetrics(s).map((m) => ({ ...m, timestamp: end, step: 0 })),
        { key: 'duration_seconds', value: (end - start) / 1000, timestamp: end, step: 0 },
        { key: 'cache_hit', value: s.status === 'cached' ? 1 : 0, timestamp: end, step: 0 },
        ...(s.series ?? []).map((p) => ({ ...p, key: sanitizeKey(p.key) })),
      ];
      await logMetrics(run, points, { params: flattenParams(s.params), tags: created.has(run.mlflowRunId) ? [] : tags });
      await backend.updateRun(run.mlflowRunId, statusOf(s.status), end);

      // Evaluation metrics also on the parent run; the training backend as a parent tag.
      if (s.uses.startsWith('evaluate.') && s.outputs?.['metrics']) {
        // The step named `evaluate` gives the run's headline metrics (rmse, ...); other evaluation
        // steps (a validation check such as `tune`) are prefixed with their step ID.
        await logMetrics(
          parent,
          numericLeaves(s.outputs['metrics'], s.stepId === 'evaluate' ? '' : s.stepId).map((m) => ({ ...m, timestamp: end, step: 0 })),
        );
      }
      // Model selection (evaluate.select): the comparison table beside the step's run, the winner as a parent tag.
      const table = s.outputs?.['table'];
      if (s.uses.startsWith('evaluate.') && isArtifactRef(table))
        await backend.uploadArtifact(run, table.name ?? 'table.md', await store.get(table));
      if (s.uses === 'evaluate.select' && typeof s.outputs?.['winner'] === 'string')
        await backend.logBatch(parent.mlflowRunId, { metrics: [], params: [], tags: [tag('mlpipe.selected_model', s.outputs['winner'])] });
      if (s.uses.startsWith('train.') && typeof s.outputs?.['backend'] === 'string') {
        await backend.logBatch(parent.mlflowRunId, {
          metrics: [],
          params: [],
          tags: [tag('mlpipe.training_backend', s.outputs['backend'])],
        });
      }
    } else {
      const parent = await parentOf();
      const end = Date.parse(event.endedAt);
      if (event.status === 'FINISHED' && config.registerModel && event.model) {
        known.modelVersion = await registerModel(
          backend,
          store,
          config.registerModel,
          known.steps[config.registerModel.step],
          event.model,
          log,
        );
        if (known.modelVersion)
          await backend.logBatch(parent.mlflowRunId, {
            metrics: [],
            params: [],
            tags: [tag('mlpipe.registered_model', `${config.registerModel.name}/${known.modelVersion}`)],
          });
      }
      if (event.error) await backend.logBatch(parent.mlflowRunId, { metrics: [], params: [], tags: [tag('mlpipe.error', event.error)] });
      await backend.updateRun(parent.mlflowRunId, event.status, end);
    }
  }
  return known;
}

/** Numeric outputs of a step: `metrics` leaves unprefixed, other numeric outputs by name. */
function stepMetrics(s: StepRecord): { key: string; value: number }[] {
  const out = s.outputs ?? {};
  return [
    ...numericLeaves(out['metrics']),
    ...Object.entries(out)
      .filter(([k]) => k !== 'metrics')
      .flatMap(([k, v]) => numericLeaves(v, k)),
  ];
}

async function registerModel(
  backend: TrackingBackend,
  store: ArtifactStore,
  spec: NonNullable<TrackingConfig['registerModel']>,
  run: TrackedRun | undefined,
  model: ArtifactRef,
  log: Log,
): Promise<string | undefined> {
  if (!run) throw new PipelineError('TRACKING_ERROR', `tracking.registerModel: step '${spec.step}' has no MLflow run.`);
  const fileName = model.name ?? 'model.bin';
  await backend.uploadArtifact(run, `model/${fileName}`, await store.get(model));
  await backend.uploadArtifact(run, 'model/mlpipe-artifact.json', Buffer.from(JSON.stringify(model, null, 2)));
  if (!backend.registry) {
    log.warn(
      `model '${spec.name}' not registered: the ${backend.kind} backend at ${backend.location} has no model registry (use a tracking server)`,
    );
    return undefined;
  }
  await backend.registry.ensureRegisteredModel(spec.name);
  const version =
    (await backend.registry.findVersion(spec.name, run.mlflowRunId)) ??
    (await backend.registry.createVersion(spec.name, `${run.artifactUri}/model`, run.mlflowRunId, [tag('mlpipe.sha256', model.sha256)]));
  for (const alias of spec.aliases) await backend.registry.setAlias(spec.name, alias, version);
  log.info(`registered ${spec.name} version ${version}${spec.aliases.length ? ` (${spec.aliases.join(', ')})` : ''}`);
  return version;
}

/** Errors no retry can fix (bad input, permissions) fail the tracking workflow at once. */
const PERMANENT = new Set([
  'INVALID_PARAMETER_VALUE',
  'BAD_REQUEST',
  'INVALID_STATE',
  'PERMISSION_DENIED',
  'UNAUTHENTICATED',
  'UNSUPPORTED_ARTIFACT_URI',
  'CONFIG_INVALID',
]);

export function createDeliverTracking(deps: DeliverDeps) {
  return async function deliverTracking(input: DeliverInput): Promise<KnownRuns> {
    const ctx = Context.current();
    const backend = deps.tracking();
    if (!backend) {
      ctx.log.warn('tracking is off on this worker (MLPIPE_TRACKING=off); events dropped', { key: input.key });
      return input.known;
    }
    try {
      return await deliver(backend, deps.store, input, ctx.info.attempt > 1, ctx.log, (delivered) => {
        if (ctx.cancellationSignal.aborted)
          throw new CancelledFailure(`tracking delivery stopped: ${String(ctx.cancellationSignal.reason ?? 'cancelled')}`);
        ctx.heartbeat({ delivered });
      });
    } catch (e) {
      if (e instanceof CancelledFailure || ctx.cancellationSignal.aborted) throw e;
      // MLflow's own code (adapters/mlflow MlflowError), else the error's.
      const code = (e as { mlflowCode?: string }).mlflowCode ?? (e instanceof PipelineError ? e.code : (e as Error).name);
      const message = `MLflow (${backend.location}): ${(e as Error).message}`;
      // A permanent refusal ends the delivery (TRACKING_ERROR, non-retryable); anything else is retried.
      if (PERMANENT.has(code))
        throw ApplicationFailure.create(
          failureOptions(new PipelineError('TRACKING_ERROR', message, { retryable: false, details: { mlflowCode: code } })),
        );
      throw ApplicationFailure.create(failureOptions(new PipelineError('SERVICE_UNAVAILABLE', message)));
    }
  };
}
