/**
 * The median stopping rule's arithmetic (engine/hpo.ts has the rest of the search). Pure, and free
 * of zod: the HPO workflow imports it, and a workflow evaluates its modules at each run's start.
 */

/** The median of finished trials' values (undefined until there are any). */
export function median(values: number[]): number | undefined {
  const v = values.filter(Number.isFinite).sort((a, b) => a - b);
  if (!v.length) return undefined;
  const m = Math.floor(v.length / 2);
  return v.length % 2 ? v[m]! : (v[m - 1]! + v[m]!) / 2;
}

/** Curves kept for the median rule (the most recent finished trials): bounds history size. */
export const MEDIAN_RULE_CURVES = 64;

/**
 * The median stopping bar per epoch: at epoch e (index e-1), the median of the finished trials'
 * best-loss-so-far at e, over the trials that reached e; null where fewer than `minTrials` did.
 */
export function medianCurve(curves: number[][], minTrials: number): (number | null)[] {
  const length = Math.max(0, ...curves.map((c) => c.length));
  return Array.from({ length }, (_, e) => {
    const at = curves.filter((c) => c.length > e).map((c) => c[e]!);
    return at.length >= minTrials ? (median(at) ?? null) : null;
  });
}
