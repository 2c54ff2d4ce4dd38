/**
 * MLflow tracking against a real `mlflow server` (sqlite backend, served artifacts), read back with
 * MLflow's Python client. A small proxy in front of the server loses chosen responses, so the
 * retry-without-duplicates design is tested against the real server too.
 */
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import { execFile, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MlflowFileStore } from '../../adapters/mlflow/file-store.js';
import { MlflowRestClient } from '../../adapters/mlflow/rest.js';
import { MlflowModelRegistry } from '../../adapters/mlflow/registry.js';
import { withDuckDB } from '../../adapters/duckdb.js';
import { collectPredictions } from '../../engine/prediction-log.js';
import { moveAlias } from '../../engine/promotion.js';
import { findMlflow, startMlflowServer, type MlflowServer } from '../../dev/mlflow-server.js';
import { freePort } from '../../dev/temporal-server.js';
import { startEmulator } from '../../dev/gcs-emulator.js';
import { LocalArtifactStore } from '../../adapters/local-store.js';
import type { ArtifactRef } from '../../engine/types.js';
import {
  HPO_WORKFLOW,
  MONITOR_WORKFLOW,
  PIPELINE_WORKFLOW,
  trackingWorkflowId,
  type HpoResult,
  type MonitorResult,
} from '../../engine/contracts.js';
import { createClient, createTestProject, REPO, startWorker, uniqueId, waitFor, waitForTracking } from './helpers.js';
import { mlpipeCacheDir } from '../../engine/cache-dir.js';

const run = promisify(execFile);
const hasNvidiaSmi = (): Promise<boolean> =>
  run('nvidia-smi', ['-L']).then(
    () => true,
    () => false,
  );
const CACHE = mlpipeCacheDir();
const MLFLOW = findMlflow(CACHE);
const PYTHON = MLFLOW ? join(MLFLOW, '..', 'python') : 'python3';

interface ReadRun {
  id: string;
  name: string;
  status: string;
  artifact_uri: string;
  params: Record<string, string>;
  tags: Record<string, string>;
  metrics: Record<string, number>;
  history: Record<string, [number, number, number][]>;
  artifacts: string[];
}
interface ReadBack {
  experiment: { id: string; name: string } | null;
  runs: ReadRun[];
  model: {
    versions: { version: string; run_id: string; source: string; status: string }[];
    aliases: Record<string, string>;
    artifact_hex_sha256?: string;
  } | null;
}

async function readBack(uri: string, experiment: string, model = '', artifact?: string): Promise<ReadBack> {
  const args = [join(REPO, 'test', 'tools', 'mlflow_read.py'), uri, experiment, model, ...(artifact ? [artifact] : [])];
  const { stdout } = await run(PYTHON, args, { env: { ...process.env, MLFLOW_ALLOW_FILE_STORE: 'true' }, maxBuffer: 64 * 2 ** 20 });
  return JSON.parse(stdout.trim().split('\n').pop()!) as ReadBack;
}

/** Forwards to MLflow; `drop(pattern)` loses the response of the next matching request after MLflow applied it. */
function faultProxy(target: () => number): Promise<{
  port: number;
  drop(method: string, path: string, bodyIncludes?: string): void;
  dropped: string[];
  seen: string[];
  close(): Promise<void>;
}> {
  const rules: { method: string; path: string; body?: string }[] = [];
  const dropped: string[] = [];
  const seen: string[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const label = `${req.method} ${req.url?.split('?')[0]}`;
      seen.push(label);
      const i = rules.findIndex(
        (r) => r.method === req.method && req.url?.includes(r.path) && (!r.body || body.toString().includes(r.body)),
      );
      const up = http.request({ host: '127.0.0.1', port: target(), method: req.method, path: req.url, headers: req.headers }, (upRes) => {
        const out: Buffer[] = [];
        upRes.on('data', (c: Buffer) => out.push(c));
        upRes.on('end', () => {
          if (i >= 0) {
            rules.splice(i, 1);
            dropped.push(label);
            req.socket.destroy(); // MLflow applied it; the client never hears back.
            return;
          }
          res.writeHead(upRes.statusCode ?? 502, upRes.headers);
          res.end(Buffer.concat(out));
        });
      });
      up.on('error', () => req.socket.destroy());
      up.end(body);
    });
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () =>
      resolve({
        port: (server.address() as { port: number }).port,
        drop: (method, path, body) => void rules.push({ method, path, body }),
        dropped,
        seen,
        close: () => new Promise((r) => server.close(() => r())),
      }),
    ),
  );
}

