/**
 * The interface the boosting plugins see (adapters/boosting/xgboost.ts and lightgbm.ts implement
 * it over the libraries' C APIs): a dense float32 matrix in, one boosting round at a time, the
 * per-round metrics, the model in the library's native and JSON formats, predictions.
 */

/** A row-major float32 matrix (NaN: missing). */
export interface DenseMatrix {
  x: Float32Array;
  rows: number;
  cols: number;
}

export interface LabelledMatrix extends DenseMatrix {
  /** Regression: the target; classification: the class index. */
  label: Float32Array;
}

/** The native save format: XGBoost UBJSON (base64), LightGBM's text model (utf8). */
export interface NativeModel {
  encoding: 'base64' | 'utf8';
  data: string;
}

/** Metric name -> value, per dataset (`train`, `valid`). */
export interface RoundMetrics {
  train: Record<string, number>;
  valid?: Record<string, number>;
}

export interface BoosterSession {
  /** The rounds in the model (a resumed one counts its loaded rounds). */
  readonly rounds: number;
  /** Boosts one round, then evaluates the metrics on train (and validation). */
  boostOneRound(): RoundMetrics;
  /** The model's first `rounds` rounds (default: all) in the native format. */
  saveNative(rounds?: number): NativeModel;
  /** The model's first `rounds` rounds as the library's JSON document. */
  dumpJson(rounds?: number): unknown;
  /** Predictions of the first `rounds` rounds (default: all): rows x outputs, row-major (probabilities for classification). */
  predict(m: DenseMatrix, rounds?: number): Float64Array;
  free(): void;
}

export interface OpenBooster {
  /** Library params (name -> value) as the library spells them. Dataset params are passed on too. */
  params: Record<string, string>;
  train: LabelledMatrix;
  valid?: LabelledMatrix;
  featureNames: string[];
  /** Continue from this model (a checkpoint): its rounds are kept and boosting goes on after them. */
  resumeFrom?: NativeModel;
}

/** A trained model loaded for prediction only. */
export interface Predictor {
  /** rows x outputs, row-major (probabilities for classification). */
  predict(m: DenseMatrix): Float64Array;
  free(): void;
}

export interface BoostingLibrary {
  readonly name: 'xgboost' | 'lightgbm';
  readonly version: string;
  readonly path: string;
  /** Whether the loaded library was built with CUDA (XGBoost's XGBuildInfo; LightGBM: false). */
  readonly cuda: boolean;
  open(o: OpenBooster): BoosterSession;
  /** A model in the native format (saveNative's), for prediction. */
  load(native: NativeModel, threads?: number): Predictor;
}
