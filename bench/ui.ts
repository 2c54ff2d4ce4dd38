/**
 * The web UI's API on a 200-step run: how fast it answers the run page (GET /api/runs/<id>, what
 * the page loads) while the run is running and once it has closed, and how soon the event stream
 * tells of a step that finished (the time from the step's end, as its activity recorded it, to the
 * event arriving at a client; the same machine's clock). Three watchers of the same run, side by
 * side: the UI server as it is (history followed by long poll, plus polling every 200 ms), a UI
 * server that only polls every 200 ms (as before the history was followed), and the floor: a bare
 * Temporal client long-polling the history itself (the step's completed event arriving).
 *
 *   npm run bench:ui
 *
 * A dev server (SQLite file), a worker process (`mlpipe worker`); the UI server in this process, the
 * client on loopback. Results: bench/results/ui-<date>.json.
 */
import { Client, Connection } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { loadSettings, type Settings } from '../app/project.js';
import { LocalArtifactStore } from '../adapters/local-store.js';
import { requireTemporalCli, startDevServer } from '../dev/temporal-server.js';
import { PIPELINE_WORKFLOW, statusQueryName, type PipelineStatus } from '../engine/contracts.js';
import { startUiServer, type UiServer } from '../ui/server.js';
import type { LiveRun } from '../ui/runs.js';
import { benchDir } from './tmp.js';

const REPO = resolve(import.meta.dirname, '..');
const STEPS = 200;
const SAMPLES = Number(process.env['BENCH_SAMPLES'] ?? 50);

/** 199 no-op steps in layers of 11 (each needs two of the layer before), then a step that holds the run open. */
function pipeline(holdTicks: number): string {
  const lines = ['name: ui-bench', 'cache: false', 'maxParallel: 16', 'steps:'];
  const width = 11;
  const ids: string[] = [];
  for (let i = 0; i < STEPS - 1; i++) {
    const id = `s${String(i).padStart(3, '0')}`;
    const layer = Math.floor(i / width);
    const prev = ids.slice((layer - 1) * width, layer * width);
    const needs = layer === 0 ? [] : [prev[i % prev.length]!, prev[(i + 1) % prev.length]!];
    lines.push(`  ${id}:`, '    uses: util.echo', `    with: { values: { i: ${i} } }`);
    if (needs.length) lines.push(`    needs: [${[...new Set(needs)].join(', ')}]`);
    ids.push(id);
  }
  const last = ids.slice(Math.floor((STEPS - 2) / width) * width);
  lines.push('  hold:', '    uses: util.sleep', `    with: { ticks: ${holdTicks}, tickMs: 100 }`, `    needs: [${last.join(', ')}]`);
  return `${lines.join('\n')}\n`;
}

const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
};
const round = (x: number): number => Math.round(x * 10) / 10;

async function timeGets(url: string, n: number): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    const r = await fetch(url);
    const body = (await r.json()) as { order?: string[] };
    if (!r.ok || body.order?.length !== STEPS) throw new Error(`unexpected answer ${r.status}: ${JSON.stringify(body).slice(0, 300)}`);
    times.push(performance.now() - t);
  }
  return times;
}

/** Reads the event stream until the run closes; per step, ms from its end to the first event that shows it ended. */
async function streamLatencies(ui: UiServer, workflowId: string): Promise<number[]> {
  const res = await fetch(`${ui.url}/api/runs/${workflowId}/events`);
  const reader = res.body!.getReader();
  const seen = new Map<string, number>();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    const now = Date.now();
    buffer += new TextDecoder().decode(value);
    const events = buffer.split('\n\n');
    buffer = events.pop() ?? '';
    let closed = false;
    for (const e of events) {
      const data = e.split('\n').find((l) => l.startsWith('data: '));
      if (!data) continue;
      const live = JSON.parse(data.slice(6)) as LiveRun;
      for (const [id, s] of Object.entries(live.steps))
        if (!seen.has(id) && (s.status === 'succeeded' || s.status === 'cached') && s.endedAt) seen.set(id, now - Date.parse(s.endedAt));
      if (live.temporalStatus !== 'RUNNING') closed = true;
    }
    if (closed && seen.size >= STEPS) break;
    if (closed) break;
  }
  await reader.cancel();
  return [...seen.values()];
}

/** The floor: per step, ms from its end to its ActivityTaskCompleted event reaching a client that long-polls the history. */
async function historyLatencies(client: Client, workflowId: string): Promise<number[]> {
  const seen: number[] = [];
  let token: Uint8Array | undefined;
  for (;;) {
    const r = await client.workflowService.getWorkflowExecutionHistory({
      namespace: 'default',
      execution: { workflowId },
      waitNewEvent: true,
      maximumPageSize: 1000,
      ...(token ? { nextPageToken: token } : {}),
    });
    const now = Date.now();
    for (const e of r.history?.events ?? []) {
      const p = e.activityTaskCompletedEventAttributes?.result?.payloads?.[0];
      if (!p) continue;
      const result = defaultPayloadConverter.fromPayload(p) as { endedAt?: string; outputs?: unknown } | undefined;
      if (result?.endedAt && result.outputs !== undefined) seen.push(now - Date.parse(result.endedAt));
    }
    if (!r.nextPageToken?.length) return seen;
    token = r.nextPageToken;
  }
}

