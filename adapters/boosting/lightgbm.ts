/**
 * lib_lightgbm through koffi: datasets from a float32 matrix (LGBM_DatasetCreateFromMat; the
 * validation set binned with the training set's bins), one LGBM_BoosterUpdateOneIter per round,
 * LGBM_BoosterGetEval for the metrics, the text model for checkpoints, LGBM_BoosterDumpModel for the
 * JSON. Resuming does what Python's `lgb.train(init_model=...)` does: the loaded model's raw scores
 * become the datasets' init scores, a new booster trains on, and LGBM_BoosterMerge puts the loaded
 * trees in front of the new ones.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { PipelineError } from '../../engine/errors.js';
import { LIGHTGBM_VERSION, loadLibrary } from './library.js';
import type { BoosterSession, BoostingLibrary, DenseMatrix, NativeModel, OpenBooster, RoundMetrics } from './types.js';

type Fn = (...args: unknown[]) => number;
const FLOAT32 = 0;
const FLOAT64 = 1;
const PREDICT_NORMAL = 0;
const PREDICT_RAW = 1;

interface LgbmApi {
  LGBM_GetLastError: () => string;
  LGBM_DatasetCreateFromMat: Fn;
  LGBM_DatasetSetField: Fn;
  LGBM_DatasetSetFeatureNames: Fn;
  LGBM_DatasetFree: Fn;
  LGBM_BoosterCreate: Fn;
  LGBM_BoosterFree: Fn;
  LGBM_BoosterAddValidData: Fn;
  LGBM_BoosterUpdateOneIter: Fn;
  LGBM_BoosterGetEvalCounts: Fn;
  LGBM_BoosterGetEvalNames: Fn;
  LGBM_BoosterGetEval: Fn;
  LGBM_BoosterGetCurrentIteration: Fn;
  LGBM_BoosterGetNumClasses: Fn;
  LGBM_BoosterSaveModelToString: Fn;
  LGBM_BoosterDumpModel: Fn;
  LGBM_BoosterLoadModelFromString: Fn;
  LGBM_BoosterMerge: Fn;
  LGBM_BoosterPredictForMat: Fn;
  LGBM_BoosterCalcNumPredict: Fn;
}

let api: { fns: LgbmApi; path: string } | undefined;

function bind(): NonNullable<typeof api> {
  if (api) return api;
  const { lib, path } = loadLibrary('lightgbm');
  const f = (sig: string): Fn => lib.func(sig) as Fn;
  const fns: LgbmApi = {
    LGBM_GetLastError: lib.func('const char *LGBM_GetLastError()') as () => string,
    LGBM_DatasetCreateFromMat: f(
      'int LGBM_DatasetCreateFromMat(const void *data, int data_type, int32_t nrow, int32_t ncol, int is_row_major, const char *parameters, void *reference, _Out_ void **out)',
    ),
    LGBM_DatasetSetField: f('int LGBM_DatasetSetField(void *handle, const char *field, const void *data, int num_element, int type)'),
    LGBM_DatasetSetFeatureNames: f('int LGBM_DatasetSetFeatureNames(void *handle, const char **names, int num)'),
    LGBM_DatasetFree: f('int LGBM_DatasetFree(void *handle)'),
    LGBM_BoosterCreate: f('int LGBM_BoosterCreate(void *train, const char *parameters, _Out_ void **out)'),
    LGBM_BoosterFree: f('int LGBM_BoosterFree(void *handle)'),
    LGBM_BoosterAddValidData: f('int LGBM_BoosterAddValidData(void *handle, void *valid)'),
    LGBM_BoosterUpdateOneIter: f('int LGBM_BoosterUpdateOneIter(void *handle, _Out_ int *is_finished)'),
    LGBM_BoosterGetEvalCounts: f('int LGBM_BoosterGetEvalCounts(void *handle, _Out_ int *len)'),
    LGBM_BoosterGetEvalNames: f(
      'int LGBM_BoosterGetEvalNames(void *handle, int len, _Out_ int *out_len, size_t buffer_len, _Out_ size_t *out_buffer_len, void **out_strs)',
    ),
    LGBM_BoosterGetEval: f('int LGBM_BoosterGetEval(void *handle, int data_idx, _Out_ int *out_len, double *out_results)'),
    LGBM_BoosterGetCurrentIteration: f('int LGBM_BoosterGetCurrentIteration(void *handle, _Out_ int *out)'),
    LGBM_BoosterGetNumClasses: f('int LGBM_BoosterGetNumClasses(void *handle, _Out_ int *out)'),
    LGBM_BoosterSaveModelToString: f(
      'int LGBM_BoosterSaveModelToString(void *handle, int start_iteration, int num_iteration, int importance_type, int64_t buffer_len, _Out_ int64_t *out_len, uint8_t *out_str)',
    ),
    LGBM_BoosterDumpModel: f(
      'int LGBM_BoosterDumpModel(void *handle, int start_iteration, int num_iteration, int importance_type, int64_t buffer_len, _Out_ int64_t *out_len, uint8_t *out_str)',
    ),
    LGBM_BoosterLoadModelFromString: f(
      'int LGBM_BoosterLoadModelFromString(const char *model, _Out_ int *num_iterations, _Out_ void **out)',
    ),
    LGBM_BoosterMerge: f('int LGBM_BoosterMerge(void *handle, void *other)'),
    LGBM_BoosterPredictForMat: f(
      'int LGBM_BoosterPredictForMat(void *handle, const void *data, int data_type, int32_t nrow, int32_t ncol, int is_row_major, int predict_type, int start_iteration, int num_iteration, const char *parameter, _Out_ int64_t *out_len, double *out_result)',
    ),
    LGBM_BoosterCalcNumPredict: f(
      'int LGBM_BoosterCalcNumPredict(void *handle, int num_row, int predict_type, int start_iteration, int num_iteration, _Out_ int64_t *out_len)',
    ),
  };
  api = { fns, path };
  return api;
}

function check(fns: LgbmApi, rc: number, what: string): void {
  if (rc !== 0) throw new PipelineError('STEP_FAILED', `LightGBM ${what}: ${fns.LGBM_GetLastError()}`, { retryable: false });
}

/**
 * LightGBM's C API does not report its version: a wheel's layout has it in `lightgbm/VERSION.txt`
 * beside `lib/` (provisioning and the images keep that file); the provisioned library without it
 * is the pinned wheel's; any other library file is `unknown`, rather than a version it may not be.
 */
