/**
 * train.ets — exponential smoothing (ETS with additive errors: trend none, additive or damped
 * additive; seasonality none or additive with the window set's season; lib/ets.ts), fitted per
 * series by maximum likelihood, the model of each fit chosen by AICc among the candidates (automatic
 * ETS). A statistical forecaster beside train.gbdt-forecast and train.tfjs-sequence, with the same
 * inputs and the same forecast artifacts (`mlpipe.forecasts/1`, scaled units), so evaluate.forecast
 * and train.forecast-combine take it unchanged.
 *
 * ETS needs a series' whole history, not a lookback: the history is put back together from the window
 * sets the step is given, per series and period (the origins' periods; the frequency from the window
 * state, else the coarsest frequency every origin starts a period of). The train windows give their
 * lookbacks and targets (and the validation windows' with `predict`); the windows forecast give only
 * their lookbacks, so a window's history is what is known at its origin, as in a walk-forward test.
 *
 * `refit: window` (the default) fits each window on its series' history before its origin (model
 * choice and parameters per window, as statsmodels' ETS on each window's full history). `refit:
 * block` fits each series once, on its history before the set's first origin, and each window's
 * forecast runs that model's recursion on through the history up to the window's origin. Folds
 * (process.window's walk-forward folds) are forecast the same way, each from its own train windows;
 * each finished fold is checkpointed (the `folds` stream), so a retry after a lost worker fits only
 * the folds not done. Deterministic: no randomness, the same inputs give the same bytes.
 */
import { setImmediate as yieldLoop } from 'node:timers/promises';
import { z } from 'zod';
import { PipelineError } from '../../engine/errors.js';
import { isArtifactRef, type ArtifactRef } from '../../engine/types.js';
import { autoEts, etsFilter, etsForecast, ETS_SEASONALS, ETS_TRENDS, type EtsFit } from '../../lib/ets.js';
import { ETS_MODEL_FORMAT, type EtsModelDocument } from '../../lib/ets-served.js';
import { periodIndex, periodStart } from '../../lib/window-build.js';
import {
  decodeWindows,
  encodeForecasts,
  FORECASTS_MEDIA_TYPE,
  FREQUENCIES,
  parseWindowState,
  type Frequency,
  type WindowSet,
} from '../../lib/windows.js';
import { definePlugin, type StepContext } from '../sdk.js';
import { resumeFolds, type FoldsCheckpoint } from './fold-checkpoints.js';

export { ETS_MODEL_FORMAT };

const params = z
  .object({
    /** The trends the automatic choice considers. */
    trend: z
      .array(z.enum(ETS_TRENDS))
      .min(1)
      .refine((t) => new Set(t).size === t.length, 'trends must be distinct')
      .default([...ETS_TRENDS]),
    /** The seasonalities it considers (additive: the window set's season, with two seasons of history). */
    seasonal: z
      .array(z.enum(ETS_SEASONALS))
      .min(1)
      .refine((s) => new Set(s).size === s.length, 'seasonalities must be distinct')
      .default([...ETS_SEASONALS]),
    /** The seasonal period in steps (default: the window set's season). */
    season: z.number().int().min(2).max(10_000).optional(),
    /** window: a fit per forecast window on its history; block: a fit per series and window set, run on to each origin. */
    refit: z.enum(['window', 'block']).default('window'),
    /** Nelder-Mead starts per candidate model (the best points of a coarse grid over the smoothing parameters). */
    searchStarts: z.number().int().min(1).max(20).default(2),
  })
  .strict();

type Params = z.infer<typeof params>;

const WHERE = 'train.ets';

/** A series' known values by period index. */
type History = Map<number, number>;

/** The coarsest frequency every origin is the start of a period of. */
export function inferFrequency(origins: ArrayLike<number>): Frequency {
  for (const f of [...FREQUENCIES].reverse()) {
    let ok = true;
    for (let i = 0; i < origins.length && ok; i++) ok = periodStart(periodIndex(origins[i]!, f), f) === origins[i];
    if (ok) return f;
  }
  throw new PipelineError('PLUGIN_INPUT', `${WHERE}: the windows' origins are not the starts of periods of any frequency.`, {
    hint: "Bind window sets of process.window, and its state ('state', or the folds' own).",
  });
}

