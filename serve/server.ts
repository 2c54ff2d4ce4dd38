/**
 * The HTTP prediction server over an exported ONNX model (onnxruntime-node):
 *   POST /predict   one record, a JSON array of records, or {"instances": [...]} (Vertex AI's form)
 *   GET  /health    200 once the model is loaded (readiness and liveness)
 *   GET  /metrics   Prometheus text: requests, predictions, errors, latency histogram, log state
 *   GET  /model     what is served: name, version, digest, input contract
 * Records are checked against the model's input contract (zod) before any prediction; a bad one
 * gets a 400 naming each field. A model that yields NaN or ±Infinity for a record (a ratio over a
 * zero input, say) gets a 422 naming the record and its fields, and is counted; nothing of that
 * request is logged. Every prediction goes to the prediction log (when one is given). A client that
 * goes away before its body is read is counted as aborted (499), not as a server error.
 */
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { z } from 'zod';
import type { OnnxPredictor, TensorInput } from '../adapters/onnx/runtime.js';
import type { OnnxContract } from '../adapters/onnx/contract.js';
import type { PredictionLogWriter, PredictionRow } from '../engine/prediction-log.js';
import { ERROR_CODES, isErrorCode, PipelineError, type CodeInfo, type ErrorCode } from '../engine/errors.js';
import { ServerMetrics } from './metrics.js';

export interface ServedModel {
  name: string;
  version: string;
  /** Where it was loaded from (registry URI, file). */
  source: string;
}

/**
 * How the server reads requests for a model whose inputs are tensors rather than records (an
 * exported forecaster): the CLI gives one per such contract (lib/forecast-input.ts), since request
 * parsing needs code of lib/ the server does not import.
 */
export interface TensorRequestCodec {
  /** Checks the body and builds the feeds; throws a PipelineError (INVALID_INPUT, TOO_MANY_INSTANCES) on a bad one. */
  parse(body: unknown, maxInstances: number): ParsedTensorRequest;
}

export interface ParsedTensorRequest {
  tensors: Record<string, TensorInput>;
  rows: number;
  batch: boolean;
  /** Per row: what the prediction log keeps of its inputs (columns of the table the model learnt from). */
  logged: Record<string, unknown>[];
  /**
   * Per row, when a row's input is a window of table rows (a forecaster's history): every one of
   * them, oldest first. The log then keeps one line per window row (`request_instance`,
   * `history_row`: 0 the oldest), the prediction on the newest row's line, null on the others.
   */
  window?: Record<string, unknown>[][];
  /** Per row: the answer, from the model's output (row-major, rows x width). */
  answer(out: Float32Array): { predictions: unknown[]; logged: (number | number[])[] };
}

export interface ServerOptions {
  predictor: OnnxPredictor;
  /** The request codec of a contract whose inputs are tensors; undefined for record models. */
  codecFor?: (contract: OnnxContract) => TensorRequestCodec | undefined;
  model: ServedModel;
  log?: PredictionLogWriter;
  host?: string;
  port?: number;
  /** Largest request body (default 1 MiB): 413 beyond. */
  maxBodyBytes?: number;
  /** Most records in one request (default 10,000). */
  maxInstances?: number;
  /** Share of predictions written to the log (default 1: all); the rest are counted, not logged. */
  logSample?: number;
}

export interface RunningServer {
  url: string;
  port: number;
  metrics: ServerMetrics;
  /**
   * Serves another model from now on (a new champion): new requests go to it, requests already
   * running finish on the old one, whose log is then flushed and whose session is released.
   */
  swap(next: { predictor: OnnxPredictor; model: ServedModel; log?: PredictionLogWriter }): Promise<void>;
  close(): Promise<void>;
}

interface Serving {
  predictor: OnnxPredictor;
  model: ServedModel;
  log?: PredictionLogWriter;
  schema: z.ZodType<Record<string, unknown>>;
  codec?: TensorRequestCodec;
  inflight: number;
  drained?: () => void;
}

type ErrorDetail =
  { instance?: number; field: string; problem: string } | { index: number; fields: Record<string, unknown>; reason: string };

