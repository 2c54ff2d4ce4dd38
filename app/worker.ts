/**
 * Builds a worker that serves the pipeline workflow and its activities on its task queue, and
 * tracking deliveries on that queue's tracking queue (`<taskQueue>-tracking`, trackingTaskQueue in
 * engine/contracts.ts) with slots of their own (MLPIPE_TRACKING_ACTIVITIES, default 32), so that
 * delivering to MLflow never competes with pipeline steps for MLPIPE_WORKER_ACTIVITIES.
 * Used by `mlpipe worker`, `mlpipe dev`, `mlpipe run --worker`, the tests and the bench.
 */
import { bundleWorkflowCode, NativeConnection, Worker, type WorkerOptions } from '@temporalio/worker';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createArtifactStore } from '../adapters/stores.js';
import { pruneBundles, touchBundle } from './bundle-cache.js';
import { loadSettings, type Settings } from './project.js';
import { createTrackingBackend, modelRegistryOf } from '../adapters/mlflow/index.js';
import type { ArtifactStore, TrackingBackend } from '../engine/ports.js';
import { loadProjectRegistry } from './project-plugins.js';
import type { Registry } from '../plugins/registry.js';
import { trackingTaskQueue } from '../engine/contracts.js';
import { createActivities } from '../activities/index.js';
import { projectPipelines } from './load-pipeline.js';
import { missingSearchAttributes, mlpipeVersion, searchAttributesHint } from './visibility.js';

/** The workflow code to bundle: the sources in a checkout (run through tsx), the compiled files in the package. */
export const WORKFLOWS_PATH = join(
  dirname(fileURLToPath(import.meta.url)),
  '..',
  'workflows',
  import.meta.url.endsWith('.ts') ? 'index.ts' : 'index.js',
);

let bundle: Promise<{ code: string }> | undefined;
/**
 * The workflow bundle, built once per process, and kept between processes in the cache
 * (`<MLPIPE_CACHE_DIR>/workflow-bundles/<digest>.js`, default ~/.cache/mlpipe) under a digest of
 * what goes into it: the workflow and engine sources (workflow code imports nothing else of
 * mlpipe, eslint's layer rules see to it) and the versions of the packages they import. Building
 * it (webpack) takes seconds; reading it back, milliseconds. Only the most recently used few are
 * kept (app/bundle-cache.ts).
 */
export function workflowBundle(): Promise<{ code: string }> {
  bundle ??= cachedBundle();
  return bundle;
}

async function cachedBundle(): Promise<{ code: string }> {
  const dir = join(loadSettings().cacheDir, 'workflow-bundles');
  let file: string | undefined;
  try {
    file = join(dir, `${await bundleDigest()}.js`);
    const code = await readFile(file, 'utf8');
    await touchBundle(file);
    return { code };
  } catch {
    // Not cached yet (or unreadable): build it.
  }
  const built = await bundleWorkflowCode({ workflowsPath: WORKFLOWS_PATH, logger: quietLogger });
  if (file) {
    try {
      await mkdir(dir, { recursive: true });
      const tmp = `${file}.${process.pid}.tmp`;
      await writeFile(tmp, built.code);
      await rename(tmp, file);
      await pruneBundles(dir);
    } catch (e) {
      quietLogger.warn(`workflow bundle not cached in ${dir}: ${(e as Error).message}`);
    }
  }
  return built;
}

/** The digest of the bundle's inputs: every file under workflows/ and engine/, and the versions of the packages they import. */
async function bundleDigest(): Promise<string> {
  const root = dirname(dirname(WORKFLOWS_PATH));
  const hash = createHash('sha256').update(`v1\n${WORKFLOWS_PATH.endsWith('.ts') ? 'ts' : 'js'}\n`);
  for (const sub of ['workflows', 'engine']) {
    const files = (await readdir(join(root, sub), { recursive: true, withFileTypes: true }))
      .filter((d) => d.isFile() && /\.[cm]?[jt]s$/.test(d.name))
      .map((d) => join(d.parentPath, d.name))
      .sort();
    for (const f of files) hash.update(`${f.slice(root.length)}\n`).update(await readFile(f));
  }
  const require = createRequire(import.meta.url);
  for (const pkg of ['@temporalio/workflow', '@temporalio/common', '@temporalio/worker', 'zod', 'yaml']) {
    let d = dirname(require.resolve(pkg));
    while (
      !existsSync(join(d, 'package.json')) ||
      (JSON.parse(readFileSync(join(d, 'package.json'), 'utf8')) as { name?: string }).name !== pkg
    ) {
      if (dirname(d) === d) throw new Error(`no package.json for ${pkg}`);
      d = dirname(d);
    }
    hash.update(`${pkg}@${(JSON.parse(readFileSync(join(d, 'package.json'), 'utf8')) as { version: string }).version}\n`);
  }
  return hash.digest('hex').slice(0, 32);
}

const quietLogger = {
  log: () => undefined,
  trace: () => undefined,
  debug: () => undefined,
  info: () => undefined,
  warn: (m: string) => console.warn(m),
  error: (m: string) => console.error(m),
};

/** The pipeline worker's own settings (the bench gives its floor worker the same). */
export const MAIN_WORKER_OPTIONS = {
  // A worker that died keeps its sticky workflow tasks for this long before another takes over.
  stickyQueueScheduleToStartTimeout: '3s',
  // Progress (`ctx.progress`) reaches the server within a second or two: the SDK would otherwise
  // hold heartbeats back for 80% of the heartbeat timeout. Steps heartbeat on their own only every
  // third of their timeout, so this adds calls only while a step reports progress.
  maxHeartbeatThrottleInterval: '1s',
  maxConcurrentActivityTaskExecutions: Number(process.env['MLPIPE_WORKER_ACTIVITIES'] ?? 64),
} satisfies Partial<WorkerOptions>;