export function lightgbmVersion(path: string, env: NodeJS.ProcessEnv = process.env): string {
  const file = join(dirname(dirname(path)), 'VERSION.txt');
  if (existsSync(file)) {
    const v = readFileSync(file, 'utf8').trim();
    if (/^[0-9A-Za-z.+-]{1,40}$/.test(v)) return v;
  }
  return env['MLPIPE_LIGHTGBM_LIB'] ? 'unknown' : LIGHTGBM_VERSION;
}

export function lightgbm(): BoostingLibrary {
  const { fns, path } = bind();
  return {
    name: 'lightgbm',
    version: lightgbmVersion(path),
    path,
    cuda: false,
    open: (o) => openBooster(fns, o),
    load(native, threads) {
      const iters = [0];
      const out = [null];
      check(fns, fns.LGBM_BoosterLoadModelFromString(Buffer.from(native.data, native.encoding).toString('utf8'), iters, out), 'load');
      const params = `num_threads=${threads ?? 0}`;
      return { predict: (m) => predictWith(fns, out[0], m, PREDICT_NORMAL, 0, -1, params), free: () => void fns.LGBM_BoosterFree(out[0]) };
    },
  };
}

/** LightGBM's parameter string: `key=value` separated by spaces (values are checked by the plugins: no spaces). */
export function paramString(params: Record<string, string>): string {
  return Object.entries(params)
    .map(([k, v]) => `${k}=${v}`)
    .join(' ');
}

/** Reads a string the library writes into a caller's buffer (a first call with a guess learns the size). */
function readString(fns: LgbmApi, what: string, call: (bufferLen: number, outLen: [number], buf: Uint8Array) => number): string {
  let size = 1 << 20;
  for (;;) {
    const buf = new Uint8Array(size);
    const outLen: [number] = [0];
    check(fns, call(size, outLen, buf), what);
    const needed = Number(outLen[0]);
    if (needed <= size) return Buffer.from(buf.buffer, 0, Math.max(0, needed - 1)).toString('utf8');
    size = needed;
  }
}

