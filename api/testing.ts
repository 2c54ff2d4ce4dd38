/**
 * `mlpipe/testing`: run a plugin in a unit test the way a worker runs it (params through the
 * schema, inputs and outputs checked against the declarations), with a real artifact store in a
 * temporary folder and a context that records what the plugin logged and tracked; and, for an
 * integration test of a pipeline, a real Temporal dev server with a worker over the project.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { z } from 'zod';
import { LocalArtifactStore } from '../adapters/local-store.js';
import { loadSettings } from '../app/project.js';
import { createPipelineWorker } from '../app/worker.js';
import { requireTemporalCli, startDevServer, type DevServer } from '../dev/temporal-server.js';
import { PipelineError } from '../engine/errors.js';
import { progressClock } from '../engine/progress.js';
import type { ArtifactStore } from '../engine/ports.js';
import { scrubberFor, stepEnvironment } from '../engine/secrets.js';
import { untilAvailable } from '../engine/service-wait.js';
import { checkPluginInputs, checkPluginOutputs } from '../plugins/registry.js';
import type { AnyPlugin, Checkpoint, Checkpoints, InputsOf, IoMap, OutputsOf, PluginDefinition, StepContext } from '../plugins/sdk.js';
import { MlpipeClient } from './client.js';

export interface LogEntry {
  level: 'debug' | 'info' | 'warn' | 'error';
  message: string;
  fields: Record<string, unknown>;
}

export interface MetricPoint {
  key: string;
  value: number;
  step: number;
  timestamp: number;
}

/** A StepContext that records what the plugin reported. */
export interface TestContext extends StepContext {
  logs: LogEntry[];
  /** What the plugin reported through logMetrics (training curves). */
  series: MetricPoint[];
  /** The heartbeat details the step sent: `{ progress }` for each ctx.progress call, `{ waiting }` while it waits for a service. */
  heartbeats: (Record<string, unknown> | undefined)[];
}

export interface TestContextOptions {
  /** Relative paths in params are read from here (default the current folder). */
  projectDir?: string;
  /** Default: a local store in a new temporary folder (see testStore). */
  store?: ArtifactStore;
  signal?: AbortSignal;
  onHeartbeat?: (details?: Record<string, unknown>) => void;
  attempt?: number;
  stepId?: string;
  /** Worker variables the step may see (`env: [NAME]` in a pipeline). */
  env?: string[];
  /** retry.serviceWait of the step (default 0: an unreachable service fails at once). */
  serviceWaitMs?: number;
}

/** A local artifact store in a new temporary folder. */
export function testStore(dir: string = mkdtempSync(join(tmpdir(), 'mlpipe-test-store-'))): LocalArtifactStore {
  return new LocalArtifactStore(dir);
}

/** In-memory checkpoints of a test context: the newest of each stream, its bytes in the store. */
function memoryCheckpoints(store: ArtifactStore, newest: Map<string, Checkpoint>, stream: string): Checkpoints {
  return {
    async save(data, meta) {
      const checkpoint = { ref: await store.put(data), meta, savedAt: new Date().toISOString() };
      newest.set(stream, checkpoint);
      return checkpoint as Checkpoint<typeof meta>;
    },
    async latest() {
      const checkpoint = newest.get(stream);
      return checkpoint ? ({ ...checkpoint, data: await store.get(checkpoint.ref) } as never) : undefined;
    },
    stream: (name) => memoryCheckpoints(store, newest, `stream-${name}`),
  };
}

