import { z } from 'zod';
import { parseGsUri, storageFromEnv } from '../../adapters/gcs-store.js';
import { PipelineError } from '../../engine/errors.js';
import { definePlugin } from '../sdk.js';
import { importOptional } from '../../adapters/optional.js';

const params = z
  .object({
    project: z.string().min(1),
    location: z.string().min(1).default('us-central1'),
    /** Endpoint display name: found, or created. */
    endpoint: z.string().min(1),
    /** Model display name (default: the pipeline's name). */
    displayName: z.string().min(1).optional(),
    /** The serving image built from deploy/Dockerfile.serve. */
    imageUri: z.string().min(1),
    /** gs:// folder under which each model gets <sha256>/model.onnx. */
    artifactUri: z.string().regex(/^gs:\/\/[^/]+/, 'a gs://bucket/path URI'),
    machineType: z.string().default('n1-standard-2'),
    minReplicas: z.number().int().min(1).default(1),
    maxReplicas: z.number().int().min(1).default(1),
    /** Share of the endpoint's traffic for the new model; the models there keep their proportions in the rest. */
    trafficPercent: z.number().int().min(0).max(100).default(100),
  })
  .strict()
  .refine((p) => p.maxReplicas >= p.minReplicas, { message: 'maxReplicas must be >= minReplicas', path: ['maxReplicas'] });

/**
 * deploy.vertex-endpoint — puts an exported ONNX `model` on a Vertex AI endpoint: copies it to
 * `artifactUri/<sha256>/model.onnx`, uploads a Model that runs it in the mlpipe serving container,
 * finds or creates the endpoint, and deploys the model with `trafficPercent` of the traffic. A
 * retried step reuses the uploaded model (found by its digest label) and an existing deployment.
 * MLPIPE_VERTEX_ENDPOINT (http://host:port) points it at another API endpoint (tests).
 */
export const vertexEndpoint = definePlugin({
  name: 'deploy.vertex-endpoint',
  version: '1',
  description: 'Uploads an ONNX model to Vertex AI with the mlpipe serving container and deploys it to an endpoint with a traffic split.',
  params,
  inputs: { model: 'model' },
  outputs: { model: 'json', endpoint: 'json', deployedModelId: 'json', trafficSplit: 'json', artifactUri: 'json' },
  cacheable: false,
  async run(ctx, p, inputs) {
    const ref = inputs.model;
    const bytes = await ctx.store.get(ref);
    const folder = `${p.artifactUri.replace(/\/+$/, '')}/${ref.sha256.slice(0, 32)}`;
    const { bucket, prefix } = parseGsUri(folder);
    try {
      await storageFromEnv()
        .bucket(bucket)
        .file(`${prefix}/model.onnx`)
        .save(bytes, { resumable: false, validation: 'md5', contentType: 'application/octet-stream' });
    } catch (e) {
      throw new PipelineError('STORAGE_ERROR', `deploy.vertex-endpoint: cannot write ${folder}/model.onnx: ${(e as Error).message}`, {
        retryable: true,
      });
    }
    // The Vertex client library takes about a second to load: only deploy steps pay for it.
    const { buildDeployedModel, buildServingModel, trafficSplit, VertexEndpoints } = await importOptional(
      '@google-cloud/aiplatform',
      'deploy.vertex-endpoint',
      () => import('../../adapters/vertex/endpoint.js'),
    );
    const api = process.env['MLPIPE_VERTEX_ENDPOINT'] ? new URL(process.env['MLPIPE_VERTEX_ENDPOINT']) : undefined;
    const vertex = VertexEndpoints.create({
      project: p.project,
      location: p.location,
      ...(api ? { endpoint: { host: api.hostname, port: Number(api.port), protocol: api.protocol === 'https:' ? 'https' : 'http' } } : {}),
    });
    try {
      const sha = ref.sha256.slice(0, 32);
      const pipelineLabel = ctx.pipeline
        .toLowerCase()
        .replace(/[^a-z0-9_-]/g, '-')
        .slice(0, 63);
      let model = await vertex.findModel('mlpipe-sha', sha);
      if (!model) {
        model = await vertex.uploadModel(
          buildServingModel({
            displayName: p.displayName ?? ctx.pipeline,
            artifactUri: folder,
            imageUri: p.imageUri,
            ...(ctx.store.location.startsWith('gs://') ? { env: { MLPIPE_ARTIFACTS: ctx.store.location } } : {}),
            labels: { 'mlpipe-sha': sha, 'mlpipe-pipeline': pipelineLabel },
            description: `mlpipe ${ctx.pipeline}, run ${ctx.workflowId}`,
          }),
        );
        ctx.logger.info({ model }, `uploaded model ${model}`);
      }
      ctx.progress({ message: `model ${model}; deploying to the endpoint` });
      const endpoint =
        (await vertex.findEndpoint(p.endpoint)) ?? (await vertex.createEndpoint(p.endpoint, { 'mlpipe-pipeline': pipelineLabel }));
      const already = endpoint.deployedModels.find((d) => d.model === model);
      if (already) {
        ctx.logger.info({ endpoint: endpoint.name }, `model already deployed on ${endpoint.name} as ${already.id}`);
        return { model, endpoint: endpoint.name, deployedModelId: already.id, trafficSplit: endpoint.trafficSplit, artifactUri: folder };
      }
      const split = trafficSplit(endpoint.trafficSplit, p.trafficPercent);
      const id = await vertex.deployModel(
        endpoint.name,
        buildDeployedModel(model, `${p.displayName ?? ctx.pipeline}-${sha.slice(0, 8)}`, {
          machineType: p.machineType,
          minReplicas: p.minReplicas,
          maxReplicas: p.maxReplicas,
        }),
        split,
      );
      const after = Object.fromEntries(Object.entries(split).map(([k, v]) => [k === '0' ? id : k, v]));
      ctx.logger.info({ endpoint: endpoint.name, deployedModelId: id, trafficSplit: after }, `deployed ${model} to ${endpoint.name}`);
      return { model, endpoint: endpoint.name, deployedModelId: id, trafficSplit: after, artifactUri: folder };
    } finally {
      await vertex.close();
    }
  },
});
