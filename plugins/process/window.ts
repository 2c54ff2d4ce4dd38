import { z } from 'zod';
import { ident, withDuckDB } from '../../adapters/duckdb.js';
import { PipelineError } from '../../engine/errors.js';
import type { ArtifactRef } from '../../engine/types.js';
import { datasetFile, describe, isNumericType, view } from '../../lib/dataset.js';
import { buildWindows, type LongTable } from '../../lib/window-build.js';
import {
  CALENDAR_FEATURES,
  encodeWindows,
  FILL_RULES,
  FREQUENCIES,
  WINDOWS_MEDIA_TYPE,
  type WindowSet,
  type WindowState,
} from '../../lib/windows.js';
import { definePlugin, type IoKind, type StepContext } from '../sdk.js';

const DEFAULT_SEASON: Record<(typeof FREQUENCIES)[number], number> = { hour: 24, day: 7, week: 52, month: 12, quarter: 4, year: 1 };
const REPORTED = 5;

const params = z
  .object({
    /** The time column (DATE, TIMESTAMP, or text DuckDB casts to a timestamp). */
    timeColumn: z.string().min(1),
    /** The series id column; leave it out for a table of one series. */
    seriesColumn: z.string().min(1).optional(),
    target: z.string().min(1),
    /** Numeric columns observed with the target (inputs of the lookback only). */
    covariates: z.array(z.string().min(1)).default([]),
    /** Numeric columns known in advance (inputs of the lookback and features of each horizon step). */
    known: z.array(z.string().min(1)).default([]),
    frequency: z.enum(FREQUENCIES),
    lookback: z.number().int().min(1).max(10_000),
    horizon: z.number().int().min(1).max(10_000),
    /** Periods between the origins of train windows. */
    stride: z.number().int().min(1).default(1),
    /** Periods between the origins of validation, test and fold test windows. */
    evalStride: z.number().int().min(1).default(1),
    /** The seasonal period in steps; default by frequency (day 7, month 12, hour 24, week 52, quarter 4). */
    season: z.number().int().min(1).max(10_000).optional(),
    /** The last `testSteps` periods of the table are forecast by the test windows. */
    testSteps: z.number().int().min(1),
    /** The `validationSteps` periods before the test block are forecast by the validation windows (0: none). */
    validationSteps: z.number().int().min(0).default(0),
    /** Walk-forward folds: fold k fits on everything before its block and tests on the block. */
    folds: z.number().int().min(1).max(50).optional(),
    /** Periods in each fold's test block (default testSteps). */
    foldSteps: z.number().int().min(1).optional(),
    /** The last fold's block ends right before the test block (default), so a search on the folds never sees test; false: at the table's end (the last fold tests on the test block). */
    foldsBeforeTest: z.boolean().default(true),
    /** How missing values (gaps in the time index, nulls) are filled: the train part's median of the series, the previous value, 0, a straight line; none leaves NaN. */
    fill: z.enum(FILL_RULES).default('none'),
    calendar: z.array(z.enum(CALENDAR_FEATURES)).default([]),
    /** Dates (YYYY-MM-DD) for the `holiday` calendar feature. */
    holidays: z.array(z.string().regex(/^\d{4}-\d{2}-\d{2}$/)).default([]),
    /** Drop windows with a missing target in their lookback or horizon after filling (keep: NaN stays in x and y). */
    incomplete: z.enum(['drop', 'keep']).default('drop'),
    /** Fail on any gap or duplicate in the time index instead of reporting (and filling) it. */
    strict: z.boolean().default(false),
  })
  .strict()
  .refine((p) => !p.calendar.includes('holiday') || p.holidays.length > 0, {
    message: 'the holiday feature needs holidays: [YYYY-MM-DD, ...]',
    path: ['holidays'],
  });

type Params = z.infer<typeof params>;

async function putWindows(ctx: StepContext, set: WindowSet, name: string): Promise<ArtifactRef> {
  return ctx.store.put(encodeWindows(set), { name: `${name}.windows`, mediaType: WINDOWS_MEDIA_TYPE });
}

async function putState(ctx: StepContext, state: WindowState, name: string): Promise<ArtifactRef> {
  return ctx.store.put(JSON.stringify(state, null, 2), { name, mediaType: 'application/json' });
}

