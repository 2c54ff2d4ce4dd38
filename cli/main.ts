/**
 * The `mlpipe` command line. Parses arguments, calls library functions, prints. Exit codes:
 * 0 success, 1 the run failed or was cancelled, 2 bad input (nothing was started), 3 environment
 * problem (server unreachable, tool missing).
 */
// Heavy modules (the Temporal SDK, the worker, DuckDB through the plugins' commands) are imported
// where a command needs them, so `validate`, `help` and `status` start in a fraction of a second.
import type { Client } from '@temporalio/client';
import type { LogLevel } from '@temporalio/worker';
import { randomUUID } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { clientStore, compileProjectPipeline, prepareRun, uploadRunFiles } from '../app/runs.js';
import { listPipelines, loadSettings, type Settings } from '../app/project.js';
import { redact } from '../adapters/mlflow/rest.js';
import { findMlflow, startMlflowServer, type MlflowServer } from '../dev/mlflow-server.js';
import { freePort, isListening, portInUse, requireTemporalCli, startDevServer, type DevServer } from '../dev/temporal-server.js';
import { describeFailure, errorFromFailure, formatZodIssues, PipelineError } from '../engine/errors.js';
import { checkLabels, LIMITS } from '../engine/limits.js';
import type { CompiledPipeline } from '../engine/types.js';
import { loadProjectRegistry } from '../app/project-plugins.js';
import {
  DEFAULT_TASK_QUEUE,
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
import { renderMermaid } from './graph.js';
import { commandHelp, DEMO_PIPELINE } from './help.js';
import { formatStepLine, formatSummary, progressOfDetails } from './render.js';
import type { startUi } from './ui-command.js';
import { DEFAULT_UI_PORT } from '../ui/port.js';

const HELP = `mlpipe — declarative ML pipelines on Temporal

Usage:
  mlpipe init [dir]                      Scaffold a project: pipelines/, conf/, mlpipe.plugins.ts, a plugin test
  mlpipe run <pipeline> [overrides...]   Start a run, follow it, print outputs (exit code = result)
      --worker            also run a worker in this process while the run lasts
      --no-cache          do not reuse cached step results
      --max-parallel N    at most N steps at once
      --label k=v         attach a label (repeatable)
      --id ID             workflow ID (default <pipeline>-<random>)
      --detach            start and print the workflow ID, do not wait
      --json              print the result as JSON
      --wait-tracking     wait until the run's tracking is in MLflow before exiting
  mlpipe validate <pipeline> [overrides...] [--show-config] [--json]
  mlpipe graph <pipeline> [overrides...]  Print the DAG as a Mermaid flowchart
  mlpipe worker [--task-queue Q]         Serve pipelines on a task queue (default ${DEFAULT_TASK_QUEUE})
  mlpipe dev [--port 7233] [--ui-port 8233] [--db FILE] [--registry] [--web-port 8234] [--no-web]
                                         Temporal dev server (SQLite file) + a worker + the mlpipe UI; --registry:
                                         an MLflow server with a model registry instead of the file store
  mlpipe ui [--port 8234] [--host H]     Web UI: runs, live DAGs, artifacts, training curves (also started by dev)
  mlpipe status <workflow-id>            Live status of a run
  mlpipe cancel <workflow-id>            Cancel a run (running steps are cancelled)
  mlpipe plugins [name]                  List plugins, or show one plugin's params
  mlpipe pipelines                       List the pipelines in pipelines/
  mlpipe demo [pipeline] [overrides...]  Start what is needed and run a pipeline (default ${DEMO_PIPELINE}; or forecast-unemployment)
  mlpipe runs list [--limit N] [--json]  Runs recorded in the artifact store, newest first
  mlpipe runs show <workflow-id> [--run-id R] [--json]
                                         A run's manifest: steps, plugin versions, params hashes,
                                         input and output digests, timings, cache hits
  mlpipe lineage <sha256-prefix | artifact-uri> [--json]
                                         Where an artifact came from (producing steps, their inputs,
                                         recursively) and which steps used it
  mlpipe artifacts get <sha256 | workflow-id/step.output> -o FILE
                                         Write an artifact (digest checked) to FILE (- for stdout)
  mlpipe show <sha256 | workflow-id/step.output> [--rows N]
                                         Preview an artifact: Parquet schema, rows and first rows;
                                         JSON; an evaluation's metrics; an ONNX model's contract
  mlpipe drift <reference> <current> [--json F] [--html F] [--columns a,b] [--stattest T]
             [--threshold X] [--drift-share S] [--column name:test[:threshold]] [--fail-on-drift]
                                         Evidently-compatible data drift between two Parquet/CSV/JSONL
                                         files; exit 1 with --fail-on-drift when the dataset drifted
  mlpipe hpo <pipeline> [overrides...] [--trials N] [--parallel P] [--worker] [--json] [--detach]
                                         Hyperparameter search of the pipeline's hpo: section (trials
                                         as child workflows), then a final run with the best config
  mlpipe trial --pipeline <name> [--<param> <value> | --<param>=<value>]...
                                         A Vertex AI tuning trial: run to the hpo metric step, report
                                         the metric in cloudml-hypertune's file format
  mlpipe monitor <pipeline> [overrides...] [--worker] [--json]
                                         One drift check of the pipeline's monitor: section now
  mlpipe serve <name@alias | models:/name/N | model.onnx | gs://... | --run WORKFLOW-ID> [--port 8080] [--host H]
             [--no-log] [--log-sample S] [--max-body 1mb] [--max-instances N] [--watch 30s]
                                         HTTP prediction server (onnxruntime): POST /predict,
                                         GET /health, /metrics, /model; logs predictions for drift
  mlpipe promote <name> <version> [--alias champion]
                                         Point a registered model's alias at a version
  mlpipe rollback <name> [--alias champion] [--to N] [--history]
                                         Move the alias back to its previous holder
  mlpipe schedule create <pipeline> --every 1h [--id ID] [--workflow monitor|pipeline] [--paused]
  mlpipe schedule list | describe <id> | pause <id> | unpause <id> | trigger <id> | delete <id>
                                         Temporal Schedules of drift monitors (or pipeline runs)
  mlpipe gc [--older-than 7d] [--dry-run] [--json]
                                         Delete stored objects no manifest references, older than N

<pipeline> is a name (pipelines/<name>.yaml) or a path to a YAML file. 'mlpipe <command> --help' (or
'mlpipe help <command>') shows a command's arguments and options.
Overrides: model=wide  training.lr=0.01  +new.key=1  ++key=1  ~key  params.name=value

Environment: TEMPORAL_ADDRESS (localhost:7233), TEMPORAL_NAMESPACE (default), MLPIPE_TASK_QUEUE (${DEFAULT_TASK_QUEUE}),
MLPIPE_PROJECT_DIR (cwd), MLPIPE_ARTIFACTS (<project>/.mlpipe/artifacts, or gs://bucket/prefix), TEMPORAL_CLI,
MLPIPE_LOG_LEVEL, MLPIPE_GCS_ENDPOINT (a GCS emulator), MLPIPE_GCS_CACHE_MAX_BYTES (local cache bound, 10 GiB).
`;

/** A command line mlpipe cannot take: INPUT_INVALID, pointing at the usage. */
const USAGE_HINT = "Run 'mlpipe help' for usage.";
const usageError = (message: string): PipelineError => new PipelineError('INPUT_INVALID', message, { hint: USAGE_HINT });

const out = (s: string): boolean => process.stdout.write(`${s}\n`);
const err = (s: string): boolean => process.stderr.write(`${s}\n`);

/**
 * `run` and `demo` print failures themselves, so their in-process worker only logs errors. They also
 * handle SIGINT / SIGTERM themselves (cancel the run, see followSignals), so the runtime must not stop
 * their worker on those signals (`ownSignals`).
 */
async function installRuntime(defaultLevel: LogLevel = 'WARN', ownSignals = false): Promise<void> {
  const level = (process.env['MLPIPE_LOG_LEVEL'] ?? defaultLevel).toUpperCase() as LogLevel;
  const { DefaultLogger, Runtime } = await import('@temporalio/worker');
  Runtime.install({ logger: new DefaultLogger(level), ...(ownSignals ? { shutdownSignals: [] } : {}) });
}

/**
 * Calls `fn` every `ms`, one call at a time. `stop()` waits for the call in flight: a call still in
 * flight when the connection closes is retried by the client on a closed channel, and that throws
 * "Channel has been shut down" from a timer, after the command has succeeded.
 */
function every(ms: number, fn: () => Promise<void>): { stop(): Promise<void> } {
  let inflight: Promise<void> | undefined;
  const timer = setInterval(() => {
    inflight ??= fn()
      .catch(() => undefined)
      .finally(() => (inflight = undefined));
  }, ms);
  return {
    stop: async () => {
      clearInterval(timer);
      await inflight;
    },
  };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * SIGINT and SIGTERM while `mlpipe run` follows a run: the first requests cancellation (running
 * steps are cancelled) and following goes on until the run closes, so its end is printed; a second
 * stops waiting at once (exit 1).
 */
function followSignals(client: Client, workflowId: string): { received(): NodeJS.Signals | undefined; dispose(): Promise<void> } {
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

async function connect(settings: Settings): Promise<Client> {
  if (!(await isListening(settings.temporalAddress))) {
    throw new PipelineError('TOOL_MISSING', `No Temporal server at ${settings.temporalAddress}.`, {
      hint: "Start one with 'mlpipe dev' (or 'temporal server start-dev'), or set TEMPORAL_ADDRESS.",
    });
  }
  const { Client, Connection } = await import('@temporalio/client');
  const connection = await Connection.connect({ address: settings.temporalAddress });
  return new Client({ connection, namespace: settings.namespace });
}

function compile(settings: Settings, ref: string, overrides: string[]): Promise<CompiledPipeline> {
  return compileProjectPipeline(settings, ref, overrides);
}

function parseLabels(labels: string[] | undefined): Record<string, string> {
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
async function stepDetails(handle: ReturnType<Client['workflow']['getHandle']>): Promise<Map<string, unknown>> {
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
function waitingOf(details: unknown): string | undefined {
  const message = typeof details === 'object' && details !== null ? (details as { waiting?: unknown }).waiting : undefined;
  return typeof message === 'string' ? message : undefined;
}

/**
 * The progress of running steps while `mlpipe run` follows a run. On a terminal, one line at the
 * bottom, rewritten in place (`▶ train  epoch 12/40 loss 0.183 val 0.192 eta 14s`); otherwise a
 * plain line whenever a step's progress moves on (`… train  epoch 12/40 ...`).
 */
class ProgressView {
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
async function follow(client: Client, workflowId: string, json: boolean): Promise<number> {
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

async function cmdRun(argv: string[], settings: Settings): Promise<number> {
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
async function cmdMonitor(argv: string[], settings: Settings): Promise<number> {
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
async function cmdHpo(argv: string[], settings: Settings): Promise<number> {
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
async function reportTracking(client: Client, workflowId: string, settings: Settings, wait: boolean): Promise<void> {
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

async function startBackgroundWorker(settings: Settings): Promise<() => Promise<void>> {
  const { worker, connection } = await (await import('../app/worker.js')).createPipelineWorker({ settings });
  const running = worker.run();
  return async () => {
    worker.shutdown();
    await running;
    await connection.close();
  };
}

async function cmdValidate(argv: string[], settings: Settings): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { 'show-config': { type: 'boolean', default: false }, json: { type: 'boolean', default: false } },
  });
  const [ref, ...overrides] = positionals;
  if (!ref) throw usageError('mlpipe validate needs a pipeline name or path.');
  const compiled = await compile(settings, ref, overrides);
  if (values.json) {
    out(JSON.stringify(compiled, null, 2));
    return 0;
  }
  const choices = Object.entries(compiled.configChoices).map(([g, o]) => `${g}=${o}`);
  out(
    `ok: ${compiled.file}: pipeline '${compiled.name}', ${compiled.order.length} steps, maxParallel ${compiled.maxParallel}${choices.length ? `, config ${choices.join(' ')}` : ''}`,
  );
  if (values['show-config']) {
    out(JSON.stringify({ params: compiled.params, conf: compiled.config }, null, 2));
  }
  return 0;
}

async function cmdGraph(argv: string[], settings: Settings): Promise<number> {
  const { positionals } = parseArgs({ args: argv, allowPositionals: true, options: {} });
  const [ref, ...overrides] = positionals;
  if (!ref) throw usageError('mlpipe graph needs a pipeline name or path.');
  out(renderMermaid(await compile(settings, ref, overrides)));
  return 0;
}

async function cmdWorker(argv: string[], settings: Settings): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { 'task-queue': { type: 'string' }, 'trust-submitted-pipelines': { type: 'boolean', default: false } },
  });
  const s = {
    ...settings,
    taskQueue: values['task-queue'] ?? settings.taskQueue,
    trustSubmitted: values['trust-submitted-pipelines'] || settings.trustSubmitted,
  };
  if (!(await isListening(s.temporalAddress))) {
    throw new PipelineError('TOOL_MISSING', `No Temporal server at ${s.temporalAddress}.`, {
      hint: "Start one with 'mlpipe dev', or set TEMPORAL_ADDRESS.",
    });
  }
  const { worker, connection } = await (await import('../app/worker.js')).createPipelineWorker({ settings: s });
  out(
    `worker polling task queue '${s.taskQueue}' on ${s.temporalAddress} (namespace ${s.namespace}, pid ${process.pid}); project ${s.projectDir}`,
  );
  if (s.trustSubmitted)
    out('trusting submitted pipelines: anyone who can start workflows on this task queue may run commands on this worker');
  await worker.run();
  await connection.close();
  return 0;
}

function portOption(text: string, option: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < 1 || n > 65535)
    throw new PipelineError('INPUT_INVALID', `${option} '${text}' is not a port number (1-65535).`);
  return n;
}

async function cmdDev(argv: string[], settings: Settings): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      port: { type: 'string', default: '7233' },
      'ui-port': { type: 'string' },
      db: { type: 'string' },
      'mlflow-port': { type: 'string', default: '5000' },
      'no-mlflow': { type: 'boolean', default: false },
      registry: { type: 'boolean', default: false },
      'web-port': { type: 'string', default: String(DEFAULT_UI_PORT) },
      'no-web': { type: 'boolean', default: false },
    },
  });
  if (values.registry && values['no-mlflow']) throw usageError('--registry runs an MLflow server; it cannot go with --no-mlflow.');
  const port = portOption(values.port, '--port');
  const webPort = portOption(values['web-port'], '--web-port');
  const uiPort = values['ui-port'] === undefined ? undefined : portOption(values['ui-port'], '--ui-port');
  const bin = requireTemporalCli(settings.cacheDir);
  const dbFile = values.db ?? join(settings.stateDir, 'temporal.db');
  const server = await startDevServer({
    bin,
    port,
    uiPort,
    dbFile,
    logFile: join(settings.stateDir, 'temporal.log'),
  });
  let registry: MlflowServer | undefined;
  try {
    registry = values.registry ? await startDevRegistry(settings, portOption(values['mlflow-port'], '--mlflow-port')) : undefined;
  } catch (e) {
    await server.stop();
    throw e;
  }
  const s = { ...settings, temporalAddress: server.address, ...(registry ? { trackingUri: registry.url } : {}) };
  const { worker, connection } = await (await import('../app/worker.js')).createPipelineWorker({ settings: s });
  out(`Temporal dev server on ${server.address} (state in ${dbFile})`);
  out(`Web UI: ${server.uiUrl}`);
  const mlflow = registry ?? (await startDevMlflow(settings, Number(values['mlflow-port']), values['no-mlflow']));
  const web = values['no-web'] ? undefined : await startDevWeb(s, webPort);
  out(`worker polling task queue '${s.taskQueue}'. Ctrl-C stops them all.`);
  const tracking = registry ? `MLFLOW_TRACKING_URI=${registry.url} ` : '';
  out(
    `try: TEMPORAL_ADDRESS=${server.address} ${tracking}${selfCommand(settings)} run ${listPipelines(settings.projectDir)[0] ?? '<pipeline>'}`,
  );
  if (registry) out(`then: ${tracking}${selfCommand(settings)} serve <model>@champion (and promote, rollback)`);
  await worker.run();
  await connection.close();
  await web?.stop();
  await server.stop();
  await mlflow?.stop();
  return 0;
}

