/**
 * Datasets are Parquet artifacts. Helpers shared by the data plugins: resolve an input to a local
 * file, write a query's result as a new dataset artifact, describe columns.
 */
import { join } from 'node:path';
import { ident, sqlString, type Duck, type SqlParams } from '../adapters/duckdb.js';
import { PipelineError } from '../engine/errors.js';
import { isArtifactRef, type ArtifactRef } from '../engine/types.js';
import type { ArtifactStore } from '../engine/ports.js';

/** What these helpers use of a step's context (a plugin passes its `StepContext`). */
export interface DatasetContext {
  store: ArtifactStore;
  /** The attempt's scratch folder. */
  workDir: string;
}

export const PARQUET = 'application/vnd.apache.parquet';

export interface Column {
  name: string;
  type: string;
}

/** The local path of a dataset input (digest-checked by the store). */
export async function datasetFile(ctx: DatasetContext, inputs: Record<string, unknown>, name: string): Promise<string> {
  const ref = inputs[name];
  if (!isArtifactRef(ref)) {
    throw new PipelineError('PLUGIN_INPUT', `Input '${name}' must be a dataset artifact, got ${JSON.stringify(ref)?.slice(0, 80)}.`, {
      hint: `Bind it to a dataset output, e.g. inputs: { ${name}: \${steps.ingest.outputs.dataset} }.`,
    });
  }
  return ctx.store.getFile(ref);
}

/** Registers a dataset file as a view. */
export async function view(db: Duck, name: string, file: string): Promise<void> {
  await db.run(`CREATE OR REPLACE VIEW ${ident(name)} AS SELECT * FROM read_parquet(${sqlString(file)})`);
}

export async function describe(db: Duck, relation: string): Promise<Column[]> {
  const rows = await db.rows<{ column_name: string; column_type: string }>(`DESCRIBE SELECT * FROM ${relation}`);
  return rows.map((r) => ({ name: r.column_name, type: r.column_type }));
}

export function isNumericType(type: string): boolean {
  return /^(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT|UTINYINT|USMALLINT|UINTEGER|UBIGINT|FLOAT|DOUBLE|REAL|DECIMAL)/.test(type);
}

/** Where writeParquet / writeDataset put the dataset `name` (for a restricted session's allowed paths). */
export function datasetPath(ctx: DatasetContext, name: string): string {
  return join(ctx.workDir, `${name}.parquet`);
}

/**
 * Writes the result of `select` (one query, `$name` parameters bound from `params`) to a Parquet
 * file in the step's scratch folder. Row order is kept.
 */
export async function writeParquet(
  ctx: DatasetContext,
  db: Duck,
  select: string,
  name: string,
  params?: SqlParams,
): Promise<{ file: string; rows: number; columns: Column[] }> {
  const file = datasetPath(ctx, name);
  // Written in place (no temporary file beside it): the only path a restricted session allows.
  // The query on lines of its own, so a trailing comment in it cannot swallow the rest. Snappy, not
  // zstd: it writes about twice as fast for files about an eighth larger (docs/benchmarks.md), and
  // the bytes are as deterministic (the same rows give the same digest, so cache keys still match).
  const [copied] = await db.rows<{ Count: number }>(
    `COPY (\n${select}\n) TO ${sqlString(file)} (FORMAT parquet, COMPRESSION snappy, USE_TMP_FILE false)`,
    params,
  );
  const n = Number(copied?.Count);
  // The Parquet footer only.
  const columns = await describe(db, `read_parquet(${sqlString(file)})`);
  return { file, rows: n, columns };
}

/** Moves a Parquet file from the scratch folder into the store. */
export function storeDataset(ctx: DatasetContext, file: string, name: string): Promise<ArtifactRef> {
  return ctx.store.putFile(file, { name: `${name}.parquet`, mediaType: PARQUET, move: true });
}

/** Writes the result of `select` (parameters bound from `params`) as a Parquet dataset artifact. Row order is kept. */
export async function writeDataset(
  ctx: DatasetContext,
  db: Duck,
  select: string,
  name: string,
  params?: SqlParams,
): Promise<{ ref: ArtifactRef; rows: number; columns: Column[] }> {
  const w = await writeParquet(ctx, db, select, name, params);
  return { ref: await storeDataset(ctx, w.file, name), rows: w.rows, columns: w.columns };
}
