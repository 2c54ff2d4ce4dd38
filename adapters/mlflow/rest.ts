/**
 * A typed MLflow REST client on undici: tracking (experiments, runs, log-batch, metric history),
 * the model registry (registered models, versions, aliases) and artifact upload through the
 * `mlflow-artifacts` proxy.
 *
 * Retries. Requests are retried with exponential backoff and full jitter on 408, 429, 5xx and
 * connection errors, but only when a second copy cannot duplicate anything:
 * - reads, and writes that are idempotent in MLflow (set tag, log the same param again, update a
 *   run's status, set an alias, PUT an artifact to the same path) are always retried;
 * - writes that append or create (runs/create, log-batch with metrics, model-versions/create) are
 *   retried by the client only when the request certainly never reached MLflow (connection refused,
 *   DNS failure). After an ambiguous failure (a timeout, a reset, a 5xx) the client throws an
 *   MlflowError with `ambiguous: true`, and the caller first looks at what landed: a run is found
 *   by its idempotency tag (`findRunByTag`), metric points by (key, step, timestamp, value) in the
 *   metric history, a model version by its run. Only what is missing is sent again. That is how a
 *   retry never creates a duplicate run, metric point or model version.
 */
import type { Storage } from '@google-cloud/storage';
import { Agent, request, type Dispatcher } from 'undici';
import { parseGsUri, storageFromEnv } from '../gcs-store.js';
import type { NewRun, TrackedRun, TrackingBackend } from '../../engine/ports.js';
import { PipelineError } from '../../engine/errors.js';
import { chunkBatch, type Batch, type MetricPoint } from '../../engine/tracking.js';

export interface MlflowAuth {
  username?: string;
  password?: string;
  token?: string;
}

export interface RestOptions {
  /** Tracking URI, e.g. http://127.0.0.1:5000 (a path prefix is kept). */
  uri: string;
  auth?: MlflowAuth;
  /** Attempts per request, the first included (default 5). */
  maxAttempts?: number;
  /** First backoff in ms (default 250), doubled per attempt, capped at maxBackoffMs (default 8000). */
  backoffMs?: number;
  maxBackoffMs?: number;
  /** Per-request timeout in ms (default 30000). */
  timeoutMs?: number;
  dispatcher?: Dispatcher;
  /** Sleep function, replaceable in tests. */
  sleep?: (ms: number) => Promise<void>;
  /** GCS client for runs whose artifact URI is gs://... (default: Application Default Credentials, or MLPIPE_GCS_ENDPOINT). */
  gcs?: Storage;
}

/**
 * An MLflow request that failed: a TRACKING_ERROR whose `mlflowCode` is MLflow's `error_code` from
 * the body (or HTTP_<status>, or NETWORK/TIMEOUT for the connection). The subclasses sort the
 * codes callers act on (not found, already exists, invalid, denied).
 */
export class MlflowError extends PipelineError {
  constructor(
    message: string,
    readonly mlflowCode: string,
    readonly httpStatus?: number,
    /** True when the request may have been applied although it failed (see the module comment). */
    readonly ambiguous = false,
  ) {
    super('TRACKING_ERROR', message);
    this.name = 'MlflowError';
  }
}

export class MlflowNotFound extends MlflowError {}
export class MlflowAlreadyExists extends MlflowError {}
export class MlflowInvalidParameter extends MlflowError {}
export class MlflowPermissionDenied extends MlflowError {}

function typedError(code: string, message: string, status: number, ambiguous: boolean): MlflowError {
  switch (code) {
    case 'RESOURCE_DOES_NOT_EXIST':
      return new MlflowNotFound(message, code, status);
    case 'RESOURCE_ALREADY_EXISTS':
      return new MlflowAlreadyExists(message, code, status);
    case 'INVALID_PARAMETER_VALUE':
    case 'BAD_REQUEST':
    case 'INVALID_STATE':
      return new MlflowInvalidParameter(message, code, status);
    case 'PERMISSION_DENIED':
    case 'UNAUTHENTICATED':
      return new MlflowPermissionDenied(message, code, status);
    default:
      return new MlflowError(message, code, status, ambiguous);
  }
}

