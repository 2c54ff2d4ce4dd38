/**
 * Step SQL against hostile input: values from params/overrides are bound, never spliced; SQL text
 * takes no `${...}`; step SQL reads only its inputs (DuckDB's external access off and locked).
 */
import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { sqlString, withDuckDB } from '../../adapters/duckdb.js';
import { compilePipeline } from '../../engine/compile.js';
import { PipelineError, SpecErrors } from '../../engine/errors.js';
import type { ArtifactRef } from '../../engine/types.js';
import { exportOnnx } from '../../plugins/export/onnx.js';
import { ingestFile } from '../../plugins/ingest/file.js';
import { sql } from '../../plugins/process/sql.js';
import { applyTransform, transform } from '../../plugins/process/transform.js';
import { memoryConf, registry } from './fakes.js';
import { failure, runPlugin, testContext } from './step-context.js';

const dir = mkdtempSync(join(tmpdir(), 'mlpipe-sql-safety-'));
function file(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}
// A file outside every step's inputs: hostile SQL tries to read it.
const SECRET = file('secret.txt', 'the secret\n');

async function rows(ctx: ReturnType<typeof testContext>, ref: unknown): Promise<Record<string, unknown>[]> {
  const path = await ctx.store.getFile(ref as ArtifactRef);
  return withDuckDB((db) => db.rows(`SELECT * FROM read_parquet(${sqlString(path)})`));
}

async function dataset(ctx: ReturnType<typeof testContext>): Promise<ArtifactRef> {
  return (await runPlugin(ingestFile, ctx, { path: file('people.csv', 'id,name,age\n1,ann,31\n2,bob,45\n3,cy,27\n') }))[
    'dataset'
  ] as ArtifactRef;
}

describe('process.sql: bound parameters', () => {
  it('binds params as values: a quote-and-comment payload is data, not SQL', async () => {
    const ctx = testContext();
    const input = await dataset(ctx);
    const payload = "'; DROP TABLE input; --";
    const out = await runPlugin(
      sql,
      ctx,
      {
        sql: 'SELECT id, $tag AS tag, age >= $min AS adult FROM input WHERE name <> $name ORDER BY id',
        params: { tag: payload, min: 30, name: payload },
      },
      { input },
    );
    expect(out['rows']).toBe(3);
    expect(await rows(ctx, out['dataset'])).toEqual([
      { id: 1, tag: payload, adult: true },
      { id: 2, tag: payload, adult: true },
      { id: 3, tag: payload, adult: false },
    ]);
    // The payload as a filter value matches nothing, and input is still there to read.
    const same = await runPlugin(
      sql,
      ctx,
      { sql: 'SELECT count(*)::INT AS n FROM input WHERE name = $name', params: { name: payload } },
      { input },
    );
    expect(await rows(ctx, same['dataset'])).toEqual([{ n: 0 }]);
  });

  it('takes a column name as a bound param through COLUMNS([$col]), checked by DuckDB against the columns', async () => {
    const ctx = testContext();
    const input = await dataset(ctx);
    const q = 'SELECT id, COLUMNS([$col]) FROM input ORDER BY COLUMNS([$col]) DESC';
    const out = await runPlugin(sql, ctx, { sql: q, params: { col: 'age' } }, { input });
    expect(await rows(ctx, out['dataset'])).toEqual([
      { id: 2, age: 45 },
      { id: 1, age: 31 },
      { id: 3, age: 27 },
    ]);
    const e = await failure(runPlugin(sql, ctx, { sql: q, params: { col: 'age" FROM input; --' } }, { input }));
    expect(e.code).toBe('DATA_INVALID');
    expect(e.message).toContain('not found');
  });

  it('runs a PIVOT with its values listed, and says to list them when they are not', async () => {
    const ctx = testContext();
    const input = await dataset(ctx);
    const listed = await runPlugin(
      sql,
      ctx,
      { sql: "PIVOT (SELECT name, age FROM input) ON name IN ('ann', 'bob') USING sum(age)" },
      { input },
    );
    expect(listed['columns']).toEqual(
      expect.arrayContaining([expect.objectContaining({ name: 'ann' }), expect.objectContaining({ name: 'bob' })]),
    );
    const e = await failure(runPlugin(sql, ctx, { sql: 'PIVOT input ON name USING sum(age)' }, { input }));
    expect(e.hint).toContain("IN ('a', 'b')");
  });

  it('refuses a parameter the query uses but params lacks, and one it sets but the query does not use', async () => {
    const ctx = testContext();
    const input = await dataset(ctx);
    const missing = await failure(runPlugin(sql, ctx, { sql: 'SELECT * FROM input WHERE age > $min', params: {} }, { input }));
    expect(missing.code).toBe('DATA_INVALID');
    expect(missing.message).toContain('$min');
    expect(missing.hint).toContain('params:');
    const unused = await failure(runPlugin(sql, ctx, { sql: 'SELECT * FROM input', params: { mni: 3 } }, { input }));
    expect(unused.message).toContain('mni');
    expect(unused.hint).toContain('$mni');
  });
});

