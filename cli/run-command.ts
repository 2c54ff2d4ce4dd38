/** `mlpipe run`, `monitor`, `hpo`, `status`, `cancel`: runs on a Temporal server, followed from here. */
import type { Client } from '@temporalio/client';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { clientStore, prepareRun, uploadRunFiles } from '../app/runs.js';
import type { Settings } from '../app/project.js';
import { redact } from '../adapters/mlflow/rest.js';
import { describeFailure, errorFromFailure, PipelineError } from '../engine/errors.js';
import { checkLabels, LIMITS } from '../engine/limits.js';
import {
  HPO_WORKFLOW,
  hpoStatusQueryName,
  knownRunsOf,
  MONITOR_WORKFLOW,
  PIPELINE_WORKFLOW,
  runSummary,
  statusQueryName,
  trackingTaskQueue,
  trackingWorkflowId,
  type HpoResult,
  type HpoStatus,
  type KnownRuns,
  type MonitorResult,
  type PipelineResult,
  type PipelineStatus,
} from '../engine/contracts.js';
import { stepProgressOf } from '../engine/progress.js';
import { formatStepLine, formatSummary, progressOfDetails } from './render.js';
import { err, out, usageError } from './output.js';
import { compile, connect, every, sleep, startBackgroundWorker } from './shared.js';

/**
 * SIGINT and SIGTERM while `mlpipe run` follows a run: the first requests cancellation (running
 * steps are cancelled) and following goes on until the run closes, so its end is printed; a second
 * stops waiting at once (exit 1).
 */
export function followSignals(client: Client, workflowId: string): { received(): NodeJS.Signals | undefined; dispose(): Promise<void> } {
  let received: NodeJS.Signals | undefined;
  let cancelling: Promise<void> | undefined;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (received) {
      err(`${signal} again: stopped waiting for ${workflowId} (its cancellation was requested; 'mlpipe status ${workflowId}' shows it).`);
      process.exit(1);
    }
    received = signal;
    err(`${signal}: cancelling run ${workflowId} (${signal} again to stop waiting)`);
    cancelling = client.workflow
      .getHandle(workflowId)
      .cancel()
      .then(
        () => undefined,
        (e: unknown) => void err(`could not cancel ${workflowId}: ${(e as Error).message}`),
      );
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return {
    received: () => received,
    dispose: async () => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      await cancelling;
    },
  };
}

export function parseLabels(labels: string[] | undefined): Record<string, string> {
  const result: Record<string, string> = {};
  for (const l of labels ?? []) {
    const i = l.indexOf('=');
    if (i <= 0) throw usageError(`--label expects key=value, got '${l}'.`);
    result[l.slice(0, i)] = l.slice(i + 1);
  }
  checkLabels(result);
  return result;
}

/** The heartbeat details of a run's pending step activities (the activity ID is the step ID), by step ID. */
export async function stepDetails(handle: ReturnType<Client['workflow']['getHandle']>): Promise<Map<string, unknown>> {
  const found = new Map<string, unknown>();
  const { defaultPayloadConverter } = await import('@temporalio/common');
  const d = await handle.describe().catch(() => undefined);
  for (const a of d?.raw.pendingActivities ?? []) {
    const payload = a.heartbeatDetails?.payloads?.[0];
    if (!payload || !a.activityId) continue;
    try {
      found.set(a.activityId, defaultPayloadConverter.fromPayload(payload));
    } catch {
      /* details no converter reads */
    }
  }
  return found;
}

/** What a step waits for (`waiting` in its heartbeat details: a step waiting for MLflow or GCS). */
export function waitingOf(details: unknown): string | undefined {
  const message = typeof details === 'object' && details !== null ? (details as { waiting?: unknown }).waiting : undefined;
  return typeof message === 'string' ? message : undefined;
}

/**
 * The progress of running steps while `mlpipe run` follows a run. On a terminal, one line at the
 * bottom, rewritten in place (`▶ train  epoch 12/40 loss 0.183 val 0.192 eta 14s`); otherwise a
 * plain line whenever a step's progress moves on (`… train  epoch 12/40 ...`).
 */
