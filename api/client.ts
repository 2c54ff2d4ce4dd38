/**
 * The client API (`import { connect, compile, validate } from 'mlpipe'`): compile and validate a
 * project's pipelines, start runs, follow them, cancel them, and list the runs recorded in the
 * artifact store. Runs are executed by workers (`mlpipe worker`, `createPipelineWorker`).
 */
import { Client, Connection, WorkflowFailedError } from '@temporalio/client';
import { compileProjectPipeline, startPipelineRun, type RunOptions, type StartedRun } from '../app/runs.js';
import { loadSettings, type Settings } from '../app/project.js';
import { createArtifactStore } from '../adapters/stores.js';
import { statusQueryName } from '../engine/contracts.js';
import { PipelineError, SpecErrors } from '../engine/errors.js';
import { listRuns as listRecordedRuns, type RunManifest } from '../engine/lineage.js';
import type { CompiledPipeline } from '../engine/types.js';
import type { PipelineResult, PipelineStatus } from '../engine/contracts.js';

export type { RunOptions, StartedRun } from '../app/runs.js';
export type { Settings } from '../app/project.js';

export interface ProjectOptions {
  /** The project folder (pipelines/, conf/, mlpipe.plugins.ts); default MLPIPE_PROJECT_DIR or the current folder. */
  projectDir?: string;
  /** Where the other settings come from (default process.env): TEMPORAL_ADDRESS, MLPIPE_TASK_QUEUE, ... */
  env?: NodeJS.ProcessEnv;
}

export interface ConnectOptions extends ProjectOptions {
  /** Temporal frontend, host:port (default TEMPORAL_ADDRESS or localhost:7233). */
  address?: string;
  namespace?: string;
  taskQueue?: string;
}

function settingsOf(o: ConnectOptions = {}): Settings {
  const env = o.env ?? process.env;
  const s = loadSettings(o.projectDir ? { ...env, MLPIPE_PROJECT_DIR: o.projectDir } : env);
  return {
    ...s,
    ...(o.address ? { temporalAddress: o.address } : {}),
    ...(o.namespace ? { namespace: o.namespace } : {}),
    ...(o.taskQueue ? { taskQueue: o.taskQueue } : {}),
  };
}

/** Compiles a pipeline (a name in pipelines/ or a path to a YAML file) with the project's plugins. Throws a PipelineError (SpecErrors for several problems). */
export function compile(ref: string, options: ProjectOptions & { overrides?: string[] } = {}): Promise<CompiledPipeline> {
  return compileProjectPipeline(settingsOf(options), ref, options.overrides);
}

export type Validation = { ok: true; pipeline: CompiledPipeline } | { ok: false; problems: PipelineError[] };

/** Like compile, but returns every problem found instead of throwing. */
export async function validate(ref: string, options: ProjectOptions & { overrides?: string[] } = {}): Promise<Validation> {
  try {
    return { ok: true, pipeline: await compile(ref, options) };
  } catch (e) {
    if (e instanceof SpecErrors) return { ok: false, problems: e.problems };
    if (e instanceof PipelineError) return { ok: false, problems: [e] };
    throw e;
  }
}

/** A run that did not succeed: failed, cancelled or terminated. */
export class RunFailedError extends Error {
  constructor(
    readonly workflowId: string,
    message: string,
    readonly status: PipelineStatus | undefined,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'RunFailedError';
  }
}

export interface FollowOptions {
  /** Called with the run's status each time it changes (from the status query). */
  onStatus?: (status: PipelineStatus) => void;
  /** How often to ask for the status (default 500 ms). */
  pollMs?: number;
}

export class MlpipeClient {
  private constructor(
    readonly settings: Settings,
    /** The Temporal client, for anything this API does not cover. */
    readonly temporal: Client,
  ) {}

