/**
 * Forecasting windows: the binary window set (`mlpipe.windows/1`), the fitted window state
 * (`mlpipe.window-state/1`) and the forecasts (`mlpipe.forecasts/1`). process.window writes the
 * first two, a forecasting train step reads windows and writes forecasts, evaluate.forecast reads
 * all three. Pure: no I/O.
 *
 * A binary blob is: 4 ASCII bytes of magic, a little-endian uint32 header length, the header (UTF-8
 * JSON), zero padding to a multiple of 8 bytes, then the blocks, little-endian, each starting at a
 * multiple of 8 bytes. Blobs are step outputs, so the decoders trust nothing: every length is
 * checked against the header before a typed array is made.
 */
import { z } from 'zod';
import { formatZodIssues, PipelineError } from '../engine/errors.js';

export const WINDOWS_FORMAT = 'mlpipe.windows/1';
export const WINDOW_STATE_FORMAT = 'mlpipe.window-state/1';
export const FORECASTS_FORMAT = 'mlpipe.forecasts/1';
export const WINDOWS_MEDIA_TYPE = 'application/vnd.mlpipe.windows';
export const FORECASTS_MEDIA_TYPE = 'application/vnd.mlpipe.forecasts';

const WINDOWS_MAGIC = 'MLPW';
const FORECASTS_MAGIC = 'MLPF';
/** Headers are small (names and a few numbers); anything larger is refused before it is parsed. */
const MAX_HEADER_BYTES = 4 * 1024 * 1024;
/** Blocks beyond this are refused (a corrupt header must not make us allocate gigabytes). */
const MAX_BLOCK_BYTES = 2 ** 31 - 1;

/**
 * A set of training or evaluation windows. Window i covers lookback steps before `origin[i]` (the
 * epoch ms of its first forecast step) and `horizon` steps from it, for series `seriesIds[series[i]]`.
 */
export interface WindowSet {
  lookback: number;
  horizon: number;
  count: number;
  /** Per-timestep inputs; index 0 is always the scaled target. F = inputs.length. */
  inputs: string[];
  /** Known-future features per horizon step (calendar, known covariates). G = future.length (may be 0). */
  future: string[];
  /** The seasonal period in steps (7 for daily, 12 for monthly data). */
  season: number;
  seriesIds: string[];
  /** [N, L, F], row-major. */
  x: Float32Array;
  /** [N, H, G]. */
  xf: Float32Array;
  /** [N, H], scaled target; NaN where the table had no value and no fill rule. */
  y: Float32Array;
  /** [N], an index into seriesIds. */
  series: Int32Array;
  /** [N], epoch ms of the first forecast step. */
  origin: Float64Array;
}

/** Forecasts for one window set, in scaled units, in the window set's order. */
export interface Forecasts {
  count: number;
  horizon: number;
  /** sha256 (hex) of the encoded window set these forecasts are for. */
  windows: string;
  /** [N, H], scaled target units. */
  values: Float32Array;
  /** Who made them (a plugin name, a model name): for reports. */
  model?: string;
}

const count = z
  .number()
  .int()
  .min(0)
  .max(2 ** 30);
const positive = z.number().int().min(1).max(100_000);
const names = z.array(z.string().max(1000)).max(100_000);

const windowsHeader = z
  .object({
    format: z.literal(WINDOWS_FORMAT),
    lookback: positive,
    horizon: positive,
    count,
    inputs: names.min(1),
    future: names,
    season: positive,
    seriesIds: names,
  })
  .strict();

const forecastsHeader = z
  .object({
    format: z.literal(FORECASTS_FORMAT),
    count,
    horizon: positive,
    windows: z.string().regex(/^[0-9a-f]{64}$/),
    model: z.string().max(1000).optional(),
  })
  .strict();

function pad8(n: number): number {
  return Math.ceil(n / 8) * 8;
}