export function testContext(options: TestContextOptions = {}): TestContext {
  const store = options.store ?? testStore();
  const logs: LogEntry[] = [];
  const series: MetricPoint[] = [];
  const heartbeats: TestContext['heartbeats'] = [];
  const log = (level: LogEntry['level']) => (fields: Record<string, unknown>, message: string) =>
    void logs.push({ level, message, fields });
  // The newest checkpoint of each stream ('' the step's own), kept in memory.
  const checkpoints = new Map<string, Checkpoint>();
  const clock = progressClock();
  let workDir: string | undefined;
  return {
    runId: 'run-1',
    workflowId: 'wf-1',
    pipeline: 'test',
    stepId: options.stepId ?? 'step',
    attempt: options.attempt ?? 1,
    store,
    logger: { debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error') },
    signal: options.signal ?? new AbortController().signal,
    progress: (report) => {
      const d = { progress: clock.next(report, Date.now()) };
      heartbeats.push(d);
      options.onHeartbeat?.(d);
    },
    untilAvailable: (service, fn) =>
      untilAvailable(fn, {
        service: service.name,
        location: service.location,
        isUnavailable: (e) => service.isUnavailable(e),
        boundMs: options.serviceWaitMs ?? 0,
        initialDelayMs: 1,
        maxDelayMs: 5,
        signal: options.signal,
        onWaiting: (w) => options.onHeartbeat?.({ waiting: w.message }),
      }),
    projectDir: resolve(options.projectDir ?? process.cwd()),
    env: stepEnvironment(process.env, options.env),
    redact: scrubberFor(process.env, options.env),
    get workDir() {
      workDir ??= mkdtempSync(join(tmpdir(), 'mlpipe-test-work-'));
      return workDir;
    },
    checkpoint: memoryCheckpoints(store, checkpoints, ''),
    logMetrics(values, o) {
      for (const [key, value] of Object.entries(values))
        series.push({ key, value, step: o?.step ?? 0, timestamp: o?.timestamp ?? Date.now() });
    },
    logs,
    series,
    heartbeats,
  };
}

export interface RunPluginOptions<P extends z.ZodType, I extends IoMap> extends TestContextOptions {
  /** Params as a pipeline's `with:` gives them: parsed by the plugin's schema (defaults applied). */
  params?: z.input<P>;
  inputs?: InputsOf<I>;
  /** A context to run in (default a new testContext with these options). */
  ctx?: TestContext;
}

export interface PluginRun<O extends IoMap> {
  outputs: OutputsOf<O>;
  logs: LogEntry[];
  series: MetricPoint[];
  heartbeats: (Record<string, unknown> | undefined)[];
  /** The store the plugin wrote to: read its outputs with `store.get(ref)`. */
  store: ArtifactStore;
  ctx: TestContext;
}

/**
 * Runs a plugin as a worker would: params through its schema (PLUGIN_PARAMS), inputs checked
 * (PLUGIN_INPUT), then `run`, then its outputs against the declared ones (PLUGIN_OUTPUT).
 */
export async function runPlugin<P extends z.ZodType, I extends IoMap, O extends IoMap>(
  plugin: PluginDefinition<P, I, O>,
  options: RunPluginOptions<P, I> = {},
): Promise<PluginRun<O>> {
  const ctx = options.ctx ?? testContext(options);
  const any = plugin as unknown as AnyPlugin;
  const schema: z.ZodType = plugin.params;
  const parsed = schema.safeParse(options.params ?? {});
  if (!parsed.success) {
    const detail = parsed.error.issues.map((i) => `${i.path.join('.') || '(params)'}: ${i.message}`).join('; ');
    throw new PipelineError('PLUGIN_PARAMS', `${plugin.name}: invalid params: ${detail}`);
  }
  const inputs = (options.inputs ?? {}) as Record<string, unknown>;
  checkPluginInputs(any, parsed.data, inputs, ctx.stepId);
  const outputs = await plugin.run(ctx, parsed.data as z.infer<P>, inputs as InputsOf<I>);
  checkPluginOutputs(any, parsed.data, outputs as Record<string, unknown>);
  return { outputs, logs: ctx.logs, series: ctx.series, heartbeats: ctx.heartbeats, store: ctx.store, ctx };
}

export interface TestEnvironmentOptions {
  /** The project whose pipelines and plugins the worker serves (default the current folder). */
  projectDir?: string;
  /** Use this Temporal server instead of starting a dev server (host:port). */
  address?: string;
  /** Default a new one per environment, so parallel test files do not take each other's tasks. */
  taskQueue?: string;
  /** Artifact store of the worker (default a new temporary folder). */
  artifactsDir?: string;
}

export interface TestEnvironment {
  /** The Temporal server's address. */
  address: string;
  taskQueue: string;
  artifactsDir: string;
  /** A client over the project, on the environment's server and task queue. */
  client: MlpipeClient;
  /** Stops the worker, the client and the dev server it started. */
  stop(): Promise<void>;
}

/**
 * A real Temporal dev server (the Temporal CLI: TEMPORAL_CLI, `temporal` on PATH, or the cached
 * copy) and a worker over the project's pipelines and plugins, for an integration test:
 *
 *   const env = await startTestEnvironment();
 *   const result = await env.client.run('example');
 *   await env.stop();
 *
 * Tracking is off; artifacts go to a temporary folder.
 */
export async function startTestEnvironment(options: TestEnvironmentOptions = {}): Promise<TestEnvironment> {
  const base = loadSettings(options.projectDir ? { ...process.env, MLPIPE_PROJECT_DIR: options.projectDir } : process.env);
  let server: DevServer | undefined;
  if (!options.address) server = await startDevServer({ bin: requireTemporalCli(base.cacheDir), headless: true });
  const address = options.address ?? server!.address;
  const taskQueue = options.taskQueue ?? `mlpipe-test-${Math.random().toString(36).slice(2, 10)}`;
  const artifactsDir = options.artifactsDir ?? mkdtempSync(join(tmpdir(), 'mlpipe-test-artifacts-'));
  const settings = { ...base, temporalAddress: address, taskQueue, artifactsDir, trackingUri: undefined };
  try {
    const { worker, connection } = await createPipelineWorker({ settings, tracking: null });
    const running = worker.run();
    const client = await MlpipeClient.connect({
      projectDir: base.projectDir,
      address,
      taskQueue,
      env: { ...process.env, MLPIPE_ARTIFACTS: artifactsDir },
    });
    return {
      address,
      taskQueue,
      artifactsDir,
      client,
      async stop() {
        await client.close();
        worker.shutdown();
        await running;
        await connection.close();
        await server?.stop();
      },
    };
  } catch (e) {
    await server?.stop();
    throw e;
  }
}