const RETRY_STATUS = new Set([408, 429, 500, 502, 503, 504]);
/** Statuses that mean MLflow did not process the request. */
const NOT_APPLIED_STATUS = new Set([429, 503]);
const NOT_SENT = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_CONNECT_TIMEOUT']);

function errorCode(e: unknown): string {
  let cur: unknown = e;
  for (let i = 0; i < 4 && cur; i++) {
    const c = (cur as { code?: unknown }).code;
    if (typeof c === 'string') return c;
    cur = (cur as { cause?: unknown }).cause;
  }
  return 'UNKNOWN';
}

/**
 * Whether an error means MLflow could not be reached or could not serve for now (no connection, a
 * timeout, 408, 429, 5xx), after this client's own retries: a step waits for it. A 4xx is a
 * rejection that waiting cannot fix.
 */
export function isMlflowUnavailable(e: unknown): boolean {
  if (!(e instanceof MlflowError)) return false;
  if (e.mlflowCode === 'NETWORK' || e.mlflowCode === 'TIMEOUT') return true;
  return e.httpStatus !== undefined && RETRY_STATUS.has(e.httpStatus);
}

/** Credentials from the environment, as MLflow's Python client reads them. */
export function authFromEnv(env: NodeJS.ProcessEnv = process.env): MlflowAuth | undefined {
  if (env['MLFLOW_TRACKING_USERNAME'] && env['MLFLOW_TRACKING_PASSWORD'])
    return { username: env['MLFLOW_TRACKING_USERNAME'], password: env['MLFLOW_TRACKING_PASSWORD'] };
  if (env['MLFLOW_TRACKING_TOKEN']) return { token: env['MLFLOW_TRACKING_TOKEN'] };
  return undefined;
}

/** The URI without user info, for messages and logs. */
export function redact(uri: string): string {
  try {
    const u = new URL(uri);
    u.username = '';
    u.password = '';
    return u.toString().replace(/\/$/, '');
  } catch {
    return uri.replace(/\/\/[^@/]*@/, '//');
  }
}

interface RawRun {
  info: {
    run_id: string;
    experiment_id: string;
    artifact_uri: string;
    status: string;
    run_name?: string;
    start_time?: number;
    end_time?: number;
  };
  data?: {
    metrics?: { key: string; value: number; timestamp: number; step: number }[];
    params?: { key: string; value: string }[];
    tags?: { key: string; value: string }[];
  };
}

export class MlflowRestClient implements TrackingBackend {
  readonly kind = 'rest' as const;
  readonly location: string;
  private readonly base: URL;
  private readonly headers: Record<string, string>;
  private readonly dispatcher: Dispatcher;
  private readonly sleep: (ms: number) => Promise<void>;
  private gcs: Storage | undefined;

  constructor(private readonly options: RestOptions) {
    const u = new URL(options.uri);
    const auth =
      options.auth ?? (u.username ? { username: decodeURIComponent(u.username), password: decodeURIComponent(u.password) } : undefined);
    u.username = '';
    u.password = '';
    this.base = new URL(u.toString().replace(/\/?$/, '/'));
    this.location = redact(options.uri);
    this.headers = { 'content-type': 'application/json', 'user-agent': 'mlpipe' };
    if (auth?.username !== undefined)
      this.headers['authorization'] = `Basic ${Buffer.from(`${auth.username}:${auth.password ?? ''}`).toString('base64')}`;
    else if (auth?.token) this.headers['authorization'] = `Bearer ${auth.token}`;
    this.dispatcher = options.dispatcher ?? new Agent({ keepAliveTimeout: 10_000, connect: { timeout: 10_000 } });
    this.sleep = options.sleep ?? ((ms) => new Promise((r) => setTimeout(r, ms)));
  }

