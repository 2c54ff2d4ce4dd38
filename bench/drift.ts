/**
 * Drift on 1M reference rows against 1M current rows, 25 columns (20 numeric, 5 categorical), as
 * typed arrays; then the same data (written as raw arrays) through real Evidently's legacy
 * DataDriftPreset, for the speed ratio of the computation alone. Then end to end from files, in
 * the same run: the data as Parquet (written by pandas) and CSV (written by DuckDB from it), and
 * per format, whole processes one after the other on the same files: `mlpipe drift ref cur --json`
 * against a Python process where pandas reads the files and Evidently writes its JSON report; wall
 * time and peak RSS of each process (GNU time), and whether both reports decide the same per column.
 *
 *   npm run bench:drift                  # 1,000,000 rows
 *   BENCH_ROWS=200000 npm run bench:drift
 *   BENCH_EVIDENTLY=0 npm run bench:drift   # skip Evidently (and the files part)
 *   BENCH_FILES=0 npm run bench:drift       # skip the files part
 *   BENCH_COMPUTE_EVIDENTLY=0 npm run bench:drift  # files part only (no in-memory Evidently run)
 *   BENCH_BASELINE=/path/to/checkout npm run bench:drift  # also that checkout's `mlpipe drift` (before/after)
 *   BENCH_DRIFT_REPEATS=5 npm run bench:drift  # each `mlpipe drift` 5 times (alternating with the baseline's): medians
 *
 * Results: bench/results/drift-<date>.json.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import { sqlString, withDuckDB } from '../adapters/duckdb.js';
import { computeDrift, toEvidentlyJson, type ColumnValues, type Dataset } from '../engine/drift/index.js';
import { mlpipeCacheDir } from '../engine/cache-dir.js';
import { benchDir } from './tmp.js';

const ROWS = Number(process.env['BENCH_ROWS'] ?? 1_000_000);
const NUM = 20;
const CAT = 5;
const LABELS = ['alpha', 'beta', 'gamma', 'delta', 'epsilon', 'zeta', 'eta', 'theta'];

/** xorshift128+ with Box-Muller: reproducible and fast. */
function rng(seed: number): () => number {
  let s0 = BigInt(seed) | 1n;
  let s1 = 0x9e3779b97f4a7c15n;
  const mask = (1n << 64n) - 1n;
  return () => {
    let x = s0;
    const y = s1;
    s0 = y;
    x ^= (x << 23n) & mask;
    s1 = x ^ y ^ (x >> 17n) ^ (y >> 26n);
    return Number(((s1 + y) & mask) >> 11n) / 2 ** 53;
  };
}

function dataset(seed: number, shift: number): Dataset {
  const rand = rng(seed);
  // A pool of normals reused with offsets keeps generation cheap.
  const pool = new Float64Array(1 << 16);
  for (let i = 0; i < pool.length; i += 2) {
    const u = rand() || 1e-12;
    const v = rand();
    const r = Math.sqrt(-2 * Math.log(u));
    pool[i] = r * Math.cos(2 * Math.PI * v);
    pool[i + 1] = r * Math.sin(2 * Math.PI * v);
  }
  const columns: Record<string, ColumnValues> = {};
  for (let c = 0; c < NUM; c++) {
    const values = new Float64Array(ROWS);
    const offset = Math.floor(rand() * pool.length);
    const step = 1 + 2 * Math.floor(rand() * 1000);
    const mean = c + (c % 4 === 0 ? shift : 0);
    for (let i = 0; i < ROWS; i++)
      values[i] = Math.round((mean + (1 + c / 10) * pool[(offset + i * step) & (pool.length - 1)]! + rand() * 1e-3) * 1e4) / 1e4;
    columns[`num_${c}`] = { type: 'num', values };
  }
  for (let c = 0; c < CAT; c++) {
    const codes = new Int32Array(ROWS);
    const k = 3 + c;
    for (let i = 0; i < ROWS; i++) {
      const u = rand();
      codes[i] = c === 0 && shift ? (u < 0.4 ? 0 : Math.floor(u * k)) : Math.floor(u * k);
    }
    columns[`cat_${c}`] = { type: 'cat', codes, labels: LABELS.slice(0, k) };
  }
  return { rows: ROWS, columns };
}

function writeRaw(dir: string, name: string, d: Dataset): void {
  mkdirSync(join(dir, name), { recursive: true });
  for (const [col, v] of Object.entries(d.columns)) {
    if ('values' in v) writeFileSync(join(dir, name, `${col}.f64`), Buffer.from(v.values.buffer));
    else if ('codes' in v) {
      writeFileSync(join(dir, name, `${col}.i32`), Buffer.from(v.codes.buffer));
      writeFileSync(join(dir, name, `${col}.labels.json`), JSON.stringify(v.labels));
    }
  }
}

const python = join(mlpipeCacheDir(), 'evidently-venv', 'bin', 'python');