function invalid(what: string, message: string): PipelineError {
  return new PipelineError('DATA_INVALID', `${what}: ${message}`, {
    hint:
      what === 'window set'
        ? 'Bind a window set written by process.window (its train, validation, test or folds outputs).'
        : "Bind the 'forecasts' output of a forecasting train step (train.gbdt-forecast, train.tfjs-sequence).",
  });
}

function encodeBlob(magic: string, header: unknown, blocks: ArrayBufferView[]): Buffer {
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const start = pad8(8 + json.length);
  let size = start;
  const offsets: number[] = [];
  for (const b of blocks) {
    offsets.push(size);
    size = pad8(size + b.byteLength);
  }
  const out = Buffer.alloc(size);
  out.write(magic, 0, 'ascii');
  out.writeUInt32LE(json.length, 4);
  json.copy(out, 8);
  blocks.forEach((b, i) => {
    // Typed arrays are in the platform's byte order; every platform Node runs on is little-endian.
    Buffer.from(b.buffer, b.byteOffset, b.byteLength).copy(out, offsets[i]);
  });
  return out;
}

function decodeHeader(buf: Uint8Array, magic: string, what: string): { header: unknown; start: number } {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  if (b.length < 8 || b.toString('ascii', 0, 4) !== magic) {
    throw invalid(what, `not a ${what} (${b.length} bytes; it does not start with '${magic}')`);
  }
  const n = b.readUInt32LE(4);
  if (n > MAX_HEADER_BYTES || 8 + n > b.length) {
    throw invalid(what, `its header claims ${n} bytes, more than the ${b.length}-byte blob (or the ${MAX_HEADER_BYTES}-byte limit) holds`);
  }
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(b.subarray(8, 8 + n)));
  } catch (e) {
    throw invalid(what, `its header is not UTF-8 JSON (${(e as Error).message})`);
  }
  return { header, start: pad8(8 + n) };
}

/** Copies `bytes` bytes at `offset` into a fresh (aligned) buffer. */
function block(buf: Uint8Array, offset: number, bytes: number): ArrayBuffer {
  const out = new ArrayBuffer(bytes);
  new Uint8Array(out).set(buf.subarray(offset, offset + bytes));
  return out;
}

function blockBytes(what: string, name: string, elements: number, size: number): number {
  const bytes = elements * size;
  if (!Number.isSafeInteger(bytes) || bytes > MAX_BLOCK_BYTES)
    throw invalid(what, `block '${name}' would be ${bytes} bytes, over the limit`);
  return bytes;
}

/** The number of values a [N, L, F] / [N, H, G] / [N, H] block holds. */
export function windowShapes(set: Pick<WindowSet, 'count' | 'lookback' | 'horizon' | 'inputs' | 'future'>): {
  x: number;
  xf: number;
  y: number;
} {
  const { count: n, lookback: l, horizon: h } = set;
  return { x: n * l * set.inputs.length, xf: n * h * set.future.length, y: n * h };
}

export function encodeWindows(set: WindowSet): Buffer {
  const shapes = windowShapes(set);
  const checks: [string, number, number][] = [
    ['x', set.x.length, shapes.x],
    ['xf', set.xf.length, shapes.xf],
    ['y', set.y.length, shapes.y],
    ['series', set.series.length, set.count],
    ['origin', set.origin.length, set.count],
  ];
  for (const [name, got, want] of checks) {
    if (got !== want) throw new PipelineError('INTERNAL', `encodeWindows: '${name}' has ${got} values, the shape needs ${want}.`);
  }
  const header: z.infer<typeof windowsHeader> = {
    format: WINDOWS_FORMAT,
    lookback: set.lookback,
    horizon: set.horizon,
    count: set.count,
    inputs: set.inputs,
    future: set.future,
    season: set.season,
    seriesIds: set.seriesIds,
  };
  return encodeBlob(WINDOWS_MAGIC, header, [set.x, set.xf, set.y, set.series, set.origin]);
}

