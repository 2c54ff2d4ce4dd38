/**
 * The Vertex AI tuning contract: the real @google-cloud/aiplatform JobServiceClient, over its REST
 * fallback, against a local HTTP server that records each request and answers like the API. The
 * recorded request is decoded with the library's own protos; job states go QUEUED -> RUNNING ->
 * SUCCEEDED, FAILED, or CANCELLED after a cancel.
 */
import { protos } from '@google-cloud/aiplatform';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { loadPipeline } from '../../app/load-pipeline.js';
import { HyperTune } from '../../adapters/vertex/hypertune.js';
import { buildTuningJob, toParameterId, VertexTuner } from '../../adapters/vertex/tuning.js';
import { parseTrialArgs } from '../../cli/trial-command.js';
import type { HpoSpec } from '../../engine/hpo.js';
import { createDefaultRegistry } from '../../plugins/index.js';
import { HPO_WORKFLOW, type PipelineResult, type HpoResult } from '../../engine/contracts.js';
import { createTestProject, REPO, uniqueId, useWorkerAndClient, waitFor } from './helpers.js';

const Job = protos.google.cloud.aiplatform.v1.HyperparameterTuningJob;
const S = protos.google.cloud.aiplatform.v1.JobState;
const housing = loadPipeline(REPO, 'california-housing', createDefaultRegistry()).hpo!;

interface Recorded {
  method: string;
  path: string;
  query: string;
  body: string;
}
const requests: Recorded[] = [];
/** Answers to GET, per job, in order (the last repeats). */
const script = new Map<string, Record<string, unknown>[]>();
/** Called with each created job's name and body (to script its answers). */
let onCreate: ((name: string, body: Record<string, unknown>) => void) | undefined;
let server: http.Server;
let tuner: VertexTuner;

beforeAll(async () => {
  server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      const [path, query = ''] = (req.url ?? '').split('?');
      requests.push({ method: req.method ?? '', path: path!, query: decodeURIComponent(query), body });
      const send = (o: unknown): void => void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(o));
      const m = /^\/v1\/(projects\/[^/]+\/locations\/[^/]+)\/hyperparameterTuningJobs(?:\/(\d+))?(:cancel)?$/.exec(path!);
      if (!m) return void res.writeHead(404).end('{}');
      if (req.method === 'POST' && !m[2]) {
        const id = String(100 + requests.length);
        const name = `${m[1]}/hyperparameterTuningJobs/${id}`;
        onCreate?.(name, JSON.parse(body) as Record<string, unknown>);
        send({ ...(JSON.parse(body) as object), name, state: S.JOB_STATE_QUEUED });
        return;
      }
      const name = `${m[1]}/hyperparameterTuningJobs/${m[2]}`;
      if (m[3]) {
        script.set(name, [{ name, state: S.JOB_STATE_CANCELLED }]);
        return send({});
      }
      const steps = script.get(name) ?? [{ name, state: S.JOB_STATE_QUEUED }];
      send(steps.length > 1 ? steps.shift() : steps[0]);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  tuner = VertexTuner.create({
    project: 'my-project',
    location: 'us-central1',
    endpoint: { host: '127.0.0.1', port: (server.address() as { port: number }).port, protocol: 'http' },
  });
});
afterAll(async () => {
  await tuner?.close();
  await new Promise((r) => server.close(r));
});

const container = {
  imageUri: 'us-docker.pkg.dev/my-project/mlpipe/trial:1',
  args: ['--pipeline', 'california-housing'],
  baseOutputUri: 'gs://my-bucket/hpo',
};

