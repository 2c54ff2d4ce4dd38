/**
 * Hyperparameter searches for the web UI's Search page, read from Temporal:
 *
 * - the list: visibility (`WorkflowType = 'hpoWorkflow'`), each search's pipeline from the input of
 *   its first history event (read once per run);
 * - a search: a completed one's result (`HpoResult`: every trial, the best); a running or failed one
 *   answers the `hpoTrials` query (the trials finished and running so far). Each trial is a child
 *   pipeline run (`<search>/trial-<n>`) the page links to; its state comes from the result
 *   (succeeded, failed, stopped early by the median rule at an epoch) or from the running set.
 *
 * Nothing here writes to Temporal.
 */
import type { Client } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import { HPO_WORKFLOW, hpoTrialsQueryName, type HpoInput, type HpoResult, type HpoTrials, type TrialResult } from '../engine/contracts.js';
import { UiRequestError } from './runs.js';

export interface SearchRow {
  workflowId: string;
  runId: string;
  pipeline?: string;
  status: string;
  startedAt: string;
  closedAt?: string;
}

export type TrialState = 'succeeded' | 'failed' | 'stopped-early' | 'running' | 'pending';

export interface UiTrial {
  index: number;
  workflowId: string;
  state: TrialState;
  /** The trial's params: its overrides as `key: value` (params.lr=0.01 -> { 'params.lr': '0.01' }). */
  params: Record<string, string>;
  value?: number;
  error?: string;
  stoppedAtEpoch?: number;
  best?: boolean;
}

export interface UiSearch {
  workflowId: string;
  runId: string;
  status: string;
  pipeline: string;
  metric: HpoTrials['metric'];
  trials: number;
  parallel?: number;
  earlyStopping?: HpoTrials['earlyStopping'];
  generation?: number;
  best?: UiTrial;
  /** The keys of every trial's params (the table's columns). */
  paramKeys: string[];
  rows: UiTrial[];
  final?: HpoResult['final'];
  /** Set when the trials could not be read (a failed search whose worker does not answer the query). */
  problem?: string;
  startedAt: string;
  closedAt?: string;
}

function paramsOf(overrides: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const o of overrides) {
    const i = o.indexOf('=');
    if (i > 0) out[o.slice(0, i)] = o.slice(i + 1);
  }
  return out;
}

function trialOf(r: TrialResult): UiTrial {
  return {
    index: r.index,
    workflowId: r.workflowId,
    state: r.status === 'failed' ? 'failed' : r.stoppedAtEpoch ? 'stopped-early' : 'succeeded',
    params: paramsOf(r.overrides),
    ...(r.value !== undefined ? { value: r.value } : {}),
    ...(r.error ? { error: r.error.slice(0, 2000) } : {}),
    ...(r.stoppedAtEpoch ? { stoppedAtEpoch: r.stoppedAtEpoch } : {}),
  };
}

export class SearchSource {
  private readonly pipelines = new Map<string, string | null>();

  constructor(
    readonly client: Client,
    private readonly options: { queryTimeoutMs?: number } = {},
  ) {}

  async list(limit = 100): Promise<SearchRow[]> {
    const rows: SearchRow[] = [];
    for await (const w of this.client.workflow.list({ query: `WorkflowType = '${HPO_WORKFLOW}'`, pageSize: 100 })) {
      const pipeline = await this.pipelineOf(w.workflowId, w.runId);
      rows.push({
        workflowId: w.workflowId,
        runId: w.runId,
        ...(pipeline ? { pipeline } : {}),
        status: w.status.name,
        startedAt: w.startTime.toISOString(),
        ...(w.closeTime ? { closedAt: w.closeTime.toISOString() } : {}),
      });
      if (rows.length >= limit) break;
    }
    return rows;
  }

