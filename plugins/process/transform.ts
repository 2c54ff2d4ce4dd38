import { z } from 'zod';
import { ident, withDuckDB, type Duck } from '../../adapters/duckdb.js';
import { PipelineError } from '../../engine/errors.js';
import { isArtifactRef, type ArtifactRef } from '../../engine/types.js';
import { datasetPath, describe, isNumericType, loadDatasets, writeDataset, type Column } from '../../lib/dataset.js';
import { definePlugin, type StepContext } from '../sdk.js';
import {
  applyOpsSql,
  applyTransformSql,
  gridCenters,
  parseFittedTransform,
  type FittedOp,
  type FittedTransform,
} from '../../lib/fitted-transform.js';
import { formulaColumns, parseFormula } from '../../lib/formula.js';

/** A derive formula, checked when the pipeline is compiled (so a typo fails before any step runs). */
const formula = z
  .string()
  .min(1)
  .superRefine((src, ctx) => {
    try {
      parseFormula(src);
    } catch (e) {
      ctx.addIssue({ code: 'custom', message: (e as Error).message });
    }
  });

/** What to fit, as written in the pipeline. */
export const transformStep = z.discriminatedUnion('op', [
  /** A new column from a formula (`expr`: arithmetic, exportable to ONNX) or any DuckDB SQL expression (`sql`). */
  z
    .object({ op: z.literal('derive'), name: z.string().min(1), expr: formula.optional(), sql: z.string().min(1).optional() })
    .strict()
    .refine((d) => (d.expr === undefined) !== (d.sql === undefined), { message: 'derive takes exactly one of expr (a formula) or sql' }),
  z
    .object({
      op: z.literal('impute'),
      columns: z.array(z.string()).min(1),
      strategy: z.enum(['median', 'mean', 'most_frequent', 'constant']),
      value: z.union([z.number(), z.string()]).optional(),
    })
    .strict(),
  z.object({ op: z.literal('log'), columns: z.array(z.string()).min(1), offset: z.number().min(0).default(1) }).strict(),
  z
    .object({
      op: z.literal('clip'),
      columns: z.array(z.string()).min(1),
      min: z.number().optional(),
      max: z.number().optional(),
      quantiles: z.tuple([z.number().min(0).max(1), z.number().min(0).max(1)]).optional(),
    })
    .strict(),
  z
    .object({ op: z.literal('onehot'), columns: z.array(z.string()).min(1), maxCategories: z.number().int().min(1).max(1000).default(50) })
    .strict(),
  z.object({ op: z.literal('standardize'), columns: z.union([z.array(z.string()).min(1), z.literal('numeric')]) }).strict(),
  /**
   * Radial-basis similarity to fixed centers (e.g. places on a latitude/longitude grid):
   * `<name>_<k>` = exp(-gamma * squared distance to center k). `grid` gives, per column,
   * [min, max, count]; `centers` lists them instead.
   */
  z
    .object({
      op: z.literal('rbf'),
      name: z.string().regex(/^[A-Za-z_][\w]*$/, 'a column-name prefix: letters, digits and _'),
      columns: z.array(z.string()).min(1).max(8),
      grid: z.array(z.tuple([z.number(), z.number(), z.number().int().min(1).max(64)])).optional(),
      centers: z.array(z.array(z.number()).min(1)).min(1).max(4096).optional(),
      gamma: z.number().positive(),
    })
    .strict()
    .refine((r) => (r.grid === undefined) !== (r.centers === undefined), { message: 'rbf takes exactly one of grid or centers' })
    .refine((r) => (r.grid ? r.grid.length === r.columns.length : (r.centers ?? []).every((c) => c.length === r.columns.length)), {
      message: 'rbf: one grid entry (or one coordinate per center) for each column',
    })
    .refine((r) => !r.grid || r.grid.reduce((a, g) => a * g[2], 1) <= 4096, { message: 'rbf: at most 4096 centers' }),
]);
export type TransformStep = z.infer<typeof transformStep>;