/** Reads a window set (an untrusted step output): DATA_INVALID when anything does not fit. */
export function decodeWindows(buf: Uint8Array): WindowSet {
  const what = 'window set';
  const { header, start } = decodeHeader(buf, WINDOWS_MAGIC, what);
  const r = windowsHeader.safeParse(header);
  if (!r.success) throw invalid(what, `bad header: ${formatZodIssues(r.error.issues.slice(0, 1), 'the header')}`);
  const h = r.data;
  const shapes = windowShapes(h);
  const sizes: [string, number][] = [
    ['x', blockBytes(what, 'x', shapes.x, 4)],
    ['xf', blockBytes(what, 'xf', shapes.xf, 4)],
    ['y', blockBytes(what, 'y', shapes.y, 4)],
    ['series', blockBytes(what, 'series', h.count, 4)],
    ['origin', blockBytes(what, 'origin', h.count, 8)],
  ];
  const offsets: number[] = [];
  let at = start;
  for (const [, bytes] of sizes) {
    offsets.push(at);
    at = pad8(at + bytes);
  }
  if (at !== buf.byteLength) {
    throw invalid(
      what,
      `the header describes ${at} bytes (${h.count} windows, L=${h.lookback}, H=${h.horizon}), the blob has ${buf.byteLength}`,
    );
  }
  const x = new Float32Array(block(buf, offsets[0]!, sizes[0]![1]));
  const xf = new Float32Array(block(buf, offsets[1]!, sizes[1]![1]));
  const y = new Float32Array(block(buf, offsets[2]!, sizes[2]![1]));
  const series = new Int32Array(block(buf, offsets[3]!, sizes[3]![1]));
  const origin = new Float64Array(block(buf, offsets[4]!, sizes[4]![1]));
  for (let i = 0; i < h.count; i++) {
    const s = series[i]!;
    if (s < 0 || s >= h.seriesIds.length) throw invalid(what, `window ${i} names series ${s}, the header lists ${h.seriesIds.length}`);
    if (!Number.isFinite(origin[i])) throw invalid(what, `window ${i} has no finite origin`);
  }
  for (let i = 0; i < x.length; i++) {
    if (x[i] === Infinity || x[i] === -Infinity) throw invalid(what, `x holds an infinite value at ${i}`);
  }
  return { ...h, x, xf, y, series, origin };
}

export function encodeForecasts(f: Forecasts): Buffer {
  if (f.values.length !== f.count * f.horizon) {
    throw new PipelineError('INTERNAL', `encodeForecasts: ${f.values.length} values for ${f.count} windows of horizon ${f.horizon}.`);
  }
  const header: z.infer<typeof forecastsHeader> = {
    format: FORECASTS_FORMAT,
    count: f.count,
    horizon: f.horizon,
    windows: f.windows,
    ...(f.model !== undefined ? { model: f.model } : {}),
  };
  return encodeBlob(FORECASTS_MAGIC, header, [f.values]);
}

/** Reads forecasts (an untrusted step output): DATA_INVALID when anything does not fit. */
export function decodeForecasts(buf: Uint8Array): Forecasts {
  const what = 'forecasts';
  const { header, start } = decodeHeader(buf, FORECASTS_MAGIC, what);
  const r = forecastsHeader.safeParse(header);
  if (!r.success) throw invalid(what, `bad header: ${formatZodIssues(r.error.issues.slice(0, 1), 'the header')}`);
  const h = r.data;
  const bytes = blockBytes(what, 'values', h.count * h.horizon, 4);
  if (pad8(start + bytes) !== buf.byteLength) {
    throw invalid(what, `the header describes ${pad8(start + bytes)} bytes (${h.count} × ${h.horizon}), the blob has ${buf.byteLength}`);
  }
  return { ...h, values: new Float32Array(block(buf, start, bytes)) };
}

// ---------------------------------------------------------------------------------------------
// The window state.

const scaling = z.object({ mean: z.number(), std: z.number().positive() }).strict();