export class ProgressView {
  private line = '';
  private readonly printed = new Map<string, string>();
  constructor(private readonly tty: boolean) {}

  /** Prints a line of the log above the progress line. */
  print(text: string): void {
    if (this.line) process.stdout.write('\r\x1b[2K');
    out(text);
    if (this.line) process.stdout.write(this.line);
  }

  update(running: string[], details: Map<string, unknown>): void {
    const now = Date.now();
    const shown: string[] = [];
    for (const id of running) {
      const d = details.get(id);
      if (waitingOf(d)) continue; // printed as a waiting line
      const text = progressOfDetails(d, now);
      const p = stepProgressOf(d);
      if (!text || !p) continue;
      if (this.tty) shown.push(`▶ ${id}  ${text}`);
      else {
        const key = `${p.done ?? ''}|${p.message ?? ''}`;
        if (this.printed.get(id) !== key) out(`… ${id.padEnd(16)} ${text}`);
        this.printed.set(id, key);
      }
    }
    if (!this.tty) return;
    const width = Math.max(20, (process.stdout.columns ?? 100) - 1);
    const next = shown.join('  |  ').slice(0, width);
    if (next === this.line) return;
    process.stdout.write(`\r\x1b[2K${next}`);
    this.line = next;
  }

  clear(): void {
    if (this.line) process.stdout.write('\r\x1b[2K');
    this.line = '';
  }
}

/** Follows a run through its status query, printing each step as it changes, and the progress of running steps. */
export async function follow(client: Client, workflowId: string, json: boolean): Promise<number> {
  const handle = client.workflow.getHandle(workflowId);
  const seen = new Map<string, string>();
  const waiting = new Map<string, boolean>();
  const view = new ProgressView(!json && process.stdout.isTTY === true);
  const print = (line: string): void => view.print(line);
  let last: PipelineStatus | undefined;
  let polls = 0;
  /** Heartbeat details of running steps: a wait for a service is printed once per wait, progress as it moves. */
  const showDetails = async (running: string[]): Promise<void> => {
    const details = await stepDetails(handle);
    const now = new Map([...details].flatMap(([id, d]) => (waitingOf(d) ? [[id, waitingOf(d)!] as const] : [])));
    for (const [id, message] of now) if (!waiting.get(id)) print(`… ${id.padEnd(16)} ${message}`);
    for (const id of new Set([...waiting.keys(), ...now.keys()])) waiting.set(id, now.has(id));
    view.update(running, details);
  };
  // A status query still in flight when the run closes is abandoned: its answer is not needed, and a
  // query that reaches a worker as the run leaves its cache may never be answered.
  const closing = new AbortController();
  const poll = async (): Promise<void> => {
    try {
      last = await client.withAbortSignal(closing.signal, () => handle.query<PipelineStatus>(statusQueryName));
    } catch {
      return; // not started yet, or already closed
    }
    if (json) return;
    for (const id of last.order) {
      const s = last.steps[id]!;
      const key = `${s.status}:${s.attempt}`;
      if (seen.get(id) !== key) {
        seen.set(id, key);
        if (s.status !== 'pending') print(formatStepLine(id, s));
      }
    }
    const running = last.order.filter((id) => last!.steps[id]!.status === 'running');
    if (++polls % 3 === 0 && running.length) await showDetails(running);
  };
  const polling = every(300, poll);
  // Once the run is closed it is not queried again: a query of a closed workflow makes a worker
  // replay its whole history, and one that races the worker's shutdown holds the shutdown up. The
  // result (or the failure's details) has every step.
  try {
    const result = await handle.result();
    closing.abort();
    await polling.stop();
    view.clear();
    const r = result as PipelineResult;
    if (json) out(JSON.stringify(r, null, 2));
    else {
      for (const id of Object.keys(r.steps)) if (seen.get(id)?.split(':')[0] !== r.steps[id]!.status) out(formatStepLine(id, r.steps[id]!));
      out(formatSummary(r));
    }
    return 0;
  } catch (e) {
    closing.abort();
    await polling.stop();
    const final = errorFromFailure(e)?.details as PipelineStatus | undefined;
    if (final && typeof final === 'object' && Array.isArray(final.order) && final.steps) last = final;
    view.clear();
    const message = describeFailure(e).message;
    if (json) out(JSON.stringify({ workflowId, state: last?.state ?? 'failed', error: message, steps: last?.steps }, null, 2));
    else {
      if (last)
        for (const id of last.order) if (seen.get(id)?.split(':')[0] !== last.steps[id]!.status) out(formatStepLine(id, last.steps[id]!));
      err(`\nrun ${workflowId} did not succeed:\n${message}`);
    }
    return 1;
  }
}

