/**
 * DuckDB, the data engine of the data plugins: an in-process database per step, reading and
 * writing local files (artifact paths come from the artifact store).
 *
 * Every call takes exactly one SQL statement (a second one, e.g. spliced in after a `;`, is refused
 * before anything runs), and values are bound as prepared-statement parameters (`$name`), never
 * written into the SQL text. `restrict` switches file access off for the rest of the session.
 */
import type { DuckDBConnection, DuckDBDataChunk, DuckDBPreparedStatement, DuckDBValue } from '@duckdb/node-api';

type Bindings = typeof import('@duckdb/node-bindings');

/** DuckDB's native module, loaded on first use: commands that never query (validate, status) do not pay for it. */
let duckdbModule: Promise<[typeof import('@duckdb/node-api'), Bindings]> | undefined;
const loadDuckDB = (): Promise<[typeof import('@duckdb/node-api'), Bindings]> =>
  (duckdbModule ??= Promise.all([
    import('@duckdb/node-api'),
    import('@duckdb/node-bindings').then((m) => (m as { default: Bindings }).default),
  ]));

/** Values bound by name to `$name` parameters. */
export type SqlParams = Record<string, DuckDBValue>;

/** Files and folders a restricted session may still read and write; everything else is refused. */
export interface FileAccess {
  paths: string[];
  directories?: string[];
}

/** A result column as one typed array: DOUBLE as Float64Array (NULL: NaN), INTEGER as Int32Array (NULL: -1), BIGINT as BigInt64Array (NULL: 0). */
export type TypedColumn = Float64Array | Int32Array | BigInt64Array;

export interface Duck {
  run(sql: string, params?: SqlParams): Promise<void>;
  /** Rows as plain JS objects (BIGINT as number when it fits, DECIMAL as number). */
  rows<T = Record<string, unknown>>(sql: string, params?: SqlParams): Promise<T[]>;
  /** The result in chunks of about 2048 rows, column-major, values of any type: no object per row (typedColumns is faster for numbers). */
  chunks(sql: string, params?: SqlParams): AsyncIterable<unknown[][]>;
  /**
   * The result as one typed array per column, vector by vector (no value object per row): each
   * result column must be DOUBLE, INTEGER or BIGINT (cast in the query). `rows` is the row count
   * the caller expects (the arrays' length); a result with more rows is an error. `onRows` runs
   * after each chunk with the rows so far (awaited).
   */
  typedColumns(
    sql: string,
    rows: number,
    onRows?: (rows: number) => void | Promise<void>,
    params?: SqlParams,
  ): Promise<{ rows: number; columns: TypedColumn[] }>;
  /**
   * Streams a result whose columns are all DOUBLE (cast in the query), chunk by chunk (about 2048
   * rows): `each` gets every column as a Float64Array over the vector's own memory (no copy) and
   * its validity mask (bit k of byte b is row 8b + k; null when no value is NULL; the data under a
   * NULL is undefined), both valid only during the call. The next chunk is fetched while `each`
   * runs (awaited when it returns a promise). Resolves to the row count.
   */
  scanDoubles(
    sql: string,
    each: (columns: Float64Array[], valid: (Uint8Array | null)[], rows: number) => void | Promise<void>,
    params?: SqlParams,
  ): Promise<number>;
  /**
   * What `sql` is without running it: its statement kind ('SELECT', 'COPY', 'PRAGMA', ...) and
   * the names of its parameters. Throws when it is not exactly one statement or does not bind.
   */
  inspect(sql: string): Promise<{ kind: string; params: string[] }>;
  /**
   * From now on the session reads and writes only these files and folders: DuckDB's
   * `enable_external_access = false` with `allowed_paths` / `allowed_directories`, then
   * `lock_configuration`, so no later SQL can change it back (no file-reading table functions,
   * ATTACH, COPY, INSTALL or LOAD elsewhere). Views made before over allowed files keep working.
   */
  restrict(access: FileAccess): Promise<void>;
}

/** Thrown (before anything runs) when a SQL text holds more or fewer than one statement. */
export class NotOneStatement extends Error {}

async function prepareOne(conn: DuckDBConnection, sql: string, params?: SqlParams): Promise<DuckDBPreparedStatement> {
  const statements = await conn.extractStatements(sql).catch((e: Error) => {
    // An empty text (or only a comment) makes the binding fail without a parser message.
    if (/native callback/.test(e.message)) throw new NotOneStatement('the SQL text holds no statement');
    throw e;
  });
  if (statements.count !== 1) throw new NotOneStatement(`the SQL text holds ${statements.count} statements; one is allowed`);
  const prepared = await statements.prepare(0);
  try {
    if (params && Object.keys(params).length) prepared.bind(params);
    return prepared;
  } catch (e) {
    prepared.destroySync();
    throw e;
  }
}

