/**
 * Hyperparameter search, the pure part: the search space, trial generation (grid, seeded random),
 * the comparison of results, and the median stopping rule. Trials are override lists
 * (`training.lr=0.003`), so a trial is an ordinary pipeline run with overrides. Pure and
 * deterministic: the same spec and seed give the same trials, wherever they are computed.
 */
import { z } from 'zod';
import { prng } from './random.js';
import { ACTIVITY_DEFAULTS } from './step-defaults.js';

export const paramSpec = z.discriminatedUnion('type', [
  z
    .object({
      type: z.literal('double'),
      min: z.number(),
      max: z.number(),
      scale: z.enum(['linear', 'log']).default('linear'),
      gridPoints: z.number().int().min(2).max(100).default(3),
    })
    .strict(),
  z
    .object({
      type: z.literal('int'),
      min: z.number().int(),
      max: z.number().int(),
      scale: z.enum(['linear', 'log']).default('linear'),
      gridPoints: z.number().int().min(2).max(1000).optional(),
    })
    .strict(),
  z.object({ type: z.literal('categorical'), values: z.array(z.string()).min(1) }).strict(),
  z.object({ type: z.literal('discrete'), values: z.array(z.number()).min(1) }).strict(),
]);
export type ParamSpec = z.infer<typeof paramSpec>;