  /**
   * One call with retries. `idempotent: false` limits retries to failures where nothing was sent
   * or MLflow said it did not process the request (429, 503).
   */
  async call<T>(
    method: 'GET' | 'POST' | 'PATCH' | 'DELETE' | 'PUT',
    path: string,
    body: unknown,
    idempotent: boolean,
    raw?: { data: Uint8Array; contentType: string },
  ): Promise<T> {
    const url = new URL(path, this.base);
    if (method === 'GET' || method === 'DELETE') {
      for (const [k, v] of Object.entries((body ?? {}) as Record<string, unknown>)) if (v !== undefined) url.searchParams.set(k, String(v));
    }
    const maxAttempts = this.options.maxAttempts ?? 5;
    const base = this.options.backoffMs ?? 250;
    const cap = this.options.maxBackoffMs ?? 8000;
    let last: MlflowError | undefined;
    for (let attempt = 1; attempt <= maxAttempts; attempt++) {
      if (attempt > 1) await this.sleep(Math.random() * Math.min(cap, base * 2 ** (attempt - 2)));
      let status: number;
      let text: string;
      try {
        const res = await request(url, {
          method,
          headers: raw ? { ...this.headers, 'content-type': raw.contentType } : this.headers,
          body: raw ? raw.data : method === 'GET' || method === 'DELETE' ? undefined : JSON.stringify(body ?? {}),
          dispatcher: this.dispatcher,
          headersTimeout: this.options.timeoutMs ?? 30_000,
          bodyTimeout: this.options.timeoutMs ?? 30_000,
        });
        status = res.statusCode;
        text = await res.body.text();
      } catch (e) {
        const code = errorCode(e);
        const notSent = NOT_SENT.has(code);
        last = new MlflowError(
          `MLflow at ${this.location} unreachable (${code}): ${(e as Error).message}`,
          notSent ? 'NETWORK' : 'TIMEOUT',
          undefined,
          !notSent,
        );
        if (notSent || idempotent) continue;
        throw last;
      }
      if (status >= 200 && status < 300) return (text ? JSON.parse(text) : {}) as T;
      let parsed: { error_code?: string; message?: string } = {};
      try {
        parsed = JSON.parse(text) as typeof parsed;
      } catch {
        /* not JSON: a proxy's error page */
      }
      const code = parsed.error_code ?? `HTTP_${status}`;
      const message = `MLflow ${method} ${url.pathname}: ${code}: ${(parsed.message ?? text).slice(0, 500)}`;
      const retryable = RETRY_STATUS.has(status);
      last = typedError(code, message, status, retryable && !NOT_APPLIED_STATUS.has(status));
      if (retryable && (idempotent || NOT_APPLIED_STATUS.has(status))) continue;
      throw last;
    }
    throw last!;
  }

  private api<T>(method: 'GET' | 'POST' | 'PATCH' | 'DELETE', endpoint: string, body: unknown, idempotent = true): Promise<T> {
    return this.call<T>(method, `api/2.0/mlflow/${endpoint}`, body, idempotent);
  }

  // ---- experiments

  async getExperimentByName(
    name: string,
  ): Promise<{ experiment_id: string; artifact_location?: string; lifecycle_stage?: string } | undefined> {
    try {
      const r = await this.api<{ experiment: { experiment_id: string; artifact_location?: string; lifecycle_stage?: string } }>(
        'GET',
        'experiments/get-by-name',
        { experiment_name: name },
      );
      return r.experiment;
    } catch (e) {
      if (e instanceof MlflowNotFound) return undefined;
      throw e;
    }
  }

  /** Get, else create; when a concurrent run created it first (RESOURCE_ALREADY_EXISTS), get again. */
  /** `artifactLocation` (e.g. gs://bucket/path) applies only when the experiment is created here. */
  async getOrCreateExperiment(name: string, options: { artifactLocation?: string } = {}): Promise<string> {
    const found = await this.getExperimentByName(name);
    if (found) {
      if (found.lifecycle_stage === 'deleted') {
        throw new MlflowInvalidParameter(
          `MLflow experiment '${name}' is deleted; restore it (mlflow experiments restore) or choose another name.`,
          'INVALID_STATE',
        );
      }
      return found.experiment_id;
    }
    try {
      const body = options.artifactLocation ? { name, artifact_location: options.artifactLocation } : { name };
      return (await this.api<{ experiment_id: string }>('POST', 'experiments/create', body, true)).experiment_id;
    } catch (e) {
      if (!(e instanceof MlflowAlreadyExists)) throw e;
      const again = await this.getExperimentByName(name);
      if (!again) throw e;
      return again.experiment_id;
    }
  }