export interface PipelineWorkerOptions {
  settings: Pick<Settings, 'projectDir' | 'artifactsDir' | 'temporalAddress' | 'namespace' | 'taskQueue'> &
    Partial<Pick<Settings, 'trackingUri' | 'experimentName' | 'trustSubmitted'>>;
  /**
   * Run the code-running steps (util.shell, `env:`) of pipelines submitted with the run (default
   * settings.trustSubmitted, MLPIPE_TRUST_SUBMITTED_PIPELINES=1). Anyone who can start workflows on
   * this task queue may then run commands on this worker.
   */
  trustSubmittedPipelines?: boolean;
  /** The MLflow backend; default from settings.trackingUri (null: tracking off). */
  tracking?: TrackingBackend | null;
  connection?: NativeConnection;
  registry?: Registry;
  store?: ArtifactStore;
  taskQueue?: string;
  /** Extra worker options (concurrency limits, identity...). */
  worker?: Partial<WorkerOptions>;
}

/**
 * The Temporal workers of one worker process, run and shut down together: the pipeline worker
 * (workflows and steps) and the tracking worker (deliveries to MLflow).
 */
export class PipelineWorker {
  constructor(
    readonly main: Worker,
    readonly tracking: Worker,
  ) {}

  private get all(): Worker[] {
    return [this.main, this.tracking];
  }

  getState(): ReturnType<Worker['getState']> {
    return this.main.getState();
  }

  shutdown(): void {
    for (const w of this.all) if (w.getState() === 'RUNNING') w.shutdown();
  }

  /** Runs both until both have stopped; one that stops (or fails) stops the other. */
  async run(): Promise<void> {
    const results = await Promise.allSettled(this.all.map((w) => w.run().finally(() => this.shutdown())));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }

  /** Runs both while `fn` runs, then shuts them down; returns what `fn` returned. */
  async runUntil<R>(fn: () => Promise<R>): Promise<R> {
    const running = this.run();
    try {
      return await Promise.race([fn(), running.then(() => Promise.reject(new Error('the worker stopped before the work was done')))]);
    } finally {
      this.shutdown();
      await running;
    }
  }
}

export async function createPipelineWorker(
  opts: PipelineWorkerOptions,
): Promise<{ worker: PipelineWorker; connection: NativeConnection; ownsConnection: boolean }> {
  const ownsConnection = !opts.connection;
  const connection = opts.connection ?? (await NativeConnection.connect({ address: opts.settings.temporalAddress }));
  let backend: TrackingBackend | undefined | null = opts.tracking;
  const tracking = (): TrackingBackend | undefined => {
    if (backend === undefined) backend = opts.settings.trackingUri ? createTrackingBackend(opts.settings.trackingUri) : null;
    return backend ?? undefined;
  };
  const registry = opts.registry ?? (await loadProjectRegistry(opts.settings.projectDir));
  const trustSubmitted = opts.trustSubmittedPipelines ?? opts.settings.trustSubmitted ?? false;
  const missing = await missingSearchAttributes(connection, opts.settings.namespace);
  if (missing?.length) console.warn(searchAttributesHint(opts.settings.namespace, missing));
  const searchAttributes = missing?.length === 0 ? { version: mlpipeVersion() } : undefined;
  const activities = createActivities({
    registry,
    project: projectPipelines(opts.settings.projectDir, registry, { trustSubmitted }),
    trustSubmitted,
    store: opts.store ?? createArtifactStore(opts.settings.artifactsDir, { cacheDir: join(opts.settings.projectDir, '.mlpipe') }),
    projectDir: opts.settings.projectDir,
    tracking,
    models: () => modelRegistryOf(tracking()),
    experimentName: opts.settings.experimentName,
    searchAttributes: () => searchAttributes,
  });
  const taskQueue = opts.taskQueue ?? opts.settings.taskQueue;
  const main = await Worker.create({
    connection,
    namespace: opts.settings.namespace,
    taskQueue,
    workflowBundle: await workflowBundle(),
    activities,
    ...MAIN_WORKER_OPTIONS,
    // On SIGTERM (Kubernetes, Docker): stop polling, let running activities finish for this long.
    ...(process.env['MLPIPE_SHUTDOWN_GRACE'] ? { shutdownGraceTime: process.env['MLPIPE_SHUTDOWN_GRACE'] as `${number}s` } : {}),
    ...opts.worker,
  });
  const delivery = await Worker.create({
    connection,
    namespace: opts.settings.namespace,
    taskQueue: trackingTaskQueue(taskQueue),
    activities: { deliverTracking: activities.deliverTracking },
    maxConcurrentActivityTaskExecutions: Number(process.env['MLPIPE_TRACKING_ACTIVITIES'] ?? 32),
    ...(process.env['MLPIPE_SHUTDOWN_GRACE'] ? { shutdownGraceTime: process.env['MLPIPE_SHUTDOWN_GRACE'] as `${number}s` } : {}),
    ...(opts.worker?.identity ? { identity: opts.worker.identity } : {}),
  });
  return { worker: new PipelineWorker(main, delivery), connection, ownsConnection };
}
