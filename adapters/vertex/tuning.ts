/**
 * Vertex AI hyperparameter tuning: the HyperparameterTuningJob built from a pipeline's `hpo:`
 * section, checked against the protos shipped in @google-cloud/aiplatform, and a small client
 * (submit, poll, cancel) over the library's JobServiceClient.
 *
 * Parameter IDs: Vertex allows letters, digits and underscores, so a space key `training.lr`
 * becomes `training__lr`; the trial entrypoint maps it back (`fromParameterId`).
 */
import aiplatform, { protos } from '@google-cloud/aiplatform';
import { createRequire } from 'node:module';
import { PipelineError } from '../../engine/errors.js';
import type { HpoSpec } from '../../engine/hpo.js';

type JobServiceClient = InstanceType<typeof aiplatform.v1.JobServiceClient>;
const Job = protos.google.cloud.aiplatform.v1.HyperparameterTuningJob;
const State = protos.google.cloud.aiplatform.v1.JobState;

import { fromParameterId, toParameterId } from './parameter-ids.js';

export { fromParameterId, toParameterId };

export interface TrialContainer {
  /** The serve/trial image (deploy/Dockerfile.serve). */
  imageUri: string;
  machineType?: string;
  /** Arguments before the trial's own, e.g. the pipeline: ['--pipeline', 'california-housing']. */
  args?: string[];
  env?: Record<string, string>;
  serviceAccount?: string;
  /** gs:// prefix; each trial then gets AIP_MODEL_DIR and AIP_CHECKPOINT_DIR under it. */
  baseOutputUri?: string;
}

export type TuningJob = Record<string, unknown>;

/** The HyperparameterTuningJob for a search (proto field names, enum names as strings). */
export function buildTuningJob(displayName: string, spec: HpoSpec, container: TrialContainer): TuningJob {
  const parameters = Object.entries(spec.space).map(([key, p]) => {
    const parameterId = toParameterId(key);
    if (!/^[A-Za-z][A-Za-z0-9_]*$/.test(parameterId)) {
      throw new PipelineError('SPEC_INVALID', `hpo.space: '${key}' cannot be a Vertex parameter ID (letters, digits, _ and dots only).`);
    }
    switch (p.type) {
      case 'double':
        return {
          parameterId,
          doubleValueSpec: { minValue: p.min, maxValue: p.max },
          scaleType: p.scale === 'log' ? 'UNIT_LOG_SCALE' : 'UNIT_LINEAR_SCALE',
        };
      case 'int':
        return {
          parameterId,
          integerValueSpec: { minValue: p.min, maxValue: p.max },
          scaleType: p.scale === 'log' ? 'UNIT_LOG_SCALE' : 'UNIT_LINEAR_SCALE',
        };
      case 'categorical':
        return { parameterId, categoricalValueSpec: { values: p.values } };
      case 'discrete':
        return { parameterId, discreteValueSpec: { values: p.values } };
    }
  });
  if (spec.algorithm === 'grid') {
    const continuous = Object.entries(spec.space)
      .filter(([, p]) => p.type === 'double')
      .map(([k]) => k);
    if (continuous.length) {
      throw new PipelineError(
        'SPEC_INVALID',
        `Vertex grid search takes no double parameters; ${continuous.join(', ')} ${continuous.length > 1 ? 'are' : 'is'} double.`,
        {
          hint: 'Make them discrete ({ type: discrete, values: [...] }) or use algorithm: random.',
        },
      );
    }
  }
  const job: TuningJob = {
    displayName,
    maxTrialCount: spec.trials,
    parallelTrialCount: spec.parallel,
    maxFailedTrialCount: spec.maxFailed,
    studySpec: {
      metrics: [{ metricId: spec.metric.key, goal: spec.metric.goal === 'minimize' ? 'MINIMIZE' : 'MAXIMIZE' }],
      parameters,
      algorithm: spec.algorithm === 'grid' ? 'GRID_SEARCH' : 'RANDOM_SEARCH',
    },
    trialJobSpec: {
      workerPoolSpecs: [
        {
          machineSpec: { machineType: container.machineType ?? 'n1-standard-4' },
          replicaCount: 1,
          containerSpec: {
            imageUri: container.imageUri,
            // The image's entrypoint is `mlpipe`; the trial command comes first.
            args: ['trial', ...(container.args ?? [])],
            ...(container.env && Object.keys(container.env).length
              ? { env: Object.entries(container.env).map(([name, value]) => ({ name, value })) }
              : {}),
          },
        },
      ],
      ...(container.serviceAccount ? { serviceAccount: container.serviceAccount } : {}),
      ...(container.baseOutputUri ? { baseOutputDirectory: { outputUriPrefix: container.baseOutputUri } } : {}),
    },
  };
  checkAgainstProto(job);
  return job;
}

export function paths(value: unknown, prefix = ''): string[] {
  if (Array.isArray(value)) return value.flatMap((v, i) => paths(v, `${prefix}[${i}]`));
  if (value !== null && typeof value === 'object')
    return Object.entries(value).flatMap(([k, v]) => [`${prefix}.${k}`, ...paths(v, `${prefix}.${k}`)]);
  return [];
}

