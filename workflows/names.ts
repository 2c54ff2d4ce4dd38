/** Names shared by workflows, activities and clients. Pure constants, no imports. */
export const PIPELINE_WORKFLOW = 'pipelineWorkflow';
export const statusQueryName = 'status';
export const stepAttemptSignalName = 'stepAttempt';
export const DEFAULT_TASK_QUEUE = 'mlpipe';
