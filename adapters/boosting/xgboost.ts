/**
 * libxgboost through koffi: DMatrix from a float32 matrix (XGDMatrixCreateFromMat_omp), one
 * XGBoosterUpdateOneIter per round, XGBoosterEvalOneIter for the metrics, UBJSON save/load for
 * checkpoints (a resumed booster loads the model and continues from its round count, as Python's
 * `xgb.train(xgb_model=...)` does), XGBoosterSlice to keep the best rounds, the JSON dump.
 */
import { PipelineError } from '../../engine/errors.js';
import { copyBytes, koffi, loadLibrary } from './library.js';
import type {
  BoosterSession,
  BoostingLibrary,
  DenseMatrix,
  LabelledMatrix,
  NativeModel,
  OpenBooster,
  Predictor,
  RoundMetrics,
} from './types.js';

type Fn = (...args: unknown[]) => number;

interface XgbApi {
  XGBGetLastError: () => string;
  XGBoostVersion: (major: number[], minor: number[], patch: number[]) => void;
  XGBuildInfo: Fn;
  XGDMatrixCreateFromMat_omp: Fn;
  XGDMatrixSetFloatInfo: Fn;
  XGDMatrixFree: Fn;
  XGBoosterCreate: Fn;
  XGBoosterFree: Fn;
  XGBoosterSetParam: Fn;
  XGBoosterUpdateOneIter: Fn;
  XGBoosterEvalOneIter: Fn;
  XGBoosterPredictFromDMatrix: Fn;
  XGBoosterSaveModelToBuffer: Fn;
  XGBoosterLoadModelFromBuffer: Fn;
  XGBoosterSlice: Fn;
  XGBoosterBoostedRounds: Fn;
  XGBoosterSetStrFeatureInfo: Fn;
}

let api: { fns: XgbApi; path: string; version: string; cuda: boolean } | undefined;

function bind(): NonNullable<typeof api> {
  if (api) return api;
  const { lib, path } = loadLibrary('xgboost');
  const f = (sig: string): Fn => lib.func(sig) as Fn;
  const fns: XgbApi = {
    XGBGetLastError: lib.func('const char *XGBGetLastError()') as () => string,
    XGBoostVersion: lib.func('void XGBoostVersion(_Out_ int *major, _Out_ int *minor, _Out_ int *patch)') as XgbApi['XGBoostVersion'],
    XGBuildInfo: f('int XGBuildInfo(_Out_ const char **out)'),
    XGDMatrixCreateFromMat_omp: f(
      'int XGDMatrixCreateFromMat_omp(const float *data, uint64_t nrow, uint64_t ncol, float missing, _Out_ void **out, int nthread)',
    ),
    XGDMatrixSetFloatInfo: f('int XGDMatrixSetFloatInfo(void *handle, const char *field, const float *array, uint64_t len)'),
    XGDMatrixFree: f('int XGDMatrixFree(void *handle)'),
    XGBoosterCreate: f('int XGBoosterCreate(void **dmats, uint64_t len, _Out_ void **out)'),
    XGBoosterFree: f('int XGBoosterFree(void *handle)'),
    XGBoosterSetParam: f('int XGBoosterSetParam(void *handle, const char *name, const char *value)'),
    XGBoosterUpdateOneIter: f('int XGBoosterUpdateOneIter(void *handle, int iter, void *dtrain)'),
    XGBoosterEvalOneIter: f(
      'int XGBoosterEvalOneIter(void *handle, int iter, void **dmats, const char **evnames, uint64_t len, _Out_ const char **out)',
    ),
    XGBoosterPredictFromDMatrix: f(
      'int XGBoosterPredictFromDMatrix(void *handle, void *dmat, const char *config, _Out_ void **shape, _Out_ uint64_t *dim, _Out_ void **result)',
    ),
    XGBoosterSaveModelToBuffer: f(
      'int XGBoosterSaveModelToBuffer(void *handle, const char *config, _Out_ uint64_t *len, _Out_ void **out)',
    ),
    XGBoosterLoadModelFromBuffer: f('int XGBoosterLoadModelFromBuffer(void *handle, const uint8_t *buf, uint64_t len)'),
    XGBoosterSlice: f('int XGBoosterSlice(void *handle, int begin, int end, int step, _Out_ void **out)'),
    XGBoosterBoostedRounds: f('int XGBoosterBoostedRounds(void *handle, _Out_ int *out)'),
    XGBoosterSetStrFeatureInfo: f('int XGBoosterSetStrFeatureInfo(void *handle, const char *field, const char **features, uint64_t size)'),
  };
  const [major, minor, patch] = [[0], [0], [0]];
  fns.XGBoostVersion(major, minor, patch);
  const info = [null as unknown as string];
  check(fns, fns.XGBuildInfo(info), 'XGBuildInfo');
  const build = JSON.parse(info[0]!) as { USE_CUDA?: boolean };
  api = { fns, path, version: `${major[0]}.${minor[0]}.${patch[0]}`, cuda: build.USE_CUDA === true };
  return api;
}

