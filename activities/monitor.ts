/**
 * Activities of the drift monitor: find the reference and current data, compute drift and record
 * it, post an alert. The first two heartbeat while they read (prediction-log chunks, data chunks)
 * and compute (between columns), so the heartbeat timeout notices a dead worker, not a big file. The monitor workflow (workflows/monitor.ts) calls them in that order and
 * decides about retraining.
 */
import { Context } from '@temporalio/activity';
import { basename, isAbsolute, resolve } from 'node:path';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { request } from 'undici';
import { computeDriftStepwise, toEvidentlyJson } from '../engine/drift/index.js';
import { renderDriftHtml } from '../engine/drift/html.js';
import { driftOptions, driftParams } from '../engine/drift/params.js';
import { PipelineError } from '../engine/errors.js';
import type { MonitorInput, MonitorOutcome, MonitorPlan } from '../engine/contracts.js';
import { checkInput } from '../engine/limits.js';
import { keySegment, listRuns, stepKey, type StepManifest } from '../engine/lineage.js';
import { collectPredictions } from '../engine/prediction-log.js';
import { ACTIVITY_DEFAULTS, heartbeatEveryMs } from '../engine/step-defaults.js';
import type { ArtifactStore, ProjectPipelines, TrackingBackend } from '../engine/ports.js';
import { isArtifactRef, type ArtifactRef } from '../engine/types.js';
import { artifactFormat, loadDriftPair } from '../lib/drift-data.js';
import { toApplicationFailure } from './run-step.js';

export interface MonitorDeps {
  store: ArtifactStore;
  project: ProjectPipelines;
  tracking: () => TrackingBackend | undefined;
}

async function outputOf(
  store: ArtifactStore,
  workflowId: string,
  runId: string,
  step: string,
  output: string,
): Promise<ArtifactRef | undefined> {
  const m = await store.getRecord<StepManifest>(stepKey(workflowId, runId, step));
  if (!m || m.status === 'failed') return undefined;
  const ref = m.outputs[output];
  return isArtifactRef(ref) ? ref : undefined;
}

/**
 * Heartbeats while `fn` runs: on a timer (a third of the heartbeat timeout) and with progress
 * details whenever `fn` reports some. `progress` also yields to the event loop, so the timer and
 * the SDK's heartbeat sender run between the CPU-bound parts (DuckDB chunks, drift columns).
 */
async function heartbeating<T>(fn: (progress: (details: Record<string, unknown>) => Promise<void>) => Promise<T>): Promise<T> {
  const ctx = Context.current();
  let last: Record<string, unknown> = { phase: 'start' };
  const beat = (): void => ctx.heartbeat(last);
  const every = heartbeatEveryMs(ctx.info.heartbeatTimeoutMs, ACTIVITY_DEFAULTS.monitorData.heartbeatTimeoutMs);
  const timer = setInterval(beat, every);
  beat();
  try {
    return await fn(async (details) => {
      last = details;
      beat();
      await nextTurn();
    });
  } finally {
    clearInterval(timer);
  }
}

