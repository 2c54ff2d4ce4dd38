/** Names shared by workflows, activities and clients. Pure constants, no imports. */
export const PIPELINE_WORKFLOW = 'pipelineWorkflow';
export const statusQueryName = 'status';
export const stepAttemptSignalName = 'stepAttempt';
export const DEFAULT_TASK_QUEUE = 'mlpipe';
export const TRACKING_WORKFLOW = 'trackingWorkflow';
export const trackEventsSignalName = 'trackEvents';
/** The tracking workflow of a pipeline run: one per run, so a second start is refused. */
export function trackingWorkflowId(pipelineWorkflowId: string): string {
  return `${pipelineWorkflowId}-tracking`;
}