const summary = (xs: number[]) => ({ stepsSeen: xs.length, p50: round(pct(xs, 50)), p95: round(pct(xs, 95)), max: round(Math.max(...xs)) });

async function main(): Promise<void> {
  const dir = benchDir('ui');
  mkdirSync(join(dir, 'pipelines'));
  writeFileSync(join(dir, 'pipelines', 'ui-bench.yaml'), pipeline(60));
  const base = loadSettings();
  const server = await startDevServer({
    bin: requireTemporalCli(base.cacheDir),
    headless: true,
    dbFile: join(dir, 'temporal.db'),
    logFile: join(dir, 'server.log'),
  });
  const settings: Settings = {
    ...base,
    projectDir: dir,
    stateDir: join(dir, '.mlpipe'),
    artifactsDir: join(dir, '.mlpipe', 'artifacts'),
    temporalAddress: server.address,
    taskQueue: 'bench-ui',
    trackingUri: undefined,
  };
  // The worker in its own process (`mlpipe worker`), as beside `mlpipe ui`: the UI's process only serves the page.
  const worker = spawn(process.execPath, [join(REPO, 'bin', 'mlpipe.mjs'), 'worker', '--task-queue', settings.taskQueue], {
    cwd: dir,
    env: {
      ...process.env,
      MLPIPE_PROJECT_DIR: dir,
      MLPIPE_ARTIFACTS: settings.artifactsDir,
      TEMPORAL_ADDRESS: server.address,
      MLPIPE_TRACKING: 'off',
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise<void>((resolve, reject) => {
    worker.stdout.on('data', (d: Buffer) => d.toString().includes('worker polling') && resolve());
    worker.once('exit', (code) => reject(new Error(`the worker exited (${code})`)));
  });
  const client = new Client({ connection: await Connection.connect({ address: server.address }) });
  const connect = async (): Promise<Client> => new Client({ connection: await Connection.connect({ address: server.address }) });
  const store = new LocalArtifactStore(settings.artifactsDir);
  const ui = await startUiServer({ connect, temporalAddress: server.address, store });
  const polling = await startUiServer({ connect, temporalAddress: server.address, store, followHistory: false });
  try {
    // Run 1: the event stream from the start; the run page while `hold` runs, then closed.
    const id1 = `ui-bench-${Date.now()}`;
    const handle = await client.workflow.start(PIPELINE_WORKFLOW, {
      taskQueue: settings.taskQueue,
      workflowId: id1,
      args: [{ pipeline: 'ui-bench' }],
    });
    const latencies = streamLatencies(ui, id1);
    const pollingLatencies = streamLatencies(polling, id1);
    const floorLatencies = historyLatencies(client, id1);
    for (;;) {
      const s = await handle.query<PipelineStatus>(statusQueryName).catch(() => undefined);
      if (s?.steps['hold']?.status === 'running') break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const url = `${ui.url}/api/runs/${id1}`;
    await timeGets(url, 3);
    const runningTimes = await timeGets(url, SAMPLES);
    await handle.result();
    const stream = await latencies;
    const pollingStream = await pollingLatencies;
    const floor = await floorLatencies;
    await timeGets(url, 3);
    const closedTimes = await timeGets(url, SAMPLES);
    // A server that has seen nothing yet: the history fetched and decoded, every step manifest read.
    const cold: number[] = [];
    for (let i = 0; i < 5; i++) {
      const fresh = await startUiServer({ connect, temporalAddress: server.address, store });
      cold.push(...(await timeGets(`${fresh.url}/api/runs/${id1}`, 1)));
      await fresh.stop();
    }
    const result = {
      date: new Date().toISOString(),
      machine: `${cpus().length} vCPU ${cpus()[0]?.model ?? ''}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`,
      steps: STEPS,
      runPage: {
        running: { p50: round(pct(runningTimes, 50)), p95: round(pct(runningTimes, 95)), samples: runningTimes.length },
        closed: { p50: round(pct(closedTimes, 50)), p95: round(pct(closedTimes, 95)), samples: closedTimes.length },
        cold: { p50: round(pct(cold, 50)), max: round(Math.max(...cold)), samples: cold.length },
      },
      stream: summary(stream),
      streamPollingOnly: summary(pollingStream),
      historyLongPollFloor: summary(floor),
    };
    console.log(JSON.stringify(result, null, 2));
    mkdirSync(join(REPO, 'bench', 'results'), { recursive: true });
    writeFileSync(join(REPO, 'bench', 'results', `ui-${result.date.slice(0, 10)}.json`), `${JSON.stringify(result, null, 2)}\n`);
  } finally {
    await ui.stop();
    await polling.stop();
    const exited = new Promise((r) => worker.once('exit', r));
    worker.kill('SIGTERM');
    await exited;
    await client.connection.close();
    await server.stop();
  }
}

await main();
