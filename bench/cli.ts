/**
 * Whole-process runs: `mlpipe run <50-step chain> --worker` against a running Temporal dev server,
 * timed from the command's start to its exit, beside `mlpipe validate` and the same chain on
 * Dagster (in process) and Prefect (against its own server started here), all in one run.
 *
 *   npm run bench:cli          # builds dist/, then 5 timed rounds after one warm-up round
 *   BENCH_RUNS=9 npm run bench:cli
 *
 * mlpipe runs as the installed package does: the compiled JavaScript in dist/ (MLPIPE_DIST=1), with
 * the workflow bundle cached (the warm-up round builds it; the first run of a new version pays for
 * it once, reported apart as `cold bundle`). The chain is tracked to the MLflow file store, as by
 * default. Prefect and Dagster come from `provision.sh --with-peers` (a venv in the cache); without
 * it their rows are missing and the output says so. Results: bench/results/cli-<date>.json.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import { loadSettings } from '../app/project.js';
import { freePort, requireTemporalCli, startDevServer, temporalCliVersion } from '../dev/temporal-server.js';
import { benchDir } from './tmp.js';

const RUNS = Number(process.env['BENCH_RUNS'] ?? 5);
const N = 50;
const REPO = join(import.meta.dirname, '..');

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Runs a command to its exit; its wall time in ms (fails the bench when it fails). */
function timed(cmd: string, args: string[], env: NodeJS.ProcessEnv, cwd: string): Promise<{ ms: number; stdout: string }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(cmd, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      const ms = performance.now() - t0;
      if (code === 0) resolve({ ms, stdout });
      else reject(new Error(`${cmd} ${args.join(' ')} exited ${code}:\n${stdout}\n${stderr}`));
    });
  });
}