  static async connect(options: ConnectOptions = {}): Promise<MlpipeClient> {
    const settings = settingsOf(options);
    let connection: Connection;
    try {
      connection = await Connection.connect({ address: settings.temporalAddress, connectTimeout: '5s' });
    } catch (e) {
      throw new PipelineError('TOOL_MISSING', `No Temporal server at ${settings.temporalAddress}.`, {
        hint: "Start one with 'mlpipe dev' (or 'temporal server start-dev'), or set TEMPORAL_ADDRESS.",
        cause: e,
      });
    }
    return new MlpipeClient(settings, new Client({ connection, namespace: settings.namespace }));
  }

  compile(ref: string, overrides: string[] = []): Promise<CompiledPipeline> {
    return compileProjectPipeline(this.settings, ref, overrides);
  }

  /** Compiles the pipeline here (a bad spec throws before anything starts), then starts a run. */
  start(ref: string, options: RunOptions = {}): Promise<StartedRun> {
    return startPipelineRun(this.temporal, this.settings, ref, options);
  }

  /** The live status of a run (which steps are pending, running, done). */
  status(workflowId: string): Promise<PipelineStatus> {
    return this.temporal.workflow.getHandle(workflowId).query<PipelineStatus>(statusQueryName);
  }

  /** Waits for a run to end: its result, or a RunFailedError. */
  async follow(workflowId: string, options: FollowOptions = {}): Promise<PipelineResult> {
    const handle = this.temporal.workflow.getHandle(workflowId);
    let last: PipelineStatus | undefined;
    let seen = '';
    let inflight: Promise<void> | undefined;
    const poll = (): Promise<void> =>
      this.status(workflowId).then(
        (s) => {
          last = s;
          const key = JSON.stringify(s.steps);
          if (key !== seen) {
            seen = key;
            options.onStatus?.(s);
          }
        },
        () => undefined, // not started yet, or closed
      );
    const timer = setInterval(() => {
      inflight ??= poll().finally(() => (inflight = undefined));
    }, options.pollMs ?? 500);
    try {
      const result = (await handle.result()) as PipelineResult;
      return result;
    } catch (e) {
      const message = e instanceof WorkflowFailedError ? (e.cause?.message ?? e.message) : (e as Error).message;
      throw new RunFailedError(workflowId, `Run ${workflowId} did not succeed: ${message}`, last, { cause: e });
    } finally {
      clearInterval(timer);
      await inflight;
    }
  }

  /** start, then follow. */
  async run(ref: string, options: RunOptions & FollowOptions = {}): Promise<PipelineResult & { workflowId: string }> {
    const { workflowId } = await this.start(ref, options);
    return { ...(await this.follow(workflowId, options)), workflowId };
  }

  /** Requests cancellation: running steps are cancelled, the run ends as cancelled. */
  async cancel(workflowId: string): Promise<void> {
    await this.temporal.workflow.getHandle(workflowId).cancel();
  }

  /** Runs recorded in the artifact store (MLPIPE_ARTIFACTS), newest first. */
  listRuns(options: { limit?: number } = {}): Promise<RunManifest[]> {
    return listRuns({ ...options, settings: this.settings });
  }

  async close(): Promise<void> {
    await this.temporal.connection.close();
  }
}

/** Connects to Temporal (TEMPORAL_ADDRESS unless given) for the project in `projectDir` (default the current folder). */
export function connect(options: ConnectOptions = {}): Promise<MlpipeClient> {
  return MlpipeClient.connect(options);
}

/** Runs recorded in the project's artifact store, newest first. Needs no Temporal server. */
export async function listRuns(options: ProjectOptions & { limit?: number; settings?: Settings } = {}): Promise<RunManifest[]> {
  const settings = options.settings ?? settingsOf(options);
  const store = createArtifactStore(settings.artifactsDir, { cacheDir: settings.stateDir });
  const runs = await listRecordedRuns(store);
  return options.limit ? runs.slice(0, options.limit) : runs;
}
