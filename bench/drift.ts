/**
 * Drift on 1M reference rows against 1M current rows, 25 columns (20 numeric, 5 categorical), as
 * typed arrays; then the same data (written as raw arrays) through real Evidently's legacy
 * DataDriftPreset, for the speed ratio.
 *
 *   npm run bench:drift                  # 1,000,000 rows
 *   BENCH_ROWS=200000 npm run bench:drift
 *   BENCH_EVIDENTLY=0 npm run bench:drift   # skip Evidently
 *
 * Results: bench/results/drift-<date>.json.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { cpus, homedir, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { computeDrift, toEvidentlyJson, type ColumnValues, type Dataset } from '../engine/drift/index.js';

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
    if (v.type === 'num') writeFileSync(join(dir, name, `${col}.f64`), Buffer.from(v.values.buffer));
    else {
      writeFileSync(join(dir, name, `${col}.i32`), Buffer.from(v.codes.buffer));
      writeFileSync(join(dir, name, `${col}.labels.json`), JSON.stringify(v.labels));
    }
  }
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
    const dir = mkdtempSync(join(tmpdir(), 'mlpipe-bench-drift-'));
    writeRaw(dir, 'reference', ref);
    writeRaw(dir, 'current', cur);
    const python = join(process.env['MLPIPE_CACHE_DIR'] ?? join(homedir(), '.cache', 'mlpipe'), 'evidently-venv', 'bin', 'python');
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
  const date = new Date().toISOString().slice(0, 10);
  const file = join('bench', 'results', `drift-${date}.json`);
  writeFileSync(
    file,
    `${JSON.stringify({ date, machine: { cpus: cpus().length, cpu: cpus()[0]?.model, memGiB: Math.round(totalmem() / 2 ** 30), node: process.version }, ...out }, null, 2)}\n`,
  );
  console.log(`wrote ${file}`);
}

await main();
