/**
 * What an exported forecaster is fed, built one way for the export's parity check and for the
 * prediction server: windows of raw values (the target's last `lookback` values, raw covariates,
 * known-future covariates) plus their timestamps -> the ONNX tensors (`series`, `history`,
 * `covariates`, `calendar`, `future_covariates`, `future_calendar`; lib/onnx-sequence.ts), with the
 * calendar features computed as process.window computes them (lib/window-build.ts).
 *
 * The request parser (`parseForecastRequest`) checks an HTTP body against the model's contract: a
 * known series, exactly `lookback` history rows at consecutive periods of the model's frequency,
 * finite numbers, `horizon` future rows when the model reads known-future covariates.
 */
import { z } from 'zod';
import { PipelineError } from '../engine/errors.js';
import type { OnnxForecastContract } from '../adapters/onnx/contract.js';
import type { TensorInput } from '../adapters/onnx/runtime.js';
import { calendarNames, calendarValues, periodIndex, periodStart } from './window-build.js';
import type { CalendarFeature, Frequency } from './windows.js';

/** Raw windows, row-major: N windows of L steps (C covariates) and H forecast steps (Gk known covariates). */
export interface RawWindows {
  count: number;
  /** [N]: index into the contract's seriesIds. */
  series: ArrayLike<number>;
  /** [N, L] raw target values. */
  history: Float64Array;
  /** [N, L, C] raw covariates, in the contract's `covariates` order. */
  covariates: Float64Array;
  /** [N, H, Gk] raw known-future covariates, in `futureCovariates` order. */
  futureCovariates: Float64Array;
  /** [N] epoch ms of the first forecast step (the period after the last history row). */
  origin: ArrayLike<number>;
}

/** The period starts of the L history steps and the H forecast steps of a window. */
export function windowTimes(c: OnnxForecastContract, origin: number): { history: number[]; future: number[] } {
  const f = frequencyOf(c);
  const first = periodIndex(origin, f);
  return {
    history: Array.from({ length: c.lookback }, (_, k) => periodStart(first - c.lookback + k, f)),
    future: Array.from({ length: c.horizon }, (_, k) => periodStart(first + k, f)),
  };
}

function frequencyOf(c: OnnxForecastContract): Frequency {
  if (!c.frequency)
    throw new PipelineError('DATA_INVALID', 'The forecaster records no frequency, so its calendar features cannot be computed.');
  return c.frequency as Frequency;
}

/** Calendar values of `names` (a subset of the contract's calendar features) at each time, appended to `out`. */
function pushCalendar(out: number[], c: OnnxForecastContract, names: string[], times: number[], holidays: ReadonlySet<string>): void {
  if (!names.length) return;
  const features = (c.calendarFeatures ?? []) as CalendarFeature[];
  const all = calendarNames(features);
  const pick = names.map((n) => all.indexOf(n));
  if (pick.some((i) => i < 0))
    throw new PipelineError('DATA_INVALID', `The forecaster's calendar features ${names.join(', ')} are not all known.`);
  for (const t of times) {
    const v = calendarValues(t, features, holidays);
    for (const i of pick) out.push(v[i]!);
  }
}

/** The ONNX feeds of raw windows. */
export function forecastTensors(c: OnnxForecastContract, w: RawWindows): Record<string, TensorInput> {
  const n = w.count;
  const L = c.lookback;
  const H = c.horizon;
  const feeds: Record<string, TensorInput> = {
    series: { type: 'int64', data: BigInt64Array.from(Array.from(w.series), (s) => BigInt(s)), dims: [n] },
    history: { type: 'float64', data: w.history, dims: [n, L] },
  };
  if (c.covariates.length) feeds['covariates'] = { type: 'float64', data: w.covariates, dims: [n, L, c.covariates.length] };
  if (c.futureCovariates.length)
    feeds['future_covariates'] = { type: 'float64', data: w.futureCovariates, dims: [n, H, c.futureCovariates.length] };
  if (c.calendar.length || c.futureCalendar.length) {
    const holidays = new Set(c.holidays ?? []);
    const cal: number[] = [];
    const fut: number[] = [];
    for (let i = 0; i < n; i++) {
      const t = windowTimes(c, w.origin[i]!);
      pushCalendar(cal, c, c.calendar, t.history, holidays);
      pushCalendar(fut, c, c.futureCalendar, t.future, holidays);
    }
    if (c.calendar.length) feeds['calendar'] = { type: 'float32', data: Float32Array.from(cal), dims: [n, L, c.calendar.length] };
    if (c.futureCalendar.length)
      feeds['future_calendar'] = { type: 'float32', data: Float32Array.from(fut), dims: [n, H, c.futureCalendar.length] };
  }
  return feeds;
}

