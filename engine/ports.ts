/**
 * Ports: the small interfaces through which plugins and activities reach the outside world.
 * Implementations live in adapters/ (local folder, GCS, ...); unit tests may use in-memory fakes.
 */
import type { SubmittedPipeline } from './contracts.js';
import type { ArtifactRef, CompiledPipeline } from './types.js';

export interface PutOptions {
  mediaType?: string;
  /** A human-readable file name kept in the reference. */
  name?: string;
  /** putFile only: the caller gives the file up, so the store may move it instead of copying. */
  move?: boolean;
}

export interface ArtifactStore {
  /** e.g. "local", "gcs". */
  readonly kind: string;
  /** Where it is: a folder, or gs://bucket/prefix. */
  readonly location: string;
  /** Stores bytes, content-addressed by sha256. Idempotent: the same bytes give the same reference. */
  put(data: Uint8Array | string, options?: PutOptions): Promise<ArtifactRef>;
  /** Stores a file by streaming it (large datasets, models). */
  putFile(path: string, options?: PutOptions): Promise<ArtifactRef>;
  /** Reads the bytes and checks them against the reference's digest (STORAGE_DIGEST_MISMATCH). */
  get(ref: ArtifactRef): Promise<Buffer>;
  /** A local file path holding the verified content (downloaded and cached for remote stores). */
  getFile(ref: ArtifactRef): Promise<string>;
  exists(ref: ArtifactRef): Promise<boolean>;
  /**
   * True when the artifact is present and its bytes still match the reference's digest and size:
   * the check behind a cache hit (a hit must never hand out missing or altered bytes).
   */
  verify(ref: ArtifactRef): Promise<boolean>;
  /** Every stored object, for garbage collection. */
  listObjects(): AsyncIterable<StoredObject>;
  /** Removes an artifact (pruning old checkpoints). Content-addressed: only for bytes nobody else references. */
  delete(ref: ArtifactRef): Promise<void>;
  /** Small JSON records under string keys: cache manifests, checkpoint pointers. Atomic replace. */
  putRecord(key: string, value: unknown): Promise<void>;
  getRecord<T = unknown>(key: string): Promise<T | undefined>;
  listRecords(prefix: string): Promise<string[]>;
  deleteRecord(key: string): Promise<void>;
  /**
   * The remote service behind the store (GCS), if any: a step waits out its outages
   * (`isUnavailable`: no connection, a timeout, 408, 429, 5xx) instead of failing; a rejection
   * (403, 404 on the bucket, ...) fails at once. A local folder has none.
   */
  readonly service?: RemoteService;
}

/** A service that may be unreachable for a while: what a step waits for, and where it is. */
export interface RemoteService {
  /** For messages: MLflow, GCS. */
  name: string;
  location?: string;
  isUnavailable(error: unknown): boolean;
}

export interface StoredObject {
  sha256: string;
  size: number;
  /** When the object was written. */
  created: Date;
}

export interface Logger {
  debug(fields: Record<string, unknown>, message: string): void;
  info(fields: Record<string, unknown>, message: string): void;
  warn(fields: Record<string, unknown>, message: string): void;
  error(fields: Record<string, unknown>, message: string): void;
}

/** An MLflow run as the tracker needs it. MLflow run IDs are `mlflowRunId` everywhere; `runId` is Temporal's. */
export interface TrackedRun {
  mlflowRunId: string;
  experimentId: string;
  /** mlflow-artifacts:/..., file:///..., gs://... */
  artifactUri: string;
}

/**
 * An MLflow tracking backend: a tracking server over REST, or MLflow's file store. Every method is
 * safe to call again with the same arguments, except `logBatch` for metrics (MLflow appends them):
 * callers deduplicate against `metricHistory` when a delivery is retried.
 */
/** What a new MLflow run is created with. */
export interface NewRun {
  experimentId: string;
  runName: string;
  startTime: number;
  tags: { key: string; value: string }[];
}

