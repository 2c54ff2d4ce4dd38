/**
 * Forecast quality side by side: on the same walk-forward folds of the forecast-unemployment
 * pipeline's data (process.window with the pipeline's window config, four yearly blocks: the
 * pipeline's three backtest folds and its test year), the MASE of mlpipe's forecasters against the
 * seasonal naive, naive and moving-average baselines and against statsmodels' ETS
 * (provision.sh --with-forecast-bench; bench/forecast_ets.py), every forecast scored by the same code
 * (lib/forecast-metrics.ts) on the same cells. mlpipe's forecasters, each as the pipeline trains it
 * (early stopping on the validation year before the folds' test years, then one model per fold
 * trained on what precedes its year for that round or epoch count):
 *
 * - train.gbdt-forecast with the pipeline's model config (conf/forecast/model/gbdt.yaml), and the
 *   same with each other `relativeTo` (labels relative to the last value, a season before, the
 *   seasonal random walk's forecast, or the level);
 * - train.tfjs-sequence lstm, gru and tcn with their configs (conf/forecast/model/<cell>.yaml,
 *   training/default.yaml), and each also forecasting the level (`relativeTo: none`, the
 *   model before bases existed);
 * - `tcn <relativeTo> x<N>`: the tcn config as a seed ensemble of N members (train.tfjs-sequence
 *   `ensemble`: seeds 42, 43, ..., each early-stopped on its own; the forecast is their mean);
 * - `mlpipe mean`: the mean of the forecasts of the pipeline's default gbdt and tcn configs.
 * - train.ets (automatic ETS, lib/ets.ts): `ets` (a fit per window on its history, the pipeline's
 *   model=ets), `ets block` (one fit per series and fold, run on to each origin), `ets N|Ad,A` (the
 *   choice restricted to bench/forecast_ets.py's two models);
 * - train.forecast-combine means: `tcn+ets mean` (the pipeline's model=combo), `gbdt+ets mean`,
 *   `tcn+gbdt+ets mean`, when their members ran.
 * - the served forms (what export.onnx puts in the ONNX file, lib/ets-served.ts): `ets served` (per
 *   fold, train.ets fitted on what precedes the fold's year; each test window forecast with those
 *   fixed parameters, the states re-estimated from the window's lookback by least squares),
 *   `ets served classical` (the states from a classical decomposition of the window instead), and
 *   `tcn+ets served mean` (model=combo as served: the TCN's forecasts, which the export reproduces,
 *   and `ets served`).
 *
 * mlpipe's best is the forecaster with the lowest mean MASE on the first three folds (the ones the
 * pipeline's search sees), so the choice does not look at the last fold.
 *
 *   npm run bench:forecast                     # everything (about 10 minutes on 2 busy cores)
 *   BENCH_MODELS=gbdt npm run bench:forecast   # only the models whose name contains one of a comma list
 *   BENCH_MODELS='gbdt last,tcn last,ets' BENCH_ENSEMBLE=0 npm run bench:forecast  # ETS and the combinations
 *   BENCH_ENSEMBLE=5,10 npm run bench:forecast # the tcn seed ensembles' sizes (default 5; 0: none)
 *
 * Results: bench/results/forecast-<date>.json, and a table on stdout.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { parse } from 'yaml';
import { testContext, testStore } from '../api/testing.js';
import { mlpipeCacheDir } from '../engine/cache-dir.js';
import type { ArtifactRef } from '../engine/types.js';
import { BASELINES, baselineForecasts, scoreForecasts, truthOf, unscaleForecasts, type Values } from '../lib/forecast-metrics.js';
import { servedEtsForecast, type EtsModelDocument, type ServedEtsInit } from '../lib/ets-served.js';
import {
  decodeForecasts,
  decodeWindows,
  encodeForecasts,
  FORECASTS_MEDIA_TYPE,
  parseWindowState,
  type WindowSet,
  type WindowState,
} from '../lib/windows.js';
import { ingestFile } from '../plugins/ingest/file.js';
import { window } from '../plugins/process/window.js';
import { trainEts } from '../plugins/train/ets.js';
import { trainForecastCombine } from '../plugins/train/forecast-combine.js';
import { trainGbdtForecast } from '../plugins/train/gbdt-forecast.js';
import { trainSequence } from '../plugins/train/sequence.js';

const REPO = join(dirname(fileURLToPath(import.meta.url)), '..');
const DATA = join(REPO, 'pipelines', 'data', 'unemployment-by-industry.csv');
const PY = join(mlpipeCacheDir(), 'forecast-bench-venv', 'bin', 'python');
const FOLDS = Number(process.env['BENCH_FOLDS'] ?? 4);
const ENSEMBLES = (process.env['BENCH_ENSEMBLE'] ?? '5')
  .split(',')
  .map(Number)
  .filter((n) => Number.isInteger(n) && n > 1);
const ONLY = (process.env['BENCH_MODELS'] ?? '')
  .split(',')
  .map((s) => s.trim())
  .filter(Boolean);

const conf = (path: string): Record<string, unknown> =>
  parse(readFileSync(join(REPO, 'conf', 'forecast', path), 'utf8')) as Record<string, unknown>;
/** The table's series in target units, by id, as month index -> value. */
function rawSeries(): Map<string, Map<number, number>> {
  const out = new Map<string, Map<number, number>>();
  const [, ...lines] = readFileSync(DATA, 'utf8').trim().split('\n');
  for (const line of lines) {
    const [industry, month, unemployed] = line.split(',');
    if (!out.has(industry!)) out.set(industry!, new Map());
    out.get(industry!)!.set(Date.parse(`${month}T00:00:00Z`), Number(unemployed));
  }
  return out;
}

