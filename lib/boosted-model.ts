/**
 * The model artifact of train.xgboost and train.lightgbm: one JSON document (media type
 * `application/vnd.mlpipe.boosted-trees+json`) holding the library's own JSON dump of the tree
 * ensemble and its native save format, plus what prediction needs.
 *
 * - `features`: the model's input columns in order (the columns of the dataset it was trained on,
 *   i.e. after process.transform); column i of a prediction matrix is `features[i]`.
 * - `task`: `regression` (one output), `binary` (one output: the probability of `classes[1]`) or
 *   `multiclass` (`numClass` outputs: the probability of each of `classes`, in order).
 *   `numClass` is 1 for regression and binary.
 * - `objective`: the library's objective as trained (`reg:squarederror`, `binary:logistic`,
 *   `multi:softprob`; LightGBM `regression`, `binary`, `multiclass`).
 * - `bestIteration`: the number of boosting rounds kept. `model` and `native` hold exactly those
 *   rounds (after early stopping, the rounds past the best one are cut off), so every tree of
 *   `model` takes part in a prediction. `roundsTrained` is how many rounds ran.
 * - `model`: XGBoost: the document of `XGBoosterSaveModelToBuffer` with `{"format":"json"}`
 *   (`learner.gradient_booster.model.trees`, `learner.learner_model_param.base_score`, ...).
 *   LightGBM: the document of `LGBM_BoosterDumpModel` (`tree_info`, `feature_names`, ...).
 * - `native`: the library's own save format, for reloading: XGBoost UBJSON (`encoding: base64`),
 *   LightGBM's text model (`encoding: utf8`).
 */
import { z } from 'zod';
import { formatZodIssues, PipelineError } from '../engine/errors.js';

export const BOOSTED_FORMAT = 'mlpipe.boosted-trees/1';
/** The model document of a train.gbdt-forecast step (lag features + a booster; it has no ONNX export). */
export const GBDT_FORECAST_FORMAT = 'mlpipe.gbdt-forecast/1';
export const BOOSTED_MEDIA_TYPE = 'application/vnd.mlpipe.boosted-trees+json';

export type BoostingLibrary = 'xgboost' | 'lightgbm';
export type BoostedTask = 'regression' | 'binary' | 'multiclass';

export const boostedModelSchema = z.object({
  format: z.literal(BOOSTED_FORMAT),
  library: z.enum(['xgboost', 'lightgbm']),
  libraryVersion: z.string(),
  task: z.enum(['regression', 'binary', 'multiclass']),
  numClass: z.number().int().min(1),
  objective: z.string(),
  features: z.array(z.string()).min(1),
  target: z.string(),
  /** Classification: the label of each class index (binary: [negative, positive]). */
  classes: z.array(z.union([z.string(), z.number()])).optional(),
  bestIteration: z.number().int().min(1),
  roundsTrained: z.number().int().min(1),
  /** The library params the model was trained with (as passed to the library, strings). */
  params: z.record(z.string(), z.string()),
  model: z.unknown(),
  native: z.object({ encoding: z.enum(['base64', 'utf8']), data: z.string() }),
});

export type BoostedModelDocument = z.infer<typeof boostedModelSchema>;

/** A boosted-trees document read from an artifact (a step output, so not trusted). Throws PLUGIN_INPUT otherwise. */
export function parseBoostedModel(value: unknown, where: string): BoostedModelDocument {
  const r = boostedModelSchema.safeParse(value);
  if (r.success) return r.data;
  throw new PipelineError(
    'PLUGIN_INPUT',
    `${where}: not a boosted-trees model (${BOOSTED_FORMAT}): ${formatZodIssues(r.error.issues.slice(0, 1), 'the document')}.`,
    { hint: 'Bind the model output of a train.xgboost or train.lightgbm step.' },
  );
}

/** Whether a parsed JSON document claims to be a boosted-trees model (before validating it). */
export function isBoostedModel(value: unknown): boolean {
  return typeof value === 'object' && value !== null && (value as { format?: unknown }).format === BOOSTED_FORMAT;
}
