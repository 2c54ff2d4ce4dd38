/**
 * train.forecast-combine — a combination of forecasters: the mean (or median, or a weighted mean) of
 * the forecasts of other forecasting train steps (train.ets, train.gbdt-forecast,
 * train.tfjs-sequence), for the windows they forecast and for each walk-forward fold, in the same
 * artifacts (`mlpipe.forecasts/1`), so evaluate.forecast scores it as it scores a member. Member `x`
 * is bound as inputs `x_forecasts` (a forecasts artifact) and `x_foldForecasts` (the list of a
 * train step's fold forecasts). Every member must forecast the same windows (the window set digest
 * in each forecasts artifact), with the same horizon, and the same folds; a cell a member leaves
 * NaN is combined from the others.
 */
import { z } from 'zod';
import { PipelineError } from '../../engine/errors.js';
import { isArtifactRef, type ArtifactRef } from '../../engine/types.js';
import { decodeForecasts, encodeForecasts, FORECASTS_MEDIA_TYPE, type Forecasts } from '../../lib/windows.js';
import { definePlugin, type StepContext } from '../sdk.js';

const WHERE = 'train.forecast-combine';

const memberName = z
  .string()
  .regex(/^[A-Za-z][A-Za-z0-9_]*$/, 'member names are letters, digits and _ (starting with a letter)')
  .max(40);

const params = z
  .object({
    /** The members: each has inputs `<name>_forecasts` and `<name>_foldForecasts`. */
    members: z
      .array(memberName)
      .min(2)
      .max(32)
      .refine((m) => new Set(m).size === m.length, 'member names must be distinct'),
    /** mean, median (per cell), or weighted (the mean with `weights`, one per member, normalised to sum 1). */
    method: z.enum(['mean', 'median', 'weighted']).default('mean'),
    weights: z.array(z.number().nonnegative()).optional(),
  })
  .strict()
  .refine((p) => p.method !== 'weighted' || (p.weights !== undefined && p.weights.length === p.members.length), {
    message: 'method weighted needs weights, one per member',
    path: ['weights'],
  })
  .refine((p) => p.method !== 'weighted' || (p.weights ?? []).some((w) => w > 0), {
    message: 'at least one weight must be above 0',
    path: ['weights'],
  })
  .refine((p) => p.method === 'weighted' || p.weights === undefined, { message: 'weights go with method weighted', path: ['weights'] });

type Params = z.infer<typeof params>;

/** The members' values combined cell by cell (NaN cells left out; NaN where every member is NaN). */
export function combineValues(members: Float32Array[], method: Params['method'], weights?: number[]): Float32Array {
  const n = members[0]!.length;
  const out = new Float32Array(n);
  const cell: number[] = [];
  for (let c = 0; c < n; c++) {
    if (method === 'median') {
      cell.length = 0;
      for (const m of members) if (Number.isFinite(m[c])) cell.push(m[c]!);
      cell.sort((a, b) => a - b);
      const k = cell.length;
      out[c] = k === 0 ? NaN : k % 2 ? cell[(k - 1) / 2]! : (cell[k / 2 - 1]! + cell[k / 2]!) / 2;
    } else {
      let sum = 0;
      let w = 0;
      members.forEach((m, i) => {
        const v = m[c]!;
        const wi = method === 'weighted' ? weights![i]! : 1;
        if (!Number.isFinite(v) || wi === 0) return;
        sum += wi * v;
        w += wi;
      });
      out[c] = w > 0 ? sum / w : NaN;
    }
  }
  return out;
}

async function read(ctx: StepContext, ref: unknown, what: string): Promise<Forecasts> {
  if (!isArtifactRef(ref)) {
    throw new PipelineError('PLUGIN_INPUT', `${WHERE}: ${what} must be a forecasts artifact, got ${JSON.stringify(ref)?.slice(0, 80)}.`, {
      hint: "Bind the 'forecasts' output of a forecasting train step (or an element of its 'foldForecasts').",
    });
  }
  return decodeForecasts(await ctx.store.get(ref));
}