/** Reads the long table's columns through DuckDB (names quoted, nothing spliced but identifiers). */
async function readTable(file: string, p: Params): Promise<LongTable> {
  return withDuckDB(async (db) => {
    await view(db, 'raw', file);
    const columns = await describe(db, 'raw');
    const typeOf = new Map(columns.map((c) => [c.name, c.type]));
    const wanted = [p.timeColumn, p.target, ...(p.seriesColumn ? [p.seriesColumn] : []), ...p.covariates, ...p.known];
    for (const c of wanted) {
      if (!typeOf.has(c)) {
        throw new PipelineError(
          'PLUGIN_PARAMS',
          `process.window: the dataset has no column '${c}'. Columns: ${columns.map((x) => x.name).join(', ')}.`,
        );
      }
    }
    for (const c of [p.target, ...p.covariates, ...p.known]) {
      if (!isNumericType(typeOf.get(c)!)) {
        throw new PipelineError('DATA_INVALID', `process.window: column '${c}' is ${typeOf.get(c)}, not numeric.`, {
          hint: 'Cast it in an ingest.file columns: entry, or leave it out of target/covariates/known.',
        });
      }
    }
    const timeType = typeOf.get(p.timeColumn)!;
    const t = ident(p.timeColumn);
    const timeSql = timeType.startsWith('TIMESTAMP WITH TIME ZONE') ? `epoch_ms(${t})` : `epoch_ms(CAST(${t} AS TIMESTAMP))`;
    const sid = p.seriesColumn ? `CAST(${ident(p.seriesColumn)} AS VARCHAR)` : `'all'`;
    const [nulls] = await db.rows<{ n: number }>(`SELECT count(*) FILTER (WHERE ${sid} IS NULL) AS n FROM raw`);
    if (Number(nulls?.n) > 0) {
      throw new PipelineError('DATA_INVALID', `process.window: ${nulls!.n} rows have no series id ('${p.seriesColumn}').`);
    }
    const ids = (await db.rows<{ id: string }>(`SELECT DISTINCT ${sid} AS id FROM raw ORDER BY id`)).map((r) => r.id);
    const [{ n } = { n: 0 }] = await db.rows<{ n: number }>('SELECT count(*) AS n FROM raw');
    const numeric = [p.target, ...p.covariates, ...p.known].map((c) => `CAST(${ident(c)} AS DOUBLE)`);
    let result;
    try {
      result = await db.typedColumns(
        `SELECT (dense_rank() OVER (ORDER BY ${sid}) - 1)::INTEGER, CAST(${timeSql} AS DOUBLE), ${numeric.join(', ')}
         FROM (SELECT row_number() OVER () AS __rid, * FROM raw) ORDER BY __rid`,
        Number(n),
      );
    } catch (e) {
      throw new PipelineError(
        'DATA_INVALID',
        `process.window: the time column '${p.timeColumn}' (${timeType}) does not read as timestamps: ${(e as Error).message}`,
        {
          hint: 'Give dates or timestamps (YYYY-MM-DD, YYYY-MM-DD HH:MM:SS), or cast the column in ingest.file columns:.',
        },
      );
    }
    const [series, time, target, ...rest] = result.columns as [Int32Array, Float64Array, Float64Array, ...Float64Array[]];
    return {
      seriesIds: ids,
      series,
      time,
      target,
      covariates: p.covariates.map((name, i) => ({ name, values: rest[i]! })),
      known: p.known.map((name, i) => ({ name, values: rest[p.covariates.length + i]! })),
    };
  });
}

/**
 * process.window — from a long table (series id, time, target, covariates) to forecasting windows
 * (lib/windows.ts `mlpipe.windows/1`): `lookback` periods of inputs (the series-scaled target, the
 * scaled covariates, calendar features) and `horizon` periods of targets and known-future features
 * per window. The time index is corrected to the declared frequency (times snapped to the start of
 * their period); gaps and duplicates are found, reported in `counts` and the state (duplicates: the
 * first row is kept), and missing values filled by `fill`. The newest `testSteps` periods are the
 * test block, the `validationSteps` before them validation; scaling (per series) and median fill
 * values are fitted on the periods before those only. With `folds`, also walk-forward folds, each
 * fitted on what precedes its test block: [{ train, test, state }, ...]; their blocks end before the
 * test block unless `foldsBeforeTest: false`.
 */