function check(fns: XgbApi, rc: number, what: string): void {
  if (rc !== 0) throw new PipelineError('STEP_FAILED', `XGBoost ${what}: ${fns.XGBGetLastError()}`, { retryable: false });
}

/** The loaded libxgboost (TOOL_MISSING when it is not installed). */
export function xgboost(): BoostingLibrary {
  const { fns, path, version, cuda } = bind();
  return {
    name: 'xgboost',
    version,
    path,
    cuda,
    open: (o) => openBooster(fns, o),
    load: (native, threads) => loadPredictor(fns, native, threads ?? 0),
  };
}

function predictDMatrix(fns: XgbApi, h: unknown, d: unknown): Float64Array {
  const shape = [null];
  const dim = [0];
  const result = [null];
  const config = JSON.stringify({ type: 0, training: false, iteration_begin: 0, iteration_end: 0, strict_shape: false });
  check(fns, fns.XGBoosterPredictFromDMatrix(h, d, config, shape, dim, result), 'XGBoosterPredictFromDMatrix');
  const dims = koffi.decode(shape[0], 'uint64_t', Number(dim[0])) as (number | bigint)[];
  const size = dims.reduce<number>((a, b) => a * Number(b), 1);
  return Float64Array.from(new Float32Array(koffi.view(result[0], size * 4)));
}

function loadPredictor(fns: XgbApi, native: NativeModel, nthread: number): Predictor {
  const out = [null];
  check(fns, fns.XGBoosterCreate([], 0, out), 'XGBoosterCreate');
  const handle = out[0];
  try {
    const bytes = Buffer.from(native.data, native.encoding);
    check(fns, fns.XGBoosterLoadModelFromBuffer(handle, bytes, bytes.length), 'XGBoosterLoadModelFromBuffer');
    check(fns, fns.XGBoosterSetParam(handle, 'nthread', String(nthread)), 'param nthread');
  } catch (e) {
    fns.XGBoosterFree(handle);
    throw e;
  }
  return {
    predict(m) {
      const d = dmatrix(fns, m, nthread);
      try {
        return predictDMatrix(fns, handle, d);
      } finally {
        fns.XGDMatrixFree(d);
      }
    },
    free: () => void fns.XGBoosterFree(handle),
  };
}

function dmatrix(fns: XgbApi, m: DenseMatrix, nthread: number, label?: Float32Array): unknown {
  const out = [null];
  check(fns, fns.XGDMatrixCreateFromMat_omp(m.x, m.rows, m.cols, NaN, out, nthread), 'XGDMatrixCreateFromMat');
  if (label) check(fns, fns.XGDMatrixSetFloatInfo(out[0], 'label', label, label.length), 'XGDMatrixSetFloatInfo(label)');
  return out[0];
}

