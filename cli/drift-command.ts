/** `mlpipe drift <reference> <current>`: Evidently-compatible drift between two data files. */
import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { Settings } from '../app/project.js';
import { STAT_TESTS, toEvidentlyJson, type StatTestName } from '../engine/drift/index.js';
import { renderDriftHtml } from '../engine/drift/html.js';
import { formatZodIssues, PipelineError } from '../engine/errors.js';
import { driftOptions, driftParams } from '../engine/drift/params.js';
import { loadDriftPair } from '../lib/drift-data.js';
import { computeDriftParallel } from '../lib/drift-parallel.js';

const out = (s: string): boolean => process.stdout.write(`${s}\n`);

function fmt(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  return Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-4 && v !== 0) ? v.toExponential(3) : Number(v.toPrecision(4)).toString();
}

export async function cmdDrift(argv: string[], settings: Settings): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      json: { type: 'string' },
      html: { type: 'string' },
      columns: { type: 'string' },
      stattest: { type: 'string' },
      threshold: { type: 'string' },
      'drift-share': { type: 'string' },
      column: { type: 'string', multiple: true },
      'fail-on-drift': { type: 'boolean' },
    },
  });
  const [refPath, curPath] = positionals;
  if (!refPath || !curPath)
    throw new PipelineError('INPUT_INVALID', 'mlpipe drift needs a reference and a current data file.', {
      hint: 'mlpipe drift reference.parquet current.csv [--json out.json] [--html out.html]',
    });
  // --column name:stattest[:threshold] for per-column overrides.
  const perColumn: Record<string, { stattest?: StatTestName; threshold?: number }> = {};
  for (const spec of values.column ?? []) {
    const [name, test, threshold] = spec.split(':');
    if (!name || (test && !(test in STAT_TESTS))) {
      throw new PipelineError('INPUT_INVALID', `--column '${spec}' is not name:test[:threshold].`, {
        hint: `Tests: ${Object.keys(STAT_TESTS).join(', ')}.`,
      });
    }
    perColumn[name] = { ...(test ? { stattest: test as StatTestName } : {}), ...(threshold ? { threshold: Number(threshold) } : {}) };
  }
  const parsed = driftParams.safeParse({
    ...(values.columns
      ? {
          columns: values.columns
            .split(',')
            .map((c) => c.trim())
            .filter(Boolean),
        }
      : {}),
    ...(values.stattest ? { stattest: values.stattest } : {}),
    ...(values.threshold ? { threshold: Number(values.threshold) } : {}),
    ...(values['drift-share'] ? { driftShare: Number(values['drift-share']) } : {}),
    perColumn,
  });
  if (!parsed.success) {
    throw new PipelineError('INPUT_INVALID', `Invalid option: ${formatZodIssues(parsed.error.issues, 'options')}.`, {
      hint: "Run 'mlpipe help' for the drift options.",
    });
  }
  const refFile = resolve(settings.projectDir, refPath);
  const curFile = resolve(settings.projectDir, curPath);
  const [reference, current] = await loadDriftPair({ file: refFile }, { file: curFile }, parsed.data.columns);
  const options = driftOptions(parsed.data);
  options.columns ??= Object.keys(reference.columns);
  // Large datasets: the columns are tested on every core (the result is computeDrift's).
  const result = await computeDriftParallel(reference, current, options);
  out(
    `${result.datasetDrift ? 'DATASET DRIFT' : 'no dataset drift'}: ${result.numberOfDriftedColumns} of ${result.numberOfColumns} columns drifted (share ${fmt(result.shareOfDriftedColumns)}, threshold ${fmt(result.driftShare)}); reference ${reference.rows} rows, current ${current.rows} rows`,
  );
  const width = Math.max(6, ...result.columns.map((c) => c.column_name.length));
  out(`${'column'.padEnd(width)}  type  ${'test'.padEnd(30)} ${'threshold'.padStart(9)} ${'score'.padStart(11)}  result`);
  for (const c of result.columns) {
    out(
      `${c.column_name.padEnd(width)}  ${c.column_type.padEnd(4)}  ${c.stattest_name.padEnd(30)} ${fmt(c.stattest_threshold).padStart(9)} ${fmt(c.drift_score).padStart(11)}  ${c.drift_detected ? 'DRIFT' : 'ok'}`,
    );
  }
  for (const s of [...reference.skipped, ...current.skipped.filter((x) => !reference.skipped.some((r) => r.name === x.name))])
    out(`(not tested: ${s.name}, ${s.type})`);
  if (values.json) {
    writeFileSync(resolve(values.json), toEvidentlyJson(result));
    out(`JSON report (Evidently format): ${resolve(values.json)}`);
  }
  if (values.html) {
    writeFileSync(resolve(values.html), renderDriftHtml(result, { reference: refPath, current: curPath }));
    out(`HTML report: ${resolve(values.html)}`);
  }
  return values['fail-on-drift'] && result.datasetDrift ? 1 : 0;
}