describe('Vertex AI HyperparameterTuningJob', () => {
  it('is built from the housing hpo: section and survives the proto round trip', () => {
    const job = buildTuningJob('housing-search', housing, container);
    const message = Job.fromObject(job);
    expect(Job.verify(message)).toBeNull();
    const back = Job.toObject(message, { enums: String, longs: Number });
    expect(back).toMatchObject({
      maxTrialCount: 12,
      parallelTrialCount: 2,
      maxFailedTrialCount: 2,
      studySpec: { metrics: [{ metricId: 'rmse', goal: 'MINIMIZE' }], algorithm: 'RANDOM_SEARCH' },
    });
    const params = (back['studySpec'] as { parameters: Record<string, unknown>[] }).parameters;
    expect(params).toEqual([
      { parameterId: 'model', categoricalValueSpec: { values: ['mlp', 'wide'] } },
      { parameterId: 'training__lr', doubleValueSpec: { minValue: 0.002, maxValue: 0.02 }, scaleType: 'UNIT_LOG_SCALE' },
      { parameterId: 'training__batch_size', discreteValueSpec: { values: [256, 512] } },
      { parameterId: 'training__epochs', integerValueSpec: { minValue: 40, maxValue: 90 }, scaleType: 'UNIT_LINEAR_SCALE' },
      { parameterId: 'features__rbf_gamma', doubleValueSpec: { minValue: 0.5, maxValue: 4 }, scaleType: 'UNIT_LOG_SCALE' },
    ]);
    expect(back).toMatchObject({
      trialJobSpec: {
        baseOutputDirectory: { outputUriPrefix: 'gs://my-bucket/hpo' },
        workerPoolSpecs: [{ replicaCount: 1, containerSpec: { imageUri: container.imageUri } }],
      },
    });
  });

  it("searches boosting params: the model-selection pipeline's space as a study spec, and a trial's values into the boosting steps", () => {
    const registry = createDefaultRegistry();
    const selection = loadPipeline(REPO, 'california-housing-models', registry).hpo!;
    const message = Job.fromObject(
      buildTuningJob('selection-search', selection, { ...container, args: ['--pipeline', 'california-housing-models'] }),
    );
    expect(Job.verify(message)).toBeNull();
    const back = Job.toObject(message, { enums: String, longs: Number });
    expect(back).toMatchObject({ studySpec: { metrics: [{ metricId: 'rmse', goal: 'MINIMIZE' }], algorithm: 'RANDOM_SEARCH' } });
    const params = (back['studySpec'] as { parameters: Record<string, unknown>[] }).parameters;
    expect(params.map((p) => p['parameterId'])).toEqual(Object.keys(selection.space).map(toParameterId));
    expect(params).toEqual(
      expect.arrayContaining([
        { parameterId: 'boosting__learning_rate', doubleValueSpec: { minValue: 0.02, maxValue: 0.1 }, scaleType: 'UNIT_LOG_SCALE' },
        { parameterId: 'boosting__num_leaves', discreteValueSpec: { values: [31, 63, 127] } },
        { parameterId: 'boosting__max_depth', integerValueSpec: { minValue: 5, maxValue: 9 }, scaleType: 'UNIT_LINEAR_SCALE' },
      ]),
    );
    // A trial as Vertex starts it (the container's args, then one --<parameterId> <value> per
    // parameter), read by the trial entrypoint's parser, compiles into both boosting steps.
    const { pipeline, overrides } = parseTrialArgs([
      '--pipeline',
      'california-housing-models',
      '--boosting__learning_rate',
      '0.037',
      '--boosting__num_leaves=127',
      '--boosting__max_depth',
      '8',
    ]);
    expect(overrides).toEqual(['boosting.learning_rate=0.037', 'boosting.num_leaves=127', 'boosting.max_depth=8']);
    const trial = loadPipeline(REPO, pipeline!, registry, overrides);
    expect(trial.steps['train_xgboost']!.with).toMatchObject({ learningRate: 0.037, maxDepth: 8 });
    expect(trial.steps['train_lightgbm']!.with).toMatchObject({ learningRate: 0.037, numLeaves: 127 });
  });

  it('refuses what Vertex refuses: grid search over a double', () => {
    const grid: HpoSpec = { ...housing, algorithm: 'grid' };
    expect(() => buildTuningJob('g', grid, container)).toThrow(
      /grid search takes no double parameters; training.lr, features.rbf_gamma are double/,
    );
  });

  it('is submitted by the real client: path, enum encoding and body as the API expects', async () => {
    const job = buildTuningJob('housing-search', housing, container);
    const name = await tuner.submit(job);
    expect(name).toMatch(/^projects\/my-project\/locations\/us-central1\/hyperparameterTuningJobs\/\d+$/);
    const sent = requests.find((r) => r.method === 'POST')!;
    expect(sent.path).toBe('/v1/projects/my-project/locations/us-central1/hyperparameterTuningJobs');
    expect(sent.query).toContain('enum-encoding=int');
    const decoded = Job.toObject(Job.fromObject(JSON.parse(sent.body) as object), { enums: String, longs: Number });
    expect(decoded).toMatchObject(Job.toObject(Job.fromObject(job), { enums: String, longs: Number }));
    expect((JSON.parse(sent.body) as { studySpec: { metrics: { goal: number }[] } }).studySpec.metrics[0]!.goal).toBe(
      protos.google.cloud.aiplatform.v1.StudySpec.MetricSpec.GoalType.MINIMIZE,
    );
  });

  it('reports QUEUED -> RUNNING -> SUCCEEDED with trials mapped back to override keys', async () => {
    const name = await tuner.submit(buildTuningJob('ok', housing, container));
    const trial = (id: string, lr: number, rmse?: number) => ({
      id,
      state: rmse === undefined ? 2 : 4,
      parameters: [
        { parameterId: 'training__lr', value: lr },
        { parameterId: 'model', value: 'wide' },
      ],
      ...(rmse === undefined ? {} : { finalMeasurement: { metrics: [{ metricId: 'rmse', value: rmse }] } }),
    });
    script.set(name, [
      { name, state: S.JOB_STATE_QUEUED },
      { name, state: S.JOB_STATE_RUNNING, trials: [trial('1', 0.004)] },
      { name, state: S.JOB_STATE_SUCCEEDED, trials: [trial('1', 0.004, 48000.5), trial('2', 0.01, 51000)] },
    ]);
    const seen: string[] = [];
    for (;;) {
      const s = await tuner.status(name, 'rmse');
      seen.push(s.state);
      if (s.done) {
        expect(s.trials).toEqual([
          { id: '1', state: 'SUCCEEDED', values: { 'training.lr': 0.004, model: 'wide' }, metric: 48000.5 },
          { id: '2', state: 'SUCCEEDED', values: { 'training.lr': 0.01, model: 'wide' }, metric: 51000 },
        ]);
        break;
      }
    }
    expect(seen).toEqual(['JOB_STATE_QUEUED', 'JOB_STATE_RUNNING', 'JOB_STATE_SUCCEEDED']);
  });

  it('reports FAILED with the error, and CANCELLED after a cancel', async () => {
    const failed = await tuner.submit(buildTuningJob('bad', housing, container));
    script.set(failed, [{ name: failed, state: S.JOB_STATE_FAILED, error: { code: 3, message: 'trial image not found' } }]);
    expect(await tuner.status(failed, 'rmse')).toMatchObject({ state: 'JOB_STATE_FAILED', done: true, error: 'trial image not found' });
    const running = await tuner.submit(buildTuningJob('stop', housing, container));
    script.set(running, [{ name: running, state: S.JOB_STATE_RUNNING }]);
    expect((await tuner.status(running, 'rmse')).done).toBe(false);
    await tuner.cancel(running);
    expect(requests.some((r) => r.method === 'POST' && r.path === `/v1/${running}:cancel`)).toBe(true);
    expect(await tuner.status(running, 'rmse')).toMatchObject({ state: 'JOB_STATE_CANCELLED', done: true });
  });
});

