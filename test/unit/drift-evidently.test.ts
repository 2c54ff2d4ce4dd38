/**
 * Fidelity to real Evidently: every case in test/fixtures/drift/evidently-cases.json was computed by
 * Evidently's legacy DataDriftPreset (see test/tools/evidently_fixtures.py). The same drift decision
 * on every column and for the dataset; scores within 1e-6 relative; K-S p-values on the exact path
 * within 1e-9 absolute; the same small distributions. CSV cases go through the loader (pandas'
 * typing of CSV text); error cases are ones Evidently refuses, and so must we; `expected_scale`
 * cases hold values near the float maximum, where Evidently overflows: the expected result is its
 * result on the same values times that power of two (every score is scale-invariant).
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { computeDrift, type ColumnValues, type Dataset, type DriftOptions } from '../../engine/drift/index.js';
import { PipelineError } from '../../engine/errors.js';
import { loadDriftDataset } from '../../lib/drift-data.js';
import { REPO_ROOT } from './paths.js';

type Raw = (number | string | null)[];
interface Case {
  name: string;
  options: Record<string, unknown>;
  types: Record<string, 'num' | 'cat'>;
  reference: Record<string, Raw>;
  current: Record<string, Raw>;
  csv?: { reference: string; current: string };
  error?: string;
  expected_scale?: number;
  expected: [
    { result: { drift_share: number; number_of_columns: number; number_of_drifted_columns: number; dataset_drift: boolean } },
    { result: { drift_by_columns: Record<string, Expected> } },
  ];
}
interface Expected {
  column_type: string;
  stattest_name: string;
  stattest_threshold: number;
  drift_score: number | null;
  drift_detected: boolean;
  current: { small_distribution: { x: (number | string)[]; y: number[] } };
  reference: { small_distribution: { x: (number | string)[]; y: number[] } };
}

const fixture = JSON.parse(
  readFileSync(join(REPO_ROOT, 'test', 'fixtures', 'drift', 'evidently-cases.json'), 'utf8').replace(/\bNaN\b/g, 'null'),
) as { generator: string; cases: Case[] };

function dataset(cols: Record<string, Raw>, types: Record<string, 'num' | 'cat'>): Dataset {
  const columns: Record<string, ColumnValues> = {};
  let rows = 0;
  for (const [name, raw] of Object.entries(cols)) {
    rows = raw.length;
    if (types[name] === 'num') {
      columns[name] = {
        type: 'num',
        values: Float64Array.from(raw, (v) => (v === null ? NaN : v === 'inf' ? Infinity : v === '-inf' ? -Infinity : (v as number))),
      };
    } else {
      const labels: string[] = [];
      const index = new Map<string, number>();
      const codes = Int32Array.from(raw, (v) => {
        if (v === null) return -1;
        const s = String(v);
        let k = index.get(s);
        if (k === undefined) {
          k = labels.length;
          index.set(s, k);
          labels.push(s);
        }
        return k;
      });
      columns[name] = { type: 'cat', codes, labels };
    }
  }
  return { rows, columns };
}

function options(o: Record<string, unknown>): DriftOptions {
  const map: Record<string, keyof DriftOptions> = {
    stattest: 'stattest',
    cat_stattest: 'catStattest',
    num_stattest: 'numStattest',
    per_column_stattest: 'perColumnStattest',
    stattest_threshold: 'threshold',
    cat_stattest_threshold: 'catThreshold',
    num_stattest_threshold: 'numThreshold',
    per_column_stattest_threshold: 'perColumnThreshold',
    drift_share: 'driftShare',
  };
  return Object.fromEntries(Object.entries(o).map(([k, v]) => [map[k]!, v])) as DriftOptions;
}

describe(`drift matches Evidently (${fixture.generator})`, () => {
  it(`has the fixture cases`, () => {
    expect(fixture.cases.length).toBeGreaterThanOrEqual(25);
  });
  const dir = mkdtempSync(join(tmpdir(), 'mlpipe-drift-fixtures-'));
  for (const c of fixture.cases) {
    it(c.name, async () => {
      let ref: Dataset;
      let cur: Dataset;
      if (c.csv) {
        writeFileSync(join(dir, `${c.name}-ref.csv`), c.csv.reference);
        writeFileSync(join(dir, `${c.name}-cur.csv`), c.csv.current);
        ref = await loadDriftDataset(join(dir, `${c.name}-ref.csv`), 'reference');
        cur = await loadDriftDataset(join(dir, `${c.name}-cur.csv`), 'current');
      } else {
        ref = dataset(c.reference, c.types);
        cur = dataset(c.current, c.types);
      }
      if (c.error) {
        // Evidently: "autodetected range of [-4.2, inf] is not finite".
        expect(c.error).toMatch(/is not finite/);
        const e = (() => {
          try {
            computeDrift(ref, cur, options(c.options));
          } catch (err) {
            return err;
          }
          throw new Error(`${c.name}: expected a failure like Evidently's ${c.error}`);
        })();
        expect(e).toBeInstanceOf(PipelineError);
        expect((e as PipelineError).code).toBe('DATA_INVALID');
        expect((e as PipelineError).message).toMatch(
          /^Column 'x' holds infinite values \(\d+ in the reference data, \d+ in the current data\) and no missing values/,
        );
        return;
      }
      const scale = c.expected_scale ?? 1;
      const r = computeDrift(ref, cur, options(c.options));
      const summary = c.expected[0].result;
      expect({ n: r.numberOfColumns, drifted: r.numberOfDriftedColumns, dataset: r.datasetDrift, share: r.driftShare }).toEqual({
        n: summary.number_of_columns,
        drifted: summary.number_of_drifted_columns,
        dataset: summary.dataset_drift,
        share: summary.drift_share,
      });
      const byColumn = c.expected[1].result.drift_by_columns;
      for (const col of r.columns) {
        const e = byColumn[col.column_name]!;
        const where = `${c.name}/${col.column_name}`;
        expect(col.column_type, where).toBe(e.column_type);
        expect(col.stattest_name, where).toBe(e.stattest_name);
        expect(col.stattest_threshold, where).toBe(e.stattest_threshold);
        expect(col.drift_detected, where).toBe(e.drift_detected);
        if (e.drift_score === null) expect(col.drift_score, where).toBeNaN();
        else if (col.stattest === 'ks' && col.reference_rows <= 10_000 && col.current_rows <= 10_000)
          expect(Math.abs(col.drift_score - e.drift_score), where).toBeLessThanOrEqual(1e-9);
        else
          expect(Math.abs(col.drift_score - e.drift_score), `${where}: ${col.drift_score} vs ${e.drift_score}`).toBeLessThanOrEqual(
            1e-6 * Math.abs(e.drift_score) + 1e-300,
          );
        for (const side of ['reference', 'current'] as const) {
          const ours = col[side].small_distribution;
          const theirs = e[side].small_distribution;
          expect(ours.x.length, `${where} ${side} x`).toBe(theirs.x.length);
          ours.x.forEach((x0, i) => {
            if (typeof x0 !== 'number') return expect(x0, `${where} ${side} x[${i}]`).toBe(theirs.x[i]);
            const x = x0 * scale;
            expect(Math.abs(x - (theirs.x[i] as number)), `${where} ${side} x[${i}]`).toBeLessThanOrEqual(1e-9 * Math.max(1, Math.abs(x)));
          });
          ours.y.forEach((y0, i) => {
            const y = y0 / scale;
            expect(Math.abs(y - theirs.y[i]!), `${where} ${side} y[${i}]`).toBeLessThanOrEqual(1e-9 * Math.max(1, Math.abs(y)));
          });
        }
      }
    });
  }
});
