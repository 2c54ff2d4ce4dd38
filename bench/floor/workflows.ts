/**
 * The floor `npm run bench` measures mlpipe against: plain Temporal workflows that run no-op
 * activities, nothing else (no compile step, no run state, no lineage, no tracking).
 */
import { proxyActivities } from '@temporalio/workflow';

const { noop } = proxyActivities<{ noop(): Promise<void> }>({ startToCloseTimeout: '1 minute' });

/** `n` activities one after another. */
export async function floorChain(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await noop();
}

/** One activity, `n` in parallel after it, one after them (fan-out + fan-in). */
export async function floorWide(n: number): Promise<void> {
  await noop();
  await Promise.all(Array.from({ length: n }, () => noop()));
  await noop();
}