/** JSON text to a value; not JSON is undefined (and fails the state check). */
function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

function requireColumns(op: string, wanted: string[], columns: Column[]): void {
  const missing = wanted.filter((c) => !columns.some((x) => x.name === c));
  if (missing.length) {
    throw new PipelineError(
      'PLUGIN_PARAMS',
      `process.transform (${op}): no column ${missing.map((m) => `'${m}'`).join(', ')}. Columns: ${columns.map((c) => c.name).join(', ')}.`,
    );
  }
}

/** A DuckDB error while applying an op (a derive's SQL, most likely) as DATA_INVALID. */
function sqlFailure(where: string, e: unknown): unknown {
  if (e instanceof PipelineError) return e;
  const message = (e as Error).message.split('\n')[0];
  return new PipelineError('DATA_INVALID', `${where}: ${message}`, {
    hint: /Permission Error/.test(message ?? '')
      ? "Derive SQL reads the step's own data only: no files, URLs or extensions."
      : 'Check the derive SQL and the column names.',
  });
}

/**
 * Fits the steps one after the other on `relation` (each sees the data the earlier ones produced).
 * The data so far is a query, not a chain of views, and only the steps that fit statistics run it.
 * Each step's SQL is bound (its columns and types, and a bad derive fails naming the op) on an
 * empty table shaped like the data before it: one level, where a view per step made DuckDB bind
 * the whole growing chain twice per step, more than half the fit of the housing transform.
 */
export async function fitTransform(
  db: Duck,
  relation: string,
  steps: TransformStep[],
  exclude: string[],
  ordered: OrderedRow = async (sql) => (await db.rows<Record<string, unknown>>(sql))[0],
): Promise<FittedTransform> {
  const state: FittedTransform = { kind: 'mlpipe.transform', version: 1, exclude, ops: [] };
  const fit = { current: `SELECT * FROM ${relation}`, shape: '__shape0', columns: await describe(db, relation) };
  await db.run(`CREATE OR REPLACE TEMP TABLE __shape0 AS SELECT * FROM ${relation} LIMIT 0`);
  state.inputs = fit.columns
    .filter((c) => !exclude.includes(c.name))
    .map((c) => ({ name: c.name, type: isNumericType(c.type) ? 'number' : /^(VARCHAR|ENUM)/.test(c.type) ? 'string' : 'other' }));
  for (const [i, step] of steps.entries()) {
    const ops = await fitStep(db, `(${fit.current})`, fit.columns, step, exclude, ordered);
    await applyFitted(db, state, i, ops, fit);
  }
  return state;
}

/**
 * Each column's statistics (the SQL `exprs` gives for it) in a single query: one pass over the data
 * per step. `sums`: the statistics are floating-point sums (mean, standard deviation), whose last
 * bits depend on the order the rows are added in: they are computed in the order of the rows.
 */
type Stats = (exprs: (c: string) => string[], options?: { sums?: boolean }) => Promise<Record<string, unknown>[]>;

/**
 * A one-row query over the data of the fit (`relation` bound as in the fit's session) computed in
 * the order of the rows: on one thread. On two or more, DuckDB adds up each thread's share of the
 * rows and then the shares in the order the threads finish, so a mean or a deviation can differ in
 * its last bit from run to run, and with it the output's bytes and every cache key after it.
 */
export type OrderedRow = (sql: string) => Promise<Record<string, unknown> | undefined>;

/** How many one-thread sessions compute the sums of a fit together: the threads of withDuckDB's session. */
const ORDERED_SESSIONS = 2;

/** What an op's fit reads: the data so far (the query `current`, in parentheses, and its columns) and the columns the op names. */
interface OpFit {
  db: Duck;
  current: string;
  columns: Column[];
  names: string[];
  stats: Stats;
}

type StepOf<K extends TransformStep['op']> = Extract<TransformStep, { op: K }>;