export interface ForecastRequest {
  windows: RawWindows;
  /** Each instance's series id, its newest history row and its whole history as sent (what the prediction log keeps). */
  instances: { series: string; last: Record<string, unknown>; history: Record<string, unknown>[] }[];
  batch: boolean;
}

export interface RequestIssue {
  instance?: number;
  field: string;
  problem: string;
}

function requestError(
  message: string,
  details?: RequestIssue[],
  code: 'INVALID_INPUT' | 'TOO_MANY_INSTANCES' = 'INVALID_INPUT',
): PipelineError {
  return new PipelineError(code, message, details ? { details } : {});
}

/** The zod schema of one forecast instance, from the contract. */
export function forecastInstanceSchema(
  c: OnnxForecastContract,
): z.ZodType<{ series: string; history: Record<string, unknown>[]; future?: Record<string, unknown>[] }> {
  const num = z
    .number({
      error: (iss) => (iss.input === undefined ? 'required' : `expected a number, got ${JSON.stringify(iss.input)?.slice(0, 40)}`),
    })
    .finite();
  const time = c.timeColumn ?? 'time';
  const row: Record<string, z.ZodType> = {
    [time]: z.union([z.string().max(40), z.number().finite()], { error: () => 'expected an ISO time or epoch ms' }),
    [c.target]: num,
  };
  for (const cov of c.covariates) row[cov] = num;
  const future: Record<string, z.ZodType> = {};
  for (const k of c.futureCovariates) future[k] = num;
  return z
    .object({
      series: z.string({ error: () => 'required: the series id' }).max(1000),
      history: z
        .array(z.object(row).strict())
        .length(c.lookback, { error: () => `expected exactly ${c.lookback} rows (the lookback), oldest first` }),
      ...(c.futureCovariates.length
        ? {
            future: z
              .array(z.object(future).strict())
              .length(c.horizon, { error: () => `expected exactly ${c.horizon} rows (the horizon)` }),
          }
        : {}),
    })
    .strict() as never;
}

function epochMs(v: unknown): number {
  return typeof v === 'number' ? v : Date.parse(v as string);
}

/**
 * Checks a /predict body (one instance, a list, or {"instances": [...]}) against the forecaster's
 * contract and builds its raw windows; a bad body is an INVALID_INPUT naming each field.
 */
export function parseForecastRequest(
  c: OnnxForecastContract,
  schema: ReturnType<typeof forecastInstanceSchema>,
  body: unknown,
  maxInstances: number,
): ForecastRequest {
  let raw: unknown[];
  let batch = true;
  if (Array.isArray(body)) raw = body;
  else if (body && typeof body === 'object' && 'instances' in body) {
    const inst = (body as { instances: unknown }).instances;
    if (!Array.isArray(inst)) throw requestError('"instances" must be a list of forecast requests.');
    raw = inst;
  } else if (body && typeof body === 'object') {
    raw = [body];
    batch = false;
  } else throw requestError('The body must be {"series": ..., "history": [...]}, a list of them, or {"instances": [...]}.');
  if (raw.length === 0) throw requestError('No forecast requests.');
  if (raw.length > maxInstances)
    throw requestError(`${raw.length} forecast requests in one body; the limit is ${maxInstances}.`, undefined, 'TOO_MANY_INSTANCES');
  const L = c.lookback;
  const H = c.horizon;
  const C = c.covariates.length;
  const G = c.futureCovariates.length;
  const n = raw.length;
  const w: RawWindows = {
    count: n,
    series: new Int32Array(n),
    history: new Float64Array(n * L),
    covariates: new Float64Array(n * L * C),
    futureCovariates: new Float64Array(n * H * G),
    origin: new Float64Array(n),
  };
  const index = new Map(c.seriesIds.map((s, i) => [s, i]));
  const details: RequestIssue[] = [];
  const issue = (i: number, field: string, problem: string): void => {
    if (details.length < 50) details.push({ ...(batch ? { instance: i } : {}), field, problem });
  };
  const time = c.timeColumn ?? 'time';
  const f = c.frequency as Frequency | undefined;
  const instances: ForecastRequest['instances'] = [];
  raw.forEach((r, i) => {
    const parsed = schema.safeParse(r);
    if (!parsed.success) {
      for (const iss of parsed.error.issues) {
        const keys =
          iss.code === 'unrecognized_keys'
            ? (iss as { keys: string[] }).keys.map((k) => [...iss.path, k].join('.'))
            : [iss.path.join('.') || '(request)'];
        for (const k of keys) issue(i, k, iss.code === 'unrecognized_keys' ? 'not an input of this model' : iss.message);
      }
      return;
    }
    const v = parsed.data;
    const s = index.get(v.series);
    if (s === undefined) {
      issue(
        i,
        'series',
        `unknown series '${v.series.slice(0, 100)}' (this model forecasts ${c.seriesIds.length} series: ${c.seriesIds.slice(0, 5).join(', ')}${c.seriesIds.length > 5 ? ', ...' : ''})`,
      );
      return;
    }
    (w.series as Int32Array)[i] = s;
    // Timestamps: parseable, one period apart at the model's frequency.
    let prev: number | undefined;
    let ok = true;
    v.history.forEach((h, k) => {
      const ms = epochMs(h[time]);
      if (!Number.isFinite(ms)) {
        issue(i, `history.${k}.${time}`, `not a time: ${JSON.stringify(h[time]).slice(0, 40)}`);
        ok = false;
        return;
      }
      if (f) {
        const p = periodIndex(ms, f);
        if (prev !== undefined && p !== prev + 1 && ok) {
          issue(i, `history.${k}.${time}`, `not the ${f} after the previous row (rows must be consecutive periods, oldest first)`);
          ok = false;
        }
        prev = p;
      }
      w.history[i * L + k] = h[c.target] as number;
      c.covariates.forEach((cov, j) => (w.covariates[(i * L + k) * C + j] = h[cov] as number));
    });
    if (!ok) return;
    (w.origin as Float64Array)[i] = f ? periodStart(prev! + 1, f) : 0;
    v.future?.forEach((row, k) => c.futureCovariates.forEach((cov, j) => (w.futureCovariates[(i * H + k) * G + j] = row[cov] as number)));
    instances.push({ series: v.series, last: v.history[L - 1]!, history: v.history });
  });
  if (details.length) {
    const first = details[0]!;
    throw requestError(
      `${details.length >= 50 ? '50+' : details.length} invalid field(s); first: ${first.instance !== undefined ? `instances[${first.instance}].` : ''}${first.field}: ${first.problem}.`,
      details,
    );
  }
  return { windows: w, instances, batch };
}