/** An error answered to the client: its code's HTTP status (engine/errors.ts), `{error: code, message, details}`. */
function httpError(code: ErrorCode, message: string, details?: ErrorDetail[]): PipelineError {
  return new PipelineError(code, message, details ? { details } : {});
}

/** The HTTP status of an error's code; undefined for codes the server does not answer with. */
function httpStatus(e: unknown): number | undefined {
  return e instanceof PipelineError && isErrorCode(e.code) ? (ERROR_CODES[e.code] as CodeInfo).httpStatus : undefined;
}

/** Records whose prediction is NaN or infinite (a regression value, or any class probability). */
function nonFinite(out: Float32Array, rows: number): { index: number; value: number }[] {
  const width = rows ? out.length / rows : 0;
  const bad: { index: number; value: number }[] = [];
  for (let r = 0; r < rows; r++) {
    for (let k = r * width; k < (r + 1) * width; k++) {
      if (!Number.isFinite(out[k])) {
        bad.push({ index: r, value: out[k]! });
        break;
      }
    }
  }
  return bad;
}

/** The zod schema of one input record, from the model's contract. */
export function recordSchema(contract: OnnxContract): z.ZodType<Record<string, unknown>> {
  const shape: Record<string, z.ZodType> = {};
  for (const i of contract.inputs) {
    const base =
      i.type === 'number'
        ? z
            .number({
              error: (iss) => (iss.input === undefined ? 'required' : `expected a number, got ${JSON.stringify(iss.input)?.slice(0, 40)}`),
            })
            .finite()
        : z.string({
            error: (iss) => (iss.input === undefined ? 'required' : `expected text, got ${JSON.stringify(iss.input)?.slice(0, 40)}`),
          });
    shape[i.name] = i.nullable ? base.nullable().optional() : base;
  }
  return z.object(shape).strict() as unknown as z.ZodType<Record<string, unknown>>;
}

function parseInstances(
  body: unknown,
  schema: z.ZodType<Record<string, unknown>>,
  maxInstances: number,
): { records: Record<string, unknown>[]; batch: boolean } {
  let raw: unknown[];
  let batch = true;
  if (Array.isArray(body)) raw = body;
  else if (body && typeof body === 'object' && 'instances' in body) {
    const inst = (body as { instances: unknown }).instances;
    if (!Array.isArray(inst)) throw httpError('INVALID_INPUT', '"instances" must be a list of records.');
    raw = inst;
  } else if (body && typeof body === 'object') {
    raw = [body];
    batch = false;
  } else throw httpError('INVALID_INPUT', 'The body must be a JSON record, a list of records, or {"instances": [...]}.');
  if (raw.length === 0) throw httpError('INVALID_INPUT', 'No records to predict.');
  if (raw.length > maxInstances)
    throw httpError('TOO_MANY_INSTANCES', `${raw.length} records in one request; the limit is ${maxInstances}.`);
  const details: { instance?: number; field: string; problem: string }[] = [];
  const records = raw.map((r, idx) => {
    const parsed = schema.safeParse(r);
    if (parsed.success) return parsed.data;
    for (const issue of parsed.error.issues) {
      if (details.length >= 50) break;
      const keys = issue.code === 'unrecognized_keys' ? (issue as { keys: string[] }).keys : [issue.path.join('.') || '(record)'];
      for (const field of keys)
        details.push({
          ...(batch ? { instance: idx } : {}),
          field,
          problem: issue.code === 'unrecognized_keys' ? 'not an input of this model' : issue.message,
        });
    }
    return {};
  });
  if (details.length) {
    const first = details[0]!;
    throw httpError(
      'INVALID_INPUT',
      `${details.length === 50 ? '50+' : details.length} invalid field(s); first: ${first.instance !== undefined ? `instances[${first.instance}].` : ''}${first.field}: ${first.problem}.`,
      details,
    );
  }
  return { records, batch };
}

