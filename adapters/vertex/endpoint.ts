/**
 * Vertex AI online prediction: upload an exported model with the mlpipe serving container
 * (`mlpipe serve` reads AIP_HTTP_PORT and AIP_STORAGE_URI), find or create an endpoint, and deploy
 * the model to it with a traffic split. Requests are checked against the protos shipped in
 * @google-cloud/aiplatform before they are sent.
 */
import aiplatform, { protos } from '@google-cloud/aiplatform';
import { PipelineError } from '../../engine/errors.js';
import { checkMessage, passThroughAuth } from './tuning.js';

type ModelServiceClient = InstanceType<typeof aiplatform.v1.ModelServiceClient>;
type EndpointServiceClient = InstanceType<typeof aiplatform.v1.EndpointServiceClient>;
const V1 = protos.google.cloud.aiplatform.v1;

export interface ServingModel {
  displayName: string;
  /** gs:// folder holding model.onnx (the container gets it as AIP_STORAGE_URI). */
  artifactUri: string;
  /** The serving image (deploy/Dockerfile.serve). */
  imageUri: string;
  labels?: Record<string, string>;
  env?: Record<string, string>;
  /** The model name in the prediction log (default: displayName). */
  logName?: string;
  description?: string;
}

/** The Model to upload: our container's routes, port and environment. */
export function buildServingModel(m: ServingModel): Record<string, unknown> {
  const model = {
    displayName: m.displayName,
    ...(m.description ? { description: m.description } : {}),
    artifactUri: m.artifactUri,
    containerSpec: {
      imageUri: m.imageUri,
      args: ['serve', '--name', m.logName ?? m.displayName],
      env: Object.entries({ MLPIPE_SERVE_HOST: '0.0.0.0', ...(m.env ?? {}) }).map(([name, value]) => ({ name, value })),
      ports: [{ containerPort: 8080 }],
      predictRoute: '/predict',
      healthRoute: '/health',
    },
    ...(m.labels && Object.keys(m.labels).length ? { labels: m.labels } : {}),
  };
  checkMessage(V1.Model, model, 'Model');
  return model;
}

export interface Resources {
  machineType: string;
  minReplicas: number;
  maxReplicas: number;
}

export function buildDeployedModel(model: string, displayName: string, r: Resources): Record<string, unknown> {
  const deployed = {
    model,
    displayName,
    dedicatedResources: { machineSpec: { machineType: r.machineType }, minReplicaCount: r.minReplicas, maxReplicaCount: r.maxReplicas },
  };
  checkMessage(V1.DeployedModel, deployed, 'DeployedModel');
  return deployed;
}

/**
 * The endpoint's traffic split after deploying a new model at `percent`: Vertex names the model
 * being deployed "0"; the models already there keep their proportions in the rest. Whole percents
 * summing to 100 (largest remainders get the leftover points).
 */
export function trafficSplit(current: Record<string, number>, percent: number): Record<string, number> {
  if (!Number.isInteger(percent) || percent < 0 || percent > 100)
    throw new PipelineError('PLUGIN_PARAMS', `traffic percent ${percent} is not a whole number from 0 to 100.`);
  const ids = Object.keys(current).filter((id) => (current[id] ?? 0) > 0);
  const total = ids.reduce((a, id) => a + current[id]!, 0);
  if (!ids.length || total === 0) return { '0': 100 };
  const rest = 100 - percent;
  const shares = ids.map((id) => ({ id, exact: (current[id]! / total) * rest }));
  const out: Record<string, number> = { '0': percent };
  for (const s of shares) out[s.id] = Math.floor(s.exact);
  let left = rest - shares.reduce((a, s) => a + Math.floor(s.exact), 0);
  for (const s of [...shares].sort((a, b) => b.exact - Math.floor(b.exact) - (a.exact - Math.floor(a.exact)) || a.id.localeCompare(b.id))) {
    if (left-- <= 0) break;
    out[s.id]!++;
  }
  return out;
}

export interface EndpointState {
  name: string;
  deployedModels: { id: string; model: string; displayName?: string }[];
  trafficSplit: Record<string, number>;
}

