/**
 * The pipeline spec: the zod schema of a pipeline YAML file. Strict everywhere, so a typo in a key is
 * an error with a suggestion rather than a silently ignored setting.
 */
import { z } from 'zod';
import { driftParams } from './drift/params.js';
import { hpoSchema } from './hpo.js';
import { DURATION_HELP, parseDuration } from './duration.js';
import { ENV_NAME } from './secrets.js';
import { LIMITS } from './limits.js';
import { STEP_ID } from './contracts.js';

const YEARS = Math.floor(LIMITS.durationMs / (365.25 * 86_400_000));
/** Any duration Temporal accepts: 0 up to its maximum (about 292 years). */
const duration = z.union([z.string(), z.number()]).refine((v) => (parseDuration(v) ?? Infinity) <= LIMITS.durationMs, {
  message: `must be ${DURATION_HELP}, at most ${YEARS} years (Temporal's limit)`,
});
/** Timeouts: a zero timeout would make Temporal refuse the activity (and retry the workflow task forever). */
const positiveDuration = duration.refine((v) => (parseDuration(v) ?? 0) > 0, { message: 'must be more than 0' });

const expressionOrBool = z.union([z.boolean(), z.string()]);

export const retrySchema = z
  .object({
    /** Errors thrown by the step, the first attempt included (default 3). */
    maximumAttempts: z.number().int().min(1).max(LIMITS.maximumAttempts).optional(),
    /** Attempts lost to the infrastructure (dead worker, shutdown) retried on top (default 1000). */
    maximumInfraAttempts: z.number().int().min(0).optional(),
    /** How long the step waits for an unreachable service such as MLflow (default 6h). */
    serviceWait: duration.optional(),
    initialInterval: duration.optional(),
    backoffCoefficient: z.number().min(1).max(LIMITS.backoffCoefficient).optional(),
    maximumInterval: duration.optional(),
    nonRetryableErrorTypes: z.array(z.string()).optional(),
  })
  .strict();

/** `cache: { ignore: [...] }`: params (dotted paths into `with:`) left out of the step's cache key. */
export const stepCacheSchema = z
  .object({
    enabled: z.boolean().optional(),
    ignore: z
      .array(z.string().regex(/^[A-Za-z_][\w-]*(\.[A-Za-z_][\w-]*|\.\d+)*$/, 'a param path such as lr or model.hidden'))
      .min(1)
      .optional(),
  })
  .strict();

export const stepSchema = z
  .object({
    uses: z.string().min(1),
    description: z.string().optional(),
    with: z.record(z.string(), z.unknown()).optional(),
    inputs: z.record(z.string(), z.string()).optional(),
    needs: z.union([z.string(), z.array(z.string())]).optional(),
    when: expressionOrBool.optional(),
    ifNeedsSkipped: z.enum(['skip', 'run']).optional(),
    retry: retrySchema.optional(),
    timeout: positiveDuration.optional(),
    heartbeat: positiveDuration.optional(),
    cache: z.union([z.boolean(), stepCacheSchema]).optional(),
    taskQueue: z.string().min(1).optional(),
    /** Worker environment variables the step's processes may see (by default they see none of its credentials). */
    env: z.array(z.string().regex(ENV_NAME, 'environment variable names are letters, digits and _ (not starting with a digit)')).optional(),
  })
  .strict();

export const stepDefaultsSchema = z
  .object({
    retry: retrySchema.optional(),
    timeout: positiveDuration.optional(),
    heartbeat: positiveDuration.optional(),
    cache: z.boolean().optional(),
    taskQueue: z.string().min(1).optional(),
  })
  .strict();

/** MLflow aliases: letters, digits, _ and -; not 'latest' and not v<digits> (MLflow reserves them). */
export const ALIAS = /^(?!latest$)(?!v\d+$)[\w-]+$/;
export const aliasName = z.string().regex(ALIAS, "aliases are letters, digits, _ and -, and not 'latest' or v<number>");

