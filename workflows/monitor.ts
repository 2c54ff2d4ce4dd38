/**
 * monitorWorkflow: one drift check of a pipeline's data, usually started by a Temporal Schedule.
 *
 * 1. `prepareMonitor` finds the reference (a step output of the run behind the registered model's
 *    alias, or of the latest successful run, through lineage) and stores the current data.
 * 2. `computeMonitorDrift` computes Evidently-compatible drift, stores the JSON and HTML reports and
 *    a monitoring record.
 * 3. On dataset drift it starts the pipeline again as a child with the fixed ID
 *    `retrain-<pipeline>` and parent-close policy ABANDON: the retrain outlives this run, and while
 *    one runs, Temporal refuses a second start with that ID, so concurrent monitors never start two
 *    (single-flight). It then posts an alert.
 */
import { ApplicationFailure, WorkflowExecutionAlreadyStartedError } from '@temporalio/common';
import { ParentClosePolicy, WorkflowIdReusePolicy, proxyActivities, startChild, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities/index.js';
import { failureOptions, NON_RETRYABLE_CODES, PipelineError } from '../engine/errors.js';
import { ACTIVITY_DEFAULTS } from '../engine/step-defaults.js';
import { retrainWorkflowId, runSummary, type MonitorInput, type MonitorResult } from '../engine/contracts.js';
import { pipelineWorkflow } from './pipeline.js';

/** The data activities heartbeat while they read and compute: 2 minutes without one means a lost worker. */
const dataActivities = (heartbeatTimeoutMs: number = ACTIVITY_DEFAULTS.monitorData.heartbeatTimeoutMs) =>
  proxyActivities<Activities>({
    startToCloseTimeout: ACTIVITY_DEFAULTS.monitorData.startToCloseTimeoutMs,
    heartbeatTimeout: heartbeatTimeoutMs,
    retry: { maximumAttempts: ACTIVITY_DEFAULTS.monitorData.maximumAttempts, nonRetryableErrorTypes: [...NON_RETRYABLE_CODES] },
  });
const { postAlert } = proxyActivities<Activities>({
  startToCloseTimeout: ACTIVITY_DEFAULTS.postAlert.startToCloseTimeoutMs,
  // A webhook that refused the message (HTTP 3xx/4xx) fails non-retryable; a 5xx or 429 is retried.
  retry: { maximumAttempts: ACTIVITY_DEFAULTS.postAlert.maximumAttempts },
});

export async function monitorWorkflow(input: MonitorInput): Promise<MonitorResult> {
  const hb = input.heartbeatTimeoutMs;
  if (hb !== undefined && !(typeof hb === 'number' && Number.isInteger(hb) && hb >= 1000)) {
    throw ApplicationFailure.create(
      failureOptions(
        new PipelineError(
          'INPUT_INVALID',
          `heartbeatTimeoutMs must be a whole number of milliseconds, at least 1000; got ${JSON.stringify(hb)}.`,
        ),
      ),
    );
  }
  const { prepareMonitor, computeMonitorDrift } = dataActivities(hb);
  const plan = await prepareMonitor(input);
  const drift = await computeMonitorDrift(plan);
  let retrain: MonitorResult['retrain'] = drift.datasetDrift ? (plan.monitor.retrain ? 'started' : 'off') : 'no-drift';
  const id = retrainWorkflowId(plan.pipeline);
  if (retrain === 'started') {
    try {
      await startChild(pipelineWorkflow, {
        workflowId: id,
        staticSummary: runSummary(input.pipeline, { trigger: 'drift', monitor: workflowInfo().workflowId }),
        args: [{ pipeline: input.pipeline, overrides: plan.overrides, labels: { trigger: 'drift', monitor: workflowInfo().workflowId } }],
        parentClosePolicy: ParentClosePolicy.ABANDON,
        workflowIdReusePolicy: WorkflowIdReusePolicy.ALLOW_DUPLICATE,
      });
    } catch (e) {
      if (!(e instanceof WorkflowExecutionAlreadyStartedError)) throw e;
      retrain = 'already-running';
    }
  }
  let alert: MonitorResult['alert'];
  const a = plan.monitor.alert;
  if (a && (drift.datasetDrift || a.always)) {
    const text = drift.datasetDrift
      ? `:warning: Data drift in *${plan.pipeline}*: ${drift.driftedColumns.length} of ${drift.numberOfColumns} columns drifted (share ${drift.share.toFixed(2)}).`
      : `Data drift check of *${plan.pipeline}*: no dataset drift (${drift.driftedColumns.length} of ${drift.numberOfColumns} columns drifted).`;
    alert = await postAlert({
      webhookEnv: a.webhookEnv,
      text,
      fields: {
        'Drifted columns': drift.driftedColumns.join(', ') || 'none',
        Retrain: retrain === 'started' ? `started (${id})` : retrain === 'already-running' ? `already running (${id})` : retrain,
        Reference: `${plan.referenceFrom.model ? `${plan.referenceFrom.model} v${plan.referenceFrom.version}, ` : ''}${plan.referenceFrom.workflowId}`,
        Report: drift.html.uri,
      },
    });
  }
  return {
    pipeline: plan.pipeline,
    referenceFrom: plan.referenceFrom,
    ...(plan.currentFrom ? { currentFrom: plan.currentFrom } : {}),
    drift,
    retrain,
    ...(retrain === 'started' || retrain === 'already-running' ? { retrainWorkflowId: id } : {}),
    ...(alert ? { alert } : {}),
  };
}