/** Wall seconds and peak RSS (MiB) of a whole process, by GNU time. */
function measured(command: string, args: string[], dir: string): { seconds: number; peakMiB: number; stdout: string } {
  const stats = join(dir, 'time.txt');
  const stdout = execFileSync('/usr/bin/time', ['-o', stats, '-f', '%e %M', command, ...args], {
    encoding: 'utf8',
    maxBuffer: 64 * 2 ** 20,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const [seconds, kib] = readFileSync(stats, 'utf8').trim().split('\n').pop()!.split(' ').map(Number) as [number, number];
  return { seconds, peakMiB: Math.round(kib / 1024), stdout };
}

/** The median wall time of some runs (the lower middle one of an even count), their largest peak and every time. */
function median(runs: { seconds: number; peakMiB: number }[]): { seconds: number; peakMiB: number; runs: number[] } {
  const times = runs.map((r) => r.seconds);
  const sorted = [...times].sort((a, b) => a - b);
  return { seconds: sorted[(sorted.length - 1) >> 1]!, peakMiB: Math.max(...runs.map((r) => r.peakMiB)), runs: times };
}

type Report = { metrics: [unknown, { result: { drift_by_columns: Record<string, { drift_detected: boolean; drift_score: number }> } }] };

function compare(a: Report, b: Report): { sameDecisions: boolean; maxRelativeScoreDifference: number } {
  const x = a.metrics[1].result.drift_by_columns;
  const y = b.metrics[1].result.drift_by_columns;
  let same = Object.keys(x).length === Object.keys(y).length;
  let worst = 0;
  for (const [k, v] of Object.entries(x)) {
    const w = y[k];
    if (!w || w.drift_detected !== v.drift_detected) same = false;
    if (w) worst = Math.max(worst, Math.abs(v.drift_score - w.drift_score) / Math.max(Math.abs(w.drift_score), 1e-300));
  }
  return { sameDecisions: same, maxRelativeScoreDifference: worst };
}

/** `mlpipe drift` against pandas + Evidently, whole processes, on the same Parquet and CSV files. */
async function endToEnd(dir: string): Promise<Record<string, unknown>> {
  execFileSync(python, [join('bench', 'evidently_drift.py'), '--parquet', dir], { stdio: ['ignore', 'inherit', 'inherit'] });
  await withDuckDB(async (db) => {
    for (const side of ['reference', 'current'])
      await db.run(
        `COPY (FROM read_parquet(${sqlString(join(dir, `${side}.parquet`))})) TO ${sqlString(join(dir, `${side}.csv`))} (HEADER)`,
      );
  });
  const results: Record<string, unknown> = {};
  for (const format of ['parquet', 'csv']) {
    const [r, c] = ['reference', 'current'].map((s) => join(dir, `${s}.${format}`)) as [string, string];
    const loadBefore = loadavg().map((x) => Math.round(x * 100) / 100);
    const oursJson = join(dir, `mlpipe-${format}.json`);
    const theirsJson = join(dir, `evidently-${format}.json`);
    // BENCH_DRIFT_REPEATS runs of each `mlpipe drift`, this checkout's and the baseline's alternately: the medians count.
    const repeats = Math.max(1, Number(process.env['BENCH_DRIFT_REPEATS'] ?? 1));
    const baselineDir = process.env['BENCH_BASELINE'];
    const oursRuns: ReturnType<typeof measured>[] = [];
    const baselineRuns: ReturnType<typeof measured>[] = [];
    for (let i = 0; i < repeats; i++) {
      oursRuns.push(measured(process.execPath, [join('bin', 'mlpipe.mjs'), 'drift', r, c, '--json', oursJson], dir));
      if (baselineDir)
        baselineRuns.push(
          measured(process.execPath, [join(baselineDir, 'bin', 'mlpipe.mjs'), 'drift', r, c, '--json', join(dir, 'baseline.json')], dir),
        );
    }
    const ours = median(oursRuns);
    const baseline = baselineDir ? median(baselineRuns) : undefined;
    // The same report as the baseline's, to the last bit (its timestamp aside).
    const report = (file: string): string => {
      const { timestamp: _, ...rest } = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
      return JSON.stringify(rest);
    };
    const sameAsBaseline = baseline ? report(oursJson) === report(join(dir, 'baseline.json')) : undefined;
    if (baseline)
      console.log(
        `${format}: baseline (${baselineDir}) mlpipe drift ${baseline.seconds.toFixed(2)} s${repeats > 1 ? ` (median of ${baseline.runs.join(', ')})` : ''}, peak ${baseline.peakMiB} MiB; same report as the baseline's: ${sameAsBaseline}`,
      );
    const theirs = measured(python, [join('bench', 'evidently_drift.py'), '--files', r, c, theirsJson], dir);
    const inner = JSON.parse(theirs.stdout.trim().split('\n').pop()!) as { loadSeconds: number; seconds: number };
    const agree = compare(JSON.parse(readFileSync(oursJson, 'utf8')) as Report, JSON.parse(readFileSync(theirsJson, 'utf8')) as Report);
    const ratio = Math.round((theirs.seconds / ours.seconds) * 10) / 10;
    console.log(
      `${format}: mlpipe drift ${ours.seconds.toFixed(2)} s${repeats > 1 ? ` (median of ${ours.runs.join(', ')})` : ''}, peak ${ours.peakMiB} MiB; pandas+Evidently ${theirs.seconds.toFixed(2)} s (reading ${inner.loadSeconds.toFixed(1)} s), peak ${theirs.peakMiB} MiB; ${ratio}x; same decisions: ${agree.sameDecisions}, largest relative score difference ${agree.maxRelativeScoreDifference.toExponential(1)}`,
    );
    results[format] = {
      mlpipe: { seconds: ours.seconds, peakRssMiB: ours.peakMiB, ...(repeats > 1 ? { runs: ours.runs } : {}) },
      evidently: { seconds: theirs.seconds, readSeconds: Math.round(inner.loadSeconds * 100) / 100, peakRssMiB: theirs.peakMiB },
      speedRatio: ratio,
      ...agree,
      loadAverage: { before: loadBefore, after: loadavg().map((x) => Math.round(x * 100) / 100) },
      ...(baseline
        ? {
            baseline: {
              checkout: baselineDir,
              seconds: baseline.seconds,
              peakRssMiB: baseline.peakMiB,
              ...(repeats > 1 ? { runs: baseline.runs } : {}),
              sameReport: sameAsBaseline,
            },
          }
        : {}),
    };
  }
  return results;
}

async function main(): Promise<void> {
  const t0 = performance.now();
  const ref = dataset(1, 0);
  const cur = dataset(2, 0.3);
  const genMs = performance.now() - t0;
  // Peak resident memory of the process (the drift runs block the event loop, so sampling would miss it).
  const rssBefore = process.memoryUsage().rss;
  const maxBefore = process.resourceUsage().maxRSS * 1024;
  const runs: number[] = [];
  let result = computeDrift(ref, cur);
  for (let i = 0; i < 3; i++) {
    const t = performance.now();
    result = computeDrift(ref, cur);
    toEvidentlyJson(result);
    runs.push(performance.now() - t);
  }
  const peak = process.resourceUsage().maxRSS * 1024;
  const ours = Math.min(...runs);
  console.log(
    `mlpipe drift: ${ROWS} x 25 columns in ${(ours / 1000).toFixed(2)} s (best of 3: ${runs.map((r) => (r / 1000).toFixed(2)).join(', ')}); ${result.numberOfDriftedColumns} drifted; peak RSS ${(peak / 2 ** 20).toFixed(0)} MiB (${(maxBefore / 2 ** 20).toFixed(0)} MiB before, with the data; ${(rssBefore / 2 ** 20).toFixed(0)} MiB resident then)`,
  );
  const out: Record<string, unknown> = {
    rows: ROWS,
    columns: { numeric: NUM, categorical: CAT },
    generateMs: Math.round(genMs),
    mlpipeSeconds: Math.round(ours) / 1000,
    mlpipeRuns: runs.map((r) => Math.round(r) / 1000),
    peakRssMiB: Math.round(peak / 2 ** 20),
    rssWithDataMiB: Math.round(rssBefore / 2 ** 20),
    driftedColumns: result.numberOfDriftedColumns,
  };

  if (process.env['BENCH_EVIDENTLY'] !== '0') {
    const dir = benchDir('drift');
    writeRaw(dir, 'reference', ref);
    writeRaw(dir, 'current', cur);
    if (process.env['BENCH_COMPUTE_EVIDENTLY'] !== '0') {
      const text = execFileSync(python, [join('bench', 'evidently_drift.py'), dir, String(ROWS)], {
        encoding: 'utf8',
        maxBuffer: 64 * 2 ** 20,
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      const ev = JSON.parse(text.trim().split('\n').pop()!) as { seconds: number; drifted: number; decisions: Record<string, boolean> };
      const same = result.columns.every((c) => ev.decisions[c.column_name] === c.drift_detected);
      console.log(
        `Evidently: ${ev.seconds.toFixed(1)} s, ${ev.drifted} drifted, same decisions on every column: ${same}; ratio ${(ev.seconds / (ours / 1000)).toFixed(1)}x`,
      );
      Object.assign(out, {
        evidentlySeconds: ev.seconds,
        evidentlyDrifted: ev.drifted,
        sameDecisions: same,
        speedRatio: Math.round((ev.seconds / (ours / 1000)) * 10) / 10,
      });
    }
    if (process.env['BENCH_FILES'] !== '0') out['endToEnd'] = await endToEnd(dir);
    rmSync(dir, { recursive: true, force: true });
  }
  const date = new Date().toISOString().slice(0, 10);
  const file = join('bench', 'results', `drift-${date}.json`);
  writeFileSync(
    file,
    `${JSON.stringify({ date, machine: { cpus: cpus().length, cpu: cpus()[0]?.model, memGiB: Math.round(totalmem() / 2 ** 30), node: process.version }, ...out }, null, 2)}\n`,
  );
  console.log(`wrote ${file}`);
}

await main();