/** The fitted ops of one step, on the data the earlier steps produced. */
async function fitStep(
  db: Duck,
  current: string,
  columns: Column[],
  step: TransformStep,
  exclude: string[],
  ordered: OrderedRow,
): Promise<FittedOp[]> {
  if (step.op === 'derive') return fitDerive(step, columns);
  const names =
    step.op === 'standardize' && step.columns === 'numeric'
      ? columns.filter((c) => isNumericType(c.type) && !exclude.includes(c.name)).map((c) => c.name)
      : (step.columns as string[]);
  requireColumns(step.op, names, columns);
  const fit: OpFit = { db, current, columns, names, stats: statsOf(db, current, names, ordered) };
  switch (step.op) {
    case 'impute':
      return fitImpute(fit, step);
    case 'rbf':
      return fitRbf(fit, step);
    case 'log':
      return fitLog(fit, step);
    case 'clip':
      return fitClip(fit, step);
    case 'onehot':
      return fitOnehot(fit, step);
    case 'standardize':
      return fitStandardize(fit);
  }
}

function statsOf(db: Duck, current: string, names: string[], ordered: OrderedRow): Stats {
  // One pass over the data per step: every column's statistics in a single query.
  const stats = async (exprs: (c: string) => string[], options: { sums?: boolean } = {}): Promise<Record<string, unknown>[]> => {
    const select = (keep: (i: number) => boolean): string =>
      `SELECT ${names.flatMap((n, i) => (keep(i) ? exprs(ident(n)).map((e, j) => `${e} AS s${i}_${j}`) : [])).join(', ')} FROM ${current}`;
    // Sums: the columns shared out over ORDERED_SESSIONS one-thread sessions that run at once (each
    // reads only its columns), so the pass still uses as many cores as the fit's own session.
    const row = options.sums
      ? Object.assign(
          {},
          ...(await Promise.all(
            Array.from({ length: Math.min(ORDERED_SESSIONS, names.length) }, (_, k) => ordered(select((i) => i % ORDERED_SESSIONS === k))),
          )),
        )
      : (await db.rows<Record<string, unknown>>(select(() => true)))[0];
    return names.map((_, i) =>
      Object.fromEntries(
        Object.entries(row ?? {})
          .filter(([k]) => k.startsWith(`s${i}_`))
          .map(([k, v]) => [k.split('_')[1]!, v]),
      ),
    );
  };
  return stats;
}

function fitDerive(step: StepOf<'derive'>, columns: Column[]): FittedOp[] {
  const ops: FittedOp[] = [];
  if (step.expr !== undefined) requireColumns(`derive ${step.name}`, formulaColumns(parseFormula(step.expr)), columns);
  ops.push(
    step.expr !== undefined ? { op: 'derive', name: step.name, expr: step.expr } : { op: 'derive', name: step.name, sql: step.sql! },
  );
  return ops;
}

/** The median, mean, most frequent value or the constant of each column; a column with nothing to fit on is refused. */
async function fitImpute({ db, current, names, stats }: OpFit, step: StepOf<'impute'>): Promise<FittedOp[]> {
  const ops: FittedOp[] = [];
  const values =
    step.strategy === 'median' || step.strategy === 'mean'
      ? (await stats((c) => [`${step.strategy}(${c})::DOUBLE`], { sums: step.strategy === 'mean' })).map((r) => r['0'] as number | null)
      : step.strategy === 'constant'
        ? names.map(() => step.value ?? null)
        : await Promise.all(names.map((name) => mostFrequent(db, current, name)));
  names.forEach((name, i) => {
    const value = values[i];
    if (value === undefined || value === null) {
      throw new PipelineError(
        'DATA_INVALID',
        `process.transform: cannot impute '${name}': it has no values to fit on${step.strategy === 'constant' ? ' (set `value`)' : ''}.`,
      );
    }
    ops.push({ op: 'impute', column: name, value });
  });
  return ops;
}

