/**
 * monitor.drift and `mlpipe drift` on real files (DuckDB, a real local store), and the bad inputs:
 * a column whose type differs between the datasets, a column empty after cleaning, columns
 * missing on one side, a test that does not apply.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { withDuckDB } from '../../adapters/duckdb.js';
import { compilePipeline } from '../../engine/compile.js';
import { computeDrift } from '../../engine/drift/index.js';
import { PipelineError, type SpecErrors } from '../../engine/errors.js';
import type { ArtifactRef } from '../../engine/types.js';
import { monitorDrift } from '../../plugins/monitor/drift.js';
import { loadDriftDataset } from '../../lib/drift-data.js';
import { REPO_ROOT } from './paths.js';
import { memoryConf, registry } from './fakes.js';
import { runPlugin, testContext } from './step-context.js';

const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'mlpipe-drift-'));
function csv(name: string, header: string[], rows: (string | number | null)[][]): string {
  const p = join(dir, name);
  writeFileSync(p, [header.join(','), ...rows.map((r) => r.map((v) => (v === null ? '' : String(v))).join(','))].join('\n') + '\n');
  return p;
}

const N = 400;
const ref = csv(
  'ref.csv',
  ['x', 'y', 'c'],
  Array.from({ length: N }, (_, i) => [Math.sin(i) * 10, i % 7, ['a', 'b', 'c'][i % 3]!]),
);
const same = csv(
  'same.csv',
  ['x', 'y', 'c'],
  Array.from({ length: N }, (_, i) => [Math.sin(i + 0.5) * 10, (i + 3) % 7, ['a', 'b', 'c'][(i + 1) % 3]!]),
);
const shifted = csv(
  'shifted.csv',
  ['x', 'y', 'c'],
  Array.from({ length: N }, (_, i) => [Math.sin(i) * 10 + 6, i % 5, ['a', 'b', 'c', 'd'][i % 4]!]),
);

describe('monitor.drift', () => {
  it('writes the Evidently JSON and the HTML report, returns the decision, and logs the scores', async () => {
    const ctx = testContext(REPO_ROOT);
    const reference = await ctx.store.putFile(ref, { name: 'ref.csv' });
    const current = await ctx.store.putFile(shifted, { name: 'cur.csv' });
    // The plugin reads Parquet artifacts in pipelines; a CSV path works the same through DuckDB.
    const out = await runPlugin(
      monitorDrift,
      ctx,
      { perColumn: { y: { stattest: 'psi', threshold: 0.2 } } },
      { reference: { ...reference, name: 'ref.csv' }, current: { ...current, name: 'cur.csv' } },
    );
    expect(out['datasetDrift']).toBe(true);
    expect(out['driftedColumns']).toEqual(['x', 'y', 'c']);
    const report = JSON.parse((await ctx.store.get(out['report'] as ArtifactRef)).toString()) as {
      metrics: { metric: string; result: Record<string, unknown> }[];
    };
    expect(report.metrics.map((m) => m.metric)).toEqual(['DatasetDriftMetric', 'DataDriftTable']);
    const table = report.metrics[1]!.result['drift_by_columns'] as Record<string, { stattest_name: string; stattest_threshold: number }>;
    expect(table['y']).toMatchObject({ stattest_name: 'PSI', stattest_threshold: 0.2 });
    expect(table['x']!.stattest_name).toBe('K-S p_value');
    const html = (await ctx.store.get(out['html'] as ArtifactRef)).toString();
    expect(html).toContain('Dataset drift detected');
    expect(ctx.series.find((s) => s.key === 'drift_share')?.value).toBe(1);
    expect(ctx.series.some((s) => s.key === 'drift_score.x')).toBe(true);
  });

  it('types CSV as pandas: a yes/no dataset ingested to Parquet (booleans) matches its raw CSV; int64 beyond 2^53 stays exact', async () => {
    const rows = Array.from({ length: 300 }, (_, i) => [['yes', 'no'][i % 2]!, i % 3 ? 'NA' : i, '2026-11-2' + (i % 4) + 'T10:00:00']);
    const raw = csv('yn.csv', ['yn', 'n', 'ts'], rows);
    const ctx = testContext(REPO_ROOT);
    const { ingestFile } = await import('../../plugins/ingest/file.js');
    const ingested = await ctx.store.getFile((await runPlugin(ingestFile, ctx, { path: raw }))['dataset'] as ArtifactRef);
    const parquet = await loadDriftDataset(ingested, 'reference', undefined, 'parquet');
    const text = await loadDriftDataset(raw, 'current');
    expect(parquet.columns['yn']).toMatchObject({ type: 'cat', boolean: true });
    expect(text.columns['yn']).toMatchObject({ type: 'cat', labels: ['no', 'yes'] }); // labels sorted (the dictionary DuckDB builds)
    // pandas: NA is missing (a numeric column), ISO timestamps are text.
    expect(text.columns['n']?.type).toBe('num');
    expect(text.columns['ts']).toMatchObject({
      type: 'cat',
      labels: ['2026-11-20T10:00:00', '2026-11-21T10:00:00', '2026-11-22T10:00:00', '2026-11-23T10:00:00'],
    });
    const r = computeDrift(parquet, text, { columns: ['yn'] });
    expect(r.columns[0]).toMatchObject({
      column_type: 'cat',
      drift_detected: false,
      drift_score: 1,
      current: { small_distribution: { x: [false, true], y: [150, 150] } },
    });
    const ts = computeDrift(text, text, { columns: ['ts'], perColumnStattest: { ts: 'chisquare' } });
    expect(ts.columns[0]).toMatchObject({ stattest_name: 'chi-square p_value', drift_detected: false });
    // 2^53 and 2^53 + 1 are one double: the exact values say every row moved.
    const big = computeDrift(
      await loadDriftDataset(
        csv(
          'big-ref.csv',
          ['id'],
          Array.from({ length: 300 }, () => ['9007199254740992']),
        ),
        'reference',
      ),
      await loadDriftDataset(
        csv(
          'big-cur.csv',
          ['id'],
          Array.from({ length: 300 }, () => ['9007199254740993']),
        ),
        'current',
      ),
    );
    expect(big.columns[0]).toMatchObject({ column_type: 'num', stattest_name: 'Z-test p_value', drift_score: 0, drift_detected: true });
  });

  it('finds no drift between samples of one distribution', async () => {
    const r = computeDrift(await loadDriftDataset(ref, 'reference'), await loadDriftDataset(same, 'current'));
    expect(r.datasetDrift).toBe(false);
  });
});

describe('drift bad input', () => {
  const expectDataError = async (p: Promise<unknown>, pattern: RegExp): Promise<void> => {
    const e = await p.then(
      () => undefined,
      (x: unknown) => x,
    );
    expect(e).toBeInstanceOf(PipelineError);
    expect((e as PipelineError).code).toBe('DATA_INVALID');
    expect((e as PipelineError).message).toMatch(pattern);
    expect((e as PipelineError).hint).toBeTruthy();
  };

  it('a column numeric on one side and text on the other', async () => {
    const text = csv(
      'text.csv',
      ['x', 'y', 'c'],
      Array.from({ length: 50 }, (_, i) => [`v${i}`, i % 7, 'a']),
    );
    await expectDataError(
      (async () => computeDrift(await loadDriftDataset(ref, 'reference'), await loadDriftDataset(text, 'current')))(),
      /Column 'x' is numeric in the reference data but categorical in the current data/,
    );
  });

  it('refuses a column with infinities and no missing values, naming it', async () => {
    const inf = csv('inf.csv', ['x'], [[1], [2], ['inf'], [4], ['-inf']]);
    await expectDataError(
      (async () => computeDrift(await loadDriftDataset(inf, 'reference'), await loadDriftDataset(ref, 'current'), { columns: ['x'] }))(),
      /Column 'x' holds infinite values \(2 in the reference data, 0 in the current data\) and no missing values/,
    );
  });

  it('a column empty after dropping missing values', async () => {
    const empty = join(dir, 'empty.parquet');
    await withDuckDB((db) =>
      db.run(
        `COPY (SELECT i::DOUBLE AS x, (CASE WHEN i % 2 = 0 THEN NULL ELSE 'nan' END)::DOUBLE AS y, 'a' AS c FROM range(50) t(i)) TO '${empty}' (FORMAT parquet)`,
      ),
    );
    await expectDataError(
      (async () => computeDrift(await loadDriftDataset(ref, 'reference'), await loadDriftDataset(empty, 'current')))(),
      /Column 'y' is empty in the current data after dropping missing values/,
    );
  });

  it('columns missing on one side', async () => {
    const fewer = csv('fewer.csv', ['x', 'z'], [[1, 2]]);
    await expectDataError(
      (async () => computeDrift(await loadDriftDataset(ref, 'reference'), await loadDriftDataset(fewer, 'current')))(),
      /missing in the current data: y, c/,
    );
  });

  it('the CLI: a clear message and exit 2; a test that does not apply; --fail-on-drift', { timeout: 60_000 }, async () => {
    const cli = (args: string[]) =>
      run(process.execPath, [join(REPO_ROOT, 'bin', 'mlpipe.mjs'), 'drift', ...args], { cwd: dir }).then(
        (r) => ({ code: 0, ...r }),
        (e: { code: number; stdout: string; stderr: string }) => e,
      );
    const fewer = csv('fewer2.csv', ['x'], [[1]]);
    const missing = await cli([ref, fewer]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/DATA_INVALID/);
    expect(missing.stderr).toMatch(/missing in the current data: y, c/);
    const wrongTest = await cli([ref, shifted, '--column', 'c:ks']);
    expect(wrongTest.code).toBe(2);
    expect(wrongTest.stderr).toMatch(/'ks' does not apply to column 'c', which is categorical/);
    const noFile = await cli([ref, join(dir, 'nope.csv')]);
    expect(noFile.code).toBe(2);
    expect(noFile.stderr).toMatch(/Cannot read the current data/);
    const drifted = await cli([ref, shifted, '--fail-on-drift', '--json', join(dir, 'out.json')]);
    expect(drifted.code).toBe(1);
    expect(drifted.stdout).toMatch(/DATASET DRIFT: 3 of 3 columns drifted/);
    expect(JSON.parse(readFileSync(join(dir, 'out.json'), 'utf8'))).toMatchObject({
      metrics: [{ metric: 'DatasetDriftMetric', result: { dataset_drift: true } }, {}],
    });
    const calm = await cli([ref, same, '--fail-on-drift']);
    expect(calm.code).toBe(0);
  });
});

describe('monitor: section', () => {
  const text = (monitor: string) =>
    `name: m\nparams: { recent: data/now.csv }\nmonitor:\n${monitor}\nsteps:\n  ingest:\n    uses: ingest.file\n    with:\n      path: data/ref.csv\n`;
  const compile = (t: string) => compilePipeline({ file: 'pipelines/m.yaml', text: t, conf: memoryConf({}), catalog: registry });

  it('compiles with expressions resolved and defaults filled in', () => {
    const p = compile(text('  current: ${params.recent}\n  reference: { step: ingest }\n  drift: { driftShare: 0.3 }'));
    expect(p.monitor).toEqual({
      current: 'data/now.csv',
      reference: { step: 'ingest', output: 'dataset' },
      drift: { driftShare: 0.3, perColumn: {} },
      retrain: true,
    });
  });

  it('reports a wrong step, a wrong output and an unknown test at their lines', () => {
    const problems = (t: string): { code: string; line?: number; message: string }[] => {
      try {
        compile(t);
      } catch (e) {
        return (e as SpecErrors).problems.map((p) => ({ code: p.code, line: p.where?.line, message: p.message }));
      }
      throw new Error('expected a compile error');
    };
    expect(problems(text('  current: x.csv\n  reference: { step: ingset }'))[0]).toMatchObject({
      line: 5,
      message: expect.stringMatching(/there is no step 'ingset'.*Did you mean 'ingest'/) as string,
    });
    expect(problems(text('  current: x.csv\n  reference: { step: ingest, output: model }'))[0]).toMatchObject({
      message: expect.stringMatching(/has no output 'model'/) as string,
    });
    expect(problems(text('  current: x.csv\n  reference: { step: ingest }\n  drift: { stattest: chi2 }'))[0]).toMatchObject({ line: 6 });
  });
});