function openBooster(fns: LgbmApi, o: OpenBooster): BoosterSession {
  const params = paramString(o.params);
  const handles: { datasets: unknown[]; boosters: unknown[] } = { datasets: [], boosters: [] };
  const freeAll = (): void => {
    for (const b of handles.boosters) fns.LGBM_BoosterFree(b);
    for (const d of handles.datasets) fns.LGBM_DatasetFree(d);
    handles.boosters = [];
    handles.datasets = [];
  };
  try {
    // Resuming: the loaded model's raw scores start both datasets (as lgb.train(init_model=...)).
    let init: unknown;
    if (o.resumeFrom) {
      const iters = [0];
      const out = [null];
      check(
        fns,
        fns.LGBM_BoosterLoadModelFromString(Buffer.from(o.resumeFrom.data, o.resumeFrom.encoding).toString('utf8'), iters, out),
        'load',
      );
      init = out[0];
      handles.boosters.push(init);
    }
    const dataset = (m: DenseMatrix & { label: Float32Array }, reference: unknown): unknown => {
      const out = [null];
      check(fns, fns.LGBM_DatasetCreateFromMat(m.x, FLOAT32, m.rows, m.cols, 1, params, reference, out), 'LGBM_DatasetCreateFromMat');
      handles.datasets.push(out[0]);
      check(fns, fns.LGBM_DatasetSetField(out[0], 'label', m.label, m.label.length, FLOAT32), 'label');
      if (init) {
        const raw = predictWith(fns, init, m, PREDICT_RAW, 0, -1, params);
        const k = raw.length / m.rows;
        // init_score is class-major (all rows of class 0, then class 1, ...); predictions are row-major.
        const score = new Float64Array(raw.length);
        for (let i = 0; i < m.rows; i++) for (let c = 0; c < k; c++) score[c * m.rows + i] = raw[i * k + c]!;
        check(fns, fns.LGBM_DatasetSetField(out[0], 'init_score', score, score.length, FLOAT64), 'init_score');
      }
      return out[0];
    };
    const dtrain = dataset(o.train, null);
    check(fns, fns.LGBM_DatasetSetFeatureNames(dtrain, o.featureNames, o.featureNames.length), 'feature names');
    const dvalid = o.valid ? dataset(o.valid, dtrain) : undefined;
    const out = [null];
    check(fns, fns.LGBM_BoosterCreate(dtrain, params, out), 'LGBM_BoosterCreate');
    const handle = out[0];
    handles.boosters.push(handle);
    if (dvalid) check(fns, fns.LGBM_BoosterAddValidData(handle, dvalid), 'LGBM_BoosterAddValidData');
    if (init) check(fns, fns.LGBM_BoosterMerge(handle, init), 'LGBM_BoosterMerge');

    const count = [0];
    check(fns, fns.LGBM_BoosterGetEvalCounts(handle, count), 'LGBM_BoosterGetEvalCounts');
    const metricNames = evalNames(fns, handle, count[0]!);
    const current = (): number => {
      const r = [0];
      check(fns, fns.LGBM_BoosterGetCurrentIteration(handle, r), 'LGBM_BoosterGetCurrentIteration');
      return r[0]!;
    };
    const evalAt = (idx: number): Record<string, number> => {
      const len = [0];
      const values = new Float64Array(Math.max(1, metricNames.length));
      check(fns, fns.LGBM_BoosterGetEval(handle, idx, len, values), 'LGBM_BoosterGetEval');
      return Object.fromEntries(metricNames.map((n, i) => [n, values[i]!]));
    };
    let rounds = current();
    const dump = (which: 'save' | 'dump', n: number | undefined): string =>
      readString(fns, which, (size, outLen, buf) =>
        (which === 'save' ? fns.LGBM_BoosterSaveModelToString : fns.LGBM_BoosterDumpModel)(handle, 0, n ?? -1, 0, size, outLen, buf),
      );
    return {
      get rounds() {
        return rounds;
      },
      boostOneRound(): RoundMetrics {
        const finished = [0];
        check(fns, fns.LGBM_BoosterUpdateOneIter(handle, finished), 'LGBM_BoosterUpdateOneIter');
        rounds = current();
        return { train: evalAt(0), ...(dvalid ? { valid: evalAt(1) } : {}) };
      },
      saveNative: (n): NativeModel => ({ encoding: 'utf8', data: dump('save', n) }),
      dumpJson: (n) => JSON.parse(dump('dump', n)) as unknown,
      predict: (m, n) => predictWith(fns, handle, m, PREDICT_NORMAL, 0, n ?? -1, params),
      free: freeAll,
    };
  } catch (e) {
    freeAll();
    throw e;
  }
}

function predictWith(fns: LgbmApi, handle: unknown, m: DenseMatrix, type: number, start: number, n: number, params: string): Float64Array {
  const len = [0];
  check(fns, fns.LGBM_BoosterCalcNumPredict(handle, m.rows, type, start, n, len), 'LGBM_BoosterCalcNumPredict');
  const out = new Float64Array(Number(len[0]));
  const written = [0];
  check(fns, fns.LGBM_BoosterPredictForMat(handle, m.x, FLOAT32, m.rows, m.cols, 1, type, start, n, params, written, out), 'predict');
  return out;
}

function evalNames(fns: LgbmApi, handle: unknown, count: number): string[] {
  if (count === 0) return [];
  const size = 256;
  const bufs = Array.from({ length: count }, () => Buffer.alloc(size));
  const outLen = [0];
  const outBuf = [0];
  check(fns, fns.LGBM_BoosterGetEvalNames(handle, count, outLen, size, outBuf, bufs), 'LGBM_BoosterGetEvalNames');
  return bufs.slice(0, outLen[0]).map((b) => b.toString('utf8', 0, b.indexOf(0)));
}
