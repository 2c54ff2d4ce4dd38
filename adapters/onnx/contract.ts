/**
 * What an exported model promises its clients, recorded as `mlpipe.contract` metadata in the ONNX file:
 * the builder (lib/onnx-graph.ts) writes it, the runtime and the prediction server read it.
 */
import { PipelineError } from '../../engine/errors.js';
import type { ModelProto } from './proto.js';

export interface OnnxInput {
  name: string;
  type: 'number' | 'string';
  /** null is accepted (it is imputed); otherwise a value is required. */
  nullable: boolean;
}

/** What a served model promises: recorded as `mlpipe.*` metadata in the file. */
export interface OnnxContract {
  inputs: OnnxInput[];
  task: 'regression' | 'classification';
  target: string;
  /** Output tensor: `prediction` [N,1] (regression) or `probabilities` [N,C] / [N,1] (binary: P(classes[1])). */
  output: string;
  classes?: (string | number)[];
}

/**
 * What an exported forecaster (train.tfjs-sequence + process.window's scaling) promises: a window of
 * the last `lookback` raw values of one series in, `horizon` forecasts (x quantiles) out. `inputs`
 * is empty (there are no per-record columns); the tensors are `series`, `history`, `covariates`,
 * `calendar`, `future_covariates` and `future_calendar` (lib/onnx-sequence.ts).
 */
export interface OnnxForecastContract extends OnnxContract {
  kind: 'forecast';
  task: 'regression';
  lookback: number;
  horizon: number;
  /** Quantile levels of the output's last axis; empty: one point forecast per step. */
  quantiles: number[];
  seriesIds: string[];
  /** Raw observed covariates per step, in the `covariates` tensor's order. */
  covariates: string[];
  /** Ready per-step features (calendar), in the `calendar` tensor's order. */
  calendar: string[];
  /** Known-future covariates per forecast step (raw), in the `future_covariates` tensor's order. */
  futureCovariates: string[];
  /** Ready calendar features per forecast step, in the `future_calendar` tensor's order. */
  futureCalendar: string[];
  /** The series' frequency as process.window recorded it (forecast steps' timestamps). */
  frequency?: string;
  /** The table's time and series columns: the names a request's history rows and the prediction log use. */
  timeColumn?: string;
  seriesColumn?: string | null;
  /** The calendar features process.window computed (their names are `calendar` / `futureCalendar`) and its holidays. */
  calendarFeatures?: string[];
  holidays?: string[];
}

export function isForecastContract(c: OnnxContract): c is OnnxForecastContract {
  return (c as { kind?: unknown }).kind === 'forecast';
}

/** The contract recorded in an exported model's metadata. */
export function readContract(model: Pick<ModelProto, 'metadata_props'>): OnnxContract {
  const entry = model.metadata_props?.find((p) => p.key === 'mlpipe.contract');
  if (!entry)
    throw new PipelineError(
      'DATA_INVALID',
      'This ONNX file was not exported by mlpipe (no mlpipe.contract metadata), so its input records are unknown.',
    );
  return JSON.parse(entry.value) as OnnxContract;
}