async function waitForHttp(url: string, ms: number): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    try {
      if ((await fetch(url)).ok) return;
    } catch {
      /* not up yet */
    }
    if (Date.now() > end) throw new Error(`${url} did not answer within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

async function main(): Promise<void> {
  const settings = loadSettings();
  if (!existsSync(join(REPO, 'dist', 'cli', 'main.js'))) throw new Error("dist/ is missing: run 'npm run build' first");
  const dir = benchDir('cli');
  mkdirSync(join(dir, 'pipelines'));
  const steps = Array.from({ length: N }, (_, i) => `  s${i}:\n    uses: util.echo${i ? `\n    needs: s${i - 1}` : ''}`);
  writeFileSync(join(dir, 'pipelines', `chain-${N}.yaml`), `name: chain-${N}\ncache: false\nsteps:\n${steps.join('\n')}\n`);

  const bin = requireTemporalCli(settings.cacheDir);
  const server = await startDevServer({ bin, headless: true, dbFile: join(dir, 'temporal.db'), logFile: join(dir, 'server.log') });
  const env = { ...process.env, TEMPORAL_ADDRESS: server.address, MLPIPE_PROJECT_DIR: dir, MLPIPE_DIST: '1' };
  const mlpipe = (...args: string[]): [string, string[], NodeJS.ProcessEnv, string] => [
    process.execPath,
    [join(REPO, 'bin', 'mlpipe.mjs'), ...args],
    env,
    dir,
  ];

  const venv = join(settings.cacheDir, 'peers-venv', 'bin');
  const peers = existsSync(join(venv, 'python'));
  let prefectServer: ReturnType<typeof spawn> | undefined;
  const peerEnv: NodeJS.ProcessEnv = { ...process.env, PREFECT_HOME: join(dir, 'prefect'), DAGSTER_HOME: join(dir, 'dagster') };
  if (peers) {
    mkdirSync(join(dir, 'dagster'));
    const port = await freePort();
    prefectServer = spawn(join(venv, 'prefect'), ['server', 'start', '--host', '127.0.0.1', '--port', String(port)], {
      env: peerEnv,
      stdio: 'ignore',
    });
    peerEnv['PREFECT_API_URL'] = `http://127.0.0.1:${port}/api`;
    await waitForHttp(`http://127.0.0.1:${port}/api/health`, 120_000);
  }

  // One build of the workflow bundle, into a cache of its own, timed apart.
  const coldCache = join(dir, 'cold-cache');
  const cold = await timed(
    process.execPath,
    [join(REPO, 'bin', 'mlpipe.mjs'), 'run', `chain-${N}`, '--worker'],
    { ...env, MLPIPE_CACHE_DIR: coldCache },
    dir,
  );
  rmSync(coldCache, { recursive: true, force: true });

  const cases: Record<string, () => Promise<{ ms: number; stdout: string }>> = {
    [`mlpipe run chain-${N} --worker`]: () => timed(...mlpipe('run', `chain-${N}`, '--worker')),
    [`mlpipe run chain-${N} --worker --wait-tracking`]: () => timed(...mlpipe('run', `chain-${N}`, '--worker', '--wait-tracking')),
    [`mlpipe validate chain-${N}`]: () => timed(...mlpipe('validate', `chain-${N}`)),
    ...(peers
      ? {
          [`dagster chain-${N} (in process)`]: () =>
            timed(join(venv, 'python'), [join(REPO, 'bench', 'peers', 'dagster_chain.py'), String(N)], peerEnv, dir),
          [`prefect chain-${N} (with its server)`]: () =>
            timed(join(venv, 'python'), [join(REPO, 'bench', 'peers', 'prefect_chain.py'), String(N)], peerEnv, dir),
        }
      : {}),
  };
  const times: Record<string, number[]> = Object.fromEntries(Object.keys(cases).map((k) => [k, []]));
  const load = loadavg()[0]!;
  let sample = '';
  try {
    for (let round = 0; round <= RUNS; round++) {
      for (const [name, run] of Object.entries(cases)) {
        const r = await run();
        if (round > 0) times[name]!.push(r.ms);
        if (name.endsWith('--worker')) sample = r.stdout;
      }
    }
  } finally {
    prefectServer?.kill('SIGTERM');
    await server.stop();
  }

  const result = {
    date: new Date().toISOString(),
    machine: {
      cpus: cpus().length,
      cpuModel: cpus()[0]?.model,
      memoryGiB: Math.round(totalmem() / 2 ** 30),
      node: process.version,
      temporal: temporalCliVersion(bin),
      python: peers ? spawnSync(join(venv, 'python'), ['--version'], { encoding: 'utf8' }).stdout.trim() : undefined,
      loadAverageBefore: Math.round(load * 100) / 100,
      loadAverageAfter: Math.round(loadavg()[0]! * 100) / 100,
    },
    runs: RUNS,
    coldBundleMs: Math.round(cold.ms),
    medianMs: Object.fromEntries(Object.entries(times).map(([k, v]) => [k, Math.round(median(v))])),
    samplesMs: Object.fromEntries(Object.entries(times).map(([k, v]) => [k, v.map((x) => Math.round(x))])),
  };
  const out = join(
    import.meta.dirname,
    'results',
    `cli-${result.date.slice(0, 10)}${process.env['BENCH_TAG'] ? `-${process.env['BENCH_TAG']}` : ''}.json`,
  );
  mkdirSync(join(import.meta.dirname, 'results'), { recursive: true });
  writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
  console.log(`| command | median wall time (${RUNS} runs) | min–max |\n|---|---|---|`);
  for (const [k, v] of Object.entries(times))
    console.log(
      `| ${k} | ${(median(v) / 1000).toFixed(2)} s | ${(Math.min(...v) / 1000).toFixed(2)}–${(Math.max(...v) / 1000).toFixed(2)} s |`,
    );
  console.log(`\nfirst run of a new version (builds the workflow bundle once): ${(cold.ms / 1000).toFixed(2)} s`);
  if (!peers) console.log("Prefect and Dagster: not measured (run 'bash deploy/provision.sh --with-peers').");
  console.log(`last output of mlpipe run:\n${sample}`);
  console.log(
    `machine: ${result.machine.cpus} × ${result.machine.cpuModel}, load ${result.machine.loadAverageBefore} → ${result.machine.loadAverageAfter}; written to ${out}`,
  );
}

await main();