/**
 * A request object must be a valid message of `type` with nothing lost in conversion: fromObject
 * silently drops unknown fields and misspelled enums, so every field path must survive the round
 * trip, and verify must pass.
 */
export function checkMessage(
  type: { fromObject(o: object): unknown; verify(m: unknown): string | null; toObject(m: never, o: object): object },
  value: Record<string, unknown>,
  label: string,
): void {
  const message = type.fromObject(value);
  const problem = type.verify(message);
  const back = type.toObject(message as never, { enums: String, longs: Number, defaults: false });
  const lost = paths(value).filter((p) => !paths(back).includes(p));
  if (problem || lost.length) {
    throw new PipelineError(
      'SPEC_INVALID',
      `The Vertex ${label} does not match the API's proto: ${problem ?? `fields not in the message: ${lost.join(', ')}`}.`,
    );
  }
}

export function checkAgainstProto(job: TuningJob): void {
  checkMessage(Job, job, 'HyperparameterTuningJob');
}

export interface TuningTrial {
  id: string;
  state: string;
  /** Override key -> value (parameter IDs mapped back). */
  values: Record<string, number | string>;
  metric?: number;
}

export interface TuningStatus {
  name: string;
  state: string;
  done: boolean;
  trials: TuningTrial[];
  error?: string;
}

const TERMINAL = new Set([
  'JOB_STATE_SUCCEEDED',
  'JOB_STATE_FAILED',
  'JOB_STATE_CANCELLED',
  'JOB_STATE_EXPIRED',
  'JOB_STATE_PARTIALLY_SUCCEEDED',
]);

function stateName(s: unknown): string {
  return typeof s === 'number' ? (State[s] ?? String(s)) : String(s ?? 'JOB_STATE_UNSPECIFIED');
}

function numberOf(v: unknown): number | string {
  if (v !== null && typeof v === 'object') {
    const o = v as { numberValue?: number; stringValue?: string };
    if (o.numberValue !== undefined) return o.numberValue;
    if (o.stringValue !== undefined) return o.stringValue;
  }
  return v as number | string;
}

/** Reads a job returned by the API into our terms. */
export function tuningStatus(job: Record<string, unknown>, metricKey: string): TuningStatus {
  const state = stateName(job['state']);
  const trials = ((job['trials'] as Record<string, unknown>[] | undefined) ?? []).map((t) => {
    const measurement = t['finalMeasurement'] as { metrics?: { metricId: string; value: number }[] } | undefined;
    const metric = measurement?.metrics?.find((m) => m.metricId === metricKey)?.value;
    return {
      id: String(t['id']),
      state: String(typeof t['state'] === 'number' ? protos.google.cloud.aiplatform.v1.Trial.State[t['state']] : t['state']),
      values: Object.fromEntries(
        ((t['parameters'] as { parameterId: string; value: unknown }[] | undefined) ?? []).map((p) => [
          fromParameterId(p.parameterId),
          numberOf(p.value),
        ]),
      ),
      ...(metric !== undefined ? { metric: Number(metric) } : {}),
    };
  });
  const error = (job['error'] as { message?: string } | undefined)?.message;
  return { name: String(job['name']), state, done: TERMINAL.has(state), trials, ...(error ? { error } : {}) };
}

/**
 * An auth client that adds no credentials, for a local endpoint (tests, emulators). It must be the
 * google-auth-library that google-gax itself uses (its REST transport calls `fetch` on it), which
 * is not necessarily the one this project resolves.
 */
export function passThroughAuth(): unknown {
  const here = createRequire(import.meta.url);
  const gax = createRequire(here.resolve('google-gax'));
  const { PassThroughClient } = gax('google-auth-library') as { PassThroughClient: new () => unknown };
  return new PassThroughClient();
}

export class VertexTuner {
  constructor(
    private readonly client: JobServiceClient,
    private readonly parent: string,
  ) {}

  /** A client for a region; `endpoint` points it elsewhere (tests: a local server over REST). */
  static create(o: {
    project: string;
    location: string;
    endpoint?: { host: string; port: number; protocol: 'http' | 'https' };
    authClient?: unknown;
  }): VertexTuner {
    const client = o.endpoint
      ? new aiplatform.v1.JobServiceClient({
          fallback: true,
          apiEndpoint: o.endpoint.host,
          port: o.endpoint.port,
          protocol: o.endpoint.protocol,
          authClient: (o.authClient ?? passThroughAuth()) as never,
        })
      : new aiplatform.v1.JobServiceClient({ apiEndpoint: `${o.location}-aiplatform.googleapis.com` });
    return new VertexTuner(client, `projects/${o.project}/locations/${o.location}`);
  }

  async submit(job: TuningJob): Promise<string> {
    const [created] = await this.client.createHyperparameterTuningJob({ parent: this.parent, hyperparameterTuningJob: job as never });
    return String(created.name);
  }

  async status(name: string, metricKey: string): Promise<TuningStatus> {
    const [job] = await this.client.getHyperparameterTuningJob({ name });
    return tuningStatus(job as unknown as Record<string, unknown>, metricKey);
  }

  async cancel(name: string): Promise<void> {
    await this.client.cancelHyperparameterTuningJob({ name });
  }

  close(): Promise<void> {
    return this.client.close();
  }
}