/**
 * Adds a window set's known values to the histories: each window's lookback target values, and with
 * `targets` its horizon's too. A period given twice with different values means the sets were scaled
 * differently (windows of different process.window steps or folds).
 */
export function addHistory(histories: Map<number, History>, set: WindowSet, frequency: Frequency, targets: boolean): void {
  const { lookback: L, horizon: H } = set;
  const F = set.inputs.length;
  const put = (series: number, p: number, v: number): void => {
    if (!Number.isFinite(v)) return;
    let h = histories.get(series);
    if (!h) histories.set(series, (h = new Map()));
    const had = h.get(p);
    if (had === undefined) h.set(p, v);
    else if (Math.abs(had - v) > 1e-4 * Math.max(1, Math.abs(v))) {
      throw new PipelineError(
        'PLUGIN_INPUT',
        `${WHERE}: series '${set.seriesIds[series]}' has two values for ${new Date(periodStart(p, frequency)).toISOString().slice(0, 10)} (${had} and ${v}, scaled): the window sets were not scaled together.`,
        { hint: 'Bind window sets of one process.window step (a fold: its own train and test windows).' },
      );
    }
  };
  for (let i = 0; i < set.count; i++) {
    const p0 = periodIndex(set.origin[i]!, frequency);
    const s = set.series[i]!;
    for (let l = 0; l < L; l++) put(s, p0 - L + l, set.x[(i * L + l) * F]!);
    if (targets) for (let h = 0; h < H; h++) put(s, p0 + h, set.y[i * H + h]!);
  }
}

/** The history before period `end`, from its first known period, NaN where a period is unknown. */
export function historyBefore(h: History | undefined, end: number): Float64Array {
  let first = Infinity;
  for (const p of h?.keys() ?? []) if (p < end && p < first) first = p;
  return Number.isFinite(first) ? historyBetween(h, first, end) : new Float64Array(0);
}

/** The values of periods start..end-1, NaN where a period is unknown. */
export function historyBetween(h: History | undefined, start: number, end: number): Float64Array {
  const out = new Float64Array(Math.max(0, end - start)).fill(NaN);
  for (const [p, v] of h ?? []) if (p >= start && p < end) out[p - start] = v;
  return out;
}

interface Options {
  spec: { period: number; trends: Params['trend']; seasonals: Params['seasonal']; searchStarts: number };
}

interface SetResult {
  values: Float32Array;
  fits: number;
  /** Windows forecast without a model (too little history): the last known value repeated. */
  fallbacks: number;
  chosen: Record<string, number>;
}

/** A finished fold's counts, kept with its forecasts so that a resumed step's metrics are the whole step's. */
interface FoldStats {
  fits: number;
  fallbacks: number;
  chosen: Record<string, number>;
}

const isFoldStats = (v: unknown): v is FoldStats =>
  typeof v === 'object' &&
  v !== null &&
  Number.isInteger((v as FoldStats).fits) &&
  Number.isInteger((v as FoldStats).fallbacks) &&
  typeof (v as FoldStats).chosen === 'object' &&
  (v as FoldStats).chosen !== null &&
  Object.values((v as FoldStats).chosen).every((n) => Number.isInteger(n));

/** The `folds` checkpoint stream's record: the step's params (the same work), the fold test digests, the finished folds. */
interface FoldsCheckpointDoc extends FoldsCheckpoint {
  work: string;
  stats: FoldStats[];
}

function fitSeries(y: Float64Array, o: Options): EtsFit | undefined {
  return autoEts(y, {
    period: o.spec.period,
    trends: o.spec.trends,
    seasonals: o.spec.seasonals,
    searchStarts: o.spec.searchStarts,
  }).best;
}

function lastKnown(y: Float64Array): number {
  for (let i = y.length - 1; i >= 0; i--) if (Number.isFinite(y[i])) return y[i]!;
  return NaN;
}