export async function cmdRun(argv: string[], settings: Settings): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      worker: { type: 'boolean', default: false },
      'by-name': { type: 'boolean', default: false },
      'no-cache': { type: 'boolean', default: false },
      'max-parallel': { type: 'string' },
      label: { type: 'string', multiple: true },
      id: { type: 'string' },
      detach: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      'wait-tracking': { type: 'boolean', default: false },
    },
  });
  const [ref, ...overrides] = positionals;
  if (!ref) throw usageError('mlpipe run needs a pipeline name or path.');
  const maxParallel =
    values['max-parallel'] === undefined ? undefined : z.coerce.number().int().min(1).max(LIMITS.maxParallel).parse(values['max-parallel']);
  // Compiled here, and sent with the run (unless --by-name): the worker needs the plugins, not this folder.
  const { compiled, input, files } = await prepareRun(settings, ref, {
    overrides,
    cache: !values['no-cache'],
    maxParallel,
    labels: parseLabels(values.label),
    submit: !values['by-name'],
  });
  if (files.length) await uploadRunFiles(clientStore(settings), files);

  const client = await connect(settings);
  const workflowId = values.id ?? `${compiled.name}-${randomUUID().slice(0, 8)}`;
  let stopWorker: (() => Promise<void>) | undefined;
  if (values.worker) stopWorker = await startBackgroundWorker(settings);
  try {
    await client.workflow.start(PIPELINE_WORKFLOW, {
      taskQueue: settings.taskQueue,
      workflowId,
      args: [input],
      staticSummary: runSummary(compiled.name, input.labels),
    });
    if (!values.json) out(`started ${compiled.name} as workflow ${workflowId} on task queue ${settings.taskQueue}`);
    if (values.detach) {
      if (values.json) out(JSON.stringify({ workflowId }));
      return 0;
    }
    const signals = followSignals(client, workflowId);
    try {
      const code = await follow(client, workflowId, values.json);
      // Tracking goes on after the run (its own workflow): said where, and waited for only on request.
      if (!values.json) await reportTracking(client, workflowId, settings, values['wait-tracking'] && !signals.received());
      return code;
    } finally {
      await signals.dispose();
    }
  } finally {
    await stopWorker?.();
    await client.connection.close();
  }
}

/** One drift check now: starts monitorWorkflow and prints what it found and did. */
export async function cmdMonitor(argv: string[], settings: Settings): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { worker: { type: 'boolean', default: false }, json: { type: 'boolean', default: false }, id: { type: 'string' } },
  });
  const [ref, ...overrides] = positionals;
  if (!ref) throw usageError('mlpipe monitor needs a pipeline name or path.');
  const compiled = await compile(settings, ref, overrides);
  if (!compiled.monitor)
    throw new PipelineError('SPEC_INVALID', `Pipeline '${compiled.name}' has no monitor: section.`, {
      hint: 'Add monitor: { current: <file>, reference: { step: <step>, output: dataset } }.',
    });
  const client = await connect(settings);
  let stopWorker: (() => Promise<void>) | undefined;
  if (values.worker) stopWorker = await startBackgroundWorker(settings);
  try {
    const workflowId = values.id ?? `monitor-${compiled.name}-${randomUUID().slice(0, 8)}`;
    const handle = await client.workflow.start(MONITOR_WORKFLOW, {
      taskQueue: settings.taskQueue,
      workflowId,
      args: [{ pipeline: ref, ...(overrides.length ? { overrides } : {}) }],
    });
    let r: MonitorResult;
    try {
      r = (await handle.result()) as MonitorResult;
    } catch (e) {
      err(`monitor ${workflowId} failed: ${describeFailure(e).message}`);
      return 1;
    }
    if (values.json) out(JSON.stringify(r, null, 2));
    else {
      out(
        `${r.drift.datasetDrift ? 'DATASET DRIFT' : 'no dataset drift'} in ${r.pipeline}: ${r.drift.driftedColumns.length} of ${r.drift.numberOfColumns} columns drifted${r.drift.driftedColumns.length ? ` (${r.drift.driftedColumns.join(', ')})` : ''}`,
      );
      out(
        `reference: ${r.referenceFrom.model ? `${r.referenceFrom.model} (version ${r.referenceFrom.version}), ` : ''}step ${r.referenceFrom.step} of ${r.referenceFrom.workflowId}`,
      );
      out(
        `retrain: ${r.retrain}${r.retrainWorkflowId ? ` (${r.retrainWorkflowId})` : ''}${r.alert ? `; alert ${r.alert.sent ? 'sent' : `not sent (${r.alert.reason})`}` : ''}`,
      );
      out(`reports: ${r.drift.report.uri} (JSON), ${r.drift.html.uri} (HTML)`);
    }
    return 0;
  } finally {
    await stopWorker?.();
    await client.connection.close();
  }
}