describe('process.sql: no file access from step SQL', () => {
  const outside = join(dir, 'written-by-sql.csv');
  const hostile: [string, RegExp][] = [
    [`SELECT * FROM read_text(${sqlString(SECRET)})`, /Cannot access file/],
    ["SELECT * FROM read_text('/etc/passwd')", /Cannot access file/],
    ["SELECT * FROM read_csv('/etc/hosts')", /Cannot access file/],
    ["SELECT * FROM glob('/*')", /Cannot access file/],
    [`SELECT * FROM read_blob(${sqlString(SECRET)})`, /Cannot access file/],
    ["SELECT * FROM 'https://example.com/data.csv'", /Cannot access file/],
    [`ATTACH ${sqlString(join(dir, 'x.db'))}`, /statement of kind ATTACH/],
    [`COPY (SELECT 1) TO ${sqlString(outside)}`, /Cannot access file/],
    ['INSTALL httpfs', /statement of kind LOAD/],
    ['LOAD httpfs', /statement of kind LOAD/],
    ['SET enable_external_access = true', /statement of kind SET/],
    ["PRAGMA profiling_output = '/tmp/x'", /statement of kind SET/],
    // Rewritten to a SELECT by DuckDB, it cannot be the query the result is written from.
    ['PRAGMA database_list', /Parser Error/],
    ['CREATE TABLE t AS SELECT 1', /statement of kind CREATE/],
    // A second statement smuggled after a `;`, and one that closes the COPY the result is written with.
    [`SELECT 1; COPY (SELECT 1) TO ${sqlString(outside)}`, /2 statements/],
    [`SELECT 1) TO ${sqlString(outside)}; SELECT (1`, /Parser Error: syntax error at or near "\)"/],
  ];
  for (const [query, expected] of hostile) {
    it(`refuses ${query.slice(0, 60)}`, async () => {
      const ctx = testContext();
      const input = await dataset(ctx);
      const e = await failure(runPlugin(sql, ctx, { sql: query }, { input }));
      expect(e.code).toBe('DATA_INVALID');
      expect(e.message).toMatch(expected);
      expect(e.message).toContain("process.sql (step 'step')");
      expect(e.hint).toBeTruthy();
      expect(existsSync(outside)).toBe(false);
    });
  }

  it('lets the pipeline allow folders (externalAccess: [dir]) or everything (externalAccess: true)', async () => {
    const ctx = testContext(dir);
    const input = await dataset(ctx);
    mkdirSync(join(dir, 'lookup'), { recursive: true });
    writeFileSync(join(dir, 'lookup', 'names.csv'), 'name,team\nann,red\nbob,blue\n');
    const q = `SELECT id, team FROM input JOIN read_csv(${sqlString(join(dir, 'lookup', 'names.csv'))}) USING (name) ORDER BY id`;
    const refused = await failure(runPlugin(sql, ctx, { sql: q }, { input }));
    expect(refused.hint).toContain('externalAccess');
    const allowed = await runPlugin(sql, ctx, { sql: q, externalAccess: ['lookup'] }, { input });
    expect(await rows(ctx, allowed['dataset'])).toEqual([
      { id: 1, team: 'red' },
      { id: 2, team: 'blue' },
    ]);
    // The folder only: the file beside it stays out of reach.
    const secret = `SELECT * FROM read_text(${sqlString(SECRET)})`;
    expect((await failure(runPlugin(sql, ctx, { sql: secret, externalAccess: ['lookup'] }, { input }))).message).toMatch(
      /Cannot access file/,
    );
    const climb = `SELECT * FROM read_text(${sqlString(join(dir, 'lookup') + '/../secret.txt')})`;
    expect((await failure(runPlugin(sql, ctx, { sql: climb, externalAccess: ['lookup'] }, { input }))).message).toMatch(
      /Cannot access file/,
    );
    const open = await runPlugin(sql, ctx, { sql: `SELECT content FROM read_text(${sqlString(SECRET)})`, externalAccess: true }, { input });
    expect(await rows(ctx, open['dataset'])).toEqual([{ content: 'the secret\n' }]);
  });
});

