/**
 * deploy.vertex-endpoint against the real @google-cloud/aiplatform clients over their REST fallback,
 * pointed at a local server that records each request and answers like the API (long-running
 * operations included, polled once), with the model file written to the GCS emulator. Recorded
 * requests are decoded with the library's own protos.
 */
import { protos } from '@google-cloud/aiplatform';
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEmulator } from '../../dev/gcs-emulator.js';
import { buildServingModel, trafficSplit } from '../../adapters/vertex/endpoint.js';
import { checkMessage } from '../../adapters/vertex/tuning.js';
import type { ArtifactRef } from '../../engine/types.js';
import { vertexEndpoint } from '../../plugins/deploy/vertex-endpoint.js';
import { runPlugin, testContext } from '../unit/step-context.js';

const V1 = protos.google.cloud.aiplatform.v1;
const PARENT = 'projects/my-project/locations/europe-west4';
const BUCKET = 'models-bucket';

interface Recorded {
  method: string;
  path: string;
  query: string;
  body: Record<string, unknown>;
}
const requests: Recorded[] = [];
const models = new Map<string, Record<string, unknown>>();
const endpoints = new Map<
  string,
  { name: string; displayName: string; deployedModels: Record<string, unknown>[]; trafficSplit: Record<string, number> }
>();
/** Operations answer `done: false` once, then their result. */
const operations = new Map<string, { polls: number; response: Record<string, unknown> }>();
let server: http.Server;
let emu: Awaited<ReturnType<typeof startEmulator>>;
let seq = 0;

function operation(response: Record<string, unknown>): Record<string, unknown> {
  const name = `${PARENT}/operations/${++seq}`;
  operations.set(name, { polls: 0, response });
  return { name, done: false };
}

