/**
 * The drift loader reads a CSV with the sniffer's dialect, names and types written out
 * (`auto_detect=false`), and without pandas' missing markers where they cannot change a result.
 * Here its frequency tables are compared with those of the reading it replaced: read_csv detecting
 * everything itself with the markers as null strings, then the same GROUP BYs. The files mix
 * 64-bit integers (some beyond 2^53), doubles, text, True/False, yes/no and dates, with empty
 * fields, markers as text and in numeric columns, quoted fields holding the delimiter and quotes,
 * and a header of odd names, one of them SQL.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ident, withDuckDB } from '../../adapters/duckdb.js';
import type { ColumnValues } from '../../engine/drift/index.js';
import { describe as describeRelation, isNumericType } from '../../lib/dataset.js';
import { loadDriftDataset, loadDriftPair, readerFor, sniffedCsv } from '../../lib/drift-data.js';

const dir = mkdtempSync(join(tmpdir(), 'mlpipe-drift-csv-'));
const HOSTILE = "a'); DROP TABLE __data; --";
const MARKERS = ['', 'NA', 'N/A', 'null', 'NULL', 'None', 'nan', 'NaN', '#N/A', '<NA>', 'n/a'];
const TRUE_FALSE = ['True', 'False', 'TRUE', 'false'];
const TEXT = ['', 'with, comma', 'say "hi"', 'ünï', 'plain'];

function field(s: string, delim: string): string {
  return s.includes(delim) || s.includes('"') || s.includes('\n') ? `"${s.replace(/"/g, '""')}"` : s;
}

function csv(name: string, header: string[], rows: string[][], delim = ','): string {
  const file = join(dir, name);
  writeFileSync(file, [header, ...rows].map((r) => r.map((x) => field(x, delim)).join(delim)).join('\n') + '\n');
  return file;
}

/** The loader's tables as the reading before it made them: auto-detect, markers as null strings. */
async function before(file: string): Promise<Record<string, ColumnValues>> {
  return withDuckDB(async (db) => {
    let src = readerFor(file, 'csv');
    let columns = await describeRelation(db, src);
    const asText = columns.filter((c) => /^(BOOLEAN|DATE|TIME)/.test(c.type)).map((c) => c.name);
    if (asText.length) {
      src = readerFor(file, 'csv', asText);
      columns = await describeRelation(db, src);
    }
    const out: Record<string, ColumnValues> = {};
    for (const c of columns) {
      const col = ident(c.name);
      if (isNumericType(c.type)) {
        const rows = await db.rows<{ v: number | null; n: number }>(
          `SELECT ${col}::DOUBLE AS v, count(*)::DOUBLE AS n FROM ${src} GROUP BY 1 ORDER BY 1`,
        );
        const kept = rows.filter((r) => r.v !== null && !Number.isNaN(r.v));
        out[c.name] = {
          type: 'num',
          distinct: Float64Array.from(kept, (r) => r.v!),
          counts: Float64Array.from(kept, (r) => r.n),
          missing: rows.filter((r) => !kept.includes(r)).reduce((a, r) => a + r.n, 0),
        };
      } else {
        const rows = await db.rows<{ v: string; n: number }>(
          `SELECT ${col}::VARCHAR AS v, count(*)::DOUBLE AS n FROM ${src} WHERE ${col} IS NOT NULL GROUP BY 1 ORDER BY 1`,
        );
        out[c.name] = { type: 'cat', counts: Float64Array.from(rows, (r) => r.n), labels: rows.map((r) => r.v) };
      }
    }
    return out;
  });
}

/** A categorical table read from a CSV of True/False spellings, as the loader gives it. */
function asBoolean(c: ColumnValues): ColumnValues {
  if (c.type !== 'cat' || !('counts' in c) || 'distinct' in c) return c;
  const t = c.labels.reduce((a, l, k) => a + (/^true$/i.test(l) ? c.counts[k]! : 0), 0);
  const f = c.labels.reduce((a, l, k) => a + (/^false$/i.test(l) ? c.counts[k]! : 0), 0);
  return { type: 'cat', counts: Float64Array.of(t, f), labels: ['True', 'False'], boolean: true };
}

/** n rows of mixed columns; `markerEvery`: a pandas marker in the numeric columns every so many rows (0: none). */
function mixedRows(n: number, markerEvery: number): string[][] {
  const rows: string[][] = [];
  for (let i = 0; i < n; i++) {
    const marker = markerEvery && i % markerEvery === 7 ? MARKERS[i % MARKERS.length]! : undefined;
    rows.push([
      marker ?? (i % 19 === 0 ? '' : String((i * 7919) % 501)), // BIGINT
      marker ?? (i % 23 === 0 ? '' : (((i * 104729) % 9973) / 16 - 200).toString()), // DOUBLE
      i % 5 === 0 ? MARKERS[i % MARKERS.length]! : TEXT[i % 5]!, // VARCHAR, markers as text
      TRUE_FALSE[i % 4]!, // True/False spellings: boolean
      i % 3 === 0 ? 'yes' : 'no', // sniffed BOOLEAN, read as text
      `2026-0${1 + (i % 9)}-1${i % 10}`, // sniffed DATE, read as text
      i % 29 === 0 ? '' : String(9007199254740993n + BigInt(i % 7)), // beyond 2^53: kept as values
    ]);
  }
  return rows;
}