function endpointState(e: Record<string, unknown>): EndpointState {
  const deployed = ((e['deployedModels'] as Record<string, unknown>[] | undefined) ?? []).map((d) => ({
    id: String(d['id']),
    model: String(d['model']),
    ...(d['displayName'] ? { displayName: String(d['displayName']) } : {}),
  }));
  const split = Object.fromEntries(
    Object.entries((e['trafficSplit'] as Record<string, number> | undefined) ?? {}).map(([k, v]) => [k, Number(v)]),
  );
  return { name: String(e['name']), deployedModels: deployed, trafficSplit: split };
}

export class VertexEndpoints {
  constructor(
    private readonly models: ModelServiceClient,
    private readonly endpoints: EndpointServiceClient,
    readonly parent: string,
  ) {}

  /** Clients for a region; `endpoint` points them elsewhere (tests: a local server over REST). */
  static create(o: {
    project: string;
    location: string;
    endpoint?: { host: string; port: number; protocol: 'http' | 'https' };
    authClient?: unknown;
  }): VertexEndpoints {
    const options = o.endpoint
      ? {
          fallback: true as const,
          apiEndpoint: o.endpoint.host,
          port: o.endpoint.port,
          protocol: o.endpoint.protocol,
          authClient: (o.authClient ?? passThroughAuth()) as never,
        }
      : { apiEndpoint: `${o.location}-aiplatform.googleapis.com` };
    return new VertexEndpoints(
      new aiplatform.v1.ModelServiceClient(options),
      new aiplatform.v1.EndpointServiceClient(options),
      `projects/${o.project}/locations/${o.location}`,
    );
  }

  /** A model already uploaded with this label value (a retried deploy uploads nothing twice). */
  async findModel(label: string, value: string): Promise<string | undefined> {
    const [models] = await this.models.listModels({ parent: this.parent, filter: `labels.${label}=${value}` });
    return models[0]?.name ?? undefined;
  }

  async uploadModel(model: Record<string, unknown>): Promise<string> {
    const [operation] = await this.models.uploadModel({ parent: this.parent, model: model as never });
    const [response] = await operation.promise();
    const name = (response as { model?: string }).model;
    if (!name) throw new PipelineError('TRACKING_ERROR', 'Vertex AI finished the model upload without naming the model.');
    return name;
  }

  async findEndpoint(displayName: string): Promise<EndpointState | undefined> {
    const [endpoints] = await this.endpoints.listEndpoints({
      parent: this.parent,
      filter: `display_name="${displayName.replace(/"/g, '')}"`,
    });
    return endpoints[0] ? endpointState(endpoints[0] as unknown as Record<string, unknown>) : undefined;
  }

  async createEndpoint(displayName: string, labels: Record<string, string> = {}): Promise<EndpointState> {
    const endpoint = { displayName, ...(Object.keys(labels).length ? { labels } : {}) };
    checkMessage(V1.Endpoint, endpoint, 'Endpoint');
    const [operation] = await this.endpoints.createEndpoint({ parent: this.parent, endpoint });
    const [created] = await operation.promise();
    return endpointState(created as unknown as Record<string, unknown>);
  }

  async getEndpoint(name: string): Promise<EndpointState> {
    const [e] = await this.endpoints.getEndpoint({ name });
    return endpointState(e as unknown as Record<string, unknown>);
  }

  async deployModel(endpoint: string, deployedModel: Record<string, unknown>, split: Record<string, number>): Promise<string> {
    const [operation] = await this.endpoints.deployModel({ endpoint, deployedModel: deployedModel as never, trafficSplit: split });
    const [response] = await operation.promise();
    const id = (response as { deployedModel?: { id?: string } }).deployedModel?.id;
    if (!id) throw new PipelineError('TRACKING_ERROR', 'Vertex AI finished deploying without a deployed model ID.');
    return String(id);
  }

  async close(): Promise<void> {
    await Promise.all([this.models.close(), this.endpoints.close()]);
  }
}