  // ---- runs

  async createRun(o: NewRun): Promise<TrackedRun> {
    const r = await this.api<{ run: RawRun }>(
      'POST',
      'runs/create',
      { experiment_id: o.experimentId, run_name: o.runName, start_time: o.startTime, tags: o.tags },
      false,
    );
    return toRun(r.run);
  }

  async getRun(mlflowRunId: string): Promise<RawRun> {
    return (await this.api<{ run: RawRun }>('GET', 'runs/get', { run_id: mlflowRunId })).run;
  }

  async searchRuns(
    experimentIds: string[],
    filter: string,
    options: { maxResults?: number; orderBy?: string[]; pageToken?: string } = {},
  ): Promise<{ runs: RawRun[]; nextPageToken?: string }> {
    const r = await this.api<{ runs?: RawRun[]; next_page_token?: string }>('POST', 'runs/search', {
      experiment_ids: experimentIds,
      filter,
      max_results: options.maxResults ?? 1000,
      order_by: options.orderBy ?? [],
      page_token: options.pageToken,
    });
    return { runs: r.runs ?? [], nextPageToken: r.next_page_token };
  }

  async findRunByTag(experimentId: string, key: string, value: string): Promise<TrackedRun | undefined> {
    const r = await this.searchRuns([experimentId], `tags.\`${key}\` = '${value.replace(/'/g, "\\'")}'`, {
      maxResults: 2,
      orderBy: ['attributes.start_time ASC'],
    });
    return r.runs[0] ? toRun(r.runs[0]) : undefined;
  }

  async updateRun(mlflowRunId: string, status: 'RUNNING' | 'FINISHED' | 'FAILED' | 'KILLED', endTime?: number): Promise<void> {
    await this.api('POST', 'runs/update', { run_id: mlflowRunId, status, end_time: endTime });
  }

  /**
   * Sends params, tags and metrics in requests within MLflow's limits. Params and tags alone are
   * idempotent; a request with metrics is not (see the module comment).
   */
  async logBatch(mlflowRunId: string, batch: Batch): Promise<void> {
    for (const part of chunkBatch(batch, mlflowRunId)) {
      await this.api(
        'POST',
        'runs/log-batch',
        { run_id: mlflowRunId, metrics: part.metrics, params: part.params, tags: part.tags },
        part.metrics.length === 0,
      );
    }
  }

  async metricHistory(mlflowRunId: string, key: string): Promise<MetricPoint[]> {
    const out: MetricPoint[] = [];
    let pageToken: string | undefined;
    do {
      const r = await this.api<{ metrics?: MetricPoint[]; next_page_token?: string }>('GET', 'metrics/get-history', {
        run_id: mlflowRunId,
        metric_key: key,
        max_results: 25000,
        page_token: pageToken,
      });
      for (const m of r.metrics ?? [])
        out.push({ key: m.key, value: Number(m.value), timestamp: Number(m.timestamp), step: Number(m.step ?? 0) });
      pageToken = r.next_page_token || undefined;
    } while (pageToken);
    return out;
  }

  // ---- artifacts

