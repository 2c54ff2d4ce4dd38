/**
 * The data plugins with real DuckDB and a real local artifact store, called through a StepContext.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { sqlString, withDuckDB } from '../../adapters/duckdb.js';
import type { ArtifactRef } from '../../engine/types.js';
import { ingestFile, sniffedCsvReader } from '../../plugins/ingest/file.js';
import { hashFile } from '../../adapters/local-store.js';
import { split } from '../../plugins/process/split.js';
import { sql } from '../../plugins/process/sql.js';
import { applyOpSql, applyTransformSql, type FittedTransform } from '../../lib/fitted-transform.js';
import { applyTransform, transform } from '../../plugins/process/transform.js';
import { validateExpectations } from '../../plugins/validate/expectations.js';
import { REPO_ROOT } from './paths.js';
import { failure, runPlugin, testContext } from './step-context.js';

const dir = mkdtempSync(join(tmpdir(), 'mlpipe-data-'));
function file(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

async function rows(ctx: ReturnType<typeof testContext>, ref: unknown): Promise<Record<string, unknown>[]> {
  const path = await ctx.store.getFile(ref as ArtifactRef);
  return withDuckDB((db) => db.rows(`SELECT * FROM read_parquet('${path}')`));
}

const HOUSING = join(REPO_ROOT, 'pipelines', 'data', 'california-housing.csv');

describe('ingest.file', () => {
  it('reads the housing CSV into a Parquet dataset with inferred types', async () => {
    const ctx = testContext();
    const out = await runPlugin(ingestFile, ctx, { path: HOUSING });
    expect(out['rows']).toBe(20640);
    expect(out['badRows']).toBe(0);
    expect(out['columns']).toContainEqual({ name: 'median_house_value', type: 'DOUBLE' });
    expect(out['columns']).toContainEqual({ name: 'ocean_proximity', type: 'VARCHAR' });
    expect(out['dataset']).toMatchObject({ mediaType: 'application/vnd.apache.parquet', name: 'dataset.parquet' });
    const again = await runPlugin(ingestFile, testContext(), { path: HOUSING });
    expect((again['dataset'] as ArtifactRef).sha256).toBe((out['dataset'] as ArtifactRef).sha256);
  });

  it('reads JSON lines and Parquet, from a path or an artifact input', async () => {
    const ctx = testContext();
    const jsonl = await runPlugin(ingestFile, ctx, { path: file('a.jsonl', '{"x": 1, "y": "a"}\n{"x": 2, "y": "b"}\n') });
    expect(await rows(ctx, jsonl['dataset'])).toEqual([
      { x: 1, y: 'a' },
      { x: 2, y: 'b' },
    ]);
    const parquet = await runPlugin(ingestFile, ctx, { format: 'parquet' }, { source: jsonl['dataset'] });
    expect(parquet['rows']).toBe(2);
    const csvRef = await ctx.store.put('a;b\n1;2\n', { name: 'semi.csv', mediaType: 'text/csv' });
    const fromArtifact = await runPlugin(ingestFile, ctx, { csv: { delimiter: ';' } }, { source: csvRef });
    expect(await rows(ctx, fromArtifact['dataset'])).toEqual([{ a: 1, b: 2 }]);
  });

  it('reports malformed rows with file, line and column, or skips and counts them', async () => {
    const bad = file('malformed.csv', 'a,b,c\n1,2,3\n4,5\n6,7,8\n9,10,11,12\n');
    const e = await failure(runPlugin(ingestFile, testContext(dir), { path: 'malformed.csv' }));
    expect(e.code).toBe('DATA_INVALID');
    expect(e.retryable).toBe(false);
    expect(e.message).toContain('malformed.csv: 2 malformed rows');
    expect(e.message).toContain("line 3, column 'c': missing columns — Expected Number of Columns: 3 Found: 2");
    expect(e.message).toContain('line 5');
    const skipped = await runPlugin(ingestFile, testContext(), { path: bad, onBadRows: 'skip' });
    expect(skipped).toMatchObject({ rows: 2, badRows: 2 });
  });

  it('rejects values that do not convert to a pinned column type, naming line and column', async () => {
    file('text.csv', 'price,rooms\n100,3\nabc,4\n');
    const e = await failure(runPlugin(ingestFile, testContext(dir), { path: 'text.csv', columns: { price: 'DOUBLE' } }));
    expect(e.message).toContain("line 3, column 'price'");
    expect(e.message).toContain('abc');
  });

  it('rejects an empty file, a header-only file and a missing file', async () => {
    file('empty.csv', '');
    expect((await failure(runPlugin(ingestFile, testContext(dir), { path: 'empty.csv' }))).message).toBe('empty.csv: the file is empty.');
    file('header.csv', 'a,b\n');
    expect((await failure(runPlugin(ingestFile, testContext(dir), { path: 'header.csv' }))).message).toContain(
      'header.csv: 0 data rows; at least 1 expected',
    );
    expect((await failure(runPlugin(ingestFile, testContext(dir), { path: 'nope.csv' }))).code).toBe('PLUGIN_PARAMS');
  });
});

describe('ingest.file reads a CSV sniffed once', () => {
  // The file, the step's params, and the read_csv options those params gave before (DuckDB detecting the rest).
  const cases: [string, string, Record<string, unknown>, string][] = [
    ['housing', HOUSING, {}, 'header=true'],
    [
      'semicolons, quoted fields, nulls',
      'a;b;c\n1;"x; y";2.5\n2;"say ""hi""";\n3;;NA\n',
      { csv: { delimiter: ';', nullValues: ['NA', ''] } },
      "header=true, delim=';', nullstr=['NA', '']",
    ],
    [
      'dates, timestamps, booleans',
      'd,t,ok\n03/12/2026,2026-12-03 10:11:12,true\n31/01/2025,2025-01-31 00:00:01,false\n',
      {},
      'header=true',
    ],
    [
      'pinned types',
      'id,price,label\n1,10,a\n2,20.5,b\n',
      { columns: { id: 'BIGINT', price: 'DOUBLE' } },
      "header=true, types={'id': 'BIGINT', 'price': 'DOUBLE'}",
    ],
    ['no header, CRLF', '1,a\r\n2,b\r\n3,c\r\n', { csv: { header: false } }, 'header=false'],
  ];
  it.each(cases)('%s: the same Parquet bytes as letting read_csv detect everything', async (name, text, params, before) => {
    const path = text === HOUSING ? HOUSING : file(`sniff-${name.replace(/\W+/g, '-')}.csv`, text);
    const ctx = testContext();
    const out = await runPlugin(ingestFile, ctx, { path, ...params });
    const expected = join(dir, `sniff-${name.replace(/\W+/g, '-')}.parquet`);
    const reader = await withDuckDB(async (db) => {
      await db.run(
        `COPY (\nSELECT * FROM read_csv(${sqlString(path)}, ${before}, store_rejects=true, strict_mode=true)\n) TO ${sqlString(expected)} (FORMAT parquet, COMPRESSION snappy, USE_TMP_FILE false)`,
      );
      return sniffedCsvReader(db, ingestFile.params.parse({ path, ...params }), path);
    });
    expect(reader).toContain('auto_detect=false');
    expect((out['dataset'] as ArtifactRef).sha256).toBe(await hashFile(expected));
  });
});

describe('validate.expectations', () => {
  async function dataset(text: string) {
    const ctx = testContext();
    const out = await runPlugin(ingestFile, ctx, { path: file(`v${Math.random()}.csv`, text) });
    return { ctx, dataset: out['dataset'] };
  }

  it('passes the housing data against the pipeline expectations and writes a report', async () => {
    const ctx = testContext();
    const { dataset: ds } = { dataset: (await runPlugin(ingestFile, ctx, { path: HOUSING }))['dataset'] };
    const out = await runPlugin(
      validateExpectations,
      ctx,
      {
        rows: { min: 20000 },
        columns: {
          total_bedrooms: { type: 'number', maxNullShare: 0.05 },
          ocean_proximity: { allowed: ['<1H OCEAN', 'INLAND', 'ISLAND', 'NEAR BAY', 'NEAR OCEAN'] },
        },
      },
      { dataset: ds },
    );
    expect(out).toMatchObject({ passed: true, violations: 0 });
    expect(JSON.parse((await ctx.store.get(out['report'] as ArtifactRef)).toString())).toEqual({
      passed: true,
      rows: 20640,
      violations: [],
    });
  });

  it('reports every violation with column, count and the first offending row', async () => {
    const { ctx, dataset: ds } = await dataset('price,rooms,kind,empty\n100,3,a,\nabc,4,b,\n300,-1,zzz,\n,5,a,\n');
    const e = await failure(
      runPlugin(
        validateExpectations,
        ctx,
        {
          rows: { min: 10 },
          columns: {
            target: {},
            price: { type: 'number', maxNullShare: 0 },
            rooms: { min: 0 },
            kind: { allowed: ['a', 'b'] },
            empty: {},
          },
        },
        { dataset: ds },
      ),
    );
    expect(e.code).toBe('DATA_INVALID');
    const text = e.message;
    expect(text).toContain('Dataset failed 7 expectations (4 rows)');
    expect(text).toContain('dataset: 4 rows; at least 10 expected');
    expect(text).toContain("column 'target': column is missing.");
    expect(text).toContain("column 'price': 25.0% null (1 of 4); at most 0% allowed");
    expect(text).toContain(`column 'price': 1 value is not a number (first at data row 2: "abc"); column type is VARCHAR`);
    expect(text).toContain("column 'rooms': 1 value below 0 (first at data row 3: -1)");
    expect(text).toContain(`column 'kind': 1 value is not allowed: "zzz" (first at data row 3)`);
    expect(text).toContain("column 'empty': column is entirely null (4 rows)");
  });

  it('counts NaN and infinities in number columns unless allowNonFinite, naming the first row', async () => {
    const { ctx, dataset: ds } = await dataset('price,ok,text\n1,1,1\nNaN,NaN,x\ninf,2,-inf\n4,-inf,4\n');
    const e = await failure(
      runPlugin(
        validateExpectations,
        ctx,
        { columns: { price: { type: 'number', maxNullShare: 0 }, ok: { type: 'number', allowNonFinite: true }, text: { type: 'number' } } },
        { dataset: ds },
      ),
    );
    expect(e.code).toBe('DATA_INVALID');
    expect(e.retryable).toBe(false);
    const text = e.message;
    expect(text).toContain('Dataset failed 4 expectations (4 rows)');
    expect(text).toContain("column 'price': 25.0% null (1 of 4); at most 0% allowed");
    expect(text).toContain(
      "column 'price': 2 values are NaN or infinite (first at data row 2: NaN); set allowNonFinite: true to accept them",
    );
    // Text that the rule says holds numbers: '-inf' converts to a number, but not a finite one.
    expect(text).toContain(`column 'text': 1 value is NaN or infinite (first at data row 3: "-inf")`);
    expect(text).toContain(`column 'text': 1 value is not a number (first at data row 2: "x")`);
    expect(text).not.toContain("column 'ok'");
    const report = JSON.parse(
      (
        await ctx.store.get(
          (await runPlugin(validateExpectations, ctx, { onFailure: 'warn', columns: { price: {} } }, { dataset: ds }))[
            'report'
          ] as ArtifactRef,
        )
      ).toString(),
    );
    expect(report.violations).toEqual([
      { column: 'price', check: 'nonFinite', message: expect.stringContaining('2 values are NaN or infinite (first at data row 2: NaN)') },
    ]);
  });

  it('warns instead of failing when asked to', async () => {
    const { ctx, dataset: ds } = await dataset('a\n1\n2\n');
    const out = await runPlugin(validateExpectations, ctx, { onFailure: 'warn', columns: { a: { max: 1 } } }, { dataset: ds });
    expect(out).toMatchObject({ passed: false, violations: 1 });
    expect(ctx.logs.find((l) => l.level === 'warn')?.message).toContain("column 'a': 1 value above 1 (first at data row 2: 2)");
  });
});

describe('process.split', () => {
  async function housing() {
    const ctx = testContext();
    return { ctx, dataset: (await runPlugin(ingestFile, ctx, { path: HOUSING }))['dataset'] };
  }

  it('random: exact shares, disjoint and complete, the same for the same seed, different for another', async () => {
    const { ctx, dataset: ds } = await housing();
    const a = await runPlugin(split, ctx, { test: 0.2, validation: 0.1, seed: 7 }, { dataset: ds });
    expect(a['counts']).toEqual({ train: 14448, validation: 2064, test: 4128 });
    const b = await runPlugin(split, ctx, { test: 0.2, validation: 0.1, seed: 7 }, { dataset: ds });
    expect((b['test'] as ArtifactRef).sha256).toBe((a['test'] as ArtifactRef).sha256);
    const c = await runPlugin(split, ctx, { test: 0.2, validation: 0.1, seed: 8 }, { dataset: ds });
    expect((c['test'] as ArtifactRef).sha256).not.toBe((a['test'] as ArtifactRef).sha256);
    const key = (r: Record<string, unknown>): string =>
      `${String(r['longitude'])},${String(r['latitude'])},${String(r['total_rooms'])},${String(r['population'])}`;
    const all = [...(await rows(ctx, a['train'])), ...(await rows(ctx, a['validation'])), ...(await rows(ctx, a['test']))].map(key);
    expect(all).toHaveLength(20640);
    expect(new Set(all).size).toBe(new Set((await rows(ctx, ds)).map(key)).size);
  });

  it('stratified: every class keeps its share in test', async () => {
    const { ctx, dataset: ds } = await housing();
    const out = await runPlugin(split, ctx, { method: 'stratified', stratifyBy: 'ocean_proximity', test: 0.25 }, { dataset: ds });
    const share = async (ref: unknown): Promise<Record<string, number>> => {
      const r = await rows(ctx, ref);
      const counts: Record<string, number> = {};
      for (const x of r) counts[String(x['ocean_proximity'])] = (counts[String(x['ocean_proximity'])] ?? 0) + 1 / r.length;
      return counts;
    };
    const whole = await share(ds);
    const test = await share(out['test']);
    for (const k of ['<1H OCEAN', 'INLAND', 'NEAR BAY', 'NEAR OCEAN']) expect(Math.abs(test[k]! - whole[k]!)).toBeLessThan(0.002);
  });

  it('time: the newest rows are the test set; walk-forward folds grow', async () => {
    const ctx = testContext();
    const lines = ['day,value', ...Array.from({ length: 100 }, (_, i) => `${100 - i},${i}`)];
    const ds = (await runPlugin(ingestFile, ctx, { path: file('t.csv', `${lines.join('\n')}\n`) }))['dataset'];
    const out = await runPlugin(split, ctx, { method: 'time', timeColumn: 'day', test: 0.2, folds: 3 }, { dataset: ds });
    const testDays = (await rows(ctx, out['test'])).map((r) => r['day'] as number);
    expect(Math.min(...testDays)).toBe(81);
    const folds = out['folds'] as { train: ArtifactRef; test: ArtifactRef }[];
    expect(folds).toHaveLength(3);
    const sizes = await Promise.all(folds.map(async (f) => [(await rows(ctx, f.train)).length, (await rows(ctx, f.test)).length]));
    expect(sizes).toEqual([
      [25, 25],
      [50, 25],
      [75, 25],
    ]);
    for (const f of folds) {
      const maxTrain = Math.max(...(await rows(ctx, f.train)).map((r) => r['day'] as number));
      const minTest = Math.min(...(await rows(ctx, f.test)).map((r) => r['day'] as number));
      expect(maxTrain).toBeLessThan(minTest);
    }
  });
});

describe('process.transform', () => {
  it('fits on train only and reapplies the same state to other data unchanged', async () => {
    const ctx = testContext();
    const ds = (await runPlugin(ingestFile, ctx, { path: HOUSING }))['dataset'];
    const parts = await runPlugin(split, ctx, { test: 0.2, seed: 1 }, { dataset: ds });
    const features = await runPlugin(
      sql,
      ctx,
      { sql: 'SELECT *, total_rooms / households AS rooms_per_household FROM input' },
      { input: parts['train'] },
    );
    const testFeatures = await runPlugin(
      sql,
      ctx,
      { sql: 'SELECT *, total_rooms / households AS rooms_per_household FROM input' },
      { input: parts['test'] },
    );
    const out = await runPlugin(
      transform,
      ctx,
      {
        exclude: ['median_house_value'],
        steps: [
          { op: 'impute', columns: ['total_bedrooms'], strategy: 'median' },
          { op: 'log', columns: ['total_rooms', 'rooms_per_household'] },
          { op: 'clip', columns: ['median_income'], quantiles: [0.01, 0.99] },
          { op: 'onehot', columns: ['ocean_proximity'] },
          { op: 'standardize', columns: 'numeric' },
        ],
      },
      { train: features['dataset'], test: testFeatures['dataset'] },
    );
    expect(out['validation']).toBeNull();
    const state = JSON.parse((await ctx.store.get(out['state'] as ArtifactRef)).toString()) as FittedTransform;
    expect(state.ops.find((o) => o.op === 'onehot')).toEqual({
      op: 'onehot',
      column: 'ocean_proximity',
      categories: ['<1H OCEAN', 'INLAND', 'ISLAND', 'NEAR BAY', 'NEAR OCEAN'],
    });
    expect(out['features']).toContain('ocean_proximity=INLAND');
    expect(out['features']).not.toContain('median_house_value');

    const train = await rows(ctx, out['train']);
    const mean = (k: string, r: Record<string, unknown>[]): number => r.reduce((a, x) => a + (x[k] as number), 0) / r.length;
    expect(Math.abs(mean('median_income', train))).toBeLessThan(1e-9);
    expect(train.every((r) => r['total_bedrooms'] !== null)).toBe(true);
    expect(mean('median_house_value', train)).toBeGreaterThan(100_000); // excluded: untouched
    // Standardized with train statistics, the test set's mean is near but not exactly zero.
    const test = await rows(ctx, out['test']);
    expect(test).toHaveLength(4128);
    expect(Math.abs(mean('median_income', test))).toBeGreaterThan(1e-6);

    const again = await runPlugin(applyTransform, ctx, {}, { dataset: testFeatures['dataset'], state: out['state'] });
    expect((again['dataset'] as ArtifactRef).sha256).toBe((out['test'] as ArtifactRef).sha256);
  });

  it('generates SQL from a fitted state (pure)', () => {
    expect(applyOpSql({ op: 'standardize', column: 'x', mean: 2, std: 4 }, ['x', 'y']).select).toBe('* REPLACE (("x" - 2) / 4 AS "x")');
    expect(applyOpSql({ op: 'onehot', column: 'k', categories: ['a', "b'c"] }, ['k', 'y'])).toEqual({
      select: `* EXCLUDE ("k"), CASE WHEN CAST("k" AS VARCHAR) = 'a' THEN 1.0 ELSE 0.0 END AS "k=a", CASE WHEN CAST("k" AS VARCHAR) = 'b''c' THEN 1.0 ELSE 0.0 END AS "k=b'c"`,
      columns: ['y', 'k=a', "k=b'c"],
    });
    const state: FittedTransform = {
      kind: 'mlpipe.transform',
      version: 1,
      exclude: [],
      ops: [
        { op: 'impute', column: 'x', value: 3 },
        { op: 'clip', column: 'x', min: null, max: 10 },
      ],
    };
    expect(applyTransformSql(state, 't', ['x'])).toBe(
      'SELECT * REPLACE (least("x", 10) AS "x") FROM (SELECT * REPLACE (coalesce("x", 3) AS "x") FROM (SELECT * FROM t))',
    );
    // In-place ops on different columns share one level; a second op on a column, or an op that adds columns, starts a new one.
    const wide: FittedTransform = {
      kind: 'mlpipe.transform',
      version: 1,
      exclude: [],
      ops: [
        { op: 'log', column: 'x', offset: 1 },
        { op: 'standardize', column: 'y', mean: 0, std: 2 },
        { op: 'standardize', column: 'x', mean: 1, std: 3 },
        { op: 'derive', name: 'z', expr: 'x + y' },
        { op: 'standardize', column: 'z', mean: 0, std: 1 },
      ],
    };
    expect(applyTransformSql(wide, 't', ['x', 'y'])).toBe(
      'SELECT * REPLACE (("z" - 0) / 1 AS "z") FROM (SELECT *, (("x"::DOUBLE + "y"::DOUBLE)) AS "z" FROM (' +
        'SELECT * REPLACE (("x" - 1) / 3 AS "x") FROM (SELECT * REPLACE (ln(greatest("x", 0) + 1) AS "x", ("y" - 0) / 2 AS "y") FROM (SELECT * FROM t))))',
    );
  });

  it('explains a missing column and a column that needs imputing first', async () => {
    const ctx = testContext();
    const ds = (await runPlugin(ingestFile, ctx, { path: file('n.csv', 'a,b\n1,\n2,3\n') }))['dataset'];
    expect((await failure(runPlugin(transform, ctx, { steps: [{ op: 'log', columns: ['c'] }] }, { train: ds }))).message).toContain(
      "no column 'c'. Columns: a, b",
    );
    const e = await failure(runPlugin(transform, ctx, { steps: [{ op: 'standardize', columns: ['b'] }] }, { train: ds }));
    expect(e.message).toContain("'b' has 1 nulls; impute it before standardize");
  });

  it('fits each step on the columns and types the steps before it made, and names the step whose SQL fails', async () => {
    const ctx = testContext();
    const ds = (await runPlugin(ingestFile, ctx, { path: file('t.csv', 'a,b\n1,2\n2,4\n3,9\n') }))['dataset'];
    const steps = [
      { op: 'derive' as const, name: 'c', expr: 'a + b' },
      // Reads the column the step before made; a string column that `standardize: numeric` leaves alone.
      { op: 'derive' as const, name: 'label', sql: "CASE WHEN c > 5 THEN 'big' ELSE 'small' END" },
      // A name that is taken: DuckDB names the new column a_1, and the next steps see that name.
      { op: 'derive' as const, name: 'a', sql: 'c * 10' },
      { op: 'onehot' as const, columns: ['label'] },
      { op: 'standardize' as const, columns: 'numeric' as const },
    ];
    const out = await runPlugin(transform, ctx, { steps }, { train: ds });
    expect(out['features']).toEqual(['a', 'b', 'c', 'a_1', 'label=big', 'label=small']);
    const state = JSON.parse((await ctx.store.get(out['state'] as ArtifactRef)).toString('utf8')) as FittedTransform;
    expect(state.ops.filter((o) => o.op === 'standardize').map((o) => (o as { column: string }).column)).toEqual([
      'a',
      'b',
      'c',
      'a_1',
      'label=big',
      'label=small',
    ]);
    const got = await rows(ctx, out['train']);
    expect(got).toHaveLength(3);
    expect(Math.abs(got.reduce((sum, r) => sum + Number(r['a_1']), 0))).toBeLessThan(1e-9);
    const bad = [...steps.slice(0, 2), { op: 'derive' as const, name: 'd', sql: 'nope + 1' }, ...steps.slice(3)];
    const e = await failure(runPlugin(transform, ctx, { steps: bad }, { train: ds }));
    expect(e.code).toBe('DATA_INVALID');
    expect(e.message).toMatch(/^process\.transform \(derive d\): .*nope/);
  });
});

describe('process.sql', () => {
  it('joins named inputs and reports a bad query', async () => {
    const ctx = testContext();
    const a = (await runPlugin(ingestFile, ctx, { path: file('l.csv', 'id,x\n1,10\n2,20\n') }))['dataset'];
    const b = (await runPlugin(ingestFile, ctx, { path: file('r.csv', 'id,y\n1,a\n2,b\n') }))['dataset'];
    const out = await runPlugin(
      sql,
      ctx,
      { tables: ['l', 'r'], sql: 'SELECT l.id, x, y FROM l JOIN r USING (id) ORDER BY id' },
      { l: a, r: b },
    );
    expect(await rows(ctx, out['dataset'])).toEqual([
      { id: 1, x: 10, y: 'a' },
      { id: 2, x: 20, y: 'b' },
    ]);
    const e = await failure(runPlugin(sql, ctx, { sql: 'SELECT nope FROM input' }, { input: a }));
    expect(e.code).toBe('DATA_INVALID');
    expect(e.message).toContain("process.sql (step 'step'): the query failed");
  });
});
