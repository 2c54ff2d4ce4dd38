/**
 * trackingWorkflow: delivers one pipeline run's tracking events to MLflow, in order, until they
 * are all there. The pipeline workflow starts it as a child that outlives it (parent-close policy
 * ABANDON) and signals events as steps end. Deliveries are activities retried without limit
 * (backoff up to 15 s) that heartbeat as they go, so while MLflow is down the events wait in this workflow's history,
 * and the pipeline itself never waits on MLflow. The deliveries run on their own task queue,
 * `<taskQueue>-tracking`, polled by every worker with its own activity slots. See activities/tracking.ts for why a retried
 * delivery never duplicates a run or a metric point.
 */
import {
  type ActivityOptions,
  condition,
  defineQuery,
  defineSignal,
  proxyActivities,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities/index.js';
import { ACTIVITY_DEFAULTS } from '../engine/step-defaults.js';
import {
  trackEventsSignalName,
  trackingStatusQueryName,
  trackingTaskQueue,
  type KnownRuns,
  type TrackingEvent,
  type TrackingInput,
  type TrackingStatus,
} from '../engine/contracts.js';

export const trackEventsSignal = defineSignal<[TrackingEvent[]]>(trackEventsSignalName);
export const trackingStatusQuery = defineQuery<TrackingStatus>(trackingStatusQueryName);

const delivery = ACTIVITY_DEFAULTS.deliverTracking;
/** Deliveries run on the tracking task queue of the run's queue (see trackingTaskQueue). */
const deliveryOptions: ActivityOptions = {
  startToCloseTimeout: delivery.startToCloseTimeoutMs,
  // The delivery heartbeats before each event and write: an attempt stuck on one call is retried
  // after this, and a timed-out attempt learns it at its next heartbeat and stops.
  heartbeatTimeout: delivery.heartbeatTimeoutMs,
  // No maximumAttempts: retried until MLflow takes the events (or a permanent error).
  retry: {
    initialInterval: delivery.initialIntervalMs,
    backoffCoefficient: delivery.backoffCoefficient,
    maximumInterval: delivery.maximumIntervalMs,
    nonRetryableErrorTypes: ['TRACKING_ERROR'],
  },
};

/** The size of one delivery's events (the activity's input stays well below Temporal's 2 MB payload limit). */
const DELIVERY_BYTES = 512 * 1024;

function eventBytes(e: TrackingEvent): number {
  return JSON.stringify(e).length;
}

/** The known runs a delivery of `events` reads: the run's own, its steps' in the batch, the step whose model is registered. */
function knownFor(known: KnownRuns, events: TrackingEvent[], input: TrackingInput): KnownRuns {
  const ids = new Set(events.flatMap((e) => (e.type === 'step-ended' ? [e.step.stepId] : [])));
  const reg = input.config.registerModel?.step;
  if (reg && events.some((e) => e.type === 'run-ended')) ids.add(reg);
  const { steps, ...rest } = known;
  return { ...rest, steps: Object.fromEntries(Object.entries(steps).filter(([id]) => ids.has(id))) };
}

/** Gives up waiting for the pipeline's last event after this long (a pipeline that never ends). */
const IDLE_LIMIT = '30 days';

export async function trackingWorkflow(input: TrackingInput): Promise<KnownRuns> {
  const { deliverTracking } = proxyActivities<Activities>({ ...deliveryOptions, taskQueue: trackingTaskQueue(workflowInfo().taskQueue) });
  const pending: TrackingEvent[] = [...input.events];
  let known: KnownRuns = { steps: {} };
  let delivered = 0;
  let inFlight = 0;
  let next = 0;
  setHandler(trackEventsSignal, (events) => void pending.push(...events));
  setHandler(trackingStatusQuery, () => ({ delivered, inFlight, pending: pending.length, known }));

  for (;;) {
    // Deliver in sequence order: wait for the next expected event (signals may arrive together).
    // The pipeline sends its run-ended event only after every earlier signal went out, so once it is
    // here a gap can only be a signal that failed: deliver what there is rather than wait forever.
    const ended = (): boolean => pending.some((e) => e.type === 'run-ended');
    if (!(await condition(() => pending.some((e) => e.seq === next) || ended(), IDLE_LIMIT))) return known;
    pending.sort((a, b) => a.seq - b.seq);
    let n = 0;
    if (ended()) n = pending.length;
    else while (n < pending.length && pending[n]!.seq === next + n) n++;
    // A delivery takes at most DELIVERY_BYTES of events (one event alone may be larger).
    let bytes = 0;
    let take = 0;
    while (take < n && (take === 0 || bytes + eventBytes(pending[take]!) <= DELIVERY_BYTES)) bytes += eventBytes(pending[take++]!);
    const batch = pending.splice(0, take);
    inFlight = batch.length;
    // The delivery gets the known runs its events need and answers with those and the runs it made,
    // so history holds each run once, not the whole table in and out of every delivery.
    const answer = await deliverTracking({ key: input.key, config: input.config, events: batch, known: knownFor(known, batch, input) });
    known = { ...known, ...answer, steps: { ...known.steps, ...answer.steps } };
    inFlight = 0;
    delivered += batch.length;
    next = batch[batch.length - 1]!.seq + 1;
    if (batch.some((e) => e.type === 'run-ended')) return known;
  }
}
