/**
 * Duck.scanDoubles: every chunk's DOUBLE vectors as they come (several chunks and a partial one),
 * NULLs marked in the validity mask, the row count; a column of another type refused; an error in
 * the callback thrown after the read-ahead fetch has ended.
 */
import { describe, expect, it } from 'vitest';
import { withDuckDB } from '../../adapters/duckdb.js';

const ROWS = 5_003;

describe('scanDoubles', () => {
  it('hands over every value and NULL in order, chunk by chunk', async () => {
    const seen: { a: number[]; b: (number | null)[]; chunks: number } = { a: [], b: [], chunks: 0 };
    const rows = await withDuckDB((db) =>
      db.scanDoubles(
        `SELECT i::DOUBLE / 4 AS a, CASE WHEN i % 7 = 0 THEN NULL ELSE -i::DOUBLE END AS b FROM range(${ROWS}) t(i)`,
        ([a, b], [va, vb], n) => {
          expect(a).toBeInstanceOf(Float64Array);
          expect(a!.length).toBe(n);
          // No NULL in a: no mask (or one with every bit set).
          if (va) for (let i = 0; i < n; i++) expect(va[i >>> 3]! & (1 << (i & 7))).not.toBe(0);
          for (let i = 0; i < n; i++) {
            seen.a.push(a![i]!);
            seen.b.push(vb && !(vb[i >>> 3]! & (1 << (i & 7))) ? null : b![i]!);
          }
          seen.chunks++;
        },
      ),
    );
    expect(rows).toBe(ROWS);
    expect(seen.chunks).toBeGreaterThan(2);
    expect(seen.a).toEqual(Array.from({ length: ROWS }, (_, i) => i / 4));
    expect(seen.b).toEqual(Array.from({ length: ROWS }, (_, i) => (i % 7 === 0 ? null : -i)));
  });

  it('refuses a column that is not DOUBLE, and throws what the callback throws', async () => {
    await withDuckDB(async (db) => {
      await expect(db.scanDoubles('SELECT 1::INTEGER AS x', () => undefined)).rejects.toThrow(/column 0 is INTEGER, not DOUBLE/);
      let calls = 0;
      await expect(
        db.scanDoubles(`SELECT i::DOUBLE FROM range(${ROWS}) t(i)`, async () => {
          calls++;
          await Promise.resolve();
          throw new Error('stop here');
        }),
      ).rejects.toThrow('stop here');
      expect(calls).toBe(1);
      // The session is still usable.
      expect(await db.rows('SELECT 42 AS x')).toEqual([{ x: 42 }]);
    });
  });
});