function openBooster(fns: XgbApi, o: OpenBooster): BoosterSession {
  const nthread = Number(o.params['nthread'] ?? 0);
  const dtrain = dmatrix(fns, o.train, nthread, o.train.label);
  const dvalid = o.valid ? dmatrix(fns, o.valid, nthread, (o.valid as LabelledMatrix).label) : undefined;
  const dmats = dvalid ? [dtrain, dvalid] : [dtrain];
  const names = dvalid ? ['train', 'valid'] : ['train'];
  const out = [null];
  check(fns, fns.XGBoosterCreate(dmats, dmats.length, out), 'XGBoosterCreate');
  const handle = out[0];
  const setParams = (h: unknown): void => {
    for (const [k, v] of Object.entries(o.params)) {
      // eval_metric may list several: each SetParam adds one.
      for (const value of k === 'eval_metric' ? v.split(',') : [v]) check(fns, fns.XGBoosterSetParam(h, k, value), `param ${k}=${value}`);
    }
  };
  try {
    if (o.resumeFrom) {
      const bytes = Buffer.from(o.resumeFrom.data, o.resumeFrom.encoding);
      check(fns, fns.XGBoosterLoadModelFromBuffer(handle, bytes, bytes.length), 'XGBoosterLoadModelFromBuffer');
    }
    setParams(handle);
    check(fns, fns.XGBoosterSetStrFeatureInfo(handle, 'feature_name', o.featureNames, o.featureNames.length), 'feature names');
  } catch (e) {
    fns.XGBoosterFree(handle);
    fns.XGDMatrixFree(dtrain);
    if (dvalid) fns.XGDMatrixFree(dvalid);
    throw e;
  }
  const roundsOf = (h: unknown): number => {
    const r = [0];
    check(fns, fns.XGBoosterBoostedRounds(h, r), 'XGBoosterBoostedRounds');
    return r[0]!;
  };
  let rounds = roundsOf(handle);
  /** A booster of the first `n` rounds (the booster itself when that is all of them); free it when it is not. */
  const sliced = <T>(n: number | undefined, use: (h: unknown) => T): T => {
    if (n === undefined || n >= rounds) return use(handle);
    const s = [null];
    check(fns, fns.XGBoosterSlice(handle, 0, n, 1, s), 'XGBoosterSlice');
    try {
      return use(s[0]);
    } finally {
      fns.XGBoosterFree(s[0]);
    }
  };
  const save = (h: unknown, format: 'ubj' | 'json'): Buffer => {
    const len = [0];
    const ptr = [null];
    check(fns, fns.XGBoosterSaveModelToBuffer(h, JSON.stringify({ format }), len, ptr), 'XGBoosterSaveModelToBuffer');
    return copyBytes(ptr[0], Number(len[0]));
  };
  return {
    get rounds() {
      return rounds;
    },
    boostOneRound(): RoundMetrics {
      check(fns, fns.XGBoosterUpdateOneIter(handle, rounds, dtrain), 'XGBoosterUpdateOneIter');
      const text = [null as unknown as string];
      check(fns, fns.XGBoosterEvalOneIter(handle, rounds, dmats, names, dmats.length, text), 'XGBoosterEvalOneIter');
      rounds++;
      return parseEval(text[0]!);
    },
    saveNative: (n) => sliced(n, (h) => ({ encoding: 'base64', data: save(h, 'ubj').toString('base64') }) as NativeModel),
    dumpJson: (n) => sliced(n, (h) => JSON.parse(save(h, 'json').toString('utf8')) as unknown),
    predict(m, n) {
      const d = dmatrix(fns, m, nthread);
      try {
        return sliced(n, (h) => predictDMatrix(fns, h, d));
      } finally {
        fns.XGDMatrixFree(d);
      }
    },
    free() {
      fns.XGBoosterFree(handle);
      fns.XGDMatrixFree(dtrain);
      if (dvalid) fns.XGDMatrixFree(dvalid);
    },
  };
}

/** `[3]\ttrain-rmse:0.51\tvalid-rmse:0.62` -> { train: { rmse: 0.51 }, valid: { rmse: 0.62 } }. */
export function parseEval(text: string): RoundMetrics {
  const out: RoundMetrics = { train: {} };
  for (const part of text.split('\t').slice(1)) {
    const m = /^(train|valid)-(.+):(-?[\d.eE+-]+|nan|inf|-inf)$/.exec(part.trim());
    if (!m) continue;
    const set = m[1] === 'train' ? out.train : (out.valid ??= {});
    set[m[2]!] = Number(m[3]);
  }
  return out;
}