async function mostFrequent(db: Duck, current: string, name: string): Promise<number | string | null> {
  const c = ident(name);
  const [r] = await db.rows<{ v: unknown }>(
    `SELECT ${c} AS v FROM ${current} WHERE ${c} IS NOT NULL GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1`,
  );
  return (r?.v ?? null) as number | string | null;
}

function fitRbf({ columns }: OpFit, step: StepOf<'rbf'>): FittedOp[] {
  const ops: FittedOp[] = [];
  requireColumns('rbf', step.columns, columns);
  ops.push({
    op: 'rbf',
    name: step.name,
    columns: step.columns,
    centers: step.centers ?? gridCenters(step.grid as [number, number, number][]),
    gamma: step.gamma,
  });
  return ops;
}

function fitLog({ names }: OpFit, step: StepOf<'log'>): FittedOp[] {
  const ops: FittedOp[] = [];
  for (const name of names) ops.push({ op: 'log', column: name, offset: step.offset });
  return ops;
}

/** Fixed bounds, or the fitted quantiles of each column. */
async function fitClip({ names, stats }: OpFit, step: StepOf<'clip'>): Promise<FittedOp[]> {
  const ops: FittedOp[] = [];
  const q = step.quantiles;
  const bounds = q ? await stats((c) => [`quantile_cont(${c}, ${q[0]})::DOUBLE`, `quantile_cont(${c}, ${q[1]})::DOUBLE`]) : undefined;
  names.forEach((name, i) =>
    ops.push({
      op: 'clip',
      column: name,
      min: bounds ? (bounds[i]!['0'] as number) : (step.min ?? null),
      max: bounds ? (bounds[i]!['1'] as number) : (step.max ?? null),
    }),
  );
  return ops;
}

/** The most frequent categories of each column (at most maxCategories), sorted. */
async function fitOnehot({ db, current, names }: OpFit, step: StepOf<'onehot'>): Promise<FittedOp[]> {
  const ops: FittedOp[] = [];
  for (const name of names) {
    const c = ident(name);
    const cats = await db.rows<{ v: string }>(
      `SELECT CAST(${c} AS VARCHAR) AS v FROM ${current} WHERE ${c} IS NOT NULL GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT ${step.maxCategories}`,
    );
    ops.push({ op: 'onehot', column: name, categories: cats.map((x) => x.v).sort() });
  }
  return ops;
}

/**
 * The mean and standard deviation of each column; infinite, NaN, null or entirely null columns are refused.
 *
 * Two aggregates per column and a count in the one-thread pass, when they show the data is clean:
 * a mean is finite only when no value is infinite or NaN (and nothing overflowed), so a finite
 * mean over the values DuckDB sees is the mean over the finite ones, the same sum in the same order,
 * to the bit. Otherwise (or when DuckDB refuses the deviation) the pass runs again with the checks
 * that count the infinite and null values, to report them.
 */