/** The members' forecasts of one window set, checked to be of the same windows, and their combination. */
async function combineOne(ctx: StepContext, p: Params, refs: unknown[], what: string, name: string): Promise<ArtifactRef> {
  const all: Forecasts[] = [];
  for (const [i, ref] of refs.entries()) all.push(await read(ctx, ref, `member '${p.members[i]}' ${what}`));
  const first = all[0]!;
  for (const [i, f] of all.entries()) {
    if (f.windows !== first.windows) {
      throw new PipelineError(
        'PLUGIN_INPUT',
        `${WHERE}: ${what}: member '${p.members[i]}' forecast window set ${f.windows.slice(0, 12)}…, member '${p.members[0]}' window set ${first.windows.slice(0, 12)}….`,
        { hint: "Bind members trained on the same process.window step, each with the same 'predict' windows and the same folds." },
      );
    }
    if (f.count !== first.count || f.horizon !== first.horizon) {
      throw new PipelineError(
        'PLUGIN_INPUT',
        `${WHERE}: ${what}: member '${p.members[i]}' has ${f.count}×${f.horizon} forecasts, member '${p.members[0]}' ${first.count}×${first.horizon}.`,
      );
    }
  }
  const values = combineValues(
    all.map((f) => f.values),
    p.method,
    p.weights,
  );
  const model = `${WHERE} ${p.method}(${p.members.join(', ')})`;
  return ctx.store.put(encodeForecasts({ count: first.count, horizon: first.horizon, windows: first.windows, values, model }), {
    name,
    mediaType: FORECASTS_MEDIA_TYPE,
  });
}

export const trainForecastCombine = definePlugin({
  name: 'train.forecast-combine',
  version: '1',
  description:
    'The mean, median or weighted mean of several forecasting train steps: forecasts and walk-forward fold forecasts in the same format.',
  params,
  inputs: (p: Params) =>
    Object.fromEntries(
      p.members.flatMap((m) => [[`${m}_forecasts?`, 'artifact' as const] as const, [`${m}_foldForecasts?`, 'json' as const] as const]),
    ),
  outputs: { forecasts: 'artifact', foldForecasts: 'json', metrics: 'metrics', model: 'json' },
  async run(ctx, p, inputs) {
    const given = inputs as Record<string, unknown>;
    const bound = (key: string): boolean => given[key] !== undefined && given[key] !== null;
    const check = (suffix: string): boolean => {
      const has = p.members.filter((m) => bound(`${m}_${suffix}`));
      if (has.length > 0 && has.length < p.members.length) {
        const missing = p.members.filter((m) => !has.includes(m));
        throw new PipelineError(
          'PLUGIN_INPUT',
          `${WHERE}: '${suffix}' is bound for ${has.map((m) => `'${m}'`).join(', ')} but not for ${missing.map((m) => `'${m}'`).join(', ')}: every member or none.`,
          {
            hint: `Bind ${missing.map((m) => `${m}_${suffix}`).join(', ')} to the step's ${suffix} output (a step that was skipped has none).`,
          },
        );
      }
      return has.length > 0;
    };
    const hasForecasts = check('forecasts');
    const hasFolds = check('foldForecasts');
    if (!hasForecasts && !hasFolds) {
      throw new PipelineError('PLUGIN_INPUT', `${WHERE}: nothing to combine: no member has forecasts or fold forecasts bound.`, {
        hint: `Bind <member>_forecasts and/or <member>_foldForecasts for members ${p.members.join(', ')}.`,
      });
    }
    let forecasts: ArtifactRef | null = null;
    if (hasForecasts) {
      forecasts = await combineOne(
        ctx,
        p,
        p.members.map((m) => given[`${m}_forecasts`]),
        'forecasts',
        'forecasts',
      );
    }
    let foldForecasts: ArtifactRef[] | null = null;
    if (hasFolds) {
      const lists = p.members.map((m) => {
        const l = given[`${m}_foldForecasts`];
        if (!Array.isArray(l)) {
          throw new PipelineError('PLUGIN_INPUT', `${WHERE}: '${m}_foldForecasts' must be a list (a train step's foldForecasts).`);
        }
        return l as unknown[];
      });
      const folds = lists[0]!.length;
      lists.forEach((l, i) => {
        if (l.length !== folds) {
          throw new PipelineError(
            'PLUGIN_INPUT',
            `${WHERE}: member '${p.members[i]}' has ${l.length} fold forecasts, member '${p.members[0]}' ${folds}.`,
            { hint: 'Bind members backtested on the same process.window folds.' },
          );
        }
      });
      foldForecasts = [];
      for (let k = 0; k < folds; k++) {
        foldForecasts.push(
          await combineOne(
            ctx,
            p,
            lists.map((l) => l[k]),
            `fold ${k + 1}`,
            `fold${k + 1}-forecasts`,
          ),
        );
      }
    }
    const total = p.method === 'weighted' ? p.weights!.reduce((a, b) => a + b, 0) : p.members.length;
    const weights = p.members.map((_, i) => (p.method === 'weighted' ? p.weights![i]! / total : 1 / p.members.length));
    return {
      forecasts,
      foldForecasts,
      metrics: { members: p.members.length, folds: foldForecasts?.length ?? 0 },
      model: { method: p.method, members: p.members, ...(p.method !== 'median' ? { weights } : {}) },
    };
  },
});