/** The mlpipe UI for `mlpipe dev`; a port already taken is said and skipped (dev goes on without it). */
async function startDevWeb(settings: Settings, port: number): Promise<Awaited<ReturnType<typeof startUi>> | undefined> {
  try {
    const web = await (await import('./ui-command.js')).startUi(settings, { port });
    out(`mlpipe UI: ${web.url}`);
    return web;
  } catch (e) {
    if (!(e instanceof PipelineError) || e.code !== 'PORT_IN_USE') throw e;
    out(`mlpipe UI: port ${port} is taken, so no UI was started (--web-port N; or 'mlpipe ui --port N' later).`);
    return undefined;
  }
}

/**
 * `mlpipe dev --registry`: an MLflow tracking server with a model registry in place of the file
 * store: a sqlite database and served artifacts under the project's .mlpipe/ (kept across restarts).
 * The worker of `mlpipe dev` tracks to it, so `deploy.mlflow-register`, `mlpipe serve name@champion`,
 * `mlpipe promote` and `mlpipe rollback` work with nothing else installed than the provisioned MLflow.
 */
async function startDevRegistry(settings: Settings, port: number): Promise<MlflowServer> {
  const mlflow = findMlflow(settings.cacheDir);
  if (!mlflow)
    throw new PipelineError('TOOL_MISSING', 'mlpipe dev --registry needs MLflow, which was not found.', {
      hint: isCheckout(settings)
        ? "Run 'bash deploy/provision.sh --with-mlflow' (or 'npm run setup -- --with-mlflow'), or set MLPIPE_MLFLOW=/path/to/mlflow."
        : "Install it ('pip install mlflow'), put mlflow on PATH or set MLPIPE_MLFLOW=/path/to/mlflow.",
    });
  if (await isListening(`127.0.0.1:${port}`)) throw portInUse(port, 'MLflow server', '--mlflow-port');
  const db = join(settings.stateDir, 'mlflow.db');
  const artifactsDir = join(settings.stateDir, 'mlflow-artifacts');
  mkdirSync(settings.stateDir, { recursive: true });
  out(`starting an MLflow server with a model registry (sqlite ${db}; a new database takes a minute to set up)`);
  const server = await startMlflowServer({
    mlflow,
    backendStoreUri: `sqlite:///${db}`,
    artifactsDir,
    port,
    logFile: join(settings.stateDir, 'mlflow.log'),
  });
  out(`MLflow server and registry: ${server.url} (sqlite ${db}, artifacts ${artifactsDir})`);
  return server;
}