async function fitStandardize({ names, stats }: OpFit): Promise<FittedOp[]> {
  const ops: FittedOp[] = [];
  const finite = (v: unknown): boolean => typeof v === 'number' && Number.isFinite(v);
  const fast = await stats((c) => [`count(*)::BIGINT - count(${c})::BIGINT`, `avg(${c}::DOUBLE)`, `stddev_pop(${c}::DOUBLE)`], {
    sums: true,
  }).catch(() => undefined);
  const clean = fast?.every((r) => finite(r['1']) && finite(r['2']));
  const rows = clean
    ? fast!.map((r) => ({ '0': 0, '1': r['0'], '2': r['1'], '3': r['2'] }))
    : await stats(
        (c) => [
          // count_if and CASE rather than FILTER clauses: the same values, and DuckDB computes a few
          // hundred of them in a quarter of the time (one projection, no filter per aggregate).
          `count_if(isinf(${c}::DOUBLE) OR isnan(${c}::DOUBLE))::BIGINT`,
          `count_if(${c} IS NULL)::BIGINT`,
          // Infinite values would make these fail: computed only over finite ones, checked above.
          `avg(CASE WHEN isinf(${c}::DOUBLE) THEN NULL ELSE ${c}::DOUBLE END)`,
          `stddev_pop(CASE WHEN isinf(${c}::DOUBLE) THEN NULL ELSE ${c}::DOUBLE END)`,
        ],
        { sums: true },
      );
  names.forEach((name, i) => {
    const r = rows[i]!;
    const [inf, nulls, mean, std] = [Number(r['0']), Number(r['1']), r['2'] as number | null, r['3'] as number | null];
    if (inf > 0) {
      throw new PipelineError(
        'DATA_INVALID',
        `process.transform: cannot standardize '${name}': ${inf} values are infinite or NaN (a division by zero?).`,
        {
          hint: 'Guard the expression that makes it (e.g. x / nullif(y, 0)), then impute.',
        },
      );
    }
    if (mean === null) throw new PipelineError('DATA_INVALID', `process.transform: cannot standardize '${name}': it is entirely null.`);
    // No value is infinite, yet the sum of them overflows a double: a state with an infinite mean would not apply.
    if (!Number.isFinite(mean))
      throw new PipelineError('DATA_INVALID', `process.transform: cannot standardize '${name}': its mean overflows a double.`, {
        hint: 'Scale the column down (or log it) before standardize.',
      });
    if (nulls > 0)
      throw new PipelineError('DATA_INVALID', `process.transform: '${name}' has ${nulls} nulls; impute it before standardize.`, {
        hint: `Add { op: impute, columns: [${name}], strategy: median } before standardize.`,
      });
    ops.push({ op: 'standardize', column: name, mean, std: std && std > 0 ? std : 1 });
  });
  return ops;
}

/**
 * Applies the fitted ops of step `i` (in-place ops share a level) to the query and the shape of
 * the data so far (`fit`), adding them to `state`.
 */
async function applyFitted(
  db: Duck,
  state: FittedTransform,
  i: number,
  ops: FittedOp[],
  fit: { current: string; shape: string; columns: Column[] },
): Promise<void> {
  if (!ops.length) return;
  const names = fit.columns.map((x) => x.name);
  const shape = `__shape${i + 1}`;
  try {
    await db.run(`CREATE OR REPLACE TEMP TABLE ${shape} AS ${applyOpsSql(ops, `SELECT * FROM ${fit.shape}`, names).sql}`);
    fit.columns = await describe(db, shape);
  } catch (e) {
    const op = ops[0]!;
    throw sqlFailure(`process.transform (${op.op}${op.op === 'derive' ? ` ${op.name}` : ''})`, e);
  }
  fit.current = applyOpsSql(ops, fit.current, names).sql;
  fit.shape = shape;
  state.ops.push(...ops);
}

const fitParams = z
  .object({
    steps: z.array(transformStep).min(1),
    /** Columns `standardize: numeric` leaves alone (the target, ids). */
    exclude: z.array(z.string()).default([]),
  })
  .strict();

/**
 * process.transform — fits transforms on the `train` dataset (derive columns with SQL, impute
 * median / mean / most frequent / constant, log, clip to bounds or fitted quantiles, one-hot,
 * standardize) and applies the fitted transform to train and, when bound, `validation` and `test`.
 * The fitted state is a JSON `state` artifact; `process.apply-transform` reapplies it unchanged to
 * new data (serving, monitoring). Fitting on train only keeps test statistics out of the model.
 */