/** Forecasts every window of `set` from the histories (see the module comment for the two refit modes). */
async function forecastSet(
  set: WindowSet,
  histories: Map<number, History>,
  frequency: Frequency,
  p: Params,
  o: Options,
  signal: AbortSignal,
): Promise<SetResult> {
  const H = set.horizon;
  const values = new Float32Array(set.count * H);
  const chosen: Record<string, number> = {};
  let fits = 0;
  let fallbacks = 0;
  const blockFits = new Map<number, { fit: EtsFit | undefined; start: number }>();
  if (p.refit === 'block') {
    const firstOrigin = new Map<number, number>();
    for (let i = 0; i < set.count; i++) {
      const p0 = periodIndex(set.origin[i]!, frequency);
      const s = set.series[i]!;
      firstOrigin.set(s, Math.min(firstOrigin.get(s) ?? Infinity, p0));
    }
    for (const [s, end] of firstOrigin) {
      const y = historyBefore(histories.get(s), end);
      const fit = y.length ? fitSeries(y, o) : undefined;
      fits++;
      if (fit) chosen[fit.name] = (chosen[fit.name] ?? 0) + 1;
      blockFits.set(s, { fit, start: end - y.length });
      await yieldLoop();
      signal.throwIfAborted();
    }
  }
  for (let i = 0; i < set.count; i++) {
    const p0 = periodIndex(set.origin[i]!, frequency);
    const s = set.series[i]!;
    const y = historyBefore(histories.get(s), p0);
    let forecast: Float64Array | undefined;
    if (p.refit === 'window') {
      const fit = y.length ? fitSeries(y, o) : undefined;
      fits++;
      if (fit) {
        chosen[fit.name] = (chosen[fit.name] ?? 0) + 1;
        forecast = etsForecast(fit.spec, fit.params, fit.final, H);
      }
      await yieldLoop();
      signal.throwIfAborted();
    } else {
      const b = blockFits.get(s);
      if (b?.fit) {
        // The block's model from its initial states through the history to this origin.
        const run = etsFilter(historyBetween(histories.get(s), b.start, p0), b.fit.spec, b.fit.params, b.fit.initial);
        forecast = etsForecast(b.fit.spec, b.fit.params, run.final, H);
      }
    }
    if (!forecast) {
      fallbacks++;
      forecast = new Float64Array(H).fill(lastKnown(y));
    }
    values.set(forecast, i * H);
  }
  return { values, fits, fallbacks, chosen };
}

async function windowsOf(ctx: StepContext, ref: unknown, name: string): Promise<{ set: WindowSet; ref: ArtifactRef }> {
  if (!isArtifactRef(ref)) {
    throw new PipelineError(
      'PLUGIN_INPUT',
      `${WHERE}: '${name}' must be a window set artifact, got ${JSON.stringify(ref)?.slice(0, 80)}.`,
      {
        hint: "Bind a window set of process.window (train, validation, test, or a fold's).",
      },
    );
  }
  return { set: decodeWindows(await ctx.store.get(ref)), ref };
}

async function frequencyOf(ctx: StepContext, state: unknown, sets: WindowSet[]): Promise<Frequency> {
  if (state === undefined || state === null) return inferFrequency(Float64Array.from(sets.flatMap((s) => Array.from(s.origin))));
  if (!isArtifactRef(state)) {
    throw new PipelineError('PLUGIN_INPUT', `${WHERE}: 'state' must be process.window's state artifact.`, {
      hint: 'Bind the state output of the process.window step.',
    });
  }
  let doc: unknown;
  try {
    doc = JSON.parse((await ctx.store.get(state)).toString('utf8'));
  } catch (e) {
    throw new PipelineError('PLUGIN_INPUT', `${WHERE}: 'state' is not JSON (${(e as Error).message}).`, {
      hint: 'Bind the state output of the process.window step.',
    });
  }
  return parseWindowState(doc, WHERE).frequency;
}