  /**
   * Writes a run artifact: through the server's artifact proxy when the run's artifact URI is
   * `mlflow-artifacts:/...`, straight to the bucket when it is `gs://...` (as MLflow's own client
   * does; the server never sees the bytes). Both are idempotent: the same path gets the same bytes.
   */
  async uploadArtifact(run: TrackedRun, path: string, data: Uint8Array): Promise<void> {
    const root = run.artifactUri;
    const segments = path.split('/').filter((s) => s && s !== '.' && s !== '..');
    const clean = segments.map(encodeURIComponent).join('/');
    if (root.startsWith('mlflow-artifacts:')) {
      const rel = root.replace(/^mlflow-artifacts:(\/\/[^/]*)?\/?/, '');
      await this.call('PUT', `api/2.0/mlflow-artifacts/artifacts/${rel}/${clean}`, undefined, true, {
        data,
        contentType: 'application/octet-stream',
      });
      return;
    }
    if (root.startsWith('gs://')) {
      const { bucket, prefix } = parseGsUri(root);
      this.gcs ??= this.options.gcs ?? storageFromEnv();
      const name = [prefix, ...segments].filter(Boolean).join('/');
      try {
        await this.gcs
          .bucket(bucket)
          .file(name)
          .save(Buffer.from(data), { resumable: false, validation: 'md5', contentType: 'application/octet-stream' });
      } catch (e) {
        throw new MlflowError(`Writing run artifact gs://${bucket}/${name} failed: ${(e as Error).message}`, 'GCS_ERROR');
      }
      return;
    }
    throw new MlflowInvalidParameter(
      `The run's artifact URI '${root}' is neither served by the tracking server (mlflow-artifacts:) nor in GCS (gs://); mlpipe cannot write there.`,
      'UNSUPPORTED_ARTIFACT_URI',
    );
  }

  /**
   * Reads a file given by artifact URI: through the server's artifact proxy (mlflow-artifacts:/...)
   * or from the bucket (gs://...).
   */
  async readArtifact(uri: string): Promise<Buffer> {
    if (uri.startsWith('mlflow-artifacts:')) {
      const rel = uri.replace(/^mlflow-artifacts:(\/\/[^/]*)?\/?/, '');
      const url = new URL(`api/2.0/mlflow-artifacts/artifacts/${rel.split('/').map(encodeURIComponent).join('/')}`, this.base);
      const res = await request(url, {
        method: 'GET',
        headers: this.headers,
        dispatcher: this.dispatcher,
        headersTimeout: this.options.timeoutMs ?? 30_000,
        bodyTimeout: this.options.timeoutMs ?? 30_000,
      });
      const data = Buffer.from(await res.body.arrayBuffer());
      if (res.statusCode === 404) throw new MlflowNotFound(`MLflow has no artifact ${uri}`, 'RESOURCE_DOES_NOT_EXIST', 404);
      if (res.statusCode >= 300)
        throw new MlflowError(
          `MLflow GET ${url.pathname}: HTTP ${res.statusCode}: ${data.toString('utf8').slice(0, 300)}`,
          `HTTP_${res.statusCode}`,
          res.statusCode,
        );
      return data;
    }
    if (uri.startsWith('gs://')) {
      const { bucket, prefix } = parseGsUri(uri);
      this.gcs ??= this.options.gcs ?? storageFromEnv();
      const [data] = await this.gcs.bucket(bucket).file(prefix).download();
      return data;
    }
    throw new MlflowInvalidParameter(
      `Cannot read artifact '${uri}': only mlflow-artifacts:/ and gs:// sources are read.`,
      'UNSUPPORTED_ARTIFACT_URI',
    );
  }

  // ---- model registry