describe('the trial entrypoint (mlpipe trial)', () => {
  it('parses --k v and --k=v, runs to the metric step, and writes the metric as cloudml-hypertune does', { timeout: 120_000 }, async () => {
    const project = createTestProject('trial');
    project.write(
      'pipelines/trial-search.yaml',
      `name: trial-search\nparams: { x: 0, y: a }\nhpo:\n  metric: { step: objective, output: score, key: score, goal: minimize }\n  space:\n    params.x: { type: int, min: 0, max: 9 }\n    params.y: { type: categorical, values: [a, b] }\nsteps:\n  objective:\n    uses: util.echo\n    with:\n      values:\n        score: \${params.x}\n        label: \${params.y}\n  after:\n    uses: util.echo\n    needs: objective\n    with: { journal: journal.jsonl }\n`,
    );
    const metrics = join(mkdtempSync(join(tmpdir(), 'mlpipe-hypertune-')), 'output.metrics');
    const before = Date.now() / 1000;
    const r = await promisify(execFile)(
      process.execPath,
      [join(REPO, 'bin', 'mlpipe.mjs'), 'trial', '--pipeline', 'trial-search', '--params__x', '7', '--params__y=b'],
      {
        env: {
          ...process.env,
          TEMPORAL_ADDRESS: inject('temporalAddress'),
          MLPIPE_PROJECT_DIR: project.dir,
          MLPIPE_TASK_QUEUE: project.taskQueue,
          CLOUD_ML_HP_METRIC_FILE: metrics,
          CLOUD_ML_TRIAL_ID: '12',
          MLPIPE_TRACKING: 'off',
        },
      },
    );
    expect(r.stdout).toContain('trial 12: score=7 (params.x=7 params.y=b)');
    const lines = readFileSync(metrics, 'utf8').trim().split('\n');
    expect(lines).toHaveLength(1);
    const entry = JSON.parse(lines[0]!) as Record<string, unknown>;
    expect(Object.keys(entry)).toEqual(['global_step', 'score', 'timestamp', 'trial']); // sorted
    expect(entry).toMatchObject({ global_step: '1', score: '7', trial: '12' });
    expect(entry['timestamp']).toBeGreaterThanOrEqual(before);
    // The run stopped at the metric step: the step after it never ran.
    expect(project.journal()).toEqual([]);
  });

  it('keeps the last 100 reports in the file', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'mlpipe-hypertune-')), 'm');
    const ht = new HyperTune({ CLOUD_ML_HP_METRIC_FILE: file });
    for (let i = 1; i <= 120; i++) ht.report('rmse', 50_000 - i, i, 1_700_000_000_000 + i);
    const lines = readFileSync(file, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines).toHaveLength(100);
    expect(lines[0]).toEqual({ global_step: '21', rmse: '49979', timestamp: 1_700_000_000.021, trial: '0' });
  });
});