export async function withDuckDB<T>(fn: (db: Duck) => Promise<T>, options: { threads?: number } = {}): Promise<T> {
  const [{ DuckDBInstance, DuckDBTypeId, StatementType }, bindings] = await loadDuckDB();
  const instance = await DuckDBInstance.create(':memory:', { threads: String(options.threads ?? 2) });
  const conn: DuckDBConnection = await instance.connect();
  const once = async <R>(sql: string, params: SqlParams | undefined, use: (p: DuckDBPreparedStatement) => Promise<R>): Promise<R> => {
    const prepared = await prepareOne(conn, sql, params);
    try {
      return await use(prepared);
    } finally {
      prepared.destroySync();
    }
  };
  try {
    return await fn({
      run: (sql, params) => once(sql, params, async (p) => void (await p.run())),
      rows: <R>(sql: string, params?: SqlParams) =>
        once(sql, params, async (p) => (await p.runAndReadAll()).getRowObjectsJS().map((r) => normalize(r) as R)),
      chunks: async function* (sql: string, params?: SqlParams) {
        const result = await once(sql, params, (p) => p.stream());
        for (;;) {
          const chunk = await result.fetchChunk();
          if (!chunk || chunk.rowCount === 0) return;
          yield Array.from({ length: chunk.columnCount }, (_, c) => chunk.getColumnValues(c));
        }
      },
      typedColumns: async (sql, rows, onRows, params) => {
        const result = await once(sql, params, (p) => p.stream());
        const columns: TypedColumn[] = [];
        for (let c = 0; c < result.columnCount; c++) {
          const t = result.columnTypeId(c);
          columns.push(
            t === DuckDBTypeId.DOUBLE
              ? new Float64Array(rows)
              : t === DuckDBTypeId.INTEGER
                ? new Int32Array(rows)
                : t === DuckDBTypeId.BIGINT
                  ? new BigInt64Array(rows)
                  : (() => {
                      throw new TypeError(`typedColumns: column ${c} is ${result.columnType(c).toString()}, not DOUBLE, INTEGER or BIGINT`);
                    })(),
          );
        }
        let at = 0;
        for (;;) {
          const chunk = await result.fetchChunk();
          if (!chunk || chunk.rowCount === 0) break;
          const n = chunk.rowCount;
          if (at + n > rows) throw new RangeError(`typedColumns: more than the ${rows} rows expected`);
          for (let c = 0; c < columns.length; c++) copyVector(bindings, chunk, c, columns[c]!, at, n);
          at += n;
          await onRows?.(at);
        }
        return { rows: at, columns };
      },
      scanDoubles: async (sql, each, params) => {
        const result = await once(sql, params, (p) => p.stream());
        for (let c = 0; c < result.columnCount; c++) {
          if (result.columnTypeId(c) !== DuckDBTypeId.DOUBLE)
            throw new TypeError(`scanDoubles: column ${c} is ${result.columnType(c).toString()}, not DOUBLE`);
        }
        let rows = 0;
        const fetch = (): Promise<DuckDBDataChunk | null> => {
          const p = result.fetchChunk();
          // Its failure is seen when it is awaited, not as an unhandled rejection while `each` runs.
          p.catch(() => undefined);
          return p;
        };
        let next = fetch();
        for (;;) {
          const chunk = await next;
          if (!chunk || chunk.rowCount === 0) return rows;
          // DuckDB reads ahead while this chunk is handled (each fetched chunk owns its memory).
          next = fetch();
          const n = chunk.rowCount;
          const columns: Float64Array[] = [];
          const valid: (Uint8Array | null)[] = [];
          for (let c = 0; c < result.columnCount; c++) {
            const raw = bindings.data_chunk_get_vector(chunk.chunk, c);
            const data = bindings.vector_get_data(raw, n * 8);
            columns.push(new Float64Array(data.buffer, data.byteOffset, n));
            valid.push((bindings.vector_get_validity(raw, Math.ceil(n / 64) * 8) as Uint8Array | null) ?? null);
          }
          try {
            await each(columns, valid, n);
          } catch (e) {
            // The fetch under way ends before the connection may close.
            await next.catch(() => undefined);
            throw e;
          }
          rows += n;
        }
      },
      inspect: (sql) =>
        once(sql, undefined, async (p) => ({
          kind: StatementType[p.statementType] ?? String(p.statementType),
          params: Array.from({ length: p.parameterCount }, (_, i) => p.parameterName(i + 1)),
        })),
      restrict: async (access) => {
        const list = (xs: string[]): string => `[${xs.map(sqlString).join(', ')}]`;
        await conn.run(`SET allowed_paths = ${list(access.paths)}`);
        await conn.run(`SET allowed_directories = ${list(access.directories ?? [])}`);
        await conn.run('SET enable_external_access = false');
        await conn.run('SET lock_configuration = true');
      },
    });
  } finally {
    conn.closeSync();
    instance.closeSync();
  }
}