async function readBody(req: http.IncomingMessage, max: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length'] ?? NaN);
  if (declared > max) throw httpError('BODY_TOO_LARGE', `The body is ${declared} bytes; the limit is ${max}.`);
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of req) {
      size += (chunk as Buffer).length;
      if (size > max) throw httpError('BODY_TOO_LARGE', `The body exceeds the limit of ${max} bytes.`);
      chunks.push(chunk as Buffer);
    }
  } catch (e) {
    if (httpStatus(e) !== undefined) throw e;
    // 'aborted' (ECONNRESET): the client went away mid-body.
    throw httpError('CLIENT_ABORTED', (e as Error).message);
  }
  if (!req.complete) throw httpError('CLIENT_ABORTED', 'the connection closed before the body was complete');
  return Buffer.concat(chunks);
}

export async function startPredictionServer(opts: ServerOptions): Promise<RunningServer> {
  const serving = (next: { predictor: OnnxPredictor; model: ServedModel; log?: PredictionLogWriter }): Serving => {
    const codec = opts.codecFor?.(next.predictor.contract);
    if (!codec && (next.predictor.contract as { kind?: unknown }).kind !== undefined)
      throw new PipelineError(
        'DATA_INVALID',
        `The server cannot read requests for a model of kind '${String((next.predictor.contract as { kind?: unknown }).kind)}'.`,
      );
    return { ...next, schema: recordSchema(next.predictor.contract), ...(codec ? { codec } : {}), inflight: 0 };
  };
  let current: Serving = serving(opts);
  const maxBody = opts.maxBodyBytes ?? 2 ** 20;
  const maxInstances = opts.maxInstances ?? 10_000;
  const info = (s: Serving): Record<string, string> => ({
    name: s.model.name,
    version: s.model.version,
    sha256: s.predictor.sha256.slice(0, 12),
  });
  const metrics = new ServerMetrics(info(current));
  let ready = true;

  const shape = (contract: OnnxContract, out: Float32Array, rows: number): unknown[] => {
    const classes = contract.classes;
    if (contract.task === 'regression') return Array.from(out.subarray(0, rows));
    const width = out.length / rows;
    return Array.from({ length: rows }, (_, r) => {
      const probs = width === 1 ? [1 - out[r]!, out[r]!] : Array.from(out.subarray(r * width, (r + 1) * width));
      let best = 0;
      probs.forEach((p, i) => (best = p > probs[best]! ? i : best));
      return { label: classes?.[best] ?? best, probabilities: Object.fromEntries(probs.map((p, i) => [String(classes?.[i] ?? i), p])) };
    });
  };

  async function predict(req: http.IncomingMessage): Promise<{ status: number; body: unknown; rows: number }> {
    const s = current;
    s.inflight++;
    try {
      return await predictWith(s, req);
    } finally {
      if (--s.inflight === 0) s.drained?.();
    }
  }

  async function predictWith(s: Serving, req: http.IncomingMessage): Promise<{ status: number; body: unknown; rows: number }> {
    const { predictor, model, schema } = s;
    const contract = predictor.contract;
    if (!/^application\/json\b/i.test(req.headers['content-type'] ?? ''))
      throw httpError('UNSUPPORTED_MEDIA_TYPE', 'Send JSON with Content-Type: application/json.');
    const text = await readBody(req, maxBody);
    let body: unknown;
    try {
      body = JSON.parse(text.toString('utf8'));
    } catch (e) {
      throw httpError('INVALID_JSON', `The body is not JSON: ${(e as Error).message}`);
    }
    if (s.codec) return predictTensors(s, s.codec, body, req);
    const { records, batch } = parseInstances(body, schema, maxInstances);
    const out = await predictor.predict(records);
    const bad = nonFinite(out, records.length);
    if (bad.length) {
      metrics.inc(
        'mlpipe_predictions_nonfinite_total',
        'Records for which the model produced NaN or Infinity (answered 422, not logged).',
        {},
        bad.length,
      );
      const first = bad[0]!;
      throw httpError(
        'PREDICTION_NOT_FINITE',
        `The model produced ${first.value} for ${bad.length} of ${records.length} record(s) (first: ${batch ? `instances[${first.index}]` : 'the record'}); check its inputs, e.g. a zero that a derived feature divides by.`,
        bad.slice(0, 50).map((b) => ({ index: b.index, fields: records[b.index]!, reason: `model produced ${b.value}` })),
      );
    }
    const predictions = shape(contract, out, records.length);
    const requestId = (req.headers['x-request-id'] as string | undefined)?.slice(0, 100) || randomUUID();
    if (s.log) {
      const at = new Date().toISOString();
      const sample = opts.logSample ?? 1;
      const kept = sample >= 1 ? records.map((_, i) => i) : records.flatMap((_, i) => (Math.random() < sample ? [i] : []));
      if (kept.length < records.length)
        metrics.inc(
          'mlpipe_prediction_log_sampled_out_total',
          'Predictions left out of the log by --log-sample.',
          {},
          records.length - kept.length,
        );
      s.log.append(
        kept.map((i): PredictionRow => {
          const r = records[i]!;
          const row: PredictionRow = { prediction: null, model_version: model.version, predicted_at: at, request_id: requestId };
          for (const input of contract.inputs) row[input.name] = r[input.name] ?? null;
          const p = predictions[i];
          row.prediction = typeof p === 'number' ? p : Object.values((p as { probabilities: Record<string, number> }).probabilities);
          return row;
        }),
      );
    }
    const meta = { model: { name: model.name, version: model.version }, request_id: requestId };
    return { status: 200, body: batch ? { predictions, ...meta } : { prediction: predictions[0], ...meta }, rows: records.length };
  }

  /** A tensor model's request: parsed by its codec, predicted, checked for NaN, logged, answered. */
  async function predictTensors(
    s: Serving,
    codec: TensorRequestCodec,
    body: unknown,
    req: http.IncomingMessage,
  ): Promise<{ status: number; body: unknown; rows: number }> {
    const parsed = codec.parse(body, maxInstances);
    const out = await s.predictor.runTensors(parsed.tensors);
    const bad = nonFinite(out, parsed.rows);
    if (bad.length) {
      metrics.inc(
        'mlpipe_predictions_nonfinite_total',
        'Records for which the model produced NaN or Infinity (answered 422, not logged).',
        {},
        bad.length,
      );
      throw httpError(
        'PREDICTION_NOT_FINITE',
        `The model produced ${bad[0]!.value} for ${bad.length} of ${parsed.rows} request(s); check the history values.`,
        bad.slice(0, 50).map((b) => ({ index: b.index, fields: parsed.logged[b.index]!, reason: `model produced ${b.value}` })),
      );
    }
    const { predictions, logged } = parsed.answer(out);
    const requestId = (req.headers['x-request-id'] as string | undefined)?.slice(0, 100) || randomUUID();
    if (s.log) {
      const at = new Date().toISOString();
      const sample = opts.logSample ?? 1;
      const kept = predictions.flatMap((_, i) => (sample >= 1 || Math.random() < sample ? [i] : []));
      if (kept.length < predictions.length)
        metrics.inc(
          'mlpipe_prediction_log_sampled_out_total',
          'Predictions left out of the log by --log-sample.',
          {},
          predictions.length - kept.length,
        );
      const meta = { model_version: s.model.version, predicted_at: at, request_id: requestId };
      const window = parsed.window;
      s.log.append(
        window
          ? kept.flatMap((i) =>
              window[i]!.map((row, k, all): PredictionRow => ({
                ...row,
                request_instance: i,
                history_row: k,
                prediction: k === all.length - 1 ? logged[i]! : null,
                ...meta,
              })),
            )
          : kept.map((i): PredictionRow => ({ ...parsed.logged[i]!, prediction: logged[i]!, ...meta })),
      );
    }
    const meta = { model: { name: s.model.name, version: s.model.version }, request_id: requestId };
    return {
      status: 200,
      body: parsed.batch ? { predictions, ...meta } : { prediction: predictions[0], ...meta },
      rows: parsed.rows,
    };
  }

  const server = http.createServer((req, res) => {
    const started = process.hrtime.bigint();
    const send = (status: number, body: unknown, type = 'application/json'): void => {
      if (res.destroyed || res.writableEnded) return;
      const text = type === 'application/json' ? JSON.stringify(body) : String(body);
      res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(text) });
      res.end(text);
    };
    const path = (req.url ?? '/').split('?')[0];
    const { model, predictor, log } = current;
    const contract = predictor.contract;
    if (req.method === 'GET' && path === '/health')
      return send(ready ? 200 : 503, { status: ready ? 'ok' : 'stopping', model: model.name, version: model.version });
    if (req.method === 'GET' && path === '/metrics') {
      return send(
        200,
        metrics.render({
          mlpipe_prediction_log_pending_rows: {
            help: 'Predictions waiting to be written to the prediction log.',
            value: log?.pending ?? 0,
          },
          mlpipe_prediction_log_written_rows: { help: 'Predictions written to the prediction log.', value: log?.counts.written ?? 0 },
          mlpipe_prediction_log_dropped_rows: {
            help: 'Predictions dropped from the log (store unavailable too long).',
            value: log?.counts.dropped ?? 0,
          },
          mlpipe_prediction_log_failed_flushes: {
            help: 'Failed writes of the prediction log (retried).',
            value: log?.counts.failedFlushes ?? 0,
          },
        }),
        'text/plain; version=0.0.4; charset=utf-8',
      );
    }
    if (req.method === 'GET' && path === '/model') {
      return send(200, {
        ...model,
        sha256: predictor.sha256,
        bytes: predictor.bytes,
        ...contract,
        task: contract.task,
        target: contract.target,
        output: contract.output,
        classes: contract.classes,
        inputs: contract.inputs,
      });
    }
    if (path === '/predict') {
      if (req.method !== 'POST') return send(405, { error: 'METHOD_NOT_ALLOWED', message: 'POST records to /predict.' });
      predict(req)
        .then((r) => {
          send(r.status, r.body);
          metrics.inc('mlpipe_predict_requests_total', 'Requests to /predict by HTTP status.', { status: String(r.status) });
          metrics.inc('mlpipe_predictions_total', 'Records predicted.', {}, r.rows);
        })
        .catch((e: unknown) => {
          if (e instanceof PipelineError && e.code === 'CLIENT_ABORTED') {
            metrics.inc('mlpipe_predict_requests_total', 'Requests to /predict by HTTP status.', { status: String(httpStatus(e)) });
            metrics.inc('mlpipe_predict_errors_total', 'Failed /predict requests by error code.', { code: e.code });
            res.destroy();
            return;
          }
          const err =
            httpStatus(e) !== undefined ? (e as PipelineError) : httpError('INTERNAL', `Prediction failed: ${(e as Error).message}`);
          const status = httpStatus(err)!;
          metrics.inc('mlpipe_predict_requests_total', 'Requests to /predict by HTTP status.', { status: String(status) });
          metrics.inc('mlpipe_predict_errors_total', 'Failed /predict requests by error code.', { code: err.code });
          // An oversized body is not read to the end: close the connection after answering.
          if (status === 413) res.setHeader('connection', 'close');
          send(status, { error: err.code, message: err.message, ...(err.details ? { details: err.details } : {}) });
        })
        .finally(() => metrics.observeLatency(Number(process.hrtime.bigint() - started) / 1e9));
      return;
    }
    send(404, {
      error: 'NOT_FOUND',
      message: `No route ${req.method} ${path}. Routes: POST /predict, GET /health, GET /metrics, GET /model.`,
    });
  });
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 8080, opts.host ?? '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://${opts.host && opts.host !== '0.0.0.0' ? opts.host : '127.0.0.1'}:${port}`,
    port,
    metrics,
    async swap(next) {
      const old = current;
      current = serving(next);
      metrics.info = info(current);
      metrics.inc('mlpipe_model_swaps_total', 'Times the server switched to another model version.');
      if (old.inflight > 0) await new Promise<void>((resolve) => (old.drained = resolve));
      await old.log?.close();
      await old.predictor.close();
    },
    async close() {
      ready = false;
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      });
      await current.log?.close();
      await current.predictor.close();
    },
  };
}