export const hpoSchema = z
  .object({
    /** The metric to optimise: a step's output (a metrics object) and the key in it. */
    metric: z
      .object({
        step: z.string().min(1),
        output: z.string().min(1).default('metrics'),
        key: z.string().min(1),
        goal: z.enum(['minimize', 'maximize']),
      })
      .strict(),
    /** Override keys (config keys such as training.lr, params.x, or a config group such as model). */
    space: z
      .record(z.string().regex(/^[A-Za-z_][\w.-]*$/, 'an override key such as training.lr or params.seed'), paramSpec)
      .refine((s) => Object.keys(s).length > 0, 'the search space is empty'),
    trials: z.number().int().min(1).max(100_000).default(16),
    parallel: z.number().int().min(1).max(1000).default(2),
    maxFailed: z.number().int().min(0).default(0),
    algorithm: z.enum(['random', 'grid']).default('random'),
    seed: z.number().int().default(1),
    /**
     * Median stopping rule: a trial's training `step` stops once, after `afterEpochs`, its best
     * loss so far is worse than the median, at the same epoch, of the trials finished before it
     * started (once `minTrials` have). Its metric is then that of the stopped model. The step's
     * plugin must take `stopIfWorseThan` (train.tfjs-mlp does).
     */
    earlyStopping: z
      .object({
        rule: z.literal('median'),
        step: z.string().min(1),
        afterEpochs: z.number().int().min(1).default(5),
        minTrials: z.number().int().min(1).default(3),
      })
      .strict()
      .optional(),
    /** After the search, run the whole pipeline once more with the best trial's overrides. */
    final: z.boolean().default(true),
    /** Where trials run: child workflows on Temporal workers (default), or a Vertex AI tuning job. */
    backend: z.enum(['temporal', 'vertex']).default('temporal'),
    vertex: z
      .object({
        project: z.string().min(1),
        location: z.string().min(1).default('us-central1'),
        imageUri: z.string().min(1),
        machineType: z.string().min(1).default('n1-standard-4'),
        baseOutputUri: z
          .string()
          .regex(/^gs:\/\//)
          .optional(),
        serviceAccount: z.string().optional(),
        /** How often the job is polled (a duration in ms). */
        pollMs: z.number().int().min(10).default(ACTIVITY_DEFAULTS.vertexTuning.pollMs),
      })
      .strict()
      .optional(),
  })
  .strict();
export type HpoSpec = z.infer<typeof hpoSchema>;

export interface Trial {
  index: number;
  /** Override strings, in the space's key order. */
  overrides: string[];
  /** The sampled values by key. */
  values: Record<string, number | string>;
}

function round(v: number): number {
  return Number(v.toPrecision(6));
}

function sample(spec: ParamSpec, rand: () => number): number | string {
  switch (spec.type) {
    case 'double':
      return round(
        spec.scale === 'log'
          ? Math.exp(Math.log(spec.min) + rand() * (Math.log(spec.max) - Math.log(spec.min)))
          : spec.min + rand() * (spec.max - spec.min),
      );
    case 'int':
      if (spec.scale === 'log')
        return Math.min(
          spec.max,
          Math.max(spec.min, Math.round(Math.exp(Math.log(spec.min) + rand() * (Math.log(spec.max) - Math.log(spec.min))))),
        );
      return spec.min + Math.floor(rand() * (spec.max - spec.min + 1));
    case 'categorical':
    case 'discrete':
      return spec.values[Math.floor(rand() * spec.values.length)]!;
  }
}

function gridValues(spec: ParamSpec): (number | string)[] {
  switch (spec.type) {
    case 'categorical':
    case 'discrete':
      return spec.values;
    case 'double': {
      const n = spec.gridPoints;
      return Array.from({ length: n }, (_, i) => {
        const f = i / (n - 1);
        return round(
          spec.scale === 'log'
            ? Math.exp(Math.log(spec.min) + f * (Math.log(spec.max) - Math.log(spec.min)))
            : spec.min + f * (spec.max - spec.min),
        );
      });
    }
    case 'int': {
      const all = spec.max - spec.min + 1;
      const n = Math.min(all, spec.gridPoints ?? all);
      return [
        ...new Set(Array.from({ length: n }, (_, i) => Math.round(spec.min + (n === 1 ? 0 : (i / (n - 1)) * (spec.max - spec.min))))),
      ];
    }
  }
}

export function validateSpace(space: Record<string, ParamSpec>): string[] {
  const problems: string[] = [];
  for (const [key, s] of Object.entries(space)) {
    if ((s.type === 'double' || s.type === 'int') && !(s.min < s.max)) problems.push(`${key}: min must be below max`);
    if ((s.type === 'double' || s.type === 'int') && s.scale === 'log' && s.min <= 0) problems.push(`${key}: a log scale needs min > 0`);
  }
  return problems;
}

/** The trials of a search: grid (the cartesian product, in order, up to `count`) or seeded random. */
export function generateTrials(space: Record<string, ParamSpec>, count: number, algorithm: 'grid' | 'random', seed: number): Trial[] {
  const keys = Object.keys(space);
  const make = (index: number, values: Record<string, number | string>): Trial => ({
    index,
    values,
    overrides: keys.map((k) => `${k}=${String(values[k])}`),
  });
  if (algorithm === 'grid') {
    const axes = keys.map((k) => gridValues(space[k]!));
    const total = axes.reduce((n, a) => n * a.length, 1);
    const out: Trial[] = [];
    for (let i = 0; i < Math.min(total, count); i++) {
      let rest = i;
      const values: Record<string, number | string> = {};
      for (let k = keys.length - 1; k >= 0; k--) {
        const axis = axes[k]!;
        values[keys[k]!] = axis[rest % axis.length]!;
        rest = Math.floor(rest / axis.length);
      }
      out.push(make(i, values));
    }
    return out;
  }
  const rand = prng(seed);
  return Array.from({ length: count }, (_, i) => make(i, Object.fromEntries(keys.map((k) => [k, sample(space[k]!, rand)]))));
}

export function isBetter(a: number, b: number | undefined, goal: 'minimize' | 'maximize'): boolean {
  if (!Number.isFinite(a)) return false;
  if (b === undefined || !Number.isFinite(b)) return true;
  return goal === 'minimize' ? a < b : a > b;
}

// The median rule's arithmetic is in engine/median-rule.ts: workflows/hpo.ts uses it, and workflow
// code imports no zod.
export { median, MEDIAN_RULE_CURVES, medianCurve } from './median-rule.js';
