/**
 * Engine overhead on a local Temporal dev server (SQLite file), with in-process workers, against a
 * floor of plain Temporal measured in the same run.
 *
 *   npm run bench               # 7 timed rounds after one warm-up round
 *   BENCH_RUNS=15 npm run bench
 *   BENCH_CASES=floor-wide-100,wide-100,wide-100-untracked npm run bench   # only these cases
 *   BENCH_TAG=x npm run bench   # results in bench/results/<date>-x.json
 *
 * Cases, run in turn within each round (no-op steps, cache off, so every step is a real activity):
 * - floor-chain-1/50, floor-wide-100: plain Temporal workflows (bench/floor/workflows.ts) running
 *   no-op activities, on a worker with the pipeline worker's own settings, same server and connection;
 * - chain-1/50: a linear chain of util.echo steps, with tracking (MLflow file store) and without;
 * - wide-100: `start`, 100 parallel steps, `join` at maxParallel 100, with tracking and without.
 * Per-step overhead = (T(chain-50) - T(chain-1)) / 49, the marginal cost of one more sequential step.
 * Wall time runs from the client's start call to the result. A tracked case then waits, untimed, for
 * its tracking workflow to close before the next case starts (so its deliveries are not charged to
 * the next case); how long after the run that took is reported as the tracking lag.
 * Where a chain-50 case's steps spend their time, from its history: `queued` (activity scheduled to
 * started), `runs` (started to completed), `next` (completed to the next step scheduled), medians.
 * Where a wide case's time goes, from its history (read untimed after the run; event times are the
 * server's): `first` from the start to the first step scheduled, `fanOut` to the last of the 100
 * scheduled, `fanIn` to the join scheduled, `join` to its completion, `end` to the run closed.
 * Results: bench/results/.
 */
import { Client, Connection } from '@temporalio/client';
import { bundleWorkflowCode, DefaultLogger, NativeConnection, Runtime, Worker } from '@temporalio/worker';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import { createPipelineWorker, MAIN_WORKER_OPTIONS } from '../app/worker.js';
import { loadSettings } from '../app/project.js';
import { requireTemporalCli, startDevServer, temporalCliVersion } from '../dev/temporal-server.js';
import { PIPELINE_WORKFLOW, trackingWorkflowId } from '../engine/contracts.js';
import { benchDir } from './tmp.js';

const RUNS = Number(process.env['BENCH_RUNS'] ?? 7);
const WIDE = 100;

function chain(name: string, n: number, tracking: boolean): string {
  const steps = Array.from({ length: n }, (_, i) => `  s${i}:\n    uses: util.echo${i ? `\n    needs: s${i - 1}` : ''}`);
  return `name: ${name}\ncache: false\n${tracking ? '' : 'tracking: { enabled: false }\n'}steps:\n${steps.join('\n')}\n`;
}

function wide(name: string, n: number, parallel: number, tracking: boolean): string {
  const lines = [`name: ${name}`, 'cache: false', `maxParallel: ${parallel}`, ...(tracking ? [] : ['tracking: { enabled: false }'])];
  lines.push('steps:', '  start: { uses: util.echo }');
  for (let i = 0; i < n; i++) lines.push(`  w${i}: { uses: util.echo, needs: start }`);
  lines.push(`  join: { uses: util.echo, needs: [${Array.from({ length: n }, (_, i) => `w${i}`).join(', ')}] }`);
  return `${lines.join('\n')}\n`;
}

interface HistoryEventLike {
  eventId?: unknown;
  eventTime?: { seconds?: unknown; nanos?: number | null } | null;
  activityTaskScheduledEventAttributes?: { activityType?: { name?: string | null } | null } | null;
  activityTaskStartedEventAttributes?: { scheduledEventId?: unknown } | null;
  activityTaskCompletedEventAttributes?: { scheduledEventId?: unknown } | null;
}

const eventMs = (e: HistoryEventLike | undefined): number =>
  e?.eventTime ? Number(e.eventTime.seconds) * 1000 + (e.eventTime.nanos ?? 0) / 1e6 : NaN;

