/**
 * Datasets are Parquet artifacts. Helpers shared by the data plugins: resolve an input to a local
 * file, write a query's result as a new dataset artifact, describe columns.
 */
import { join } from 'node:path';
import { ident, sqlString, withDuckDB, type Duck, type SqlParams } from '../adapters/duckdb.js';
import { canonicalJson } from '../engine/cache-key.js';
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

function datasetRef(inputs: Record<string, unknown>, name: string): ArtifactRef {
  const ref = inputs[name];
  if (!isArtifactRef(ref)) {
    throw new PipelineError('PLUGIN_INPUT', `Input '${name}' must be a dataset artifact, got ${JSON.stringify(ref)?.slice(0, 80)}.`, {
      hint: `Bind it to a dataset output, e.g. inputs: { ${name}: \${steps.ingest.outputs.dataset} }.`,
    });
  }
  return ref;
}

/**
 * The local path of a dataset input (digest-checked by the store). A deferred dataset is computed
 * into a Parquet dataset first (once per store: see `materialize`).
 */
export async function datasetFile(ctx: DatasetContext, inputs: Record<string, unknown>, name: string): Promise<string> {
  const ref = datasetRef(inputs, name);
  return ctx.store.getFile(isDeferred(ref) ? await materialize(ctx, ref) : ref);
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
  // zstd: it writes about twice as fast for files about an eighth larger (docs/benchmarks.md).
  const copy = (options: string): string =>
    `COPY (\n${select}\n) TO ${sqlString(file)} (FORMAT parquet, COMPRESSION snappy, USE_TMP_FILE false${options})`;
  // The same rows give the same bytes (so the same digest, and the steps after it hit the cache).
  // DuckDB's order-keeping writer (BATCH_COPY_TO_FILE) gathers the batches of the query's source
  // into row groups of ROW_GROUP_SIZE rows as the threads finish them, and where it cuts one depends
  // on their timing. With ROW_GROUP_SIZE 0 it writes each batch as one row group, in order: a
  // Parquet input's row groups, a CSV's slices of about 8 MB, a sort's 122,880 rows, whatever the
  // timing. Other plans (an aggregate's result: rows in no fixed order) keep the default size.
  const plan = await db.rows<{ explain_value: string }>(`EXPLAIN ${copy('')}`, params);
  const ordered = plan.some((r) => /\bBATCH_COPY_TO_FILE\b/.test(r.explain_value));
  const [copied] = await db.rows<{ Count: number }>(copy(ordered ? ', ROW_GROUP_SIZE 0' : ''), params);
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

/*
 * Deferred datasets. A step whose dataset output is read only by DuckDB steps (the compiler works it
 * out: `defer` in the step's context) may pass it on as a recipe instead of a Parquet file: its
 * query, the values bound to it and the datasets it reads. The recipe is an artifact of its own
 * (canonical JSON, so its digest is the hash of the recipe: the same query over the same input
 * digests with the same plugin version is the same artifact, and the steps after it hit the cache
 * exactly as they would on identical Parquet bytes). The next DuckDB step computes the recipe in its
 * own session, in memory, with no Parquet written, hashed or fsynced in between. A step that needs a
 * file (`datasetFile`) gets it materialised, once: the Parquet digest is recorded under
 * `deferred/<recipe digest>`. The ref names the datasets it reads (`derivedFrom`), so a cache entry
 * or manifest that keeps the recipe also keeps them (engine/gc.ts).
 */

export const DEFERRED = 'application/vnd.mlpipe.deferred-dataset+json';

/** A dataset input of a recipe, by content (no URI: a recipe means the same in every store). */
interface RecipeInput {
  sha256: string;
  size: number;
  mediaType: string;
}

export interface DatasetRecipe {
  kind: 'mlpipe.deferred-dataset';
  version: 1;
  /** The plugin (and version) whose query this is. */
  plugin: string;
  pluginVersion: string;
  /** One SELECT over the views named in `tables`. */
  sql: string;
  params: Record<string, string | number | boolean | null>;
  tables: Record<string, RecipeInput>;
  /** What the query returns (computed when the recipe was made). */
  rows: number;
  columns: Column[];
}

export function isDeferred(ref: ArtifactRef): boolean {
  return ref.mediaType === DEFERRED;
}

/**
 * Stores a recipe as the deferred dataset `name`: its inputs are the dataset refs of `tables`.
 * Computes its row count and columns in `db`, where the views of `tables` must exist.
 */
export async function deferDataset(
  ctx: DatasetContext,
  db: Duck,
  producer: { plugin: string; version: string },
  select: string,
  tables: Record<string, ArtifactRef>,
  name: string,
  params: SqlParams = {},
): Promise<{ ref: ArtifactRef; rows: number; columns: Column[] }> {
  // The count runs the query, so a query that fails on the data fails here, in its own step. DuckDB
  // leaves out the columns nobody reads, so it costs a scan of the inputs, not the writing of a file.
  const [counted] = await db.rows<{ n: number }>(`SELECT count(*)::BIGINT AS n FROM (\n${select}\n)`, params);
  await db.run(`CREATE OR REPLACE TEMP TABLE __deferred_shape AS SELECT * FROM (\n${select}\n) LIMIT 0`, params);
  const columns = await describe(db, '__deferred_shape');
  await db.run('DROP TABLE __deferred_shape');
  const recipe: DatasetRecipe = {
    kind: 'mlpipe.deferred-dataset',
    version: 1,
    plugin: producer.plugin,
    pluginVersion: producer.version,
    sql: select,
    params: params as DatasetRecipe['params'],
    tables: Object.fromEntries(Object.entries(tables).map(([t, r]) => [t, { sha256: r.sha256, size: r.size, mediaType: r.mediaType }])),
    rows: Number(counted?.n),
    columns,
  };
  const ref = await ctx.store.put(canonicalJson(recipe), { name: `${name}.deferred.json`, mediaType: DEFERRED });
  return { ref: { ...ref, derivedFrom: Object.values(tables) }, rows: recipe.rows, columns: recipe.columns };
}

async function readRecipe(store: ArtifactStore, ref: ArtifactRef): Promise<DatasetRecipe> {
  const r = JSON.parse((await store.get(ref)).toString('utf8')) as DatasetRecipe;
  if (r?.kind !== 'mlpipe.deferred-dataset' || r.version !== 1 || typeof r.sql !== 'string' || typeof r.tables !== 'object') {
    throw new PipelineError('DATA_INVALID', `${ref.name ?? ref.sha256}: not a deferred dataset this version reads.`);
  }
  return r;
}

/** A recipe's input as a ref of this store (content-addressed: the digest finds it). */
function inputRef(store: ArtifactStore, i: RecipeInput): ArtifactRef {
  return { kind: 'artifact', uri: `${store.location}#sha256:${i.sha256}`, sha256: i.sha256, size: i.size, mediaType: i.mediaType };
}

/** A dataset input resolved: a Parquet file, or a recipe and what it reads. */
interface Recipe {
  recipe: DatasetRecipe;
  tables: Record<string, Resolved>;
  ref: ArtifactRef;
}
type Resolved = { file: string } | Recipe;

async function resolveDataset(store: ArtifactStore, ref: ArtifactRef, depth = 0): Promise<Resolved> {
  if (!isDeferred(ref)) return { file: await store.getFile(ref) };
  if (depth > 64) throw new PipelineError('DATA_INVALID', 'Deferred datasets nested more than 64 deep.');
  const recipe = await readRecipe(store, ref);
  const tables: Record<string, Resolved> = {};
  for (const [t, i] of Object.entries(recipe.tables)) tables[t] = await resolveDataset(store, inputRef(store, i), depth + 1);
  return { recipe, tables, ref };
}

function filesOf(r: Resolved, out: string[] = []): string[] {
  if ('file' in r) out.push(r.file);
  else for (const t of Object.values(r.tables)) filesOf(t, out);
  return out;
}

/**
 * The dataset inputs of a DuckDB step, resolved: `files` are the Parquet files they read (what a
 * restricted session must allow), `bind` makes each one a relation of the session.
 */
export interface Datasets {
  files: string[];
  /**
   * Makes input `name` the view `alias`: a Parquet file's view, or a deferred dataset computed
   * (after the session is restricted) into a temporary table. Bind every input before making
   * views of your own: a recipe's own table names are views while it is computed.
   */
  bind(db: Duck, name: string, alias: string): Promise<void>;
  /**
   * An error of the reading query, as the failure of a deferred input when there is one (its query
   * runs as part of the reading one, so a conversion error in it shows there).
   */
  failure(e: unknown): unknown;
}

export async function loadDatasets(ctx: DatasetContext, inputs: Record<string, unknown>, names: string[]): Promise<Datasets> {
  const resolved: Record<string, Resolved> = {};
  for (const n of names) resolved[n] = await resolveDataset(ctx.store, datasetRef(inputs, n));
  let k = 0;
  // Per session: the same inputs may be bound in more than one DuckDB session.
  const computedIn = new WeakMap<Duck, Map<string, string>>();
  // A recipe's result as a relation of the session (one per recipe digest). Without bound values it
  // is a view in a schema of its own, where its table names are views of their inputs (a view binds
  // the names in its query in its own schema first): the rows stream from the Parquet files into the
  // reading query, every time it reads them. A query with `$name` values cannot be a view: its rows
  // are computed once into a temporary table.
  const compute = async (db: Duck, r: Recipe): Promise<string> => {
    const computed = computedIn.get(db) ?? new Map<string, string>();
    computedIn.set(db, computed);
    const done = computed.get(r.ref.sha256);
    if (done) return done;
    const inner: Record<string, string> = {};
    for (const [t, sub] of Object.entries(r.tables)) if ('recipe' in sub) inner[t] = await compute(db, sub);
    const from = (t: string, sub: Resolved): string => ('file' in sub ? `read_parquet(${sqlString(sub.file)})` : inner[t]!);
    const schema = `__deferred_${++k}`;
    const streamed = Object.keys(r.recipe.params ?? {}).length === 0;
    const relation = streamed ? `${ident(schema)}.__result` : ident(schema);
    try {
      if (streamed) {
        await db.run(`CREATE SCHEMA ${ident(schema)}`);
        for (const [t, sub] of Object.entries(r.tables))
          await db.run(`CREATE VIEW ${ident(schema)}.${ident(t)} AS SELECT * FROM ${from(t, sub)}`);
        await db.run(`CREATE VIEW ${relation} AS (\n${r.recipe.sql}\n)`);
      } else {
        for (const [t, sub] of Object.entries(r.tables))
          await db.run(`CREATE OR REPLACE TEMP VIEW ${ident(t)} AS SELECT * FROM ${from(t, sub)}`);
        try {
          await db.run(`CREATE TEMP TABLE ${relation} AS (\n${r.recipe.sql}\n)`, r.recipe.params as SqlParams);
        } finally {
          for (const t of Object.keys(r.tables)) await db.run(`DROP VIEW IF EXISTS ${ident(t)}`);
        }
      }
    } catch (e) {
      throw recipeFailure(r, e);
    }
    computed.set(r.ref.sha256, relation);
    return relation;
  };
  return {
    files: [...new Set(Object.values(resolved).flatMap((r) => filesOf(r)))],
    async bind(db, name, alias) {
      const r = resolved[name];
      if (r === undefined) throw new Error(`dataset input '${name}' was not loaded`);
      // Every recipe first: while one is computed, its table names are views of the session.
      for (const other of Object.values(resolved)) if ('recipe' in other) await compute(db, other);
      const from = 'file' in r ? `read_parquet(${sqlString(r.file)})` : await compute(db, r);
      await db.run(`CREATE OR REPLACE VIEW ${ident(alias)} AS SELECT * FROM ${from}`);
    },
    failure(e) {
      const recipes = Object.values(resolved).filter((x): x is Recipe => 'recipe' in x);
      if (!recipes.length || e instanceof PipelineError) return e;
      const names = recipes.map((r) => `${r.ref.name ?? r.ref.sha256.slice(0, 12)} (${r.recipe.plugin})`).join(', ');
      return new PipelineError('DATA_INVALID', `${(e as Error).message.split('\n')[0]} (reading the deferred dataset ${names})`, {
        hint: 'A deferred dataset is computed by the query that reads it: the failure may be in the query of the step that made it.',
      });
    },
  };
}

/** A deferred dataset's query failed where it was computed: named, as DATA_INVALID. */
function recipeFailure(r: Recipe, e: unknown): PipelineError {
  if (e instanceof PipelineError) return e;
  return new PipelineError(
    'DATA_INVALID',
    `the deferred dataset ${r.ref.name ?? r.ref.sha256.slice(0, 12)} (${r.recipe.plugin}) failed: ${(e as Error).message.split('\n')[0]}`,
    { hint: 'The query of the step that made it fails on these rows.' },
  );
}

/**
 * The Parquet dataset of a deferred one: computed and stored the first time, then found by the
 * record `deferred/<recipe digest>` (computing it again gives the same bytes anyway).
 */
export async function materialize(ctx: DatasetContext, ref: ArtifactRef): Promise<ArtifactRef> {
  const key = `deferred/${ref.sha256}`;
  const known = await ctx.store.getRecord<{ dataset: ArtifactRef }>(key).catch(() => undefined);
  if (known && isArtifactRef(known.dataset) && (await ctx.store.exists(known.dataset))) return known.dataset;
  const ds = await loadDatasets(ctx, { dataset: ref }, ['dataset']);
  const name = (ref.name ?? 'dataset').replace(/\.deferred\.json$/, '').replace(/[^\w.-]/g, '_') || 'dataset';
  const out = `${name}-${ref.sha256.slice(0, 12)}`;
  const written = await withDuckDB(async (db) => {
    await db.restrict({ paths: [...ds.files, datasetPath(ctx, out)] });
    await ds.bind(db, 'dataset', '__materialize');
    return writeDataset(ctx, db, 'SELECT * FROM __materialize', out);
  });
  const dataset = { ...written.ref, name: `${name}.parquet` };
  await ctx.store.putRecord(key, { dataset, recipe: ref });
  return dataset;
}