beforeAll(async () => {
  emu = await startEmulator([BUCKET]);
  process.env['MLPIPE_GCS_ENDPOINT'] = emu.endpoint;
  server = http.createServer((req, res) => {
    let text = '';
    req.on('data', (c: Buffer) => (text += c.toString()));
    req.on('end', () => {
      const [path, query = ''] = (req.url ?? '').split('?');
      const body = text ? (JSON.parse(text) as Record<string, unknown>) : {};
      requests.push({ method: req.method ?? '', path: path!, query: decodeURIComponent(query), body });
      const send = (o: unknown): void => void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(o));
      const p = path!.replace(/^\/(v1|ui)\//, '');
      if (req.method === 'GET' && p.startsWith(`${PARENT}/operations/`)) {
        const op = operations.get(p)!;
        return send(op.polls++ === 0 ? { name: p, done: false } : { name: p, done: true, response: op.response });
      }
      if (req.method === 'POST' && p === `${PARENT}/models:upload`) {
        const name = `${PARENT}/models/${100 + models.size}`;
        models.set(name, { ...(body['model'] as object), name });
        return send(operation({ '@type': 'type.googleapis.com/google.cloud.aiplatform.v1.UploadModelResponse', model: name }));
      }
      if (req.method === 'GET' && p === `${PARENT}/models`) {
        const label = /labels\.mlpipe-sha=(\w+)/.exec(decodeURIComponent(query))?.[1];
        return send({
          models: [...models.values()].filter((m) => (m['labels'] as Record<string, string> | undefined)?.['mlpipe-sha'] === label),
        });
      }
      if (req.method === 'GET' && p === `${PARENT}/endpoints`) {
        const display = /display_name="([^"]+)"/.exec(decodeURIComponent(query))?.[1];
        return send({ endpoints: [...endpoints.values()].filter((e) => e.displayName === display) });
      }
      if (req.method === 'POST' && p === `${PARENT}/endpoints`) {
        const name = `${PARENT}/endpoints/${500 + endpoints.size}`;
        const e = { name, displayName: String(body['displayName']), deployedModels: [], trafficSplit: {} };
        endpoints.set(name, e);
        return send(operation({ '@type': 'type.googleapis.com/google.cloud.aiplatform.v1.Endpoint', ...e }));
      }
      const deploy = /^(.+\/endpoints\/\d+):deployModel$/.exec(p);
      if (req.method === 'POST' && deploy) {
        const e = endpoints.get(deploy[1]!)!;
        const id = String(9000 + seq);
        e.deployedModels.push({ ...(body['deployedModel'] as object), id });
        e.trafficSplit = Object.fromEntries(
          Object.entries(body['trafficSplit'] as Record<string, number>).map(([k, v]) => [k === '0' ? id : k, v]),
        );
        return send(operation({ '@type': 'type.googleapis.com/google.cloud.aiplatform.v1.DeployModelResponse', deployedModel: { id } }));
      }
      res
        .writeHead(404, { 'content-type': 'application/json' })
        .end(JSON.stringify({ error: { code: 404, message: `no route ${req.method} ${path}` } }));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  process.env['MLPIPE_VERTEX_ENDPOINT'] = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
}, 60_000);

afterAll(async () => {
  delete process.env['MLPIPE_VERTEX_ENDPOINT'];
  delete process.env['MLPIPE_GCS_ENDPOINT'];
  await new Promise((r) => server?.close(r));
  await emu?.stop();
});

const params = {
  project: 'my-project',
  location: 'europe-west4',
  endpoint: 'housing-prod',
  imageUri: 'europe-docker.pkg.dev/my-project/mlpipe/serve:1',
  artifactUri: `gs://${BUCKET}/models`,
  machineType: 'n1-standard-4',
  minReplicas: 1,
  maxReplicas: 3,
};

describe('deploy.vertex-endpoint', () => {
  const ctx = testContext();

  it('uploads the model with the serving container, creates the endpoint and deploys with all traffic', async () => {
    const model = await ctx.store.put('first onnx model', { name: 'model.onnx' });
    const out = await runPlugin(vertexEndpoint, ctx, params, { model });
    const sha = model.sha256.slice(0, 32);
    expect(out).toMatchObject({
      model: `${PARENT}/models/100`,
      endpoint: `${PARENT}/endpoints/500`,
      artifactUri: `gs://${BUCKET}/models/${sha}`,
    });
    expect(out['trafficSplit']).toEqual({ [String(out['deployedModelId'])]: 100 });
    // The model file is in the bucket where AIP_STORAGE_URI will point.
    const [bytes] = await emu.storage.bucket(BUCKET).file(`models/${sha}/model.onnx`).download();
    expect(bytes.toString()).toBe('first onnx model');

    const upload = requests.find((r) => r.path.endsWith('/models:upload'))!;
    expect(upload.path).toBe(`/v1/${PARENT}/models:upload`);
    const req = V1.UploadModelRequest.toObject(V1.UploadModelRequest.fromObject(upload.body), { longs: Number });
    // The parent travels in the path (checked above), the model in the body.
    expect(req).toMatchObject({
      model: {
        displayName: 'test',
        artifactUri: `gs://${BUCKET}/models/${sha}`,
        labels: { 'mlpipe-sha': sha, 'mlpipe-pipeline': 'test' },
        containerSpec: {
          imageUri: params.imageUri,
          args: ['serve', '--name', 'test'],
          ports: [{ containerPort: 8080 }],
          predictRoute: '/predict',
          healthRoute: '/health',
          env: [{ name: 'MLPIPE_SERVE_HOST', value: '0.0.0.0' }],
        },
      },
    });
    const deploy = requests.find((r) => r.path.endsWith(':deployModel'))!;
    const d = V1.DeployModelRequest.toObject(V1.DeployModelRequest.fromObject(deploy.body), { longs: Number });
    expect(deploy.path).toBe(`/v1/${PARENT}/endpoints/500:deployModel`);
    expect(d).toMatchObject({
      deployedModel: {
        model: `${PARENT}/models/100`,
        dedicatedResources: { machineSpec: { machineType: 'n1-standard-4' }, minReplicaCount: 1, maxReplicaCount: 3 },
      },
      trafficSplit: { '0': 100 },
    });
    // Each of the 3 long-running operations (upload, create endpoint, deploy) was polled until done.
    expect(requests.filter((r) => r.path.includes('/operations/')).map((r) => r.path.split('/').pop())).toEqual([
      '1',
      '1',
      '2',
      '2',
      '3',
      '3',
    ]);
  });

  it('a canary gets its share and the model already there keeps the rest; a retry deploys nothing twice', async () => {
    const before = requests.length;
    const model = await ctx.store.put('second onnx model', { name: 'model.onnx' });
    const first = [...endpoints.values()][0]!;
    const incumbent = String(first.deployedModels[0]!['id']);
    const out = await runPlugin(vertexEndpoint, ctx, { ...params, trafficPercent: 20 }, { model });
    expect(out['endpoint']).toBe(first.name);
    expect(out['trafficSplit']).toEqual({ [String(out['deployedModelId'])]: 20, [incumbent]: 80 });
    expect(requests.filter((r, i) => i >= before && r.method === 'POST' && r.path.endsWith('/endpoints')).length).toBe(0);
    const mark = requests.length;
    const again = await runPlugin(vertexEndpoint, ctx, { ...params, trafficPercent: 20 }, { model });
    expect(again['deployedModelId']).toBe(out['deployedModelId']);
    expect(
      requests
        .slice(mark)
        .filter((r) => r.method === 'POST')
        .map((r) => r.path),
    ).toEqual([]);
  });

  it('splits traffic in whole percents that sum to 100', () => {
    expect(trafficSplit({}, 30)).toEqual({ '0': 100 });
    expect(trafficSplit({ a: 50, b: 50 }, 10)).toEqual({ '0': 10, a: 45, b: 45 });
    const odd = trafficSplit({ a: 1, b: 1, c: 1 }, 0);
    expect(Object.values(odd).reduce((x, y) => x + y, 0)).toBe(100);
    expect(odd).toEqual({ '0': 0, a: 34, b: 33, c: 33 });
    expect(() => trafficSplit({ a: 100 }, 101)).toThrow(/0 to 100/);
  });

  it('refuses bad params before calling anything, and a model that does not fit the proto', async () => {
    const model = (await ctx.store.put('x', { name: 'model.onnx' })) as ArtifactRef;
    const before = requests.length;
    await expect(runPlugin(vertexEndpoint, ctx, { ...params, artifactUri: 'models/' }, { model })).rejects.toThrow(/gs:\/\/bucket\/path/);
    await expect(runPlugin(vertexEndpoint, ctx, { ...params, minReplicas: 3, maxReplicas: 1 }, { model })).rejects.toThrow(
      /maxReplicas must be >= minReplicas/,
    );
    expect(requests.length).toBe(before);
    // A misspelled field would be dropped silently by the library: the check refuses it.
    expect(() => checkMessage(V1.Model, { displayName: 'm', containerSpec: { imageUri: 'i', predictRout: '/predict' } }, 'Model')).toThrow(
      /fields not in the message: .containerSpec.predictRout/,
    );
    expect(buildServingModel({ displayName: 'm', artifactUri: 'gs://b/m', imageUri: 'i' })).toMatchObject({
      containerSpec: { healthRoute: '/health' },
    });
  });
});
