/**
 * Predictions of a boosted-trees model document (lib/boosted-model.ts) by the library that trained
 * it, from its native format: what the ONNX export's parity and evaluation compare against.
 */
import { lightgbm } from '../adapters/boosting/lightgbm.js';
import type { DenseMatrix } from '../adapters/boosting/types.js';
import { xgboost } from '../adapters/boosting/xgboost.js';
import type { BoostedModelDocument } from './boosted-model.js';

/** rows x outputs, row-major: the value (regression), the probability of classes[1] (binary), or of each class (multiclass). */
export function predictBoosted(doc: BoostedModelDocument, m: DenseMatrix, threads = 0): Float64Array {
  const lib = doc.library === 'xgboost' ? xgboost() : lightgbm();
  const predictor = lib.load(doc.native, threads);
  try {
    return predictor.predict(m);
  } finally {
    predictor.free();
  }
}