export const trackingSchema = z
  .object({
    /** MLflow experiment; default: $MLFLOW_EXPERIMENT_NAME, else the pipeline name. */
    experiment: z.string().min(1).optional(),
    /** false turns tracking off for this pipeline. */
    enabled: z.boolean().optional(),
    /** Register a step's model output as a new model version when the run succeeds. */
    registerModel: z
      .object({
        name: z.string().min(1),
        step: z.string().min(1),
        output: z.string().min(1).default('model'),
        aliases: z.array(aliasName).default([]),
      })
      .strict()
      .optional(),
  })
  .strict();

/**
 * `monitor:` — what the scheduled drift monitor of this pipeline compares, and what it does on drift.
 * The reference is a step output of the run that produced the registered model version behind
 * `model` (name@alias, through MLflow and lineage), or else of this pipeline's latest successful run.
 */
export const monitorSchema = z
  .object({
    /**
     * The current data: a CSV, Parquet or JSON-lines file relative to the project, or
     * `predictions:<model>`, the prediction log of `mlpipe serve` for that model (over `window`).
     */
    current: z.string().min(1),
    /** With `predictions:<model>`: how far back to read the log (default 24h). */
    window: z
      .string()
      .refine((v) => parseDuration(v) !== undefined, { message: DURATION_HELP })
      .optional(),
    reference: z
      .object({
        step: z.string().min(1),
        output: z.string().min(1).default('dataset'),
        model: z
          .string()
          .regex(/^[^@\s]+@[\w-]+$/, 'a registered model and alias, e.g. california-housing@champion')
          .optional(),
      })
      .strict(),
    drift: driftParams.default({ driftShare: 0.5, perColumn: {} }),
    /** On dataset drift, start this pipeline (one retrain at a time). */
    retrain: z.boolean().default(true),
    /** Post a Slack-compatible message to the webhook URL in this worker environment variable. */
    alert: z
      .object({
        webhookEnv: z
          .string()
          .regex(/^[A-Z_][A-Z0-9_]*$/)
          .default('MLPIPE_ALERT_WEBHOOK'),
        always: z.boolean().default(false),
      })
      .strict()
      .optional(),
  })
  .strict();

export const pipelineSchema = z
  .object({
    name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, 'must be letters, digits, _ . - (starting with a letter or digit)'),
    description: z.string().optional(),
    config: z
      .union([z.string().min(1), z.object({ name: z.string().min(1), overrides: z.array(z.string()).optional() }).strict()])
      .optional(),
    params: z.record(z.string(), z.unknown()).optional(),
    /**
     * Override keys (params.data, dataset.path) whose values may name files anywhere on the worker
     * when they reach a plugin's path param. Other overrides that do must stay inside the project.
     */
    overridablePaths: z
      .array(z.string().regex(/^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*$/, 'an override key such as params.data'))
      .optional(),
    maxParallel: z.number().int().min(1).max(LIMITS.maxParallel).optional(),
    cache: z.boolean().optional(),
    stepDefaults: stepDefaultsSchema.optional(),
    tracking: trackingSchema.optional(),
    monitor: monitorSchema.optional(),
    hpo: hpoSchema.optional(),
    steps: z.record(z.string().regex(STEP_ID, 'step ids are letters, digits, _ and - (starting with a letter or _)'), stepSchema),
  })
  .strict();

export type PipelineSpec = z.infer<typeof pipelineSchema>;
export type StepSpec = z.infer<typeof stepSchema>;

/** Known keys per object kind, for "did you mean" on unknown keys. */
export const KNOWN_KEYS = {
  pipeline: Object.keys(pipelineSchema.shape),
  step: Object.keys(stepSchema.shape),
  retry: Object.keys(retrySchema.shape),
  stepDefaults: Object.keys(stepDefaultsSchema.shape),
  tracking: Object.keys(trackingSchema.shape),
  registerModel: ['name', 'step', 'output', 'aliases'],
  cache: Object.keys(stepCacheSchema.shape),
  monitor: Object.keys(monitorSchema.shape),
  hpo: Object.keys(hpoSchema.shape),
};

export const DEFAULT_MAX_PARALLEL = 8;