describe('hpoWorkflow with the Vertex backend', () => {
  const project = createTestProject('vertex-hpo');
  project.write(
    'pipelines/vsearch.yaml',
    `name: vsearch\nparams: { x: 0 }\nhpo:\n  metric: { step: objective, output: score, key: score, goal: minimize }\n  space:\n    params.x: { type: int, min: 0, max: 9 }\n  trials: 3\n  parallel: 3\n  maxFailed: 1\n  backend: vertex\n  vertex: { project: my-project, location: europe-west4, imageUri: "eu-docker.pkg.dev/my-project/mlpipe/trial:1", pollMs: 100 }\nsteps:\n  objective:\n    uses: util.echo\n    with:\n      values:\n        score: \${params.x}\n`,
  );
  const env = useWorkerAndClient(project);

  it('submits the job, polls it to SUCCEEDED, takes the best trial and runs it in full', async () => {
    process.env['MLPIPE_VERTEX_ENDPOINT'] = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
    let submitted: Record<string, unknown> | undefined;
    onCreate = (name, body) => {
      submitted = body;
      const trial = (id: string, x: number, state = 4) => ({
        id,
        state,
        parameters: [{ parameterId: 'params__x', value: x }],
        ...(state === 4 ? { finalMeasurement: { metrics: [{ metricId: 'score', value: x }] } } : {}),
      });
      script.set(name, [
        { name, state: S.JOB_STATE_QUEUED },
        { name, state: S.JOB_STATE_RUNNING },
        { name, state: S.JOB_STATE_SUCCEEDED, trials: [trial('1', 6), trial('2', 2), trial('3', 9, 5)] },
      ]);
    };
    const r = (await env.client.workflow.execute(HPO_WORKFLOW, {
      taskQueue: project.taskQueue,
      workflowId: uniqueId('vhpo'),
      args: [{ pipeline: 'vsearch' }],
    })) as HpoResult;
    onCreate = undefined;
    expect(submitted).toMatchObject({
      displayName: expect.stringMatching(/^vhpo-/) as string,
      maxTrialCount: 3,
      trialJobSpec: {
        workerPoolSpecs: [
          { containerSpec: { imageUri: 'eu-docker.pkg.dev/my-project/mlpipe/trial:1', args: ['trial', '--pipeline', 'vsearch'] } },
        ],
      },
    });
    expect(requests.some((q) => q.path === '/v1/projects/my-project/locations/europe-west4/hyperparameterTuningJobs')).toBe(true);
    expect(r.best).toMatchObject({ index: 2, value: 2, overrides: ['params.x=2'] });
    expect(r.failed).toBe(1);
    const final = (await env.client.workflow.getHandle(r.final!.workflowId).result()) as PipelineResult;
    expect(final.outputs['objective']).toEqual({ score: 2 });
  });

  it('cancels the Vertex job when the search is cancelled', async () => {
    let jobName = '';
    onCreate = (name) => {
      jobName = name;
      script.set(name, [{ name, state: S.JOB_STATE_RUNNING }]);
    };
    const h = await env.client.workflow.start(HPO_WORKFLOW, {
      taskQueue: project.taskQueue,
      workflowId: uniqueId('vhpo-cancel'),
      args: [{ pipeline: 'vsearch' }],
    });
    await waitFor(
      () => jobName && requests.filter((q) => q.method === 'GET' && q.path === `/v1/${jobName}`).length >= 2,
      'the job being polled',
    );
    await h.cancel();
    await expect(h.result()).rejects.toThrow();
    await waitFor(() => requests.some((q) => q.method === 'POST' && q.path === `/v1/${jobName}:cancel`), 'the cancel request', 30_000);
    onCreate = undefined;
  });
});
