/** The contracts between workflows, activities and clients: workflow, signal and query names, IDs. Pure, no imports. */
export const PIPELINE_WORKFLOW = 'pipelineWorkflow';
export const statusQueryName = 'status';
export const stepAttemptSignalName = 'stepAttempt';
export const DEFAULT_TASK_QUEUE = 'mlpipe';
export const TRACKING_WORKFLOW = 'trackingWorkflow';
/**
 * The task queue of tracking deliveries (the tracking workflow's activities) for workers polling
 * `taskQueue`: their own queue and activity slots, so delivering to MLflow never takes a slot a
 * pipeline step needs, and a backlog of deliveries never holds up steps.
 */
export function trackingTaskQueue(taskQueue: string): string {
  return `${taskQueue}-tracking`;
}
export const trackEventsSignalName = 'trackEvents';
/** The tracking workflow of a pipeline run: one per run, so a second start is refused. */
export function trackingWorkflowId(pipelineWorkflowId: string): string {
  return `${pipelineWorkflowId}-tracking`;
}
export const MONITOR_WORKFLOW = 'monitorWorkflow';
/** The retraining run a drift monitor starts: one fixed ID per pipeline, so at most one runs at a time. */
export function retrainWorkflowId(pipeline: string): string {
  return `retrain-${pipeline}`;
}
export const HPO_WORKFLOW = 'hpoWorkflow';
export const hpoStatusQueryName = 'hpoStatus';