/**
 * Where a chain's steps spend their time (median ms per step), from its history: `queued` from a
 * step's activity scheduled to started (the worker's poll), `runs` from started to completed (the
 * activity: runStep, or the floor's no-op), `next` from completed to the next step's activity
 * scheduled (the workflow task that reacts to it).
 */
function chainPhases(events: HistoryEventLike[]): Record<'queued' | 'runs' | 'next', number> {
  const steps = events.filter((e) => ['runStep', 'noop'].includes(e.activityTaskScheduledEventAttributes?.activityType?.name ?? ''));
  const by = (key: 'activityTaskStartedEventAttributes' | 'activityTaskCompletedEventAttributes'): Map<string, HistoryEventLike> =>
    new Map(events.filter((e) => e[key]).map((e) => [String(e[key]!.scheduledEventId), e]));
  const started = by('activityTaskStartedEventAttributes');
  const completed = by('activityTaskCompletedEventAttributes');
  const queued: number[] = [];
  const runs: number[] = [];
  const next: number[] = [];
  steps.forEach((s, i) => {
    const [a, b] = [started.get(String(s.eventId)), completed.get(String(s.eventId))];
    queued.push(eventMs(a) - eventMs(s));
    runs.push(eventMs(b) - eventMs(a));
    if (steps[i + 1]) next.push(eventMs(steps[i + 1]) - eventMs(b));
  });
  const r = (xs: number[]): number => Math.round(median(xs) * 10) / 10;
  return { queued: r(queued), runs: r(runs), next: r(next) };
}

