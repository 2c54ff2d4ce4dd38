import { z } from 'zod';
import { PipelineError } from '../../engine/errors.js';
import { isArtifactRef, type ArtifactRef } from '../../engine/types.js';
import { BASELINES, scoreWithBaselines, unscaleForecasts, type ForecastMetrics, type ScoredForecast } from '../../lib/forecast-metrics.js';
import { decodeForecasts, decodeWindows, parseWindowState } from '../../lib/windows.js';
import { definePlugin, type StepContext } from '../sdk.js';

const METRICS = ['mae', 'rmse', 'smape', 'mase'] as const;

const params = z
  .object({
    /** The baseline shown beside the model (the `baseline` output) and used by the gate's ratio. */
    baseline: z.enum(BASELINES).default('seasonalNaive'),
    /** Periods the moving-average baseline averages (default: the season, at most the lookback). */
    movingAverageWindow: z.number().int().min(1).optional(),
    gate: z
      .object({
        /** Bound on model / baseline per metric, e.g. { mase: 0.9 }: at least 10% better than the baseline. */
        maxRatioToBaseline: z.partialRecord(z.enum(METRICS), z.number().positive()).default({}),
        /** Absolute upper bounds per metric, e.g. { mase: 1.5 }. */
        max: z.partialRecord(z.enum(METRICS), z.number().nonnegative()).default({}),
      })
      .strict()
      .optional(),
  })
  .strict();

const fmt = (v: number): string => (Math.abs(v) >= 100 ? Math.round(v).toLocaleString('en-US') : Number(v.toPrecision(4)).toString());
const round = (v: number): number => Number(v.toPrecision(6));

function flat(m: ForecastMetrics): Record<string, number> {
  return { mae: round(m.mae), rmse: round(m.rmse), smape: round(m.smape), mase: round(m.mase), cells: m.cells };
}

async function json(ctx: StepContext, ref: ArtifactRef): Promise<unknown> {
  try {
    return JSON.parse((await ctx.store.get(ref)).toString('utf8')) as unknown;
  } catch (e) {
    if (e instanceof PipelineError) throw e;
    throw new PipelineError('PLUGIN_INPUT', `evaluate.forecast: 'state' is not JSON (${(e as Error).message}).`, {
      hint: 'Bind the state output of a process.window step.',
    });
  }
}

/** Scores one (windows, forecasts, state) triple; checks the forecasts belong to these windows. */
async function scoreOne(
  ctx: StepContext,
  refs: { windows: unknown; forecasts: unknown; state: unknown },
  movingAverageWindow: number | undefined,
  where: string,
): Promise<{ model: ScoredForecast; baselines: Record<(typeof BASELINES)[number], ScoredForecast>; windows: number }> {
  for (const [name, ref] of Object.entries(refs)) {
    if (!isArtifactRef(ref)) {
      throw new PipelineError(
        'PLUGIN_INPUT',
        `evaluate.forecast: ${where} '${name}' must be an artifact reference, got ${JSON.stringify(ref)?.slice(0, 80)}.`,
      );
    }
  }
  const windowsRef = refs.windows as ArtifactRef;
  const set = decodeWindows(await ctx.store.get(windowsRef));
  const forecasts = decodeForecasts(await ctx.store.get(refs.forecasts as ArtifactRef));
  const state = parseWindowState(await json(ctx, refs.state as ArtifactRef), 'evaluate.forecast');
  if (forecasts.windows !== windowsRef.sha256) {
    throw new PipelineError(
      'PLUGIN_INPUT',
      `evaluate.forecast: ${where} the forecasts were made for window set ${forecasts.windows.slice(0, 12)}…, not for the bound windows (${windowsRef.sha256.slice(0, 12)}…).`,
      { hint: "Bind the windows the train step forecast (its 'predict' input) and that step's forecasts." },
    );
  }
  if (forecasts.count !== set.count || forecasts.horizon !== set.horizon) {
    throw new PipelineError(
      'PLUGIN_INPUT',
      `evaluate.forecast: ${where} ${forecasts.count}×${forecasts.horizon} forecasts for ${set.count}×${set.horizon} windows.`,
    );
  }
  const values = unscaleForecasts(set, state, forecasts.values);
  return { ...scoreWithBaselines(set, state, values, movingAverageWindow), windows: set.count };
}