export interface TrackingBackend {
  readonly kind: 'rest' | 'file';
  /** A printable location without credentials. */
  readonly location: string;
  getOrCreateExperiment(name: string): Promise<string>;
  /** The run of `experimentId` whose tag `key` equals `value`, if any (the idempotency lookup). */
  findRunByTag(experimentId: string, key: string, value: string): Promise<TrackedRun | undefined>;
  createRun(options: NewRun): Promise<TrackedRun>;
  logBatch(
    mlflowRunId: string,
    batch: {
      metrics: { key: string; value: number; timestamp: number; step: number }[];
      params: { key: string; value: string }[];
      tags: { key: string; value: string }[];
    },
  ): Promise<void>;
  metricHistory(mlflowRunId: string, key: string): Promise<{ key: string; value: number; timestamp: number; step: number }[]>;
  updateRun(mlflowRunId: string, status: 'RUNNING' | 'FINISHED' | 'FAILED' | 'KILLED', endTime?: number): Promise<void>;
  /** Writes one file under the run's artifact root. */
  uploadArtifact(run: TrackedRun, path: string, data: Uint8Array): Promise<void>;
  /** Model registry; absent where the backend has none. */
  registry?: {
    ensureRegisteredModel(name: string): Promise<void>;
    /** The version created from `mlflowRunId`, if one exists (so a retry does not make a second one). */
    findVersion(name: string, mlflowRunId: string): Promise<string | undefined>;
    createVersion(name: string, source: string, mlflowRunId: string, tags?: { key: string; value: string }[]): Promise<string>;
    setAlias(name: string, alias: string, version: string): Promise<void>;
    versionByAlias(name: string, alias: string): Promise<string | undefined>;
    /** The version behind an alias, the run it was created from, and that run's tags. */
    aliasRun(name: string, alias: string): Promise<{ version: string; mlflowRunId: string; tags: Record<string, string> } | undefined>;
  };
}

/** A registered model version as the registry reports it. */
export interface ModelVersionInfo {
  name: string;
  version: string;
  /** Where its files are: mlflow-artifacts:/..., gs://..., file://... */
  source: string;
  mlflowRunId?: string;
  tags: Record<string, string>;
  aliases: string[];
}

/**
 * A model registry (MLflow's): versions, aliases, tags, and the files behind a version. Every
 * write is safe to repeat; `publish` is idempotent on its run key.
 */
export interface ModelRegistry {
  /** A printable location without credentials. */
  readonly location: string;
  /**
   * Uploads `files` under `model/` of the run tagged `runKey` in `experiment` (made once), and
   * registers them as a version of `name` (made once per run).
   */
  publish(input: {
    name: string;
    experiment: string;
    runKey: { tag: string; value: string };
    runName: string;
    runTags: Record<string, string>;
    files: Record<string, Uint8Array>;
    versionTags: Record<string, string>;
  }): Promise<ModelVersionInfo>;
  version(name: string, version: string): Promise<ModelVersionInfo | undefined>;
  byAlias(name: string, alias: string): Promise<ModelVersionInfo | undefined>;
  setAlias(name: string, alias: string, version: string): Promise<void>;
  modelTags(name: string): Promise<Record<string, string> | undefined>;
  setModelTag(name: string, key: string, value: string): Promise<void>;
  /** The bytes of `path` under a version's source. */
  readFile(info: ModelVersionInfo, path: string): Promise<Buffer>;
  /**
   * Whether an error of this registry means it could not be reached or could not serve for now
   * (connection refused, timeout, 408, 429, 5xx): worth waiting for. A rejection (4xx) is not.
   */
  isUnavailable?(error: unknown): boolean;
}

/**
 * The project a worker serves, as the activities see it: its pipelines, compiled on demand, and its
 * files. The composition root (app/) makes it from the project folder and the plugin registry.
 */
export interface ProjectPipelines {
  /** The project folder: a step's relative paths are resolved against it. */
  readonly dir: string;
  /** Compiles pipeline `ref` (a name under pipelines/ or a path inside the project) with overrides. */
  compile(ref: string, overrides?: string[]): CompiledPipeline;
  /**
   * Compiles a pipeline that came with the run (untrusted; engine/submitted.ts), for a worker on
   * `taskQueue`. The same file as the project's own compiles as the project's.
   */
  compileSubmitted(submitted: SubmittedPipeline, overrides: string[], taskQueue: string): CompiledPipeline;
  /** A path that arrived in untrusted input, resolved inside the project; INPUT_INVALID when it leaves it. */
  localPath(value: string, what: string): string | undefined;
  /** The project's git commit, when the folder is a git checkout. */
  gitCommit(): string | undefined;
}