describe('MLflow tracking against a real mlflow server', () => {
  const project = createTestProject('mlflow');
  let firstRun = '';
  const dataDir = mkdtempSync(join(tmpdir(), 'mlpipe-mlflow-server-'));
  let server: MlflowServer;
  let port: number;
  let proxy: Awaited<ReturnType<typeof faultProxy>>;
  let client: Client;
  let stopWorker: () => Promise<void>;
  const start = (): Promise<MlflowServer> =>
    startMlflowServer({
      mlflow: MLFLOW!,
      backendStoreUri: `sqlite:///${join(dataDir, 'mlflow.db')}`,
      artifactsDir: join(dataDir, 'artifacts'),
      port,
      logFile: join(dataDir, 'server.log'),
    });

  beforeAll(async () => {
    if (!MLFLOW)
      throw new Error(`mlflow is not installed (looked in ${CACHE}/mlflow-venv and PATH): run 'bash deploy/provision.sh --with-mlflow'.`);
    await run('git', ['init', '-q'], { cwd: project.dir });
    await run('git', ['-c', 'user.email=t@example.com', '-c', 'user.name=t', 'commit', '-q', '--allow-empty', '-m', 'test'], {
      cwd: project.dir,
    });
    port = await freePort();
    server = await start();
    proxy = await faultProxy(() => port);
    client = await createClient();
    const backend = new MlflowRestClient({ uri: `http://127.0.0.1:${proxy.port}`, backoffMs: 50, maxBackoffMs: 500 });
    stopWorker = (await startWorker(project, { tracking: backend })).stop;
  }, 180_000);

  afterAll(async () => {
    await stopWorker?.();
    await client?.connection.close();
    await proxy?.close();
    await server?.stop();
  });

  async function startHousing(id: string, overrides: string[]) {
    return client.workflow.start(PIPELINE_WORKFLOW, {
      taskQueue: project.taskQueue,
      workflowId: id,
      args: [{ pipeline: 'california-housing', overrides, labels: { team: 'pricing' } }],
    });
  }

  async function trackingResult(handle: { workflowId: string; firstExecutionRunId: string }, timeoutMs = 120_000): Promise<unknown> {
    const tid = trackingWorkflowId(`${handle.workflowId}/${handle.firstExecutionRunId}`);
    const h = client.workflow.getHandle(tid);
    await waitFor(
      async () =>
        h.describe().then(
          () => true,
          (e: unknown) => (e instanceof WorkflowNotFoundError ? false : Promise.reject(e)),
        ),
      'the tracking workflow',
    );
    return Promise.race([
      h.result(),
      new Promise((_, reject) => setTimeout(() => reject(new Error('tracking did not finish')), timeoutMs)),
    ]);
  }

  it('records the run, its steps, curves, the registered model and its bytes; lost responses cause no duplicates', async () => {
    // Lose MLflow's answer to the second runs/create and to the train step's log-batch (both applied).
    proxy.drop('POST', 'runs/create', '"run_name":"validate"');
    proxy.drop('POST', 'runs/log-batch', '"key":"val_loss"');
    const id = uniqueId('housing-tracked');
    firstRun = id;
    const handle = await startHousing(id, ['training.epochs=4', 'training.patience=100', 'params.seed=5']);
    const result = (await handle.result()) as { outputs: Record<string, Record<string, unknown>> };
    await trackingResult(handle);
    // Both were lost, in either order (validate's run may be made by the delivery, after train's batch).
    expect([...proxy.dropped].sort()).toEqual(['POST /api/2.0/mlflow/runs/create', 'POST /api/2.0/mlflow/runs/log-batch']);

    const model = result.outputs['export']!['onnx'] as ArtifactRef;
    const r = await readBack(server.url, 'california-housing', 'california-housing', `model/${model.name}`);
    expect(r.experiment?.name).toBe('california-housing');
    const mine = r.runs.filter((x) => x.tags['mlpipe.workflow_id'] === id || x.tags['mlpipe.step_key']?.startsWith(`${id}/`));
    const parent = mine.find((x) => !x.tags['mlflow.parentRunId'])!;
    const children = mine.filter((x) => x.tags['mlflow.parentRunId'] === parent.id);
    // One parent and one nested run per step: the lost runs/create answer did not make a second one.
    expect(mine).toHaveLength(10);
    // The register step made its own run (to hold the model files); tracking found it and nested it.
    expect(children.map((c) => c.name).sort()).toEqual([
      'evaluate',
      'export',
      'ingest',
      'register',
      'split',
      'train',
      'transform',
      'tune',
      'validate',
    ]);
    expect(parent.status).toBe('FINISHED');
    expect(parent.params).toMatchObject({
      'training.epochs': '4',
      'training.batch_size': '512',
      'model.hidden': '[128,64]',
      'params.seed': '5',
    });
    expect(parent.tags).toMatchObject({
      'mlpipe.pipeline': 'california-housing',
      'mlpipe.workflow_id': id,
      'mlpipe.run_id': handle.firstExecutionRunId,
      'mlflow.source.type': 'JOB',
      'mlpipe.label.team': 'pricing',
      'mlpipe.training_backend': 'tfjs-node',
    });
    expect(parent.tags['mlflow.source.git.commit']).toMatch(/^[0-9a-f]{40}$/);
    const evaluation = result.outputs['evaluate']!['metrics'] as Record<string, number>;
    expect(parent.metrics['rmse']).toBeCloseTo(evaluation['rmse']!, 6);

    const train = children.find((c) => c.name === 'train')!;
    expect(train.params).toMatchObject({ epochs: '4', batchSize: '512', target: 'median_house_value' });
    expect(train.tags).toMatchObject({ 'mlpipe.plugin': 'train.tfjs-mlp', 'mlpipe.cached': 'false' });
    // Curves: one point per epoch, in order, although the batch carrying them was sent twice.
    expect(train.history['loss']!.map((p) => p[0])).toEqual([1, 2, 3, 4]);
    expect(train.history['val_loss']!.map((p) => p[0])).toEqual([1, 2, 3, 4]);
    expect(train.history['duration_seconds']).toHaveLength(1);
    // System metrics of the training step, under the names MLflow's own system metrics monitor
    // logs, numbered 1, 2, ... (at least the sample taken when training ends).
    for (const key of [
      'system/cpu_utilization_percentage',
      'system/system_memory_usage_megabytes',
      'system/process_cpu_percentage',
      'system/process_memory_rss_megabytes',
    ]) {
      const points = train.history[key] ?? [];
      expect(points.length, key).toBeGreaterThanOrEqual(1);
      expect(points.map((p) => p[0])).toEqual(points.map((_, i) => i + 1));
    }
    for (const [, cpu] of train.history['system/cpu_utilization_percentage']!) {
      expect(cpu).toBeGreaterThanOrEqual(0);
      expect(cpu).toBeLessThanOrEqual(100);
    }
    const rss = train.history['system/process_memory_rss_megabytes']!.map((p) => p[1]);
    expect(Math.min(...rss)).toBeGreaterThan(50);
    expect(Math.max(...train.history['system/system_memory_usage_megabytes']!.map((p) => p[1]))).toBeGreaterThan(Math.max(...rss) / 2);
    // GPU figures only where nvidia-smi answers.
    const gpuKeys = Object.keys(train.history).filter((k) => k.startsWith('system/gpu_'));
    if (!(await hasNvidiaSmi())) expect(gpuKeys).toEqual([]);
    else expect(gpuKeys).toEqual(expect.arrayContaining(['system/gpu_0_utilization_percentage', 'system/gpu_0_memory_usage_megabytes']));
    // Other steps are not sampled.
    const ingest = children.find((c) => c.name === 'ingest')!;
    expect(Object.keys(ingest.history).filter((k) => k.startsWith('system/'))).toEqual([]);
    for (const c of children) expect(c.status).toBe('FINISHED');

    // Registered model: a version from the register run, aliased challenger and (the first one)
    // champion, holding the ONNX export, the tfjs model and the transform state.
    const register = children.find((c) => c.name === 'register')!;
    const version = r.model!.versions.find((v) => v.run_id === register.id)!;
    expect(version.status).toBe('READY');
    expect(r.model!.aliases['challenger']).toBe(version.version);
    expect(r.model!.aliases['champion']).toBe(version.version);
    expect(result.outputs['register']).toMatchObject({
      registered: true,
      version: version.version,
      promoted: true,
      champion: version.version,
    });
    expect(register.artifacts).toEqual(expect.arrayContaining(['model/model.onnx', 'model/model.json', 'model/transform-state.json']));
    const bytes = await new LocalArtifactStore(project.settings.artifactsDir).get(model);
    expect(r.model!.artifact_hex_sha256).toBe(createHash('sha256').update(bytes).digest('hex'));
    expect(r.model!.artifact_hex_sha256).toBe(model.sha256);
  }, 240_000);

  it("the drift monitor finds the aliased model version's training data through the registry and lineage", async () => {
    expect(firstRun, 'runs after the first test').not.toBe('');
    const rest = new MlflowRestClient({ uri: server.url });
    try {
      const v1 = await rest.registry.versionByAlias('california-housing', 'challenger');
      // A second run registers version 2 and moves challenger to it; move it back to version 1.
      const second = await startHousing(uniqueId('housing-second'), ['training.epochs=2', 'params.seed=6']);
      await second.result();
      await trackingResult(second);
      const v2 = await rest.registry.versionByAlias('california-housing', 'challenger');
      expect(v2).not.toBe(v1);
      await rest.registry.setAlias('california-housing', 'challenger', v1!);
      const yaml = readFileSync(join(project.dir, 'pipelines', 'california-housing.yaml'), 'utf8');
      project.write(
        'pipelines/california-housing.yaml',
        yaml.replace(
          'reference: { step: ingest, output: dataset }',
          'reference: { step: ingest, output: dataset, model: california-housing@challenger }\n  retrain: false',
        ),
      );
      const m = await client.workflow.start(MONITOR_WORKFLOW, {
        taskQueue: project.taskQueue,
        workflowId: uniqueId('monitor-model'),
        args: [{ pipeline: 'california-housing' }],
      });
      const r = (await m.result()) as MonitorResult;
      // The newest run is the second one; the alias points at the first, and the monitor follows the alias.
      expect(r.referenceFrom).toMatchObject({ model: 'california-housing@challenger', version: v1, workflowId: firstRun, step: 'ingest' });
      expect(r.drift.numberOfColumns).toBe(10);
      expect(r.retrain).toBe(r.drift.datasetDrift ? 'off' : 'no-drift');
      // The check is an MLflow run too: share, per-column scores, the HTML report.
      const exp = await rest.getOrCreateExperiment('california-housing-monitoring');
      const tracked = await rest.findRunByTag(exp, 'mlpipe.monitor_key', m.firstExecutionRunId);
      expect(tracked).toBeDefined();
      expect((await rest.metricHistory(tracked!.mlflowRunId, 'drift_share')).map((p) => p.value)).toEqual([r.drift.share]);
      expect(await rest.metricHistory(tracked!.mlflowRunId, 'drift_score.median_income')).toHaveLength(1);
      const back = await readBack(server.url, 'california-housing-monitoring', '');
      expect(back.runs.find((x) => x.id === tracked!.mlflowRunId)?.artifacts).toContain('drift.html');
    } finally {
      await rest.close();
    }
  }, 240_000);

  it('keeps the champion against a worse challenger; promote and rollback move it by hand, with history', async () => {
    const registry = new MlflowModelRegistry(new MlflowRestClient({ uri: server.url }));
    const [v1, v2] = await Promise.all([registry.version('california-housing', '1'), registry.version('california-housing', '2')]);
    const rmse1 = Number(v1!.tags['mlpipe.metric.rmse']);
    const rmse2 = Number(v2!.tags['mlpipe.metric.rmse']);
    expect(rmse1).toBeGreaterThan(1000);
    expect(rmse2).toBeGreaterThan(1000);
    // Version 2 was trained for 2 epochs (version 1 for 4): champion only if it is better.
    const champion = (await registry.byAlias('california-housing', 'champion'))!.version;
    expect(champion).toBe(rmse2 < rmse1 ? '2' : '1');
    const other = champion === '1' ? '2' : '1';

    const env = { ...process.env, MLPIPE_PROJECT_DIR: project.dir, MLFLOW_TRACKING_URI: server.url };
    const cli = (args: string[]) =>
      run(process.execPath, [join(REPO, 'bin', 'mlpipe.mjs'), ...args], { env }).then(
        (r) => ({ code: 0, ...r }),
        (e: { code: number; stdout: string; stderr: string }) => e,
      );
    expect((await cli(['promote', 'california-housing', other])).stdout).toContain(
      `california-housing@champion -> version ${other} (was ${champion})`,
    );
    expect((await registry.byAlias('california-housing', 'champion'))!.version).toBe(other);
    expect((await cli(['rollback', 'california-housing'])).stdout).toContain(`-> version ${champion} (rolled back from ${other})`);
    expect((await registry.byAlias('california-housing', 'champion'))!.version).toBe(champion);
    const history = await cli(['rollback', 'california-housing', '--history']);
    expect(
      history.stdout
        .trim()
        .split('\n')
        .map((l) => l.split(/\s+/)[1]),
    ).toEqual([...(champion === '2' ? ['promote', 'promote'] : ['promote']), 'promote', 'rollback']);
    // Rolling back walks further down the history until nobody held the alias before.
    let last = await cli(['rollback', 'california-housing']);
    for (let i = 0; i < 3 && last.code === 0; i++) last = await cli(['rollback', 'california-housing']);
    expect(last.code).toBe(2);
    expect(last.stderr).toContain('no earlier holder');
    expect((await cli(['promote', 'california-housing', '99'])).stderr).toContain('has no version 99');
    await registry.setAlias('california-housing', 'champion', '1');
  }, 120_000);

  it('serves the champion from the registry, logs every prediction, and the monitor reads the log as current data', async () => {
    const port = await freePort();
    const env = {
      ...process.env,
      MLPIPE_PROJECT_DIR: project.dir,
      MLFLOW_TRACKING_URI: server.url,
      MLPIPE_ARTIFACTS: project.settings.artifactsDir,
    };
    const child = spawn(
      process.execPath,
      [join(REPO, 'bin', 'mlpipe.mjs'), 'serve', 'california-housing@champion', '--port', String(port), '--watch', '1s'],
      { env, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const base = `http://127.0.0.1:${port}`;
    try {
      await waitFor(
        () =>
          fetch(`${base}/health`).then(
            (r) => r.ok,
            () => false,
          ),
        `the server (${output})`,
      );
      const served = (await (await fetch(`${base}/model`)).json()) as { version: string; sha256: string; inputs: { name: string }[] };
      expect(served.version).toBe('1');
      expect(served.inputs).toHaveLength(9);
      const post = (body: string, type = 'application/json') =>
        fetch(`${base}/predict`, { method: 'POST', headers: { 'content-type': type }, body });
      const rows = await withDuckDB((db) =>
        db.rows<Record<string, unknown>>(
          `SELECT * EXCLUDE (median_house_value) FROM read_csv('${join(REPO, 'pipelines', 'data', 'california-housing-recent.csv')}') LIMIT 300`,
        ),
      );
      const one = (await (await post(JSON.stringify(rows[0]))).json()) as { prediction: number; model: { version: string } };
      expect(one.prediction).toBeGreaterThan(10_000);
      expect(one.model.version).toBe('1');
      const batch = (await (await post(JSON.stringify({ instances: rows }))).json()) as { predictions: number[] };
      expect(batch.predictions).toHaveLength(300);
      expect(batch.predictions[0]).toBeCloseTo(one.prediction, 3);
      const bad = await post(
        JSON.stringify([
          { ...rows[1], median_income: 'high' },
          { ...rows[2], households: undefined, colour: 'red' },
        ]),
      );
      expect(bad.status).toBe(400);
      expect(((await bad.json()) as { details: unknown[] }).details).toEqual([
        { instance: 0, field: 'median_income', problem: 'expected a number, got "high"' },
        { instance: 1, field: 'households', problem: 'required' },
        { instance: 1, field: 'colour', problem: 'not an input of this model' },
      ]);
      expect((await post(JSON.stringify({ instances: Array(9000).fill(rows[0]) }))).status).toBe(413);
      expect((await post('longitude=1', 'text/plain')).status).toBe(415);
      const metrics = await (await fetch(`${base}/metrics`)).text();
      expect(metrics).toContain('mlpipe_predict_requests_total{status="200"} 2');
      expect(metrics).toContain('mlpipe_predictions_total 301');
      expect(metrics).toContain('mlpipe_predict_errors_total{code="INVALID_INPUT"} 1');
      expect(metrics).toMatch(/mlpipe_predict_latency_seconds_count 5\n/);

      // The alias moves (a promotion): the server follows it without a restart.
      await moveAlias(
        new MlflowModelRegistry(new MlflowRestClient({ uri: server.url })),
        'california-housing',
        'champion',
        '2',
        'promote',
        'test',
      );
      await waitFor(
        async () => ((await (await fetch(`${base}/model`)).json()) as { version: string }).version === '2',
        'the server to follow champion to version 2',
        30_000,
      );
      const after = (await (await post(JSON.stringify(rows[0]))).json()) as { model: { version: string } };
      expect(after.model.version).toBe('2');
      expect(await (await fetch(`${base}/metrics`)).text()).toContain('mlpipe_model_swaps_total 1');
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
    expect(output).toContain('stopping: finishing requests and writing the prediction log');
    const store = new LocalArtifactStore(project.settings.artifactsDir);
    const logged = await collectPredictions(store, 'california-housing');
    expect(logged.rows).toBe(302);
    expect(logged.versions.sort()).toEqual(['1', '2']);

    // The drift monitor with the prediction log as current data: the model's 9 inputs are compared.
    const m = await client.workflow.start(MONITOR_WORKFLOW, {
      taskQueue: project.taskQueue,
      workflowId: uniqueId('monitor-log'),
      args: [{ pipeline: 'california-housing', overrides: ['params.recent=predictions:california-housing'] }],
    });
    const r = (await m.result()) as MonitorResult;
    expect(r.currentFrom).toMatchObject({ predictions: 'california-housing', rows: 302 });
    expect(r.drift.numberOfColumns).toBe(9);
    expect(r.drift.driftedColumns.length).toBeGreaterThan(0);
  }, 180_000);

  it('an HPO search is a run with its trials nested under it, the best tagged', async () => {
    project.write(
      'pipelines/search-mlflow.yaml',
      `name: search-mlflow
params: { x: 0 }
hpo:
  metric: { step: objective, output: score, key: score, goal: minimize }
  space:
    params.x: { type: discrete, values: [4, 2, 6] }
  trials: 3
  parallel: 2
  algorithm: grid
  final: false
steps:
  objective:
    uses: util.echo
    with:
      values:
        score: \${params.x}
`,
    );
    const h = await client.workflow.start(HPO_WORKFLOW, {
      taskQueue: project.taskQueue,
      workflowId: uniqueId('hpo-tracked'),
      args: [{ pipeline: 'search-mlflow' }],
    });
    const r = (await h.result()) as HpoResult;
    expect(r.best.value).toBe(2);
    const back = await readBack(server.url, 'search-mlflow', '');
    const search = back.runs.find((x) => x.tags['mlpipe.hpo_key'] === h.workflowId)!;
    expect(search).toBeDefined();
    expect(search.status).toBe('FINISHED');
    expect(search.metrics['best_score']).toBe(2);
    expect(search.params['space.params.x']).toContain('discrete');
    expect(search.tags['mlpipe.hpo_best_overrides']).toBe('params.x=2');
    const trials = back.runs.filter((x) => x.tags['mlflow.parentRunId'] === search.id);
    expect(trials.map((t) => t.tags['mlpipe.label.trial']).sort()).toEqual(['0', '1', '2']);
    expect(trials.find((t) => t.tags['mlpipe.hpo_best'] === 'true')?.params['params.x']).toBe('2');
    // Each trial run has its own nested step run with the metric.
    for (const t of trials)
      expect(back.runs.filter((x) => x.tags['mlflow.parentRunId'] === t.id).map((x) => x.name)).toEqual(['objective']);
  }, 120_000);

  it('REST client on the real server: racing experiment creation, batches past the limits, aliases, typed errors', async () => {
    const rest = new MlflowRestClient({ uri: server.url });
    try {
      const name = uniqueId('race');
      const ids = await Promise.all(Array.from({ length: 6 }, () => rest.getOrCreateExperiment(name)));
      expect(new Set(ids).size).toBe(1);
      const created = await rest.createRun({
        experimentId: ids[0]!,
        runName: 'big',
        startTime: Date.now(),
        tags: [{ key: 'k', value: 'v' }],
      });
      const metrics = Array.from({ length: 2500 }, (_, i) => ({
        key: `m${i % 5}`,
        value: i / 7,
        timestamp: 1_700_000_000_000 + i,
        step: i,
      }));
      const params = Array.from({ length: 230 }, (_, i) => ({ key: `p${i}`, value: `v${i}` }));
      await rest.logBatch(created.mlflowRunId, { metrics, params, tags: [] });
      const got = await rest.getRun(created.mlflowRunId);
      expect(got.data?.params).toHaveLength(230);
      expect((await rest.metricHistory(created.mlflowRunId, 'm3')).map((p) => p.step)).toEqual(
        metrics.filter((m) => m.key === 'm3').map((m) => m.step),
      );
      expect((await rest.findRunByTag(ids[0]!, 'k', 'v'))?.mlflowRunId).toBe(created.mlflowRunId);
      await expect(rest.getRun('0'.repeat(32))).rejects.toMatchObject({ code: 'TRACKING_ERROR', mlflowCode: 'RESOURCE_DOES_NOT_EXIST' });
      await expect(
        rest.logBatch(created.mlflowRunId, { metrics: [], params: [{ key: 'p1', value: 'changed' }], tags: [] }),
      ).rejects.toMatchObject({ code: 'TRACKING_ERROR', mlflowCode: 'INVALID_PARAMETER_VALUE' });
      const model = uniqueId('model');
      await rest.registry.ensureRegisteredModel(model);
      await rest.registry.ensureRegisteredModel(model);
      const v = await rest.registry.createVersion(model, `${created.artifactUri}/model`, created.mlflowRunId);
      await rest.registry.setAlias(model, 'champion', v);
      expect(await rest.registry.versionByAlias(model, 'champion')).toBe(v);
      expect(await rest.registry.findVersion(model, created.mlflowRunId)).toBe(v);
      expect(await rest.registry.versionByAlias(model, 'nobody')).toBeUndefined();
    } finally {
      await rest.close();
    }
  });

  it('writes run artifacts straight to GCS when the run artifact URI is gs://', async () => {
    const emu = await startEmulator(['mlflow-artifacts']);
    const rest = new MlflowRestClient({ uri: server.url, gcs: emu.storage });
    try {
      const exp = await rest.getOrCreateExperiment(uniqueId('gs-artifacts'), { artifactLocation: 'gs://mlflow-artifacts/experiments' });
      const run = await rest.createRun({ experimentId: exp, runName: 'to-gcs', startTime: Date.now(), tags: [] });
      expect(run.artifactUri).toBe(`gs://mlflow-artifacts/experiments/${run.mlflowRunId}/artifacts`);
      const bytes = randomBytes(10_000);
      await rest.uploadArtifact(run, 'model/model.json', bytes);
      await rest.uploadArtifact(run, 'model/model.json', bytes); // a retried delivery: same object, same bytes
      const [files] = await emu.storage.bucket('mlflow-artifacts').getFiles({ prefix: `experiments/${run.mlflowRunId}/` });
      expect(files.map((f) => f.name)).toEqual([`experiments/${run.mlflowRunId}/artifacts/model/model.json`]);
      const [stored] = await files[0]!.download();
      expect(stored.equals(bytes)).toBe(true);
      await expect(rest.uploadArtifact({ ...run, artifactUri: 's3://elsewhere/x' }, 'a', bytes)).rejects.toMatchObject({
        code: 'TRACKING_ERROR',
        mlflowCode: 'UNSUPPORTED_ARTIFACT_URI',
      });
    } finally {
      await rest.close();
      await emu.stop();
    }
  });

  it('keeps tracking durable while MLflow is down: the run completes, nothing is lost or duplicated', async () => {
    const id = uniqueId('housing-outage');
    // Tracking's durability, without the register step (which needs MLflow itself and retries).
    const yaml = readFileSync(join(project.dir, 'pipelines', 'california-housing.yaml'), 'utf8');
    project.write('pipelines/california-housing.yaml', yaml.slice(0, yaml.indexOf('  # The exported model becomes')));
    const handle = await startHousing(id, ['training.epochs=6', 'training.patience=100', 'params.seed=6']);
    const tid = trackingWorkflowId(`${handle.workflowId}/${handle.firstExecutionRunId}`);
    // Once the parent run exists in MLflow, take the server down hard.
    await waitFor(
      async () => {
        const d = await readBackRunsByTag(id);
        return d > 0;
      },
      'the parent run in MLflow',
      60_000,
    );
    await server.stop('SIGKILL');
    const outage = Date.now();

    const result = (await handle.result()) as { state: string };
    expect(result.state).toBe('succeeded');
    const during = await client.workflow.getHandle(tid).describe();
    expect(during.status.name).toBe('RUNNING');
    const pendingWhileDown = await client.workflow
      .getHandle(tid)
      .query<{ delivered: number; inFlight: number; pending: number }>('trackingStatus');
    // 10 events: run started, 8 steps ended, run ended. All were sent by the pipeline; not all delivered.
    expect(pendingWhileDown.delivered + pendingWhileDown.inFlight + pendingWhileDown.pending).toBe(10);
    expect(pendingWhileDown.delivered).toBeLessThan(10);

    server = await start();
    await trackingResult(handle, 180_000);
    const downSeconds = (Date.now() - outage) / 1000;

    const r = await readBack(server.url, 'california-housing');
    const mine = r.runs.filter((x) => x.tags['mlpipe.workflow_id'] === id || x.tags['mlpipe.step_key']?.startsWith(`${id}/`));
    expect(mine).toHaveLength(9);
    const parent = mine.find((x) => !x.tags['mlflow.parentRunId'])!;
    expect(parent.status).toBe('FINISHED');
    const train = mine.find((x) => x.name === 'train')!;
    for (const key of ['loss', 'val_loss', 'learning_rate']) expect(train.history[key]!.map((p) => p[0])).toEqual([1, 2, 3, 4, 5, 6]);
    // Nothing lost: every step's duration and cache flag, the full curves, the parent's metrics.
    for (const x of mine.filter((m) => m !== parent)) {
      expect(x.history['duration_seconds'], x.name).toHaveLength(1);
      expect(x.history['cache_hit'], x.name).toHaveLength(1);
    }
    expect(Object.keys(parent.metrics).sort()).toEqual(['mae', 'mape', 'r2', 'rmse', 'tune.mae', 'tune.mape', 'tune.r2', 'tune.rmse']);
    const points = mine.reduce((n, x) => n + Object.values(x.history).reduce((m, h) => m + h.length, 0), 0);
    const distinct = mine.reduce(
      (n, x) => n + Object.values(x.history).reduce((m, h) => m + new Set(h.map((p) => `${p[0]}/${p[2]}`)).size, 0),
      0,
    );
    expect(points).toBe(distinct);
    console.log(
      `MLflow outage: server SIGKILLed after the parent run was created; pipeline ${id} succeeded while it was down (${10 - pendingWhileDown.delivered} of 10 events undelivered); after the restart the tracking workflow delivered them: ${mine.length} runs, ${points} metric points, 0 duplicates (outage to delivery ${downSeconds.toFixed(1)} s)`,
    );

    async function readBackRunsByTag(workflowId: string): Promise<number> {
      const rest = new MlflowRestClient({ uri: server.url, maxAttempts: 1 });
      try {
        const exp = await rest.getExperimentByName('california-housing');
        if (!exp) return 0;
        return (await rest.searchRuns([exp.experiment_id], `tags.\`mlpipe.workflow_id\` = '${workflowId}'`)).runs.length;
      } finally {
        await rest.close();
      }
    }
  }, 300_000);
});

describe('MLflow file store, the embedded default', () => {
  const project = createTestProject('mlruns');
  let client: Client;
  let stopWorker: () => Promise<void>;
  const root = join(project.dir, 'mlruns');

  beforeAll(async () => {
    if (!MLFLOW) throw new Error(`mlflow is not installed: run 'bash deploy/provision.sh --with-mlflow'.`);
    client = await createClient();
    stopWorker = (await startWorker(project, { tracking: new MlflowFileStore(root) })).stop;
  });
  afterAll(async () => {
    await stopWorker?.();
    await client?.connection.close();
  });

  it('writes mlruns/ that MLflow reads over a file: URI', async () => {
    const id = uniqueId('housing-file');
    const handle = await client.workflow.start(PIPELINE_WORKFLOW, {
      taskQueue: project.taskQueue,
      workflowId: id,
      args: [{ pipeline: 'california-housing', overrides: ['training.epochs=3', 'training.patience=100'] }],
    });
    await handle.result();
    await waitForTracking(client, handle);

    const r = await readBack(`file:${root}`, 'california-housing');
    expect(r.runs).toHaveLength(10);
    const parent = r.runs.find((x) => !x.tags['mlflow.parentRunId'])!;
    expect(parent.status).toBe('FINISHED');
    expect(parent.params['training.epochs']).toBe('3');
    expect(Object.keys(parent.metrics).sort()).toEqual(['mae', 'mape', 'r2', 'rmse', 'tune.mae', 'tune.mape', 'tune.r2', 'tune.rmse']);
    const train = r.runs.find((x) => x.name === 'train')!;
    expect(train.tags['mlflow.parentRunId']).toBe(parent.id);
    expect(train.history['loss']!.map((p) => p[0])).toEqual([1, 2, 3]);
    // No registry in the file store: the register step says so and succeeds; the export's parity is tracked.
    const register = r.runs.find((x) => x.name === 'register')!;
    expect(register.tags).toMatchObject({
      'mlpipe.plugin': 'deploy.mlflow-register',
      'mlpipe.status': 'succeeded',
      'mlflow.parentRunId': parent.id,
    });
    expect(register.metrics['registered']).toBe(0);
    const exported = r.runs.find((x) => x.name === 'export')!;
    expect(exported.metrics['parity.maxRelativeError']).toBeLessThan(1e-4);
  }, 120_000);

  it('run status follows the pipeline: FAILED for a failed step, KILLED for a cancelled run', async () => {
    project.write(
      'pipelines/broken.yaml',
      'name: broken\nsteps:\n  ok: { uses: util.echo }\n  bad:\n    uses: util.flaky\n    needs: ok\n    with: { message: disk full }\n    retry: { maximumAttempts: 1 }\n',
    );
    project.write(
      'pipelines/slow.yaml',
      'name: slow\nsteps:\n  long:\n    uses: util.sleep\n    heartbeat: 2s\n    with: { ticks: 300, tickMs: 100 }\n',
    );
    const failed = await client.workflow.start(PIPELINE_WORKFLOW, {
      taskQueue: project.taskQueue,
      workflowId: uniqueId('broken'),
      args: [{ pipeline: 'broken', cache: false }],
    });
    const slow = await client.workflow.start(PIPELINE_WORKFLOW, {
      taskQueue: project.taskQueue,
      workflowId: uniqueId('slow'),
      args: [{ pipeline: 'slow', cache: false }],
    });
    await failed.result().catch(() => undefined);
    await waitFor(
      async () => (await slow.query<{ steps: Record<string, { status: string }> }>('status')).steps['long']?.status === 'running',
      'the slow step',
    );
    await slow.cancel();
    await slow.result().catch(() => undefined);
    for (const h of [failed, slow]) await waitForTracking(client, h);
    const broken = await readBack(`file:${root}`, 'broken');
    const byName = Object.fromEntries(broken.runs.map((x) => [x.name, x]));
    expect(byName[failed.workflowId]!.status).toBe('FAILED');
    expect(byName[failed.workflowId]!.tags['mlpipe.error']).toContain('disk full');
    expect(byName['ok']!.status).toBe('FINISHED');
    expect(byName['bad']!.status).toBe('FAILED');
    const cancelled = await readBack(`file:${root}`, 'slow');
    expect(Object.fromEntries(cancelled.runs.map((x) => [x.name, x.status]))).toEqual({ [slow.workflowId]: 'KILLED', long: 'KILLED' });
  }, 120_000);
});