/** The history of each window's series before its origin (target units). */
function histories(set: WindowSet, raw: Map<string, Map<number, number>>): number[][] {
  const out: number[][] = [];
  for (let i = 0; i < set.count; i++) {
    const series = raw.get(set.seriesIds[set.series[i]!]!)!;
    const times = [...series.keys()].filter((t) => t < set.origin[i]!).sort((a, b) => a - b);
    out.push(times.map((t) => series.get(t)!));
  }
  return out;
}

async function ets(set: WindowSet, raw: Map<string, Map<number, number>>): Promise<{ values: Values; seconds: number; version: string }> {
  if (!existsSync(PY)) throw new Error(`No statsmodels venv at ${PY}: run 'bash deploy/provision.sh --with-forecast-bench'.`);
  const job = { season: set.season, horizon: set.horizon, windows: histories(set, raw).map((history) => ({ history })) };
  const child = promisify(execFile)(PY, [join(REPO, 'bench', 'forecast_ets.py')], { maxBuffer: 64 * 1024 * 1024 });
  child.child.stdin!.end(JSON.stringify(job));
  const { stdout } = await child;
  const r = JSON.parse(stdout) as { forecasts: number[][]; seconds: number; statsmodels: string };
  return { values: Float64Array.from(r.forecasts.flat()), seconds: r.seconds, version: r.statsmodels };
}

interface FoldRow {
  fold: number;
  block: string;
  windows: number;
  cells: number;
  mase: Record<string, number>;
  mae: Record<string, number>;
  smape: Record<string, number>;
}

interface FoldRow {
  fold: number;
  block: string;
  windows: number;
  cells: number;
  mase: Record<string, number>;
  mae: Record<string, number>;
  smape: Record<string, number>;
}

type Folds = { train: ArtifactRef; test: ArtifactRef; state: ArtifactRef }[];

interface Trained {
  foldForecasts: ArtifactRef[];
  seconds: number;
  /** The round or epoch count early stopping chose (what each fold model trains for). */
  chosen: number;
  /** The tfjs backend a sequence model trained on. */
  backend?: string;
}