export const FILL_RULES = ['none', 'median', 'previous', 'zero', 'linear'] as const;
export type FillRule = (typeof FILL_RULES)[number];
export const CALENDAR_FEATURES = ['dayOfWeek', 'month', 'dayOfYear', 'holiday'] as const;
export type CalendarFeature = (typeof CALENDAR_FEATURES)[number];
export const FREQUENCIES = ['hour', 'day', 'week', 'month', 'quarter', 'year'] as const;
export type Frequency = (typeof FREQUENCIES)[number];

const windowState = z
  .object({
    format: z.literal(WINDOW_STATE_FORMAT),
    timeColumn: z.string(),
    seriesColumn: z.string().nullable(),
    targetColumn: z.string(),
    frequency: z.enum(FREQUENCIES),
    lookback: positive,
    horizon: positive,
    stride: positive,
    season: positive,
    seriesIds: z.array(z.string()),
    /** Per-series target scaling, fitted on the train part only. */
    scaling: z.record(z.string(), scaling),
    /** Per-series MASE denominator (target units): the mean absolute seasonal difference of the train part. */
    seasonalScale: z.record(z.string(), z.number().positive()),
    /** Observed covariates (lookback inputs), scaled with train statistics over all series. */
    covariates: z.record(z.string(), scaling),
    /** Known-future covariates (inputs in the lookback and future features), scaled the same way. */
    known: z.record(z.string(), scaling),
    calendar: z
      .object({
        features: z.array(z.enum(CALENDAR_FEATURES)),
        /** Dates (YYYY-MM-DD) that are holidays, for the `holiday` feature. */
        holidays: z.array(z.string()),
      })
      .strict(),
    inputs: z.array(z.string()),
    future: z.array(z.string()),
    fill: z.enum(FILL_RULES),
    /** Missing steps in a series' time index: the first missing time, how many steps in a row. */
    gaps: z.array(z.object({ series: z.string(), from: z.string(), steps: z.number().int() }).strict()),
    /** Times that appear more than once in a series (the first row is kept). */
    duplicates: z.array(z.object({ series: z.string(), time: z.string(), rows: z.number().int() }).strict()),
    /** Rows whose time was not the start of its period (snapped to it). */
    snapped: z.number().int().min(0),
    /** Values filled by the fill rule (cells: target and covariates). */
    filled: z.number().int().min(0),
    /** The first forecast time of each split (ISO), and the time range of the table. */
    boundaries: z.record(z.string(), z.string()),
  })
  .strict();

export type WindowState = z.infer<typeof windowState>;

/** A window state read from an artifact (a step output): PLUGIN_INPUT when it does not parse. */
export function parseWindowState(value: unknown, where: string): WindowState {
  const r = windowState.safeParse(value);
  if (r.success) return r.data;
  throw new PipelineError(
    'PLUGIN_INPUT',
    `${where}: 'state' is not a window state (process.window's state output): ${formatZodIssues(r.error.issues.slice(0, 1), 'the document')}.`,
    { hint: 'Bind the state output of a process.window step.' },
  );
}

function scalingOf(state: WindowState, seriesId: string): { mean: number; std: number } {
  const s = state.scaling[seriesId];
  if (!s) {
    throw new PipelineError('DATA_INVALID', `The window state has no scaling for series '${seriesId}'.`, {
      hint: 'Forecast only series that were in the table process.window was fitted on.',
    });
  }
  return s;
}

/** (value - mean) / std with the series' train statistics. */
export function scaleTarget(state: WindowState, seriesId: string, values: ArrayLike<number>): Float64Array {
  const { mean, std } = scalingOf(state, seriesId);
  return Float64Array.from(values, (v) => (v - mean) / std);
}

/** value * std + mean: scaled forecasts back to the target's units. */
export function unscaleTarget(state: WindowState, seriesId: string, values: ArrayLike<number>): Float64Array {
  const { mean, std } = scalingOf(state, seriesId);
  return Float64Array.from(values, (v) => v * std + mean);
}