  /** The pipeline a search runs: the input of its first history event. */
  private async pipelineOf(workflowId: string, runId: string): Promise<string | undefined> {
    if (this.pipelines.has(runId)) return this.pipelines.get(runId) ?? undefined;
    let pipeline: string | undefined;
    try {
      const r = await this.client.workflowService.getWorkflowExecutionHistory({
        namespace: this.client.options.namespace,
        execution: { workflowId, runId },
        maximumPageSize: 1,
      });
      const payload = r.history?.events?.[0]?.workflowExecutionStartedEventAttributes?.input?.payloads?.[0];
      const input = payload ? (defaultPayloadConverter.fromPayload(payload) as HpoInput | undefined) : undefined;
      pipeline = typeof input?.pipeline === 'string' ? input.pipeline.slice(0, 200) : undefined;
    } catch {
      return undefined;
    }
    this.pipelines.set(runId, pipeline ?? null);
    if (this.pipelines.size > 2000) this.pipelines.delete(this.pipelines.keys().next().value!);
    return pipeline;
  }

  private async trialsQuery(handle: ReturnType<Client['workflow']['getHandle']>): Promise<HpoTrials> {
    const timeout = this.options.queryTimeoutMs ?? 5000;
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        handle.query<HpoTrials>(hpoTrialsQueryName),
        new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no answer in ${timeout} ms`)), timeout))),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  async search(workflowId: string): Promise<UiSearch> {
    const handle = this.client.workflow.getHandle(workflowId);
    const d = await handle.describe();
    if (d.type !== HPO_WORKFLOW)
      throw new UiRequestError(404, `Workflow ${workflowId} is not a hyperparameter search (it is a ${d.type}).`);
    const base = {
      workflowId,
      runId: d.runId,
      status: d.status.name,
      startedAt: d.startTime.toISOString(),
      ...(d.closeTime ? { closedAt: d.closeTime.toISOString() } : {}),
    };
    let trials: HpoTrials | undefined;
    let final: HpoResult['final'];
    let problem: string | undefined;
    if (d.status.name === 'COMPLETED') {
      const r = (await handle.result()) as HpoResult;
      trials = {
        pipeline: r.pipeline,
        metric: r.metric,
        trials: r.trials,
        parallel: 0,
        results: r.results,
        running: [],
        best: r.best,
        generation: r.generations - 1,
      };
      final = r.final;
      // The spec's parallel and median rule come from the query (a worker replays the search); the result alone is enough without.
      const q = await this.trialsQuery(handle).catch(() => undefined);
      if (q) Object.assign(trials, { parallel: q.parallel, earlyStopping: q.earlyStopping, trials: q.trials });
    } else {
      try {
        trials = await this.trialsQuery(handle);
      } catch (e) {
        problem = `The search's trials could not be read (the hpoTrials query: ${(e as Error).message}). A worker of its task queue answers it.`;
      }
    }
    const rows: UiTrial[] = (trials?.results ?? []).map(trialOf);
    for (const r of trials?.running ?? [])
      rows.push({ index: r.index, workflowId: r.workflowId, state: 'running', params: paramsOf(r.overrides) });
    rows.sort((a, b) => a.index - b.index);
    const bestIndex = trials?.best?.index;
    for (const r of rows) if (r.index === bestIndex) r.best = true;
    const paramKeys = [...new Set(rows.flatMap((r) => Object.keys(r.params)))];
    return {
      ...base,
      pipeline: trials?.pipeline ?? (await this.pipelineOf(workflowId, d.runId)) ?? '?',
      metric: trials?.metric ?? { step: '?', output: '?', key: '?', goal: 'minimize' },
      trials: trials?.trials ?? 0,
      ...(trials?.parallel ? { parallel: trials.parallel } : {}),
      ...(trials?.earlyStopping ? { earlyStopping: trials.earlyStopping } : {}),
      ...(trials ? { generation: trials.generation } : {}),
      ...(bestIndex !== undefined ? { best: rows.find((r) => r.index === bestIndex) } : {}),
      paramKeys,
      rows,
      ...(final ? { final } : {}),
      ...(problem ? { problem } : {}),
    };
  }
}