export const transform = definePlugin({
  name: 'process.transform',
  version: '1',
  description:
    'Fits transforms on train (impute, one-hot, standardize, log, clip, derive) and applies them to train/validation/test; outputs the fitted state.',
  params: fitParams,
  inputs: { train: 'dataset', 'validation?': 'dataset', 'test?': 'dataset' },
  outputs: { train: 'dataset', validation: 'dataset', test: 'dataset', state: 'artifact', features: 'json' },
  codeParams: ['steps.*.sql'],
  codeHint:
    'A derive `sql` is DuckDB code written in the pipeline; to compute with a value from params, use an `expr` formula (arithmetic only, parsed and checked).',
  deferred: { inputs: () => ['train', 'validation', 'test'] },
  async run(ctx, p, inputs) {
    const names = (['train', 'validation', 'test'] as const).filter((n) => n === 'train' || isArtifactRef(inputs[n]));
    const datasets = await loadDatasets(ctx, inputs, names);
    return withDuckDB(async (db) => {
      // Derive SQL sees the data only: no other file, no extension.
      await db.restrict({ paths: [...datasets.files, ...names.map((n) => datasetPath(ctx, n))] });
      for (const n of names) await datasets.bind(db, n, `${n}_src`);
      // Sums over the train rows in their order: a session of one thread with the same view.
      const ordered: OrderedRow = (sql) =>
        withDuckDB(
          async (one) => {
            await one.restrict({ paths: datasets.files });
            await datasets.bind(one, 'train', 'train_src');
            return (await one.rows<Record<string, unknown>>(sql))[0];
          },
          { threads: 1 },
        );
      return fitAndApply(ctx, db, p, names, ordered).catch((e: unknown) => {
        throw datasets.failure(e);
      });
    });
  },
});

/** process.transform's work once its inputs are the views `<name>_src`: fit on train, apply to each. */
async function fitAndApply(
  ctx: StepContext,
  db: Duck,
  p: z.infer<typeof fitParams>,
  names: ('train' | 'validation' | 'test')[],
  ordered: OrderedRow,
): Promise<{
  train: ArtifactRef | null;
  validation: ArtifactRef | null;
  test: ArtifactRef | null;
  features: string[];
  state: ArtifactRef;
}> {
  const state = await fitTransform(db, 'train_src', p.steps, p.exclude, ordered);
  const out: Record<'train' | 'validation' | 'test', ArtifactRef | null> = { train: null, validation: null, test: null };
  let features: string[] = [];
  for (const name of names) {
    const cols = (await describe(db, `${name}_src`)).map((c) => c.name);
    const w = await writeDataset(ctx, db, applyTransformSql(state, `${name}_src`, cols), name);
    out[name] = w.ref;
    if (name === 'train') features = w.columns.map((c) => c.name).filter((c) => !p.exclude.includes(c));
  }
  return {
    ...out,
    features,
    state: await ctx.store.put(JSON.stringify(state, null, 2), { name: 'transform-state.json', mediaType: 'application/json' }),
  };
}

/**
 * process.apply-transform — applies a fitted transform (`state`, from process.transform) to a
 * `dataset`, unchanged: the same SQL as at fit time.
 */
export const applyTransform = definePlugin({
  name: 'process.apply-transform',
  version: '1',
  description: 'Reapplies a fitted transform state to a dataset.',
  params: z.object({}).strict(),
  inputs: { dataset: 'dataset', state: 'artifact' },
  outputs: { dataset: 'dataset', rows: 'json' },
  deferred: { inputs: () => ['dataset'] },
  async run(ctx, _p, inputs) {
    const stateRef = inputs['state'];
    if (!isArtifactRef(stateRef)) throw new PipelineError('PLUGIN_INPUT', "process.apply-transform: input 'state' must be an artifact.");
    const state = parseFittedTransform(parseJson((await ctx.store.get(stateRef)).toString('utf8')), 'process.apply-transform');
    const datasets = await loadDatasets(ctx, inputs, ['dataset']);
    return withDuckDB(async (db) => {
      await db.restrict({ paths: [...datasets.files, datasetPath(ctx, 'dataset')] });
      await datasets.bind(db, 'dataset', 'src');
      const cols = (await describe(db, 'src')).map((c) => c.name);
      const w = await writeDataset(ctx, db, applyTransformSql(state, 'src', cols), 'dataset').catch((e: unknown) => {
        throw sqlFailure('process.apply-transform', datasets.failure(e));
      });
      return { dataset: w.ref, rows: w.rows };
    });
  },
});