/**
 * The MLflow UI for `mlpipe dev`: with the default file store, a local `mlflow server` over the
 * project's mlruns/ (when MLflow is installed); with MLFLOW_TRACKING_URI set, just where runs go.
 */
async function startDevMlflow(settings: Settings, port: number, disabled: boolean | undefined): Promise<MlflowServer | undefined> {
  if (!settings.trackingUri) {
    out('MLflow tracking: off (MLPIPE_TRACKING=off)');
    return undefined;
  }
  if (!settings.trackingUri.startsWith('file:')) {
    out(`MLflow tracking: ${redact(settings.trackingUri)}`);
    return undefined;
  }
  const root = settings.trackingUri.slice('file:'.length);
  const mlflow = disabled ? undefined : findMlflow(settings.cacheDir);
  if (!mlflow) {
    out(
      `MLflow tracking: ${root} (file store).${disabled ? '' : ` For the MLflow UI, ${isCheckout(settings) ? "run 'npm run setup -- --with-mlflow'" : "install MLflow ('pip install mlflow')"} (or put mlflow on PATH) and restart.`}`,
    );
    return undefined;
  }
  if (await isListening(`127.0.0.1:${port}`)) {
    out(`MLflow tracking: ${root} (file store); port ${port} is taken, so no MLflow UI was started (--mlflow-port N).`);
    return undefined;
  }
  const server = await startMlflowServer({ mlflow, backendStoreUri: `file:${root}`, port, logFile: join(settings.stateDir, 'mlflow.log') });
  out(`MLflow UI: ${server.url} (file store ${root})`);
  return server;
}

