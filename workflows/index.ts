/** Entry point of the workflow bundle: every workflow the worker registers. */
export { pipelineWorkflow, statusQuery, stepAttemptSignal } from './pipeline.js';
export { trackingWorkflow, trackEventsSignal, trackingStatusQuery } from './tracking.js';
export { monitorWorkflow } from './monitor.js';
export { hpoWorkflow, hpoStatusQuery } from './hpo.js';
