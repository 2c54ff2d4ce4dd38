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

/** The expression an in-place op (impute, log, clip, standardize) gives its column; undefined for the others. */
function replaceExpr(op: FittedOp): { column: string; expr: string } | undefined {
  const q = ident;
  switch (op.op) {
    case 'impute':
      return { column: op.column, expr: `coalesce(${q(op.column)}, ${typeof op.value === 'number' ? op.value : sqlString(op.value)})` };
    case 'log':
      return { column: op.column, expr: `ln(greatest(${q(op.column)}, 0) + ${op.offset})` };
    case 'clip': {
      let e = q(op.column);
      if (op.min !== null) e = `greatest(${e}, ${op.min})`;
      if (op.max !== null) e = `least(${e}, ${op.max})`;
      return { column: op.column, expr: e };
    }
    case 'standardize':
      return { column: op.column, expr: `(${q(op.column)} - ${op.mean}) / ${op.std}` };
    default:
      return undefined;
  }
}

/**
 * The SQL select list applying one fitted op to a relation with the given columns, and the columns
 * after it. Pure: the same state gives the same SQL at fit time, at serving and in monitoring.
 */
export function applyOpSql(op: FittedOp, columns: string[]): { select: string; columns: string[] } {
  const q = ident;
  const inPlace = replaceExpr(op);
  if (inPlace) return { select: `* REPLACE (${inPlace.expr} AS ${q(inPlace.column)})`, columns };
  switch (op.op) {
    case 'derive':
      return {
        select: `*, (${op.expr !== undefined ? formulaSql(parseFormula(op.expr)) : op.sql}) AS ${q(op.name)}`,
        columns: [...columns, op.name],
      };
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
    default:
      throw new Error(`unknown fitted op ${(op as { op: string }).op}`);
  }
}

/**
 * A query applying `ops` in order to the query `sql` (whose columns are `columns`), and the columns
 * after them. Consecutive in-place ops on different columns share one SELECT level
 * (`* REPLACE (a AS x, b AS y)`): the same values as one level per op, but a shallow query, so
 * DuckDB plans an 80-column standardize as one projection instead of 80 nested ones.
 */
export function applyOpsSql(ops: FittedOp[], sql: string, columns: string[]): { sql: string; columns: string[] } {
  let cols = columns;
  let group = new Map<string, string>();
  const flush = (): void => {
    if (!group.size) return;
    const list = [...group].map(([column, expr]) => `${expr} AS ${ident(column)}`).join(', ');
    sql = `SELECT * REPLACE (${list}) FROM (${sql})`;
    group = new Map();
  };
  for (const op of ops) {
    const inPlace = replaceExpr(op);
    if (inPlace) {
      // A second op on the same column reads the first one's result: a new level.
      if (group.has(inPlace.column)) flush();
      group.set(inPlace.column, inPlace.expr);
      continue;
    }
    flush();
    const step = applyOpSql(op, cols);
    sql = `SELECT ${step.select} FROM (${sql})`;
    cols = step.columns;
  }
  flush();
  return { sql, columns: cols };
}

/** A query applying a whole fitted transform to `source` (a table, view or read_parquet(...)). */
export function applyTransformSql(state: FittedTransform, source: string, columns: string[]): string {
  return applyOpsSql(state.ops, `SELECT * FROM ${source}`, columns).sql;
}