describe('derive SQL and fitted states', () => {
  it('runs derive SQL in process.transform without file access', async () => {
    const ctx = testContext();
    const train = await dataset(ctx);
    const ok = await runPlugin(transform, ctx, { steps: [{ op: 'derive', name: 'older', sql: 'age + 1' }] }, { train });
    expect((await rows(ctx, ok['train'])).map((r) => r['older'])).toEqual([32, 46, 28]);
    const snoop = { op: 'derive', name: 'x', sql: `(SELECT content FROM read_text(${sqlString(SECRET)}))` };
    const e = await failure(runPlugin(transform, ctx, { steps: [snoop] }, { train }));
    expect(e.code).toBe('DATA_INVALID');
    expect(e.message).toMatch(/process.transform \(derive x\): .*Cannot access file/);
    expect(e.hint).toContain('no files');
  });

  it('checks a state artifact before it becomes SQL, and runs its derive SQL without file access', async () => {
    const ctx = testContext();
    const data = await dataset(ctx);
    const state = (s: unknown) => ctx.store.put(JSON.stringify(s), { name: 'transform-state.json', mediaType: 'application/json' });
    const base = { kind: 'mlpipe.transform', version: 1, exclude: [] };
    // A number that is SQL text instead.
    const injected = await state({ ...base, ops: [{ op: 'standardize', column: 'age', mean: '0) AS age FROM src; SELECT (1', std: 1 }] });
    const bad = await failure(runPlugin(applyTransform, ctx, {}, { dataset: data, state: injected }));
    expect(bad.code).toBe('PLUGIN_INPUT');
    expect(bad.message).toContain('ops.0.mean');
    const notJson = await ctx.store.put('not json', { name: 'transform-state.json' });
    expect((await failure(runPlugin(applyTransform, ctx, {}, { dataset: data, state: notJson }))).code).toBe('PLUGIN_INPUT');
    const reads = await state({
      ...base,
      ops: [{ op: 'derive', name: 'x', sql: `(SELECT content FROM read_text(${sqlString(SECRET)}))` }],
    });
    const denied = await failure(runPlugin(applyTransform, ctx, {}, { dataset: data, state: reads }));
    expect(denied.code).toBe('DATA_INVALID');
    expect(denied.message).toMatch(/process.apply-transform: .*Cannot access file/);
    const fine = await state({ ...base, ops: [{ op: 'standardize', column: 'age', mean: 30, std: 10 }] });
    const out = await runPlugin(applyTransform, ctx, {}, { dataset: data, state: fine });
    expect((await rows(ctx, out['dataset'])).map((r) => r['age'])).toEqual([0.1, 1.5, -0.3]);
    const model = await ctx.store.put(JSON.stringify({ kind: 'mlpipe.tfjs-mlp' }), { name: 'model.json' });
    const onnx = await failure(runPlugin(exportOnnx, ctx, {}, { model, state: injected }));
    expect(onnx.code).toBe('PLUGIN_INPUT');
    expect(onnx.message).toContain("export.onnx: 'state' is not a fitted transform");
  });
});