export function createMonitorActivities(deps: MonitorDeps) {
  type Progress = (details: Record<string, unknown>) => Promise<void>;

  async function prepare(input: MonitorInput, progress: Progress): Promise<MonitorPlan> {
    try {
      checkInput(input);
      const compiled = deps.project.compile(input.pipeline, input.overrides ?? []);
      const monitor = compiled.monitor;
      if (!monitor) {
        throw new PipelineError('SPEC_INVALID', `Pipeline '${compiled.name}' has no monitor: section, so there is nothing to monitor.`, {
          hint: 'Add monitor: { current: <file>, reference: { step: <step>, output: dataset } } to the pipeline.',
        });
      }
      const { step, output, model } = monitor.reference;
      let reference: ArtifactRef | undefined;
      let from: MonitorPlan['referenceFrom'] | undefined;
      if (model) {
        // The champion's training data: registry alias -> the run that made the version -> lineage.
        const [name, alias] = model.split('@') as [string, string];
        const backend = deps.tracking();
        if (!backend?.registry) {
          throw new PipelineError(
            'TRACKING_ERROR',
            `monitor.reference.model '${model}' needs an MLflow tracking server with a model registry; this worker has ${backend ? backend.location : 'no tracking'}.`,
            {
              hint: 'Set MLFLOW_TRACKING_URI on the worker, or drop reference.model to use the latest successful run.',
            },
          );
        }
        const found = await backend.registry.aliasRun(name, alias);
        const key = found?.tags['mlpipe.step_key'];
        if (!found || !key)
          throw new PipelineError(
            'STORAGE_NOT_FOUND',
            `Registered model '${name}' has no version aliased '${alias}' that mlpipe produced.`,
            { hint: `Check the alias in MLflow, or promote a version to '${alias}'.` },
          );
        const parts = key.split('/');
        const runId = parts[parts.length - 2]!;
        const workflowId = parts.slice(0, -2).join('/');
        reference = await outputOf(deps.store, workflowId, runId, step, output);
        if (!reference)
          throw new PipelineError(
            'STORAGE_NOT_FOUND',
            `The run behind ${model} (version ${found.version}, workflow ${workflowId}) has no recorded output '${output}' of step '${step}'.`,
          );
        from = { workflowId, runId, step, model, version: found.version };
      } else {
        for (const run of await listRuns(deps.store)) {
          if (run.pipeline !== compiled.name) continue;
          reference = await outputOf(deps.store, run.workflowId, run.runId, step, output);
          if (reference) {
            from = { workflowId: run.workflowId, runId: run.runId, step };
            break;
          }
        }
        if (!reference) {
          throw new PipelineError(
            'STORAGE_NOT_FOUND',
            `No run of '${compiled.name}' in ${deps.store.location} has produced '${step}.${output}' yet, so there is no reference data.`,
            {
              hint: `Run the pipeline once (mlpipe run ${compiled.name}), then monitor it.`,
            },
          );
        }
      }
      if (!(await deps.store.verify(reference))) {
        throw new PipelineError(
          'STORAGE_NOT_FOUND',
          `The reference data ${reference.name ?? ''} sha256:${reference.sha256.slice(0, 12)} is missing or altered in the store.`,
        );
      }
      if (monitor.current.startsWith('predictions:')) {
        const model = monitor.current.slice('predictions:'.length);
        const since = new Date(Date.now() - (monitor.windowMs ?? 86_400_000));
        // Chunks are read 8 at a time; each read heartbeats with how far it got.
        const log = await collectPredictions(deps.store, model, since, undefined, {
          concurrency: 8,
          onProgress: (p) => void progress({ ...p, phase: `predictions-${p.phase}` }),
        });
        if (!log.rows) {
          throw new PipelineError(
            'DATA_INVALID',
            `No predictions of '${model}' were logged since ${since.toISOString()} in ${deps.store.location}.`,
            {
              hint: `Serve the model with the same artifact store (mlpipe serve ${model}@champion), or widen monitor.window.`,
            },
          );
        }
        const current = await deps.store.put(log.text, {
          name: `predictions-${keySegment(model)}.jsonl`,
          mediaType: 'application/x-ndjson',
        });
        return {
          pipeline: compiled.name,
          overrides: input.overrides ?? [],
          monitor,
          reference,
          referenceFrom: from!,
          current,
          currentFrom: { predictions: model, rows: log.rows, chunks: log.chunks, versions: log.versions, since: since.toISOString() },
        };
      }
      const currentPath = isAbsolute(monitor.current) ? monitor.current : resolve(deps.project.dir, monitor.current);
      let current: ArtifactRef;
      try {
        current = await deps.store.putFile(currentPath, { name: basename(currentPath) });
      } catch (e) {
        throw new PipelineError('DATA_INVALID', `monitor.current: cannot read ${currentPath}: ${(e as Error).message}`, {
          hint: 'Point monitor.current at a CSV, Parquet or JSON-lines file on the worker.',
        });
      }
      return { pipeline: compiled.name, overrides: input.overrides ?? [], monitor, reference, referenceFrom: from!, current };
    } catch (e) {
      throw toApplicationFailure(e);
    }
  }

  async function compute(plan: MonitorPlan, progress: Progress): Promise<MonitorOutcome> {
    try {
      const params = driftParams.parse(plan.monitor.drift);
      const refFile = await deps.store.getFile(plan.reference);
      const curFile = await deps.store.getFile(plan.current);
      // Stored objects have no extension: the recorded name gives the format.
      const [reference, current] = await loadDriftPair(
        { file: refFile, format: artifactFormat(plan.reference) },
        { file: curFile, format: artifactFormat(plan.current) },
        params.columns,
        (side, rows) => progress({ phase: `load-${side}`, rows }),
      );
      const options = driftOptions(params);
      // A prediction log holds the model's inputs (not the target, plus prediction and log
      // columns): compare the columns both sides have.
      options.columns ??= plan.currentFrom
        ? Object.keys(reference.columns).filter((c) => c in current.columns)
        : Object.keys(reference.columns);
      const result = await computeDriftStepwise(reference, current, options, (p) => progress({ phase: 'drift', ...p }));
      const report = await deps.store.put(toEvidentlyJson(result), { name: 'drift.json', mediaType: 'application/json' });
      const htmlText = renderDriftHtml(result, {
        title: `Data drift: ${plan.pipeline}`,
        reference: `${plan.reference.name ?? 'reference'} (${reference.rows} rows)`,
        current: `${plan.current.name ?? 'current'} (${current.rows} rows)`,
      });
      const html = await deps.store.put(htmlText, { name: 'drift.html', mediaType: 'text/html' });
      const info = Context.current().info.workflowExecution;
      const at = new Date().toISOString();
      const recordKey = `monitoring/${keySegment(plan.pipeline)}/${at.replace(/[:.]/g, '-')}-${keySegment(info?.runId ?? 'local')}`;
      const outcome: MonitorOutcome = {
        datasetDrift: result.datasetDrift,
        share: result.shareOfDriftedColumns,
        driftedColumns: result.columns.filter((c) => c.drift_detected).map((c) => c.column_name),
        numberOfColumns: result.numberOfColumns,
        report,
        html,
        recordKey,
      };
      await deps.store.putRecord(recordKey, {
        at,
        pipeline: plan.pipeline,
        workflowId: info?.workflowId,
        runId: info?.runId,
        referenceFrom: plan.referenceFrom,
        reference: plan.reference,
        current: plan.current,
        ...outcome,
      });
      await trackCheck(deps.tracking(), plan, outcome, result.columns, info?.runId ?? recordKey, Buffer.from(htmlText)).catch(
        (e: unknown) => Context.current().log.warn(`drift check not tracked in MLflow: ${(e as Error).message}`),
      );
      return outcome;
    } catch (e) {
      throw toApplicationFailure(e);
    }
  }

  return {
    async prepareMonitor(input: MonitorInput): Promise<MonitorPlan> {
      return heartbeating((progress) => prepare(input, progress));
    },

    async computeMonitorDrift(plan: MonitorPlan): Promise<MonitorOutcome> {
      return heartbeating((progress) => compute(plan, progress));
    },

    /** Posts a Slack-compatible message ({text, blocks}) to the webhook named by an environment variable of this worker. */
    async postAlert(input: {
      webhookEnv: string;
      text: string;
      fields: Record<string, string>;
    }): Promise<{ sent: boolean; status?: number; reason?: string }> {
      const url = process.env[input.webhookEnv];
      if (!url) {
        Context.current().log.warn(`no alert sent: ${input.webhookEnv} is not set on this worker`);
        return { sent: false, reason: `${input.webhookEnv} is not set` };
      }
      const body = {
        text: input.text,
        blocks: [
          { type: 'section', text: { type: 'mrkdwn', text: input.text } },
          { type: 'section', fields: Object.entries(input.fields).map(([k, v]) => ({ type: 'mrkdwn', text: `*${k}*\n${v}` })) },
        ],
      };
      const res = await request(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
        headersTimeout: 10_000,
        bodyTimeout: 10_000,
      });
      await res.body.text();
      // The URL is a credential (Slack's carry the token): never in messages.
      if (res.statusCode >= 500 || res.statusCode === 429)
        throw toApplicationFailure(new PipelineError('ALERT_FAILED', `alert webhook answered HTTP ${res.statusCode}`));
      if (res.statusCode >= 300)
        throw toApplicationFailure(
          new PipelineError('ALERT_FAILED', `alert webhook refused the message: HTTP ${res.statusCode}`, { retryable: false }),
        );
      return { sent: true, status: res.statusCode };
    },
  };
}