async function cmdStatus(argv: string[], settings: Settings): Promise<number> {
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

async function cmdCancel(argv: string[], settings: Settings): Promise<number> {
  const [id] = argv;
  if (!id) throw usageError('mlpipe cancel needs a workflow ID.');
  const client = await connect(settings);
  await client.workflow.getHandle(id).cancel();
  out(`cancellation requested for ${id}`);
  await client.connection.close();
  return 0;
}

async function cmdPlugins(argv: string[], settings: Settings): Promise<number> {
  const registry = await loadProjectRegistry(settings.projectDir);
  const [name] = argv;
  if (name) {
    const p = registry.require(name);
    out(`${p.name} (version ${p.version})\n  ${p.description}`);
    out(`  inputs: ${typeof p.inputs === 'function' ? '(depend on params)' : JSON.stringify(p.inputs ?? {})}`);
    out(`  outputs: ${typeof p.outputs === 'function' ? '(depend on params)' : JSON.stringify(p.outputs)}`);
    out(`  params (JSON Schema):\n${JSON.stringify(z.toJSONSchema(p.params, { io: 'input', unrepresentable: 'any' }), null, 2)}`);
    return 0;
  }
  for (const p of registry.list().sort((a, b) => a.name.localeCompare(b.name))) out(`${p.name.padEnd(16)} ${p.description}`);
  return 0;
}

/** True in a checkout of mlpipe itself (its own pipelines are the project). */
function isCheckout(settings: Settings): boolean {
  try {
    return (JSON.parse(readFileSync(join(settings.projectDir, 'package.json'), 'utf8')) as { name?: string }).name === 'mlpipe';
  } catch {
    return false;
  }
}

/** How to call mlpipe again from the project: the npm script in a checkout, npx in a user's project. */
function selfCommand(settings: Settings): string {
  return isCheckout(settings) ? 'npm run mlpipe --' : 'npx mlpipe';
}

async function cmdDemo(argv: string[], settings: Settings): Promise<number> {
  const pipeline = argv[0] && !argv[0].startsWith('-') && !argv[0].includes('=') ? argv[0] : DEMO_PIPELINE;
  const rest = argv[0] === pipeline ? argv.slice(1) : argv;
  let server: DevServer | undefined;
  let s = settings;
  let ui = process.env['MLPIPE_TEMPORAL_UI'];
  if (!(await isListening(settings.temporalAddress))) {
    const bin = requireTemporalCli(settings.cacheDir);
    // The database `mlpipe dev` uses too, so the run can be browsed afterwards.
    const dbFile = join(settings.stateDir, 'temporal.db');
    server = await startDevServer({ bin, dbFile, uiPort: await freePort(), logFile: join(settings.stateDir, 'temporal.log') });
    s = { ...settings, temporalAddress: server.address };
    ui = server.uiUrl;
    out(`started a Temporal dev server on ${server.address} (state in ${dbFile}, Web UI ${ui})`);
  } else out(`using the Temporal server at ${settings.temporalAddress}`);
  const workflowId = `${pipeline}-${randomUUID().slice(0, 8)}`;
  try {
    const code = await cmdRun([pipeline, '--worker', '--wait-tracking', '--id', workflowId, ...rest], s);
    out(`\nartifacts: ${s.artifactsDir}`);
    const path = `/namespaces/${s.namespace}/workflows/${workflowId}`;
    if (server) out(`Temporal Web UI: run '${selfCommand(s)} dev' (same database), then open http://127.0.0.1:8233${path}`);
    if (server && s.trackingUri?.startsWith('file:'))
      out(`MLflow UI: '${selfCommand(s)} dev' also serves ${s.trackingUri.slice(5)} at http://127.0.0.1:5000 when MLflow is installed`);
    else out(`Temporal Web UI: ${ui ?? 'http://localhost:8233'}${path}`);
    return code;
  } finally {
    await server?.stop();
  }
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  const settings = loadSettings();
  try {
    const helpOf =
      command === 'help'
        ? rest[0]
        : rest.slice(0, (rest.indexOf('--') + 1 || rest.length + 1) - 1).some((a) => a === '--help' || a === '-h')
          ? command
          : undefined;
    if (helpOf) {
      const text = commandHelp(helpOf);
      if (!text) throw usageError(`Unknown command '${helpOf}'.`);
      out(text);
      return 0;
    }
    switch (command) {
      case 'run':
        await installRuntime('ERROR', true);
        return await cmdRun(rest, settings);
      case 'validate':
        return await cmdValidate(rest, settings);
      case 'graph':
        return await cmdGraph(rest, settings);
      case 'worker':
        await installRuntime();
        return await cmdWorker(rest, settings);
      case 'dev':
        await installRuntime();
        return await cmdDev(rest, settings);
      case 'ui':
        return await (await import('./ui-command.js')).cmdUi(rest, settings);
      case 'status':
        return await cmdStatus(rest, settings);
      case 'cancel':
        return await cmdCancel(rest, settings);
      case 'plugins':
        return await cmdPlugins(rest, settings);
      case 'init':
        return await (await import('./init-command.js')).cmdInit(rest);
      case 'pipelines':
        for (const p of listPipelines(settings.projectDir)) out(p);
        return 0;
      case 'runs':
        return await (await import('./store-commands.js')).cmdRuns(rest, settings);
      case 'lineage':
        return await (await import('./store-commands.js')).cmdLineage(rest, settings);
      case 'gc':
        return await (await import('./store-commands.js')).cmdGc(rest, settings);
      case 'artifacts':
        return await (await import('./artifact-commands.js')).cmdArtifacts(rest, settings);
      case 'show':
        return await (await import('./artifact-commands.js')).cmdShow(rest, settings);
      case 'drift':
        return await (await import('./drift-command.js')).cmdDrift(rest, settings);
      case 'schedule':
        return await (await import('./schedule-command.js')).cmdSchedule(rest, settings, () => connect(settings));
      case 'hpo':
        await installRuntime('ERROR');
        return await cmdHpo(rest, settings);
      case 'trial':
        await installRuntime('ERROR');
        return await (await import('./trial-command.js')).cmdTrial(rest, settings, startBackgroundWorker);
      case 'serve':
        return await (await import('./serve-command.js')).cmdServe(rest, settings);
      case 'promote':
        return await (await import('./serve-command.js')).cmdPromote(rest, settings);
      case 'rollback':
        return await (await import('./serve-command.js')).cmdRollback(rest, settings);
      case 'monitor':
        await installRuntime('ERROR');
        return await cmdMonitor(rest, settings);
      case 'demo':
        await installRuntime('ERROR', true);
        return await cmdDemo(rest, settings);
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        out(HELP);
        return command === undefined ? 2 : 0;
      default:
        throw usageError(`Unknown command '${command}'.`);
    }
  } catch (e) {
    if (e instanceof PipelineError) {
      err(e.format());
      return e.code === 'TOOL_MISSING' || e.code === 'PORT_IN_USE' ? 3 : 2;
    }
    // Options node:util parseArgs or a zod schema refused: the same INPUT_INVALID.
    if ((e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      err(usageError((e as Error).message).format());
      return 2;
    }
    if (e instanceof z.ZodError) {
      err(usageError(`Invalid option: ${formatZodIssues(e.issues)}`).format());
      return 2;
    }
    throw e;
  }
}