/**
 * evaluate.forecast — scores forecasts (`mlpipe.forecasts/1`, from a forecasting train step) against
 * the true values of their window set, in the target's units: MAE, RMSE, sMAPE and MASE (scaled by
 * each series' train-part seasonal difference) per horizon step and overall, beside the naive,
 * seasonal-naive and moving-average baselines computed from the same windows' lookback, on the same
 * cells. With `folds` (process.window's) and `foldForecasts` (the train step's), the walk-forward
 * backtest too: the metrics of each fold and their mean (`metrics.backtestMase`, for a search).
 * Without `windows`, the backtest means are the `metrics` themselves. An optional gate fails the step
 * (QUALITY_GATE) when the model misses a bound, e.g. MASE not 10% below the seasonal naive's.
 */
export const evaluateForecast = definePlugin({
  name: 'evaluate.forecast',
  version: '1',
  description:
    'Forecast MAE/RMSE/sMAPE/MASE per horizon step against naive, seasonal-naive and moving-average baselines; walk-forward backtest; gate.',
  params,
  inputs: { 'windows?': 'artifact', 'forecasts?': 'artifact', 'state?': 'artifact', 'folds?': 'json', 'foldForecasts?': 'json' },
  outputs: {
    metrics: 'metrics',
    baseline: 'metrics',
    baselines: 'json',
    horizon: 'json',
    backtest: 'json',
    passed: 'json',
    report: 'artifact',
  },
  async run(ctx, p, inputs) {
    const hasFolds = inputs.folds !== undefined && inputs.folds !== null;
    // `windows` decides: forecasts and state may be bound by name from the needed steps (a backtest
    // step that needs the train and window steps gets both) and are ignored without it.
    const single = Boolean(inputs.windows);
    if (single && !(inputs.forecasts && inputs.state)) {
      throw new PipelineError('PLUGIN_INPUT', 'evaluate.forecast: windows, forecasts and state go together; bind all three.');
    }
    if (!single && !hasFolds && (inputs.forecasts || inputs.state)) {
      throw new PipelineError('PLUGIN_INPUT', 'evaluate.forecast: forecasts and state need the windows they belong to; bind windows too.');
    }
    if (!single && !hasFolds) {
      throw new PipelineError('PLUGIN_INPUT', 'evaluate.forecast: nothing to score.', {
        hint: 'Bind windows, forecasts and state (a test set), or folds and foldForecasts (a backtest), or both.',
      });
    }
    let backtest: { folds: Record<string, unknown>[]; mean: Record<string, number> } | null = null;
    if (hasFolds) {
      const folds = inputs.folds;
      const fc = inputs.foldForecasts;
      if (!Array.isArray(folds) || !Array.isArray(fc) || folds.length !== fc.length || folds.length === 0) {
        throw new PipelineError(
          'PLUGIN_INPUT',
          `evaluate.forecast: folds and foldForecasts must be lists of the same length (got ${Array.isArray(folds) ? folds.length : typeof folds} and ${Array.isArray(fc) ? fc.length : typeof fc}).`,
          { hint: "Bind process.window's folds output and the train step's foldForecasts output." },
        );
      }
      const rows: Record<string, unknown>[] = [];
      for (let k = 0; k < folds.length; k++) {
        const f = folds[k] as { test?: unknown; state?: unknown } | null;
        const s = await scoreOne(ctx, { windows: f?.test, forecasts: fc[k], state: f?.state }, p.movingAverageWindow, `fold ${k + 1}:`);
        rows.push({
          fold: k + 1,
          windows: s.windows,
          ...flat(s.model.overall),
          ...Object.fromEntries(BASELINES.map((b) => [`${b}Mase`, round(s.baselines[b].overall.mase)])),
          ...Object.fromEntries(BASELINES.map((b) => [`${b}Mae`, round(s.baselines[b].overall.mae)])),
        });
      }
      const mean = (key: string): number => round(rows.reduce((a, r) => a + (r[key] as number), 0) / rows.length);
      backtest = {
        folds: rows,
        mean: {
          ...Object.fromEntries(METRICS.map((m) => [m, mean(m)])),
          ...Object.fromEntries(
            BASELINES.flatMap((b) => [
              [`${b}Mase`, mean(`${b}Mase`)],
              [`${b}Mae`, mean(`${b}Mae`)],
            ]),
          ),
        },
      };
    }

    let metrics: Record<string, number>;
    let baseline: Record<string, number>;
    let baselines: Record<string, Record<string, number>>;
    let horizon: Record<string, number[]> | null = null;
    let windows = 0;
    if (single) {
      const s = await scoreOne(
        ctx,
        { windows: inputs.windows, forecasts: inputs.forecasts, state: inputs.state },
        p.movingAverageWindow,
        '',
      );
      windows = s.windows;
      metrics = flat(s.model.overall);
      baselines = Object.fromEntries(BASELINES.map((b) => [b, flat(s.baselines[b].overall)]));
      baseline = baselines[p.baseline]!;
      horizon = {
        ...Object.fromEntries(METRICS.map((m) => [m, s.model.perStep.map((x) => round(x[m]))])),
        ...Object.fromEntries(METRICS.map((m) => [`${p.baseline}_${m}`, s.baselines[p.baseline].perStep.map((x) => round(x[m]))])),
      };
    } else {
      const mean = backtest!.mean;
      metrics = Object.fromEntries(METRICS.map((m) => [m, mean[m]!]));
      baselines = Object.fromEntries(BASELINES.map((b) => [b, { mase: mean[`${b}Mase`]!, mae: mean[`${b}Mae`]! }]));
      baseline = baselines[p.baseline]!;
    }
    if (backtest) {
      metrics['backtestMase'] = backtest.mean['mase']!;
      metrics['backtestFolds'] = backtest.folds.length;
      baseline['backtestMase'] = backtest.mean[`${p.baseline}Mase`]!;
    }

    const misses: string[] = [];
    for (const [name, max] of Object.entries(p.gate?.maxRatioToBaseline ?? {})) {
      const ratio = metrics[name]! / baseline[name]!;
      if (!(ratio <= max!)) {
        misses.push(
          `${name} / ${p.baseline} ${name} = ${fmt(metrics[name]!)} / ${fmt(baseline[name]!)} = ${ratio.toFixed(3)} > max ${max}`,
        );
      }
    }
    for (const [name, max] of Object.entries(p.gate?.max ?? {})) {
      if (!(metrics[name]! <= max!)) misses.push(`${name} ${fmt(metrics[name]!)} > max ${fmt(max!)}`);
    }
    const report = {
      windows,
      metrics,
      baseline: p.baseline,
      baselines,
      horizon,
      backtest,
      gate: p.gate ?? null,
      passed: misses.length === 0,
      misses,
    };
    const reportRef = await ctx.store.put(JSON.stringify(report, null, 2), {
      name: 'forecast-evaluation.json',
      mediaType: 'application/json',
    });
    if (misses.length > 0) {
      throw new PipelineError('QUALITY_GATE', `Forecast quality gate failed:\n${misses.map((m) => `  - ${m}`).join('\n')}`, {
        hint: 'The model was not good enough to go further. Improve it, or change the gate in the pipeline.',
        details: { metrics, baseline },
      });
    }
    return { metrics, baseline, baselines, horizon, backtest, passed: true, report: reportRef };
  },
});
