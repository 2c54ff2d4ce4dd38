/**
 * DuckDB, the data engine of the data plugins: an in-process database per step, reading and
 * writing local files (artifact paths come from the artifact store).
 */
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';

export interface Duck {
  run(sql: string): Promise<void>;
  /** Rows as plain JS objects (BIGINT as number when it fits, DECIMAL as number). */
  rows<T = Record<string, unknown>>(sql: string): Promise<T[]>;
  /** The result in chunks of about 2048 rows, column-major: no object per row. */
  chunks(sql: string): AsyncIterable<unknown[][]>;
}

export async function withDuckDB<T>(fn: (db: Duck) => Promise<T>, options: { threads?: number } = {}): Promise<T> {
  const instance = await DuckDBInstance.create(':memory:', { threads: String(options.threads ?? 2) });
  const conn: DuckDBConnection = await instance.connect();
  try {
    return await fn({
      run: async (sql) => {
        await conn.run(sql);
      },
      rows: async <R>(sql: string) => (await conn.runAndReadAll(sql)).getRowObjectsJS().map((r) => normalize(r) as R),
      chunks: async function* (sql: string) {
        const result = await conn.stream(sql);
        for (;;) {
          const chunk = await result.fetchChunk();
          if (!chunk || chunk.rowCount === 0) return;
          yield Array.from({ length: chunk.columnCount }, (_, c) => chunk.getColumnValues(c));
        }
      },
    });
  } finally {
    conn.closeSync();
    instance.closeSync();
  }
}

function normalize(row: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(row)) {
    out[k] = typeof v === 'bigint' && v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(v) : v;
  }
  return out;
}

/** A SQL string literal. */
export function sqlString(s: string): string {
  return `'${s.replace(/'/g, "''")}'`;
}

/** A quoted SQL identifier. */
export function ident(s: string): string {
  return `"${s.replace(/"/g, '""')}"`;
}