async function main(): Promise<void> {
  const store = testStore();
  // A context per training run: each has its own checkpoint slot (a run must not resume another's).
  const context = () => testContext({ projectDir: REPO, store });
  const ctx = context();
  const w = conf('window/monthly.yaml');
  const base = conf('config.yaml')['model'] as Record<string, unknown>;
  const m = { ...base, ...conf('model/gbdt.yaml') };
  const training = conf('training/default.yaml');
  const ingest = await ingestFile.run(ctx, ingestFile.params.parse({ path: DATA }), {});
  const windowed = await window.run(
    ctx,
    window.params.parse({
      timeColumn: 'month',
      seriesColumn: 'industry',
      target: 'unemployed',
      covariates: ['rate'],
      frequency: 'month',
      lookback: w['lookback'],
      horizon: w['horizon'],
      stride: w['stride'],
      testSteps: w['test_steps'],
      validationSteps: w['validation_steps'],
      folds: FOLDS,
      foldSteps: w['fold_steps'],
      foldsBeforeTest: false,
      fill: w['fill'],
      calendar: w['calendar'],
    }),
    { dataset: ingest['dataset'] as ArtifactRef },
  );
  const folds = windowed['folds'] as Folds;
  const inputs = { train: windowed['train'] as ArtifactRef, validation: windowed['validation'] as ArtifactRef, folds };

  const gbdt = async (relativeTo: unknown): Promise<Trained> => {
    const started = Date.now();
    const out = await trainGbdtForecast.run(
      context(),
      trainGbdtForecast.params.parse({
        library: m['library'],
        rounds: m['rounds'],
        learningRate: m['learning_rate'],
        numLeaves: m['num_leaves'],
        minDataInLeaf: m['min_data_in_leaf'],
        earlyStoppingRounds: m['early_stopping'],
        relativeTo,
        covariateLags: m['covariate_lags'],
        refit: m['refit'],
        seed: 42,
      }),
      inputs,
    );
    const metrics = out['metrics'] as Record<string, number>;
    return {
      foldForecasts: out['foldForecasts'] as ArtifactRef[],
      seconds: (Date.now() - started) / 1000,
      chosen: metrics['bestIteration']!,
    };
  };
  const sequence = async (cell: string, relativeTo?: string, ensemble?: number): Promise<Trained> => {
    const c = { ...base, ...conf(`model/${cell}.yaml`) };
    const started = Date.now();
    const out = await trainSequence.run(
      context(),
      trainSequence.params.parse({
        model: c['cell'],
        units: c['units'],
        layers: c['layers'],
        dropout: c['dropout'],
        relativeTo: relativeTo ?? c['relative_to'],
        epochs: training['epochs'],
        batchSize: training['batch_size'],
        learningRate: training['lr'],
        earlyStopping: { patience: training['patience'] },
        seed: 42,
        ensemble: ensemble ?? 1,
      }),
      inputs,
    );
    const metrics = out['metrics'] as Record<string, number>;
    return {
      foldForecasts: out['foldForecasts'] as ArtifactRef[],
      seconds: (Date.now() - started) / 1000,
      chosen: metrics['bestEpoch']!,
      backend: String(out['backend']),
    };
  };

  const mlpipeEts = async (with_: Record<string, unknown>): Promise<Trained> => {
    const started = Date.now();
    const out = await trainEts.run(context(), trainEts.params.parse(with_), inputs);
    const metrics = out['metrics'] as Record<string, number>;
    return { foldForecasts: out['foldForecasts'] as ArtifactRef[], seconds: (Date.now() - started) / 1000, chosen: metrics['fits']! };
  };

  // The served ETS form of each fold: train.ets fitted on the fold's train windows (its model: a fit per
  // series on what precedes the fold's year), each test window forecast from its own lookback.
  const servedEts = async (init: ServedEtsInit): Promise<Trained> => {
    const started = Date.now();
    const foldForecasts: ArtifactRef[] = [];
    for (const f of folds) {
      const out = await trainEts.run(context(), trainEts.params.parse({ refit: 'block' }), {
        train: f.train,
        predict: f.test,
        state: f.state,
      });
      const doc = JSON.parse((await ctx.store.get(out['model'] as ArtifactRef)).toString('utf8')) as EtsModelDocument;
      const set = decodeWindows(await ctx.store.get(f.test));
      const { lookback: L, horizon: H } = set;
      const F = set.inputs.length;
      const values = new Float32Array(set.count * H);
      for (let i = 0; i < set.count; i++) {
        // The lookback's target values (scaled: the served form is affine in its window, so scaled in, scaled out).
        const window = Float64Array.from({ length: L }, (_, l) => set.x[(i * L + l) * F]!);
        const s = doc.series[set.seriesIds[set.series[i]!]!] ?? null;
        values.set(servedEtsForecast(window, s && { spec: s.spec, params: s.params }, H, init), i * H);
      }
      foldForecasts.push(
        await ctx.store.put(
          encodeForecasts({ count: set.count, horizon: H, windows: f.test.sha256, values, model: `ets served ${init}` }),
          {
            name: 'forecasts',
            mediaType: FORECASTS_MEDIA_TYPE,
          },
        ),
      );
    }
    return { foldForecasts, seconds: (Date.now() - started) / 1000, chosen: 0 };
  };

  // name -> how to train it; the pipeline's default config first.
  const candidates: [string, () => Promise<Trained>][] = [
    [`gbdt ${String(m['relative_to'])}`, () => gbdt(m['relative_to'])],
    ...(['last', 'season', 'seasonalLast', 'none'] as const)
      .filter((r) => r !== m['relative_to'])
      .map((r): [string, () => Promise<Trained>] => [`gbdt ${r}`, () => gbdt(r)]),
    ...['tcn', 'gru', 'lstm'].flatMap((cell): [string, () => Promise<Trained>][] => {
      const own = String({ ...base, ...conf(`model/${cell}.yaml`) }['relative_to'] ?? 'none');
      return [
        [`${cell} ${own}`, () => sequence(cell, undefined, 1)],
        ...(cell === 'tcn' ? ENSEMBLES : []).map((n): [string, () => Promise<Trained>] => [
          `${cell} ${own} x${n}`,
          () => sequence(cell, own, n),
        ]),
        ...(own !== 'none' ? [[`${cell} none`, () => sequence(cell, 'none')] as [string, () => Promise<Trained>]] : []),
      ];
    }),
    // train.ets: a fit per window on its history (the pipeline's ets config), one per series and fold
    // run on to each origin, and the automatic choice restricted to bench/forecast_ets.py's two models.
    ['ets', () => mlpipeEts({})],
    ['ets block', () => mlpipeEts({ refit: 'block' })],
    ['ets N|Ad,A', () => mlpipeEts({ trend: ['none', 'damped'], seasonal: ['additive'] })],
    // What export.onnx serves for model=ets (and the ETS half of model=combo).
    ['ets served', () => servedEts('least-squares')],
    ['ets served classical', () => servedEts('classical')],
  ];
  const trained: Record<string, Trained> = {};
  for (const [name, train] of candidates) {
    if (ONLY.length && !ONLY.some((o) => name.includes(o))) continue;
    trained[name] = await train();
    console.error(`${name}: ${trained[name].seconds.toFixed(1)} s (early stopping chose ${trained[name].chosen})`);
  }
  // Combinations with train.forecast-combine (the mean of members' fold forecasts), when the members ran.
  const tcnDefault = Object.keys(trained).find((n) => n.startsWith('tcn ') && !n.endsWith(' none') && !n.includes(' x'));
  const gbdtDefault = trained[candidates[0]![0]] ? candidates[0]![0] : undefined;
  const combos: [string, (string | undefined)[]][] = [
    ['tcn+ets mean', [tcnDefault, 'ets']],
    ['tcn+ets served mean', [tcnDefault, 'ets served']],
    ['gbdt+ets mean', [gbdtDefault, 'ets']],
    ['tcn+gbdt+ets mean', [tcnDefault, gbdtDefault, 'ets']],
  ];
  for (const [name, members] of combos) {
    if (!members.every((m): m is string => m !== undefined && trained[m] !== undefined)) continue;
    const started = Date.now();
    const keys = members.map((_, i) => `m${i}`);
    const out = await trainForecastCombine.run(
      ctx,
      trainForecastCombine.params.parse({ members: keys }),
      Object.fromEntries(keys.map((k, i) => [`${k}_foldForecasts`, trained[members[i]!]!.foldForecasts])),
    );
    const seconds = members.reduce((a, m) => a + trained[m]!.seconds, 0) + (Date.now() - started) / 1000;
    trained[name] = { foldForecasts: out['foldForecasts'] as ArtifactRef[], seconds, chosen: 0 };
  }
  // The mean of the pipeline's default gbdt and tcn configs, when both ran.
  const tcnName = Object.keys(trained).find((n) => n.startsWith('tcn ') && !n.endsWith(' none') && !n.includes(' x'));
  const ensemble = [candidates[0]![0], tcnName].filter((n): n is string => n !== undefined && trained[n] !== undefined);

  const raw = rawSeries();
  const rows: FoldRow[] = [];
  let etsSeconds = 0;
  let statsmodels = '';
  for (const [k, f] of folds.entries()) {
    const set = decodeWindows(await ctx.store.get(f.test));
    const state: WindowState = parseWindowState(JSON.parse((await ctx.store.get(f.state)).toString('utf8')), 'bench');
    const forecasts: Record<string, Values> = {};
    for (const [name, t] of Object.entries(trained)) {
      forecasts[name] = unscaleForecasts(set, state, decodeForecasts(await ctx.store.get(t.foldForecasts[k]!)).values);
    }
    if (ensemble.length === 2) {
      const [a, b] = ensemble.map((n) => forecasts[n]!);
      forecasts['mlpipe mean'] = a!.map((v, i) => (v + b![i]!) / 2);
    }
    const e = await ets(set, raw);
    etsSeconds += e.seconds;
    statsmodels = e.version;
    forecasts['statsmodels ETS'] = e.values;
    for (const b of BASELINES) forecasts[b] = baselineForecasts(set, state, b);
    const truth = truthOf(set, state);
    const all = Object.values(forecasts);
    const scored = Object.fromEntries(
      Object.entries(forecasts).map(([name, v]) => [name, scoreForecasts(set, state, truth, v, all).overall]),
    );
    rows.push({
      fold: k + 1,
      block: state.boundaries['test']!.slice(0, 7),
      windows: set.count,
      cells: scored['statsmodels ETS']!.cells,
      mase: Object.fromEntries(Object.entries(scored).map(([n, s]) => [n, s.mase])),
      mae: Object.fromEntries(Object.entries(scored).map(([n, s]) => [n, s.mae])),
      smape: Object.fromEntries(Object.entries(scored).map(([n, s]) => [n, s.smape])),
    });
  }
  const names = Object.keys(rows[0]!.mase);
  const avg = (rs: FoldRow[], n: string): number => rs.reduce((a, r) => a + r.mase[n]!, 0) / Math.max(1, rs.length);
  const mean = Object.fromEntries(names.map((n) => [n, avg(rows, n)]));
  const before = rows.slice(0, -1);
  const preTest = Object.fromEntries(names.map((n) => [n, avg(before, n)]));
  const line = (cells: string[]): string => cells.map((c, i) => (i === 0 ? c.padEnd(18) : c.padStart(10))).join('');
  console.log(`MASE per walk-forward fold (${rows[0]!.windows} test windows per fold, horizon ${w['horizon']}; lower is better)`);
  console.log(line(['model', ...rows.map((r) => `${r.fold} ${r.block}`), 'mean', `mean 1-${before.length}`, 'seconds']));
  for (const n of names) {
    const t = trained[n];
    const seconds = t ? t.seconds.toFixed(1) : n === 'statsmodels ETS' ? etsSeconds.toFixed(1) : '';
    console.log(line([n, ...rows.map((r) => r.mase[n]!.toFixed(3)), mean[n]!.toFixed(3), preTest[n]!.toFixed(3), seconds]));
  }
  const mlpipe = [...Object.keys(trained), ...(names.includes('mlpipe mean') ? ['mlpipe mean'] : [])];
  const best = mlpipe.sort((a, b) => preTest[a]! - preTest[b]!)[0]!;
  const gb = mean[best]!;
  console.log(`\nmlpipe's best (chosen on folds 1-${before.length}): ${best}`);
  console.log(
    `${best} / seasonal naive: ${(gb / mean['seasonalNaive']!).toFixed(3)}; ${best} / statsmodels ETS: ${(gb / mean['statsmodels ETS']!).toFixed(3)}`,
  );
  const result = {
    date: new Date().toISOString(),
    command: `npm run bench:forecast${ONLY.length ? ` (BENCH_MODELS=${ONLY.join(',')})` : ''}${ENSEMBLES.length ? ` (BENCH_ENSEMBLE=${ENSEMBLES.join(',')})` : ''}`,
    machine: { cpus: cpus().length, model: cpus()[0]?.model, memoryGB: Math.round(totalmem() / 2 ** 30), loadavg: loadavg() },
    data: 'pipelines/data/unemployment-by-industry.csv',
    window: { ...w, folds: FOLDS, foldsBeforeTest: false },
    model: m,
    training,
    statsmodels,
    seconds: { ...Object.fromEntries(Object.entries(trained).map(([n, t]) => [n, t.seconds])), ets: etsSeconds },
    chosen: Object.fromEntries(Object.entries(trained).map(([n, t]) => [n, t.chosen])),
    tfjsBackend: [...new Set(Object.values(trained).flatMap((t) => (t.backend ? [t.backend] : [])))].join(', '),
    ensemble,
    best,
    folds: rows,
    meanMase: mean,
    meanMaseBeforeLastFold: preTest,
  };
  const dir = join(REPO, 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `forecast-${result.date.slice(0, 10)}.json`);
  writeFileSync(file, JSON.stringify(result, null, 2) + '\n');
  console.log(`results: ${file}`);
}

await main();
