/**
 * The fitted state of process.transform (`mlpipe.transform` documents) and the SQL that applies it.
 * Pure, and shared: the transform step fits and applies it, export.onnx compiles the same ops to
 * ONNX nodes (lib/onnx-graph.ts), and monitoring applies it to served rows.
 */
import { z } from 'zod';
import { ident, sqlString } from '../adapters/duckdb.js';
import { formatZodIssues, PipelineError } from '../engine/errors.js';
import { formulaSql, parseFormula } from './formula.js';

/** The fitted state: every number needed to apply the same transform to new data. JSON. */
export type FittedOp =
  | { op: 'derive'; name: string; expr?: string; sql?: string }
  | { op: 'impute'; column: string; value: number | string }
  | { op: 'log'; column: string; offset: number }
  | { op: 'clip'; column: string; min: number | null; max: number | null }
  | { op: 'onehot'; column: string; categories: string[] }
  | { op: 'standardize'; column: string; mean: number; std: number }
  | { op: 'rbf'; name: string; columns: string[]; centers: number[][]; gamma: number };

/** The centers of a grid: every combination of `count` evenly spaced values in [min, max] per column. */
export function gridCenters(grid: [number, number, number][]): number[][] {
  let out: number[][] = [[]];
  for (const [min, max, count] of grid) {
    const values = Array.from({ length: count }, (_, i) => (count === 1 ? (min + max) / 2 : min + ((max - min) * i) / (count - 1)));
    out = out.flatMap((prefix) => values.map((v) => [...prefix, Number(v.toPrecision(12))]));
  }
  return out;
}

export interface FittedTransform {
  kind: 'mlpipe.transform';
  version: 1;
  /** Columns passed through untouched by `standardize: numeric` (e.g. the target). */
  exclude: string[];
  /** The columns the transform was fitted on (its raw input), target and excluded ones left out. */
  inputs?: { name: string; type: 'number' | 'string' | 'other' }[];
  ops: FittedOp[];
}

const fittedOp = z.discriminatedUnion('op', [
  z.object({ op: z.literal('derive'), name: z.string(), expr: z.string().optional(), sql: z.string().optional() }),
  z.object({ op: z.literal('impute'), column: z.string(), value: z.union([z.number(), z.string()]) }),
  z.object({ op: z.literal('log'), column: z.string(), offset: z.number() }),
  z.object({ op: z.literal('clip'), column: z.string(), min: z.number().nullable(), max: z.number().nullable() }),
  z.object({ op: z.literal('onehot'), column: z.string(), categories: z.array(z.string()) }),
  z.object({ op: z.literal('standardize'), column: z.string(), mean: z.number(), std: z.number() }),
  z.object({
    op: z.literal('rbf'),
    name: z.string(),
    columns: z.array(z.string()),
    centers: z.array(z.array(z.number())),
    gamma: z.number(),
  }),
]);
const fittedTransform = z.object({
  kind: z.literal('mlpipe.transform'),
  version: z.literal(1),
  exclude: z.array(z.string()),
  inputs: z.array(z.object({ name: z.string(), type: z.enum(['number', 'string', 'other']) })).optional(),
  ops: z.array(fittedOp),
});

/**
 * A fitted state read from an artifact (a step output, so not trusted): every number a finite
 * number and every name a string before any of it becomes SQL. Throws PLUGIN_INPUT otherwise.
 */
export function parseFittedTransform(value: unknown, where: string): FittedTransform {
  const r = fittedTransform.safeParse(value);
  if (r.success) return r.data as FittedTransform;
  throw new PipelineError(
    'PLUGIN_INPUT',
    `${where}: 'state' is not a fitted transform (process.transform's state output): ${formatZodIssues(r.error.issues.slice(0, 1), 'the document')}.`,
    {
      hint: 'Bind the state output of a process.transform step.',
    },
  );
}

/** A column name for a one-hot category: `ocean_proximity=NEAR BAY`. */
export function onehotName(column: string, category: string): string {
  return `${column}=${category}`;
}

/**
 * The SQL select list applying one fitted op to a relation with the given columns, and the columns
 * after it. Pure: the same state gives the same SQL at fit time, at serving and in monitoring.
 */
export function applyOpSql(op: FittedOp, columns: string[]): { select: string; columns: string[] } {
  const q = ident;
  const replace = (col: string, expr: string): { select: string; columns: string[] } => ({
    select: `* REPLACE (${expr} AS ${q(col)})`,
    columns,
  });
  switch (op.op) {
    case 'derive':
      return {
        select: `*, (${op.expr !== undefined ? formulaSql(parseFormula(op.expr)) : op.sql}) AS ${q(op.name)}`,
        columns: [...columns, op.name],
      };
    case 'impute':
      return replace(op.column, `coalesce(${q(op.column)}, ${typeof op.value === 'number' ? op.value : sqlString(op.value)})`);
    case 'log':
      return replace(op.column, `ln(greatest(${q(op.column)}, 0) + ${op.offset})`);
    case 'clip': {
      let e = q(op.column);
      if (op.min !== null) e = `greatest(${e}, ${op.min})`;
      if (op.max !== null) e = `least(${e}, ${op.max})`;
      return replace(op.column, e);
    }
    case 'standardize':
      return replace(op.column, `(${q(op.column)} - ${op.mean}) / ${op.std}`);
    case 'rbf': {
      const names = op.centers.map((_, k) => `${op.name}_${k}`);
      const exprs = op.centers.map(
        (c, k) =>
          `exp(-${op.gamma} * (${op.columns.map((col, j) => `power(${q(col)}::DOUBLE - ${c[j]}, 2)`).join(' + ')})) AS ${q(names[k]!)}`,
      );
      return { select: ['*', ...exprs].join(', '), columns: [...columns, ...names] };
    }
    case 'onehot': {
      const flags = op.categories.map(
        (c) => `CASE WHEN CAST(${q(op.column)} AS VARCHAR) = ${sqlString(c)} THEN 1.0 ELSE 0.0 END AS ${q(onehotName(op.column, c))}`,
      );
      return {
        select: [`* EXCLUDE (${q(op.column)})`, ...flags].join(', '),
        columns: [...columns.filter((c) => c !== op.column), ...op.categories.map((c) => onehotName(op.column, c))],
      };
    }
  }
}

/** A query applying a whole fitted transform to `source` (a table, view or read_parquet(...)). */
export function applyTransformSql(state: FittedTransform, source: string, columns: string[]): string {
  let sql = `SELECT * FROM ${source}`;
  let cols = columns;
  for (const op of state.ops) {
    const step = applyOpSql(op, cols);
    sql = `SELECT ${step.select} FROM (${sql})`;
    cols = step.columns;
  }
  return sql;
}