/**
 * Best effort: one MLflow run per check in the experiment `<pipeline>-monitoring`, with the share,
 * the per-column scores, the reference's origin and the HTML report. Idempotent on retry (the run
 * is found by its `mlpipe.monitor_key` tag before one is created). The store record is the source of
 * truth; an MLflow outage only leaves the check out of MLflow.
 */
async function trackCheck(
  backend: TrackingBackend | undefined,
  plan: MonitorPlan,
  outcome: MonitorOutcome,
  columns: { column_name: string; drift_score: number; drift_detected: boolean }[],
  key: string,
  html?: Uint8Array,
): Promise<void> {
  if (!backend) return;
  const experiment = await backend.getOrCreateExperiment(`${plan.pipeline}-monitoring`);
  const run =
    (await backend.findRunByTag(experiment, 'mlpipe.monitor_key', key)) ??
    (await backend.createRun({
      experimentId: experiment,
      runName: `drift-${new Date().toISOString().slice(0, 16)}`,
      startTime: Date.now(),
      tags: [
        { key: 'mlpipe.monitor_key', value: key },
        { key: 'mlpipe.pipeline', value: plan.pipeline },
        { key: 'mlpipe.reference_workflow_id', value: plan.referenceFrom.workflowId },
        ...(plan.referenceFrom.model
          ? [{ key: 'mlpipe.reference_model', value: `${plan.referenceFrom.model} v${plan.referenceFrom.version}` }]
          : []),
      ],
    }));
  const now = Date.now();
  const metrics = [
    { key: 'drift_share', value: outcome.share, timestamp: now, step: 0 },
    { key: 'dataset_drift', value: outcome.datasetDrift ? 1 : 0, timestamp: now, step: 0 },
    { key: 'drifted_columns', value: outcome.driftedColumns.length, timestamp: now, step: 0 },
    ...columns
      .filter((c) => Number.isFinite(c.drift_score))
      .map((c) => ({ key: `drift_score.${c.column_name}`, value: c.drift_score, timestamp: now, step: 0 })),
  ];
  // A retried activity may have logged them already: metrics append, so check first.
  if (!(await backend.metricHistory(run.mlflowRunId, 'drift_share')).length) {
    await backend.logBatch(run.mlflowRunId, {
      metrics,
      params: [
        { key: 'reference_sha256', value: plan.reference.sha256 },
        { key: 'current_sha256', value: plan.current.sha256 },
      ],
      tags: [],
    });
  }
  if (html) await backend.uploadArtifact(run, 'drift.html', html);
  await backend.updateRun(run.mlflowRunId, 'FINISHED', now);
}