function sameWindows(a: WindowSet, b: WindowSet, name: string): void {
  if (
    a.horizon !== b.horizon ||
    a.season !== b.season ||
    a.inputs[0] !== b.inputs[0] ||
    a.seriesIds.join('\n') !== b.seriesIds.join('\n')
  ) {
    throw new PipelineError(
      'PLUGIN_INPUT',
      `${WHERE}: the '${name}' windows (H=${b.horizon}, season ${b.season}, ${b.seriesIds.length} series) do not match the train windows (H=${a.horizon}, season ${a.season}, ${a.seriesIds.length} series).`,
      { hint: 'Bind window sets of the same process.window step.' },
    );
  }
}

export const trainEts = definePlugin({
  name: 'train.ets',
  version: '1',
  description:
    'Exponential smoothing (additive-error ETS, trend none/additive/damped, additive season) fitted per series by maximum likelihood and chosen by AICc; forecasts and walk-forward fold forecasts.',
  heartbeat: { blocksEventLoopMs: 20_000 },
  params,
  inputs: { train: 'artifact', 'validation?': 'artifact', 'predict?': 'artifact', 'folds?': 'json', 'state?': 'artifact' },
  outputs: { model: 'model', metrics: 'metrics', forecasts: 'artifact', foldForecasts: 'json', backend: 'json' },
  async run(ctx, p, inputs) {
    const started = Date.now();
    const train = (await windowsOf(ctx, inputs.train, 'train')).set;
    const validation = inputs.validation ? (await windowsOf(ctx, inputs.validation, 'validation')).set : undefined;
    if (validation) sameWindows(train, validation, 'validation');
    const predict = inputs.predict ? await windowsOf(ctx, inputs.predict, 'predict') : undefined;
    if (predict) sameWindows(train, predict.set, 'predict');
    const sets = [train, ...(validation ? [validation] : []), ...(predict ? [predict.set] : [])];
    const frequency = await frequencyOf(ctx, inputs.state, sets);
    const period = p.season ?? train.season;
    const o: Options = { spec: { period, trends: p.trend, seasonals: p.seasonal, searchStarts: p.searchStarts } };
    const chosen: Record<string, number> = {};
    const tally = (r: Pick<SetResult, 'chosen'>): void => {
      for (const [k, v] of Object.entries(r.chosen)) chosen[k] = (chosen[k] ?? 0) + v;
    };
    let fits = 0;
    let fallbacks = 0;

    const histories = new Map<number, History>();
    addHistory(histories, train, frequency, true);
    if (validation) addHistory(histories, validation, frequency, true);
    let forecasts: ArtifactRef | null = null;
    if (predict) {
      addHistory(histories, predict.set, frequency, false);
      const r = await forecastSet(predict.set, histories, frequency, p, o, ctx.signal);
      tally(r);
      fits += r.fits;
      fallbacks += r.fallbacks;
      forecasts = await ctx.store.put(
        encodeForecasts({
          count: predict.set.count,
          horizon: predict.set.horizon,
          windows: predict.ref.sha256,
          values: r.values,
          model: WHERE,
        }),
        { name: 'forecasts', mediaType: FORECASTS_MEDIA_TYPE },
      );
    }

    // The model: each series fitted on what is known before the forecast windows (all of it without them).
    const doc: EtsModelDocument = {
      format: ETS_MODEL_FORMAT,
      frequency,
      season: period,
      horizon: train.horizon,
      target: train.inputs[0]!,
      series: {},
    };
    for (const [s, id] of train.seriesIds.entries()) {
      const h = histories.get(s);
      let end = Infinity;
      for (let i = 0; predict && i < predict.set.count; i++) {
        if (predict.set.series[i] === s) end = Math.min(end, periodIndex(predict.set.origin[i]!, frequency));
      }
      if (end === Infinity) end = h && h.size ? Math.max(...h.keys()) + 1 : 0;
      const y = historyBefore(h, end);
      const fit = y.length ? fitSeries(y, o) : undefined;
      doc.series[id] = fit
        ? {
            model: fit.name,
            spec: fit.spec,
            params: fit.params,
            initial: fit.initial,
            final: fit.final,
            next: new Date(periodStart(end, frequency)).toISOString(),
            n: fit.n,
            aicc: fit.aicc,
            logLik: fit.logLik,
          }
        : null;
      await yieldLoop();
      ctx.signal.throwIfAborted();
    }

    let foldForecasts: ArtifactRef[] | null = null;
    let foldsResumed = 0;
    if (inputs.folds !== undefined && inputs.folds !== null) {
      if (!Array.isArray(inputs.folds)) {
        throw new PipelineError('PLUGIN_INPUT', `${WHERE}: 'folds' must be process.window's folds output (a list).`);
      }
      const list = inputs.folds as { train?: unknown; test?: unknown; state?: unknown }[];
      // The `folds` checkpoint stream: the finished folds' forecasts and fit counts, kept by a retry.
      const tests = list.map((f) => (isArtifactRef(f?.test) ? f.test.sha256 : ''));
      const work = JSON.stringify(p);
      const stream = ctx.checkpoint.stream('folds');
      const kept = await resumeFolds<FoldsCheckpointDoc>(
        ctx,
        stream,
        tests,
        (d) => d.work === work && Array.isArray(d.stats) && d.stats.length === d.done.length && d.stats.every(isFoldStats),
      );
      foldForecasts = [...(kept?.done ?? [])];
      const stats: FoldStats[] = [...(kept?.stats ?? [])];
      for (const st of stats) {
        tally(st);
        fits += st.fits;
        fallbacks += st.fallbacks;
      }
      foldsResumed = stats.length;
      for (const [k, fold] of list.entries()) {
        if (k < foldsResumed) continue;
        const ft = (await windowsOf(ctx, fold?.train, `folds[${k}].train`)).set;
        const { set: fs, ref: fsRef } = await windowsOf(ctx, fold?.test, `folds[${k}].test`);
        sameWindows(train, ft, `folds[${k}].train`);
        sameWindows(train, fs, `folds[${k}].test`);
        const ff = await frequencyOf(ctx, fold?.state ?? inputs.state, [ft, fs]);
        const fh = new Map<number, History>();
        addHistory(fh, ft, ff, true);
        addHistory(fh, fs, ff, false);
        const r = await forecastSet(fs, fh, ff, p, o, ctx.signal);
        tally(r);
        fits += r.fits;
        fallbacks += r.fallbacks;
        foldForecasts.push(
          await ctx.store.put(
            encodeForecasts({ count: fs.count, horizon: fs.horizon, windows: fsRef.sha256, values: r.values, model: WHERE }),
            {
              name: `fold${k + 1}-forecasts`,
              mediaType: FORECASTS_MEDIA_TYPE,
            },
          ),
        );
        stats.push({ fits: r.fits, fallbacks: r.fallbacks, chosen: r.chosen });
        // Every fold, the last one too: a worker lost before the step returns leaves no fold to fit again.
        const checkpoint: FoldsCheckpointDoc = { work, tests, done: foldForecasts, stats };
        await stream.save(JSON.stringify(checkpoint), { fold: k + 1, foldsDone: foldForecasts.length }, { keep: 2 });
        ctx.progress({
          done: k + 1,
          total: list.length,
          unit: 'fold',
          message: `backtest fold ${k + 1}/${list.length} (${r.fits} ETS fits)`,
        });
      }
    }
    const metrics: Record<string, number> = {
      fits,
      fallbacks,
      series: train.seriesIds.length,
      season: period,
      trainSeconds: (Date.now() - started) / 1000,
    };
    if (foldForecasts) Object.assign(metrics, { foldsResumed, foldsFittedThisAttempt: foldForecasts.length - foldsResumed });
    for (const [name, n] of Object.entries(chosen)) metrics[`chosen_${name}`] = n;
    return {
      model: await ctx.store.put(JSON.stringify(doc), { name: 'ets.json', mediaType: 'application/json' }),
      metrics,
      forecasts,
      foldForecasts,
      backend: 'mlpipe ETS (TypeScript)',
    };
  },
});