  readonly registry = {
    ensureRegisteredModel: async (name: string): Promise<void> => {
      try {
        await this.api('POST', 'registered-models/create', { name });
      } catch (e) {
        if (!(e instanceof MlflowAlreadyExists)) throw e;
      }
    },
    findVersion: async (name: string, mlflowRunId: string): Promise<string | undefined> => {
      const r = await this.api<{ model_versions?: { version: string }[] }>('GET', 'model-versions/search', {
        filter: `name='${name.replace(/'/g, "\\'")}' and run_id='${mlflowRunId}'`,
        max_results: 10,
      });
      return r.model_versions?.[0]?.version;
    },
    createVersion: async (
      name: string,
      source: string,
      mlflowRunId: string,
      tags: { key: string; value: string }[] = [],
    ): Promise<string> => {
      const r = await this.api<{ model_version: { version: string } }>(
        'POST',
        'model-versions/create',
        { name, source, run_id: mlflowRunId, tags },
        false,
      );
      return r.model_version.version;
    },
    setAlias: async (name: string, alias: string, version: string): Promise<void> => {
      await this.api('POST', 'registered-models/alias', { name, alias, version });
    },
    /** The version an alias points at; undefined when the alias (or the model) does not exist. */
    aliasVersion: async (name: string, alias: string): Promise<RawModelVersion | undefined> => {
      try {
        return (await this.api<{ model_version: RawModelVersion }>('GET', 'registered-models/alias', { name, alias })).model_version;
      } catch (e) {
        // MLflow answers a missing alias with INVALID_PARAMETER_VALUE "... alias X not found".
        if (e instanceof MlflowNotFound || (e instanceof MlflowInvalidParameter && /alias .* not found/i.test(e.message))) return undefined;
        throw e;
      }
    },
    versionByAlias: async (name: string, alias: string): Promise<string | undefined> =>
      (await this.registry.aliasVersion(name, alias))?.version,
    /** The MLflow run a version was created from, and that run's tags. */
    aliasRun: async (
      name: string,
      alias: string,
    ): Promise<{ version: string; mlflowRunId: string; tags: Record<string, string> } | undefined> => {
      const mv = await this.registry.aliasVersion(name, alias);
      if (!mv) return undefined;
      if (!mv.run_id) return { version: mv.version, mlflowRunId: '', tags: {} };
      const run = await this.getRun(mv.run_id);
      return { version: mv.version, mlflowRunId: mv.run_id, tags: Object.fromEntries((run.data?.tags ?? []).map((t) => [t.key, t.value])) };
    },
    getVersion: async (name: string, version: string): Promise<RawModelVersion | undefined> => {
      try {
        return (await this.api<{ model_version: RawModelVersion }>('GET', 'model-versions/get', { name, version })).model_version;
      } catch (e) {
        if (e instanceof MlflowNotFound || (e instanceof MlflowInvalidParameter && /not found|does not exist/i.test(e.message)))
          return undefined;
        throw e;
      }
    },
    getModel: async (
      name: string,
    ): Promise<{ name: string; tags?: { key: string; value: string }[]; aliases?: { alias: string; version: string }[] } | undefined> => {
      try {
        return (
          await this.api<{
            registered_model: { name: string; tags?: { key: string; value: string }[]; aliases?: { alias: string; version: string }[] };
          }>('GET', 'registered-models/get', { name })
        ).registered_model;
      } catch (e) {
        if (e instanceof MlflowNotFound) return undefined;
        throw e;
      }
    },
    setModelTag: async (name: string, key: string, value: string): Promise<void> => {
      await this.api('POST', 'registered-models/set-tag', { name, key, value });
    },
    /** Registered models (name order), with their tags and aliases: at most `max`. */
    searchModels: async (max = 100): Promise<RawRegisteredModel[]> => {
      const r = await this.api<{ registered_models?: RawRegisteredModel[] }>('GET', 'registered-models/search', {
        max_results: Math.min(max, 1000),
        order_by: 'name ASC',
      });
      return r.registered_models ?? [];
    },
    /** The versions of one model, newest first: at most `max`. */
    searchVersions: async (name: string, max = 100): Promise<RawModelVersion[]> => {
      const r = await this.api<{ model_versions?: RawModelVersion[] }>('GET', 'model-versions/search', {
        filter: `name='${name.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`,
        max_results: Math.min(max, 200_000),
        order_by: 'version_number DESC',
      });
      return r.model_versions ?? [];
    },
    deleteAlias: async (name: string, alias: string): Promise<void> => {
      await this.api('DELETE', 'registered-models/alias', { name, alias });
    },
  };

  async close(): Promise<void> {
    if (!this.options.dispatcher) await this.dispatcher.close();
  }
}

export interface RawRegisteredModel {
  name: string;
  description?: string;
  creation_timestamp?: number | string;
  last_updated_timestamp?: number | string;
  tags?: { key: string; value: string }[];
  aliases?: { alias: string; version: string }[];
}

export interface RawModelVersion {
  name: string;
  version: string;
  source?: string;
  run_id?: string;
  status?: string;
  creation_timestamp?: number | string;
  tags?: { key: string; value: string }[];
  aliases?: string[];
}

function toRun(r: RawRun): TrackedRun {
  return { mlflowRunId: r.info.run_id, experimentId: r.info.experiment_id, artifactUri: r.info.artifact_uri };
}