describe('the DuckDB adapter', () => {
  it('runs one statement per call: nothing of a two-statement text runs', async () => {
    await withDuckDB(async (db) => {
      await expect(db.run('CREATE TABLE a AS SELECT 1 AS x; CREATE TABLE b AS SELECT 2 AS y')).rejects.toThrow(/2 statements/);
      await expect(db.rows('SELECT 1 FROM a')).rejects.toThrow(/a does not exist/);
      await expect(db.run('')).rejects.toThrow(/no statement/);
      expect(await db.inspect('SELECT $x AS v, $y AS w')).toEqual({ kind: 'SELECT', params: ['x', 'y'] });
      expect((await db.inspect('PRAGMA enable_profiling')).kind).toBe('PRAGMA');
    });
  });
});

describe('compile: no ${...} inside code params', () => {
  const conf = memoryConf({});
  const compile = (withYaml: string, uses = 'process.sql', overrides: string[] = []) =>
    compilePipeline({
      file: 'pipelines/t.yaml',
      text:
        'name: t\nparams:\n  who: ann\n  q: SELECT 1\nsteps:\n  src:\n    uses: util.echo\n    with: { values: { x: 1 } }\n' +
        `  s:\n    uses: ${uses}\n    needs: [src]\n` +
        `    inputs: { ${uses === 'process.sql' ? 'input' : 'train'}: "\${steps.src.outputs.x}" }\n    with:\n${withYaml}`,
      conf,
      catalog: registry,
      overrides,
    });
  const problems = (withYaml: string, uses?: string) => {
    try {
      compile(withYaml, uses);
    } catch (e) {
      const all = e instanceof SpecErrors ? e.problems : [e as PipelineError];
      // Nothing else is wrong with the pipeline: only the code-param check speaks.
      expect(all.map((p) => p.code)).toEqual(all.map(() => 'EXPR_IN_CODE'));
      return all;
    }
    return [];
  };

  it('refuses an expression in process.sql sql, whole or inside the text, with file and line', () => {
    const inside = problems(`      sql: "SELECT * FROM input WHERE name = '\${params.who}'"\n`);
    expect(inside).toHaveLength(1);
    expect(inside[0]!.message).toContain("'sql' is code");
    expect(inside[0]!.where).toMatchObject({ file: 'pipelines/t.yaml', line: 14, path: ['steps', 's', 'with', 'sql'] });
    expect(inside[0]!.hint).toContain('$name');
    expect(problems('      sql: "${params.q}"\n')).toHaveLength(1);
    // Nor may a run's input open file access.
    const access = problems('      sql: SELECT 1\n      externalAccess: ["${params.who}"]\n');
    expect(access.map((p) => p.where?.path)).toEqual([['steps', 's', 'with', 'externalAccess', 0]]);
    expect(access[0]!.hint).toContain('in the pipeline itself');
  });

  it('refuses an expression at, inside or above derive sql of process.transform', () => {
    const derive = problems('      steps:\n        - { op: derive, name: a, sql: "age + ${params.q}" }\n', 'process.transform');
    expect(derive.map((p) => p.where?.path)).toEqual([['steps', 's', 'with', 'steps', 0, 'sql']]);
    expect(problems('      steps: "${params.q}"\n', 'process.transform')).toHaveLength(1);
    // A formula or a name is data the plugin checks itself: allowed.
    expect(problems('      steps:\n        - { op: derive, name: "${params.who}", expr: "age + 1" }\n', 'process.transform')).toEqual([]);
  });

  it('accepts values bound through params:, and a hostile override stays a value', () => {
    const yaml = '      sql: SELECT * FROM input WHERE name = $who\n      params: { who: "${params.who}" }\n';
    const step = compile(yaml, 'process.sql', ['params.who="\'; DROP TABLE input; --"']).steps['s']!;
    expect(step.with).toEqual({ sql: 'SELECT * FROM input WHERE name = $who', params: { who: "'; DROP TABLE input; --" } });
  });
});
