/**
 * Step progress (`ctx.progress`): from the plugin's reports to what travels in the heartbeat details
 * (`StepProgress`, engine/contracts.ts), with the rate and the ETA measured over this attempt, and
 * the throttle that decides when a report is worth a heartbeat of its own.
 */
import { z } from 'zod';
import type { ProgressReport, StepProgress } from './contracts.js';

/** A report gets its own heartbeat at most this often; in between, the latest one waits for the next. */
export const PROGRESS_HEARTBEAT_MS = 1_000;

export interface ProgressClock {
  /** The progress to send for `report`, timed at `now`. */
  next(report: ProgressReport, now: number): StepProgress;
  /** Whether a report at `now` should heartbeat at once (else it rides on the next heartbeat). */
  due(now: number): boolean;
}

/**
 * Rate and ETA from the first report of the attempt that had a `done`, to the latest: a resumed
 * step (done starting at 20 of 40) is timed on what this attempt did, not on the epochs before it.
 */
export function progressClock(): ProgressClock {
  let first: { done: number; at: number } | undefined;
  let lastBeat = -Infinity;
  let lastDone: number | undefined;
  return {
    next(report, now) {
      const c = clean(report);
      const done = c.done ?? lastDone;
      const p: StepProgress = { ...c, ...(done !== undefined ? { done } : {}), at: now };
      if (done !== undefined) {
        lastDone = done;
        first ??= { done, at: now };
        const elapsed = now - first.at;
        if (done > first.done && elapsed > 0) {
          p.rate = (done - first.done) / (elapsed / 1000);
          if (p.total !== undefined && p.total >= done) p.etaMs = Math.round(((p.total - done) / p.rate) * 1000);
        }
      }
      return p;
    },
    due(now) {
      if (now - lastBeat < PROGRESS_HEARTBEAT_MS) return false;
      lastBeat = now;
      return true;
    },
  };
}

/** The report without non-finite numbers (they would not survive JSON) or empty parts. */
function clean(r: ProgressReport): ProgressReport {
  const num = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
  const metrics = r.metrics ? Object.fromEntries(Object.entries(r.metrics).filter(([, v]) => num(v))) : undefined;
  return {
    ...(num(r.done) ? { done: r.done } : {}),
    ...(num(r.total) ? { total: r.total } : {}),
    ...(typeof r.unit === 'string' && r.unit ? { unit: r.unit.slice(0, 40) } : {}),
    ...(metrics && Object.keys(metrics).length ? { metrics } : {}),
    ...(typeof r.message === 'string' && r.message ? { message: r.message.split('\n')[0]!.slice(0, 500) } : {}),
  };
}

const finite = z.number().finite();
const stepProgressSchema = z.object({
  done: finite.optional(),
  total: finite.optional(),
  unit: z.string().max(40).optional(),
  metrics: z.record(z.string().max(100), finite).optional(),
  message: z.string().max(500).optional(),
  at: finite,
  rate: finite.optional(),
  etaMs: finite.optional(),
});

/** The progress in heartbeat details of any shape, or undefined when there is none (or it is malformed). */
export function stepProgressOf(details: unknown): StepProgress | undefined {
  if (typeof details !== 'object' || details === null) return undefined;
  const parsed = stepProgressSchema.safeParse((details as { progress?: unknown }).progress);
  return parsed.success ? (parsed.data as StepProgress) : undefined;
}