/** A hyperparameter search: starts hpoWorkflow, shows progress, prints the trials and the best. */
export async function cmdHpo(argv: string[], settings: Settings): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      worker: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      id: { type: 'string' },
      trials: { type: 'string' },
      parallel: { type: 'string' },
      detach: { type: 'boolean', default: false },
    },
  });
  const [ref, ...overrides] = positionals;
  if (!ref) throw usageError('mlpipe hpo needs a pipeline name or path.');
  const compiled = await compile(settings, ref, overrides);
  if (!compiled.hpo)
    throw new PipelineError('SPEC_INVALID', `Pipeline '${compiled.name}' has no hpo: section.`, {
      hint: 'Add hpo: { metric: { step, key, goal }, space: {...}, trials, parallel }.',
    });
  const trials = values.trials === undefined ? undefined : z.coerce.number().int().min(1).parse(values.trials);
  const parallel = values.parallel === undefined ? undefined : z.coerce.number().int().min(1).parse(values.parallel);
  const client = await connect(settings);
  let stopWorker: (() => Promise<void>) | undefined;
  if (values.worker) stopWorker = await startBackgroundWorker(settings);
  try {
    const workflowId = values.id ?? `hpo-${compiled.name}-${randomUUID().slice(0, 8)}`;
    const handle = await client.workflow.start(HPO_WORKFLOW, {
      taskQueue: settings.taskQueue,
      workflowId,
      args: [
        { pipeline: ref, ...(overrides.length ? { overrides } : {}), ...(trials ? { trials } : {}), ...(parallel ? { parallel } : {}) },
      ],
    });
    if (!values.json)
      out(
        `started a search of ${trials ?? compiled.hpo.trials} trials (${parallel ?? compiled.hpo.parallel} at a time) as workflow ${workflowId}`,
      );
    if (values.detach) return 0;
    let last = '';
    const progress = every(1000, async () => {
      const s = await handle.query<HpoStatus>(hpoStatusQueryName);
      const line = `  ${s.finished}/${s.trials} trials done, ${s.failed} failed, running [${s.running.join(', ')}]${s.best ? `; best so far: trial ${s.best.index} ${compiled.hpo!.metric.key}=${s.best.value} (${s.best.overrides.join(' ')})` : ''}`;
      if (line !== last && !values.json) out(line);
      last = line;
    });
    let r: HpoResult;
    try {
      r = (await handle.result()) as HpoResult;
    } catch (e) {
      err(`search ${workflowId} failed: ${describeFailure(e).message}`);
      return 1;
    } finally {
      await progress.stop();
    }
    if (values.json) out(JSON.stringify(r, null, 2));
    else {
      for (const t of r.results)
        out(
          `  trial ${String(t.index).padStart(3)}  ${t.status === 'succeeded' ? `${r.metric.key}=${t.value}` : `failed: ${t.error?.split('\n')[0]}`}  ${t.overrides.join(' ')}${t.stoppedAtEpoch ? `  (stopped by the median rule at epoch ${t.stoppedAtEpoch})` : ''}`,
        );
      out(
        `best: trial ${r.best.index}, ${r.metric.key}=${r.best.value} with ${r.best.overrides.join(' ')} (${r.trials} trials, ${r.failed} failed, ${r.generations} history generation(s))`,
      );
      if (r.final) {
        const show = (m: Record<string, unknown> | undefined): string =>
          Object.entries(m ?? {})
            .map(([k, v]) => `${k}=${typeof v === 'number' ? Number(v.toPrecision(6)) : JSON.stringify(v)}`)
            .join(' ');
        out(`final run ${r.final.workflowId}: ${r.metric.step} ${show(r.final.metrics)}`);
        for (const [step, m] of Object.entries(r.final.evaluations ?? {})) if (step !== r.metric.step) out(`  ${step}: ${show(m)}`);
      }
    }
    return 0;
  } finally {
    await stopWorker?.();
    await client.connection.close();
  }
}