export const window = definePlugin({
  name: 'process.window',
  version: '1',
  description:
    'Forecasting windows from a long time-series table: lookback/horizon/stride, per-series scaling, calendar features, gaps and duplicates, walk-forward folds.',
  params,
  inputs: { dataset: 'dataset' },
  outputs: (p): Record<string, IoKind> => ({
    train: 'artifact',
    test: 'artifact',
    ...(p.validationSteps > 0 ? { validation: 'artifact' } : {}),
    ...(p.folds ? { folds: 'json' } : {}),
    state: 'artifact',
    counts: 'json',
  }),
  async run(ctx, p, inputs) {
    const table = await readTable(await datasetFile(ctx, inputs, 'dataset'), p);
    const built = buildWindows(table, {
      timeColumn: p.timeColumn,
      seriesColumn: p.seriesColumn ?? null,
      targetColumn: p.target,
      frequency: p.frequency,
      lookback: p.lookback,
      horizon: p.horizon,
      stride: p.stride,
      evalStride: p.evalStride,
      season: p.season ?? DEFAULT_SEASON[p.frequency],
      testSteps: p.testSteps,
      validationSteps: p.validationSteps,
      folds: p.folds,
      foldSteps: p.foldSteps,
      foldsBeforeTest: p.foldsBeforeTest,
      fill: p.fill,
      calendar: p.calendar,
      holidays: p.holidays,
      dropIncomplete: p.incomplete === 'drop',
      covariateNames: p.covariates,
      knownNames: p.known,
    });
    const { gaps, duplicates } = built.state;
    if (p.strict && (gaps.length > 0 || duplicates.length > 0)) {
      const shown = [
        ...gaps.slice(0, REPORTED).map((g) => `gap in '${g.series}': ${g.steps} ${p.frequency}(s) missing from ${g.from}`),
        ...duplicates.slice(0, REPORTED).map((d) => `duplicate in '${d.series}': ${d.rows} rows at ${d.time}`),
      ];
      throw new PipelineError(
        'DATA_INVALID',
        `process.window: the time index has ${gaps.length} gaps and ${duplicates.length} duplicated times:\n${shown.map((s) => `  - ${s}`).join('\n')}`,
        {
          hint: 'Fix the table, or set strict: false to keep the first of duplicates and fill gaps by the fill rule.',
          details: { gaps: gaps.length, duplicates: duplicates.length },
        },
      );
    }
    if (gaps.length || duplicates.length || built.state.snapped) {
      ctx.logger.warn(
        { gaps: gaps.length, duplicates: duplicates.length, snapped: built.state.snapped, filled: built.state.filled, fill: p.fill },
        'the time index was corrected: see counts and the state',
      );
    }
    const out: Record<string, unknown> = {
      train: await putWindows(ctx, built.train, 'train'),
      test: await putWindows(ctx, built.test, 'test'),
    };
    if (built.validation) out['validation'] = await putWindows(ctx, built.validation, 'validation');
    if (built.folds) {
      const folds: { train: ArtifactRef; test: ArtifactRef; state: ArtifactRef }[] = [];
      for (const [i, f] of built.folds.entries()) {
        folds.push({
          train: await putWindows(ctx, f.train, `fold${i + 1}-train`),
          test: await putWindows(ctx, f.test, `fold${i + 1}-test`),
          state: await putState(ctx, f.state, `fold${i + 1}-window-state.json`),
        });
      }
      out['folds'] = folds;
    }
    out['state'] = await putState(ctx, built.state, 'window-state.json');
    out['counts'] = {
      series: built.state.seriesIds.length,
      train: built.train.count,
      ...(built.validation ? { validation: built.validation.count } : {}),
      test: built.test.count,
      ...(built.folds ? { folds: built.folds.map((f) => ({ train: f.train.count, test: f.test.count })) } : {}),
      gaps: gaps.length,
      missingPeriods: gaps.reduce((a, g) => a + g.steps, 0),
      duplicates: duplicates.length,
      snapped: built.state.snapped,
      filled: built.state.filled,
      inputs: built.state.inputs,
      future: built.state.future,
    };
    return out;
  },
});
