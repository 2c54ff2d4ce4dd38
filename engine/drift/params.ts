/** Drift options as they are written in a pipeline (monitor.drift's `with:`, a pipeline's `monitor.drift:`). */
import { z } from 'zod';
import { STAT_TESTS, type DriftOptions, type StatTestName } from './index.js';

const testName = z.enum(Object.keys(STAT_TESTS) as [StatTestName, ...StatTestName[]]);

export const driftParams = z
  .object({
    /** Columns to test (default: every numeric and text column of the reference). */
    columns: z.array(z.string().min(1)).min(1).optional(),
    /** Share of drifted columns from which the dataset drifts (Evidently's drift_share). */
    driftShare: z.number().gt(0).max(1).default(0.5),
    /** Test for every column, or per type; per-column entries win. Default: Evidently's selection. */
    stattest: testName.optional(),
    numStattest: testName.optional(),
    catStattest: testName.optional(),
    threshold: z.number().positive().optional(),
    numThreshold: z.number().positive().optional(),
    catThreshold: z.number().positive().optional(),
    perColumn: z
      .record(z.string(), z.object({ stattest: testName.optional(), threshold: z.number().positive().optional() }).strict())
      .default({}),
  })
  .strict();

export type DriftParams = z.infer<typeof driftParams>;

export function driftOptions(p: DriftParams): DriftOptions {
  const perColumnStattest: Record<string, StatTestName> = {};
  const perColumnThreshold: Record<string, number> = {};
  for (const [col, o] of Object.entries(p.perColumn)) {
    if (o.stattest) perColumnStattest[col] = o.stattest;
    if (o.threshold !== undefined) perColumnThreshold[col] = o.threshold;
  }
  return {
    ...(p.columns ? { columns: p.columns } : {}),
    driftShare: p.driftShare,
    ...(p.stattest ? { stattest: p.stattest } : {}),
    ...(p.numStattest ? { numStattest: p.numStattest } : {}),
    ...(p.catStattest ? { catStattest: p.catStattest } : {}),
    ...(p.threshold !== undefined ? { threshold: p.threshold } : {}),
    ...(p.numThreshold !== undefined ? { numThreshold: p.numThreshold } : {}),
    ...(p.catThreshold !== undefined ? { catThreshold: p.catThreshold } : {}),
    perColumnStattest,
    perColumnThreshold,
  };
}