/**
 * Copies column `c` of a chunk into `into` from `at`: the vector's data buffer itself (a typed view
 * of DuckDB's memory, copied once), then NULLs from its validity mask (NaN, -1 or 0).
 */
function copyVector(bindings: Bindings, chunk: DuckDBDataChunk, c: number, into: TypedColumn, at: number, n: number): void {
  const raw = bindings.data_chunk_get_vector(chunk.chunk, c);
  const data = bindings.vector_get_data(raw, n * into.BYTES_PER_ELEMENT);
  if (into instanceof Float64Array) into.set(new Float64Array(data.buffer, data.byteOffset, n), at);
  else if (into instanceof Int32Array) into.set(new Int32Array(data.buffer, data.byteOffset, n), at);
  else into.set(new BigInt64Array(data.buffer, data.byteOffset, n), at);
  const valid = bindings.vector_get_validity(raw, Math.ceil(n / 64) * 8) as Uint8Array | null;
  if (!valid) return;
  const missing = into instanceof Float64Array ? NaN : into instanceof Int32Array ? -1 : 0n;
  for (let b = 0; b < Math.ceil(n / 8); b++) {
    const bits = valid[b]!;
    if (bits === 0xff) continue;
    for (let k = 0; k < 8 && b * 8 + k < n; k++) if (!(bits & (1 << k))) into[at + b * 8 + k] = missing as never;
  }
}

function normalize(row: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(row)) {
    out[k] = typeof v === 'bigint' && v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(v) : v;
  }
  return out;
}

/** A SQL string literal (DuckDB's rules: quotes doubled, no backslash escapes). */
export function sqlString(s: string): string {
  return `'${s.replace(/'/g, "''")}'`;
}

/** A quoted SQL identifier. */
export function ident(s: string): string {
  return `"${s.replace(/"/g, '""')}"`;
}

interface SniffResult {
  Delimiter: string;
  Quote: string;
  Escape: string;
  Comment: string;
  SkipRows: number;
  HasHeader: boolean;
  DateFormat: string | null;
  TimestampFormat: string | null;
  Columns: { name: string; type: string }[];
}

/**
 * What DuckDB's sniffer detects in a CSV (run with `options`, the caller's read_csv options), written
 * out as read_csv options with `auto_detect=false`: dialect, header, column names and types, date
 * formats. A reader given these does not sniff again at each bind, and parses faster with fixed
 * types. Every detected value goes into the SQL as a string literal (the skip count as a number).
 * Undefined when DuckDB cannot sniff the file (the caller's auto-detecting reader then reports why).
 */
export async function sniffCsv(
  db: Duck,
  file: string,
  options: string[],
): Promise<{ options: string[]; columns: { name: string; type: string }[] } | undefined> {
  const [s] = await db
    .rows<SniffResult>(
      `SELECT Delimiter, Quote, Escape, Comment, SkipRows::INTEGER AS SkipRows, HasHeader, DateFormat, TimestampFormat, Columns FROM sniff_csv(${sqlString(file)}, ${options.join(', ')})`,
    )
    .catch(() => []);
  if (!s || !Array.isArray(s.Columns) || !s.Columns.length) return undefined;
  const char = (v: string): string => sqlString(v === '(empty)' ? '' : v);
  const columns = s.Columns.map((c) => ({ name: String(c.name), type: String(c.type) }));
  return {
    options: [
      'auto_detect=false',
      `delim=${char(s.Delimiter)}`,
      `quote=${char(s.Quote)}`,
      `escape=${char(s.Escape)}`,
      // No new_line: the reader finds the line ends itself (a written-out '\r\n' misreads the last line).
      `comment=${char(s.Comment)}`,
      `skip=${Number(s.SkipRows)}`,
      `header=${s.HasHeader ? 'true' : 'false'}`,
      `columns={${columns.map((c) => `${sqlString(c.name)}: ${sqlString(c.type)}`).join(', ')}}`,
      ...(s.DateFormat ? [`dateformat=${sqlString(s.DateFormat)}`] : []),
      ...(s.TimestampFormat ? [`timestampformat=${sqlString(s.TimestampFormat)}`] : []),
    ],
    columns,
  };
}