/** The phases of a wide run (ms), from its history: see the header. */
function widePhases(events: HistoryEventLike[]): Record<'first' | 'fanOut' | 'fanIn' | 'join' | 'end', number> {
  const at = eventMs;
  const t0 = at(events[0]);
  const steps = events.filter((e) => ['runStep', 'noop'].includes(e.activityTaskScheduledEventAttributes?.activityType?.name ?? ''));
  const join = steps[steps.length - 1];
  const joined = events.find((e) => join && String(e.activityTaskCompletedEventAttributes?.scheduledEventId) === String(join.eventId));
  const t = [at(steps[0]), at(steps[steps.length - 2]), at(join), at(joined), at(events[events.length - 1])].map((x) => x - t0);
  return { first: t[0]!, fanOut: t[1]! - t[0]!, fanIn: t[2]! - t[1]!, join: t[3]! - t[2]!, end: t[4]! - t[3]! };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

const silent = {
  log: () => undefined,
  trace: () => undefined,
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
};

interface Case {
  name: string;
  run(id: string): Promise<void>;
  /** For tracked pipeline cases: waits for the run's tracking to close. */
  tracked?: boolean;
}

async function main(): Promise<void> {
  Runtime.install({ logger: new DefaultLogger('ERROR') });
  const settings = loadSettings();
  const dir = benchDir('run');
  mkdirSync(join(dir, 'pipelines'));
  const pipelines: Record<string, string> = {
    'chain-1': chain('chain-1', 1, true),
    'chain-50': chain('chain-50', 50, true),
    'chain-1-untracked': chain('chain-1-untracked', 1, false),
    'chain-50-untracked': chain('chain-50-untracked', 50, false),
    [`wide-${WIDE}`]: wide(`wide-${WIDE}`, WIDE, WIDE, true),
    [`wide-${WIDE}-untracked`]: wide(`wide-${WIDE}-untracked`, WIDE, WIDE, false),
  };
  for (const [name, yaml] of Object.entries(pipelines)) writeFileSync(join(dir, 'pipelines', `${name}.yaml`), yaml);

  const bin = requireTemporalCli(settings.cacheDir);
  const server = await startDevServer({
    bin,
    headless: true,
    dbFile: process.env['BENCH_DB'] === 'memory' ? undefined : join(dir, 'temporal.db'),
    logFile: join(dir, 'server.log'),
  });
  const s = {
    ...settings,
    projectDir: dir,
    artifactsDir: join(dir, 'artifacts'),
    temporalAddress: server.address,
    taskQueue: 'bench',
    trackingUri: `file:${join(dir, 'mlruns')}`,
  };
  const nativeConnection = await NativeConnection.connect({ address: server.address });
  const { worker } = await createPipelineWorker({ settings: s, connection: nativeConnection });
  // The floor: the same connection and the pipeline worker's settings, its own queue and workflows.
  const floor = await Worker.create({
    ...MAIN_WORKER_OPTIONS,
    connection: nativeConnection,
    taskQueue: 'bench-floor',
    workflowBundle: await bundleWorkflowCode({ workflowsPath: join(import.meta.dirname, 'floor', 'workflows.ts'), logger: silent }),
    activities: { noop: async () => undefined },
  });
  const connection = await Connection.connect({ address: server.address });
  const client = new Client({ connection });

  const floorCase = (name: string, type: string, arg: number): Case => ({
    name,
    run: (id) => client.workflow.execute(type, { taskQueue: 'bench-floor', workflowId: id, args: [arg] }),
  });
  const pipelineCase = (name: string): Case => ({
    name,
    tracked: !name.endsWith('-untracked'),
    run: async (id) => {
      await client.workflow.execute(PIPELINE_WORKFLOW, { taskQueue: s.taskQueue, workflowId: id, args: [{ pipeline: name }] });
    },
  });
  const only = process.env['BENCH_CASES']?.split(',').map((c) => c.trim());
  const cases: Case[] = [
    floorCase('floor-chain-1', 'floorChain', 1),
    floorCase('floor-chain-50', 'floorChain', 50),
    floorCase(`floor-wide-${WIDE}`, 'floorWide', WIDE),
    ...Object.keys(pipelines).map(pipelineCase),
  ].filter((c) => !only || only.includes(c.name));

  const times: Record<string, number[]> = Object.fromEntries(cases.map((c) => [c.name, []]));
  const lag: Record<string, number[]> = {};
  const phases: Record<string, ReturnType<typeof widePhases>[]> = {};
  const stepPhases: Record<string, ReturnType<typeof chainPhases>[]> = {};
  let seq = 0;
  /** Waits for the tracking workflow of a pipeline run to close; ms after `t`. */
  const trackingDone = async (workflowId: string, t: number): Promise<number> => {
    const runId = (await client.workflow.getHandle(workflowId).describe()).runId;
    await client.workflow.getHandle(trackingWorkflowId(`${workflowId}/${runId}`)).result();
    return performance.now() - t;
  };
  const load = loadavg()[0]!;
  await worker.runUntil(() =>
    floor.runUntil(async () => {
      for (let round = 0; round <= RUNS; round++) {
        for (const c of cases) {
          const id = `bench-${c.name}-${++seq}`;
          const t0 = performance.now();
          await c.run(id);
          const t1 = performance.now();
          if (round > 0) times[c.name]!.push(t1 - t0); // round 0 warms up
          if (round > 0 && c.name.includes('wide'))
            (phases[c.name] ??= []).push(widePhases((await client.workflow.getHandle(id).fetchHistory()).events ?? []));
          if (round > 0 && c.name.includes('chain-50'))
            (stepPhases[c.name] ??= []).push(chainPhases((await client.workflow.getHandle(id).fetchHistory()).events ?? []));
          if (c.tracked) {
            const ms = await trackingDone(id, t1);
            if (round > 0) (lag[c.name] ??= []).push(ms);
          }
        }
      }
    }),
  );
  await connection.close();
  await nativeConnection.close();
  await server.stop();

  const med = Object.fromEntries(Object.entries(times).map(([k, v]) => [k, median(v)]));
  const perStep = (a: string, b: string): number => Math.round(((med[a]! - med[b]!) / 49) * 10) / 10;
  const floorPerStep = perStep('floor-chain-50', 'floor-chain-1');
  const tracked = perStep('chain-50', 'chain-1');
  const untracked = perStep('chain-50-untracked', 'chain-1-untracked');
  const ratio = (x: number, y: number): number => Math.round((x / y) * 100) / 100;
  const result = {
    date: new Date().toISOString(),
    machine: {
      cpus: cpus().length,
      cpuModel: cpus()[0]?.model,
      memoryGiB: Math.round(totalmem() / 2 ** 30),
      node: process.version,
      temporal: temporalCliVersion(bin),
      loadAverageBefore: Math.round(load * 100) / 100,
      loadAverageAfter: Math.round(loadavg()[0]! * 100) / 100,
    },
    runs: RUNS,
    ...(only ? { cases: cases.map((c) => c.name) } : {}),
    medianMs: Object.fromEntries(Object.entries(med).map(([k, v]) => [k, Math.round(v)])),
    perStepOverheadMs: { floor: floorPerStep, tracked, untracked },
    ratios: {
      perStepTracked: ratio(tracked, floorPerStep),
      perStepUntracked: ratio(untracked, floorPerStep),
      wideTracked: ratio(med[`wide-${WIDE}`]!, med[`floor-wide-${WIDE}`]!),
      wideUntracked: ratio(med[`wide-${WIDE}-untracked`]!, med[`floor-wide-${WIDE}`]!),
    },
    widePhasesMedianMs: Object.fromEntries(
      Object.entries(phases).map(([k, v]) => [
        k,
        Object.fromEntries(Object.keys(v[0]!).map((p) => [p, Math.round(median(v.map((x) => x[p as keyof (typeof v)[0]])))])),
      ]),
    ),
    chainStepPhasesMedianMs: Object.fromEntries(
      Object.entries(stepPhases).map(([k, v]) => [
        k,
        Object.fromEntries(Object.keys(v[0]!).map((p) => [p, Math.round(median(v.map((x) => x[p as keyof (typeof v)[0]])) * 10) / 10])),
      ]),
    ),
    trackingLagMedianMs: Object.fromEntries(Object.entries(lag).map(([k, v]) => [k, Math.round(median(v))])),
    samplesMs: Object.fromEntries(Object.entries(times).map(([k, v]) => [k, v.map((x) => Math.round(x))])),
  };
  const out = join(
    import.meta.dirname,
    'results',
    `${result.date.slice(0, 10)}${process.env['BENCH_TAG'] ? `-${process.env['BENCH_TAG']}` : ''}.json`,
  );
  mkdirSync(join(import.meta.dirname, 'results'), { recursive: true });
  writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
  console.log(`| case | median wall time (${RUNS} runs) | tracking closed after the run |\n|---|---|---|`);
  for (const [k, v] of Object.entries(result.medianMs))
    console.log(`| ${k} | ${v} ms | ${result.trackingLagMedianMs[k] !== undefined ? `+${result.trackingLagMedianMs[k]} ms` : ''} |`);
  console.log(
    `\nper-step overhead (chain-50 − chain-1) / 49: floor ${floorPerStep} ms, mlpipe tracked ${tracked} ms (${result.ratios.perStepTracked}×), untracked ${untracked} ms (${result.ratios.perStepUntracked}×)`,
  );
  for (const [k, v] of Object.entries(result.chainStepPhasesMedianMs)) console.log(`${k}, per step (median ms): ${JSON.stringify(v)}`);
  for (const [k, v] of Object.entries(result.widePhasesMedianMs)) console.log(`${k} phases (median ms): ${JSON.stringify(v)}`);
  console.log(`wide-${WIDE} against the floor: tracked ${result.ratios.wideTracked}×, untracked ${result.ratios.wideUntracked}×`);
  console.log(
    `machine: ${result.machine.cpus} × ${result.machine.cpuModel}, ${result.machine.memoryGiB} GiB, node ${result.machine.node}, load ${result.machine.loadAverageBefore} → ${result.machine.loadAverageAfter}; written to ${out}`,
  );
}

await main();