/** The forecast steps' period starts after a window's last history row. */
export function forecastTimes(c: OnnxForecastContract, origin: number): string[] {
  return c.frequency ? windowTimes(c, origin).future.map((t) => new Date(t).toISOString()) : [];
}

/**
 * The prediction server's request codec for an exported forecaster (serve/server.ts
 * `TensorRequestCodec`): a body in, the feeds, and per request the answer — the forecast steps'
 * times with their value (the point forecast, or the 0.5 quantile) and quantiles — and what the
 * prediction log keeps: every history row of the request (time, target, covariates, under the table's
 * column names, with the series id; the server adds its position), so the drift monitor compares
 * the logged rows with the training table.
 */
export function forecastCodec(c: OnnxForecastContract): {
  parse(
    body: unknown,
    maxInstances: number,
  ): {
    tensors: Record<string, TensorInput>;
    rows: number;
    batch: boolean;
    logged: Record<string, unknown>[];
    window: Record<string, unknown>[][];
    answer(out: Float32Array): { predictions: unknown[]; logged: number[][] };
  };
} {
  const schema = forecastInstanceSchema(c);
  const H = c.horizon;
  const Q = Math.max(1, c.quantiles.length);
  const median = c.quantiles.length ? c.quantiles.indexOf(0.5) : 0;
  const seriesKey = c.seriesColumn ?? 'series';
  return {
    parse(body, maxInstances) {
      const r = parseForecastRequest(c, schema, body, maxInstances);
      const n = r.windows.count;
      return {
        tensors: forecastTensors(c, r.windows),
        rows: n,
        batch: r.batch,
        logged: r.instances.map((i) => ({ [seriesKey]: i.series, ...i.last })),
        window: r.instances.map((i) => i.history.map((h) => ({ [seriesKey]: i.series, ...h }))),
        answer(out) {
          const predictions: unknown[] = [];
          const logged: number[][] = [];
          for (let i = 0; i < n; i++) {
            const times = forecastTimes(c, r.windows.origin[i]!);
            const points: number[] = [];
            const steps = Array.from({ length: H }, (_, h) => {
              const at = (i * H + h) * Q;
              const value = out[at + median]!;
              points.push(value);
              return {
                ...(times[h] ? { time: times[h] } : {}),
                value,
                ...(c.quantiles.length ? { quantiles: Object.fromEntries(c.quantiles.map((q, k) => [String(q), out[at + k]!])) } : {}),
              };
            });
            predictions.push({ series: r.instances[i]!.series, forecasts: steps });
            logged.push(points);
          }
          return { predictions, logged };
        },
      };
    },
  };
}