const HEADER = [HOSTILE, 'x "quoted", name', 'ünï code', 'flag', 'yes/no', 'day', 'big'];

async function sameAsBefore(file: string): Promise<void> {
  const want = await before(file);
  const got = await loadDriftDataset(file, 'reference');
  expect(Object.keys(got.columns).sort()).toEqual(Object.keys(want).sort());
  for (const [name, col] of Object.entries(want)) {
    const g = got.columns[name]!;
    if ('values' in g) {
      // A 64-bit column beyond 2^53 comes as values: its table must be what they count to.
      const counts = new Map<number, number>();
      let missing = 0;
      for (const v of g.values)
        if (Number.isNaN(v)) missing++;
        else counts.set(v, (counts.get(v) ?? 0) + 1);
      const distinct = [...counts.keys()].sort((a, b) => a - b);
      expect({ distinct, counts: distinct.map((v) => counts.get(v)), missing }, name).toEqual({
        distinct: Array.from((col as { distinct: Float64Array }).distinct),
        counts: Array.from((col as { counts: Float64Array }).counts),
        missing: (col as { missing: number }).missing,
      });
    } else if ('boolean' in g && g.boolean) expect(g, name).toEqual(asBoolean(col));
    else expect(g, name).toEqual(col);
  }
}

describe('loadDriftDataset on a CSV read with the sniffed types', () => {
  it('gives the tables of the auto-detecting reading: mixed types, nulls, quoted fields, odd and hostile names', async () => {
    const file = csv('mixed.csv', HEADER, mixedRows(3001, 0));
    await sameAsBefore(file);
    // Markers in text columns only: the file is read without them as null strings.
    await withDuckDB(async (db) => {
      const s = (await sniffedCsv(db, file))!;
      expect(s.columns.map((c) => c.type)).toEqual(['BIGINT', 'DOUBLE', 'VARCHAR', 'BOOLEAN', 'BOOLEAN', 'DATE', 'BIGINT']);
      const t = (await sniffedCsv(db, file, ['flag', 'yes/no', 'day']))!;
      await db.run(`CREATE TEMP TABLE t AS FROM ${t.plain}`);
    });
    const got = await loadDriftDataset(file, 'reference');
    expect(Object.keys(got.columns)).toContain(HOSTILE);
    expect(got.columns[HOSTILE]).toMatchObject({ type: 'num' });
    expect(got.columns['ünï code']).toMatchObject({ type: 'cat' });
    // Markers in a text column are missing, not labels.
    expect((got.columns['ünï code'] as { labels: string[] }).labels).toEqual(['plain', 'say "hi"', 'with, comma', 'ünï']);
    expect(got.columns['flag']).toMatchObject({ boolean: true, labels: ['True', 'False'] });
    expect(got.columns['yes/no']).toMatchObject({ type: 'cat', labels: ['no', 'yes'] });
    expect(got.columns['big']).toHaveProperty('exact');
  });

  it('gives the same tables when pandas markers stand in numeric columns (read again with them as null strings)', async () => {
    const markers = csv('markers.csv', HEADER, mixedRows(3001, 10));
    await sameAsBefore(markers);
    // Read without the markers as null strings, 'NA' in a BIGINT column does not convert.
    await withDuckDB(async (db) => {
      const t = (await sniffedCsv(db, markers, ['flag', 'yes/no', 'day']))!;
      await expect(db.run(`CREATE TEMP TABLE t AS FROM ${t.plain}`)).rejects.toThrow();
    });
    // NaN written out in a double column only: missing either way.
    const nan = csv(
      'nan.csv',
      ['v', 'w'],
      Array.from({ length: 500 }, (_, i) => [i % 9 === 0 ? 'NaN' : String(i / 4), i % 7 === 0 ? 'nan' : String(i % 13)]),
    );
    await sameAsBefore(nan);
    const v = (await loadDriftDataset(nan, 'reference')).columns['v'] as { missing: number };
    expect(v.missing).toBe(56);
  });

  it('reads another delimiter and a header of SQL-like names as the sniffer finds them', async () => {
    const file = csv(
      'semi.csv',
      ["b'); DROP TABLE x; --", 'c}: VARCHAR', 'd'],
      Array.from({ length: 400 }, (_, i) => [String(i % 17), i % 3 ? 'x;y' : 'NA', (i / 8).toFixed(3)]),
      ';',
    );
    await sameAsBefore(file);
    const reader = await withDuckDB((db) => sniffedCsv(db, file));
    expect(reader?.columns.map((c) => c.name)).toEqual(["b'); DROP TABLE x; --", 'c}: VARCHAR', 'd']);
    expect(reader?.reader).toContain("delim=';'");
    // Both sides at once, the hostile names intact.
    const [r, c] = await loadDriftPair({ file }, { file });
    expect(r.columns["b'); DROP TABLE x; --"]).toEqual(c.columns["b'); DROP TABLE x; --"]);
    expect((r.columns['c}: VARCHAR'] as { labels: string[] }).labels).toEqual(['x;y']);
  });
});