/**
 * Says where the run's tracking is: the MLflow run when its tracking workflow has closed, else the
 * workflow that goes on delivering it (on the run's tracking task queue, served by any worker). With
 * `wait`, waits for it to close first. The location is the one the worker tracked to (a server URL,
 * or the file store), which need not be this process's settings. Polls describe() rather than
 * long-polling the result, so no call is left in flight at the end.
 */
export async function reportTracking(client: Client, workflowId: string, settings: Settings, wait: boolean): Promise<void> {
  let runId: string;
  try {
    runId = (await client.workflow.getHandle(workflowId).describe()).runId;
  } catch {
    return;
  }
  const handle = client.workflow.getHandle(trackingWorkflowId(`${workflowId}/${runId}`));
  let status: string;
  try {
    status = (await handle.describe()).status.name;
    while (wait && status === 'RUNNING') {
      await sleep(100);
      status = (await handle.describe()).status.name;
    }
  } catch {
    return; // tracking is off for this run
  }
  if (status === 'RUNNING')
    return void out(
      `MLflow: tracking continues in workflow ${handle.workflowId} (task queue ${trackingTaskQueue(settings.taskQueue)}; any 'mlpipe worker' delivers it; --wait-tracking waits for it).`,
    );
  const result = status === 'COMPLETED' ? await (handle.result() as Promise<KnownRuns>).catch(() => undefined) : undefined;
  const known = result && knownRunsOf(result);
  if (!known) out(`MLflow: tracking failed; see workflow ${handle.workflowId}.`);
  else if (known.parent) {
    const where = trackingPlace(known.location ?? settings.trackingUri);
    out(
      `MLflow: run ${known.parent.mlflowRunId} in experiment ${known.parent.experimentId} (${where})${known.modelVersion ? `, model version ${known.modelVersion}` : ''}`,
    );
  }
}

/** `server http://host:5000` or `file store /path/mlruns`, without credentials. */
export function trackingPlace(uri: string | undefined): string {
  if (!uri) return 'MLflow';
  if (uri.startsWith('file:')) return `file store ${uri.startsWith('file://') ? fileURLToPath(uri) : uri.slice('file:'.length)}`;
  return `server ${redact(uri)}`;
}

export async function cmdStatus(argv: string[], settings: Settings): Promise<number> {
  const [id] = argv;
  if (!id) throw usageError('mlpipe status needs a workflow ID.');
  const client = await connect(settings);
  const handle = client.workflow.getHandle(id);
  const status = await handle.query<PipelineStatus>(statusQueryName);
  const details = status.state === 'running' ? await stepDetails(handle) : new Map<string, unknown>();
  out(`${status.pipeline}: ${status.state}`);
  for (const step of status.order)
    out(formatStepLine(step, status.steps[step]!, waitingOf(details.get(step)), progressOfDetails(details.get(step))));
  await client.connection.close();
  return 0;
}

export async function cmdCancel(argv: string[], settings: Settings): Promise<number> {
  const [id] = argv;
  if (!id) throw usageError('mlpipe cancel needs a workflow ID.');
  const client = await connect(settings);
  await client.workflow.getHandle(id).cancel();
  out(`cancellation requested for ${id}`);
  await client.connection.close();
  return 0;
}
