/**
 * The web UI in a real headless Chromium (Debian's, driven by playwright-core) against a real
 * Temporal dev server and worker: the run page of a running pipeline draws every step, a step
 * changes colour when it finishes without a reload, the artifact preview shows a dataset's
 * columns, the training chart has points; hostile API requests are refused; an unreachable
 * Temporal is said so on the page. The Search page of a hyperparameter search (trials, params,
 * metric, state, stopped early, the best) and the Models page (a real MLflow registry's versions,
 * metrics, aliases and their history; a monitor's drift checks with their reports) against what
 * Temporal, MLflow and the store hold; an unreachable MLflow is said so.
 *
 * MLPIPE_UI_SCREENSHOTS=docs writes the run page and the artifact preview to docs/ui-*.png.
 */
import type { Client } from '@temporalio/client';
import { Client as TemporalClient, Connection } from '@temporalio/client';
import { existsSync, mkdtempSync, statSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { LocalArtifactStore } from '../../adapters/local-store.js';
import { GcsArtifactStore } from '../../adapters/gcs-store.js';
import { startEmulator, type Emulator } from '../../dev/gcs-emulator.js';
import { MlflowRestClient } from '../../adapters/mlflow/rest.js';
import { MlflowModelRegistry } from '../../adapters/mlflow/registry.js';
import { mlpipeCacheDir } from '../../engine/cache-dir.js';
import {
  HPO_WORKFLOW,
  hpoStatusQueryName,
  MONITOR_WORKFLOW,
  PIPELINE_WORKFLOW,
  statusQueryName,
  type HpoResult,
  type HpoStatus,
  type MonitorResult,
  type PipelineResult,
  type PipelineStatus,
} from '../../engine/contracts.js';
import { moveAlias, rollbackAlias } from '../../engine/promotion.js';
import { freePort } from '../../dev/temporal-server.js';
import { findMlflow, startMlflowServer, type MlflowServer } from '../../dev/mlflow-server.js';
import type { ArtifactRef } from '../../engine/types.js';
import { startUiServer, type UiServer } from '../../ui/server.js';
import { defaultPayloadConverter } from '@temporalio/common';
import { createClient, createTestProject, REPO, startWorker, uniqueId, waitFor } from './helpers.js';
import { whileRunning, workerProcesses } from './processes.js';

const CHROMIUM = process.env['CHROMIUM'] ?? '/usr/bin/chromium';
const SHOTS = process.env['MLPIPE_UI_SCREENSHOTS'] === 'docs' ? join(REPO, 'docs') : mkdtempSync(join(tmpdir(), 'mlpipe-ui-shots-'));

const project = createTestProject('ui');
const gate = join(project.dir, 'gate');
let client: Client;
let stopWorker: () => Promise<void>;
let browser: Browser;
let ui: UiServer;
let mlflow: MlflowServer;
const MLFLOW = findMlflow(mlpipeCacheDir());
const searchGate = join(project.dir, 'search-gate');

const pipeline = `name: ui-demo
description: A small training pipeline with a step that waits for a gate file.
steps:
  data:
    uses: ingest.file
    with: { path: data.csv }
  train:
    uses: train.tfjs-mlp
    needs: data
    inputs: { train: '\${steps.data.outputs.dataset}' }
    with: { target: y, hidden: [8], epochs: 6, batchSize: 64, seed: 1, backend: cpu }
  gated:
    uses: util.shell
    needs: data
    with:
      command: 'until [ -f "$GATE" ]; do sleep 0.1; done'
      env: { GATE: '${gate}' }
  report:
    uses: util.echo
    needs: [train, gated]
    with: { values: { done: true } }
`;

beforeAll(async () => {
  if (!existsSync(CHROMIUM))
    throw new Error(`Chromium not found at ${CHROMIUM}: run 'bash deploy/provision.sh --with-chromium' or set CHROMIUM.`);
  const rows = ['a,b,y'];
  for (let i = 0; i < 200; i++) rows.push(`${Math.sin(i * 1.3)},${Math.cos(i * 0.7)},${3 * Math.sin(i * 1.3) - 2 * Math.cos(i * 0.7) + 1}`);
  project.write('data.csv', `${rows.join('\n')}\n`);
  project.write('pipelines/ui-demo.yaml', pipeline);
  // A search whose trials wait for a gate file (so the page sees one running), the last stopped by the median rule.
  project.write(
    'pipelines/ui-search.yaml',
    `name: ui-search
params: { lr: 0.01 }
hpo:
  metric: { step: train, output: metrics, key: trainLoss, goal: minimize }
  space:
    params.lr: { type: discrete, values: [0.01, 0.012, 0.011, 0.000001] }
  trials: 4
  parallel: 1
  algorithm: grid
  final: false
  earlyStopping: { rule: median, step: train, afterEpochs: 3, minTrials: 3 }
steps:
  gate:
    uses: util.shell
    cache: false
    with:
      command: 'until [ -f "$GATE" ]; do sleep 0.1; done'
      env: { GATE: '${searchGate}' }
  data:
    uses: ingest.file
    needs: gate
    with: { path: data.csv }
  train:
    uses: train.tfjs-mlp
    needs: data
    inputs: { train: '\${steps.data.outputs.dataset}' }
    with: { target: y, hidden: [8], epochs: 12, batchSize: 64, learningRate: '\${params.lr}', seed: 1, backend: cpu }
`,
  );
  // A monitor: the reference is the ingested data.csv, the current data is same.csv or drifted.csv.
  const monitorRows = (f: (i: number) => [number, number]): string =>
    ['a,b,y', ...Array.from({ length: 300 }, (_, i) => [...f(i), 3 * f(i)[0] - 2 * f(i)[1] + 1].join(','))].join('\n') + '\n';
  project.write(
    'same.csv',
    monitorRows((i) => [Math.sin(i * 1.3 + 0.1), Math.cos(i * 0.7 + 0.1)]),
  );
  project.write(
    'drifted.csv',
    monitorRows((i) => [Math.sin(i * 1.3) + 3, Math.cos(i * 0.7)]),
  );
  project.write(
    'pipelines/ui-monitored.yaml',
    `name: ui-monitored
params: { current: same.csv }
monitor:
  current: \${params.current}
  reference: { step: ingest, output: dataset }
steps:
  ingest:
    uses: ingest.file
    with: { path: data.csv }
`,
  );
  if (!MLFLOW) throw new Error("mlflow is not installed: run 'bash deploy/provision.sh --with-mlflow'.");
  const mlflowDir = mkdtempSync(join(tmpdir(), 'mlpipe-ui-mlflow-'));
  mlflow = await startMlflowServer({
    mlflow: MLFLOW,
    backendStoreUri: `sqlite:///${join(mlflowDir, 'mlflow.db')}`,
    artifactsDir: join(mlflowDir, 'artifacts'),
    port: await freePort(),
    logFile: join(mlflowDir, 'server.log'),
  });
  client = await createClient();
  stopWorker = (await startWorker(project, { tracking: null })).stop;
  ui = await startUiServer({
    connect: async () => new TemporalClient({ connection: await Connection.connect({ address: inject('temporalAddress') }) }),
    temporalAddress: inject('temporalAddress'),
    store: new LocalArtifactStore(project.settings.artifactsDir),
    mlflow: new MlflowRestClient({ uri: mlflow.url, maxAttempts: 2, timeoutMs: 5000 }),
  });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
});
afterAll(async () => {
  writeFileSync(gate, '');
  writeFileSync(searchGate, '');
  await browser?.close();
  await ui?.stop();
  await stopWorker?.();
  await client?.connection.close();
  await mlflow?.stop();
});

/** A raw HTTP request (no URL normalisation by the client), with its status and JSON body. */
function raw(
  path: string,
  options: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<{ status: number; body: { error?: string } }> {
  return new Promise((resolve, reject) => {
    // A path given as an option is sent as written (a URL would be normalised first).
    const req = request({ host: '127.0.0.1', port: ui.port, path, method: options.method ?? 'GET', headers: options.headers }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, body: text.startsWith('{') ? (JSON.parse(text) as { error?: string }) : {} }),
      );
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

describe('web UI in Chromium', () => {
  let workflowId: string;

  it('shows every step of a running pipeline and recolours a step when it finishes, without a reload', async () => {
    workflowId = uniqueId('ui-demo');
    const handle = await client.workflow.start(PIPELINE_WORKFLOW, {
      taskQueue: project.taskQueue,
      workflowId,
      args: [{ pipeline: 'ui-demo' }],
    });
    await waitFor(async () => {
      const s = await handle.query<PipelineStatus>(statusQueryName).catch(() => undefined);
      return s?.steps['gated']?.status === 'running';
    }, 'the gated step to run');

    const page = await browser.newPage({ viewport: { width: 1280, height: 760 } });
    const navigations: string[] = [];
    page.on('framenavigated', (f) => navigations.push(f.url()));
    await page.goto(`${ui.url}/#/run/${encodeURIComponent(workflowId)}`);
    const nodes = page.locator('svg#dag g.step');
    await nodes.first().waitFor();
    expect(await nodes.evaluateAll((ns) => ns.map((n) => n.getAttribute('data-step')).sort())).toEqual([
      'data',
      'gated',
      'report',
      'train',
    ]);
    expect(await page.locator('svg#dag path.edge').count()).toBe(4);
    const gated = page.locator('g.step[data-step="gated"]');
    expect(await gated.getAttribute('data-status')).toBe('running');
    const runningFill = await gated.locator('rect').evaluate((r) => getComputedStyle(r).fill);
    await page.evaluate(() => ((window as unknown as { marker: number }).marker = 42));

    writeFileSync(gate, '');
    await page.waitForSelector('g.step[data-step="gated"][data-status="succeeded"]', { timeout: 60_000 });
    await page.waitForSelector('g.step[data-step="report"][data-status="succeeded"]', { timeout: 60_000 });
    // The same document all along: the colour changed through the event stream.
    expect(await page.evaluate(() => (window as unknown as { marker?: number }).marker)).toBe(42);
    expect(navigations.length).toBe(1);
    // Colours settle with a short CSS transition.
    await page.waitForFunction(
      (before) => getComputedStyle(document.querySelector('g.step[data-step="gated"] rect')!).fill !== before,
      runningFill,
    );
    await page.locator('#run-header .pill[data-status="succeeded"]').waitFor();

    // The training chart of the train step has a point per epoch from its history.
    await page.locator('g.step[data-step="train"]').click();
    await page.locator('#chart-box circle.point').first().waitFor();
    const history = (result: { preview: { kind: string; points?: unknown[] } }): number => result.preview.points?.length ?? 0;
    const train = (await (await fetch(`${ui.url}/api/runs/${encodeURIComponent(workflowId)}`)).json()) as {
      steps: Record<string, { outputs?: { history?: ArtifactRef } }>;
    };
    const epochs = history(await (await fetch(`${ui.url}/api/artifacts/${train.steps['train']!.outputs!.history!.sha256}`)).json());
    expect(epochs).toBeGreaterThan(1);
    expect(await page.locator('#chart-box circle.loss').count()).toBe(epochs);
    expect(await page.locator('#details').innerText()).toContain('train.tfjs-mlp@');
    await page.screenshot({ path: join(SHOTS, 'ui-run.png') });
    await page.close();
  });

  it('previews the dataset artifact: its columns, row count and first rows', async () => {
    const result = await client.workflow.getHandle(workflowId).result();
    const dataset = (result as PipelineResult).outputs['data']!['dataset'] as ArtifactRef;
    const page = await browser.newPage({ viewport: { width: 1100, height: 700 } });
    await page.goto(`${ui.url}/#/artifact/${dataset.sha256}`);
    await page.locator('#schema').waitFor();
    expect(await page.locator('#schema tr[data-column]').evaluateAll((rs) => rs.map((r) => r.getAttribute('data-column')))).toEqual([
      'a',
      'b',
      'y',
    ]);
    expect(await page.locator('#row-count').innerText()).toContain('200 rows');
    expect(await page.locator('#head tr').count()).toBe(21);
    expect(await page.locator('#download').getAttribute('href')).toBe(`/api/artifacts/${dataset.sha256}/raw?download=1`);
    await page.screenshot({ path: join(SHOTS, 'ui-artifact.png') });
    await page.close();
    for (const f of ['ui-run.png', 'ui-artifact.png']) expect(statSync(join(SHOTS, f)).size).toBeLessThan(200 * 1024);
  });

  it('lists the run, filtered by pipeline and status', async () => {
    const page = await browser.newPage();
    await page.goto(`${ui.url}/#/`);
    await page.locator(`#runs tr[data-workflow="${workflowId}"]`).waitFor();
    await page.locator('#f-status').selectOption('failed');
    await page.waitForFunction((id) => !document.querySelector(`#runs tr[data-workflow="${id}"]`), workflowId);
    await page.close();
  });

  it('refuses hostile requests: path traversal, bad digests, huge params, foreign hosts, cross-site cancels, bodies', async () => {
    for (const path of [
      '/api/artifacts/../../../../etc/passwd',
      '/api/artifacts/..%2F..%2Fetc%2Fpasswd',
      `/api/artifacts/${'A'.repeat(64)}`,
      '/api/artifacts/%00',
    ])
      expect((await raw(path)).status, path).toBe(400);
    // A well-formed digest that no recorded step produced: not served, even if the bytes were in the store.
    expect((await raw(`/api/artifacts/${'0'.repeat(64)}`)).status).toBe(404);
    expect((await raw(`/api/runs?pipeline=${'x'.repeat(10_000)}`)).status).toBe(414);
    expect((await raw(`/api/runs/${'w'.repeat(1500)}`)).status).toBe(400);
    expect((await raw('/api/runs?status=%27%20OR%201%3D1')).status).toBe(400);
    expect((await raw('/api/runs?limit=100000')).status).toBe(400);
    expect((await raw('/api/runs', { headers: { host: 'evil.example:80' } })).status).toBe(403);
    expect((await raw(`/api/runs/${workflowId}/cancel`, { method: 'POST' })).status).toBe(403);
    expect((await raw('/api/runs', { method: 'POST', body: 'x'.repeat(1000) })).status).toBe(413);
    expect((await raw('/api/runs', { method: 'DELETE' })).status).toBe(405);
  });

  it('says so when Temporal is unreachable', async () => {
    const down = await startUiServer({
      connect: async () => new TemporalClient({ connection: await Connection.connect({ address: '127.0.0.1:1', connectTimeout: 1000 }) }),
      temporalAddress: '127.0.0.1:1',
      store: new LocalArtifactStore(project.settings.artifactsDir),
    });
    try {
      const page = await browser.newPage();
      await page.goto(`${down.url}/#/`);
      await page.waitForFunction(() => !document.getElementById('banner')!.hidden);
      expect(await page.locator('#banner').innerText()).toContain('Temporal is unreachable at 127.0.0.1:1');
      await page.close();
    } finally {
      await down.stop();
    }
  });
});

describe('Search and Models pages in Chromium', () => {
  it('shows a search: a running trial, then every trial with its params, metric, state and early stop, and the best', async () => {
    const searchId = uniqueId('ui-search');
    const handle = await client.workflow.start(HPO_WORKFLOW, {
      taskQueue: project.taskQueue,
      workflowId: searchId,
      args: [{ pipeline: 'ui-search' }],
      workflowRunTimeout: '10 minutes',
    });
    await waitFor(async () => {
      const s = await handle.query<HpoStatus>(hpoStatusQueryName).catch(() => undefined);
      return s?.running.length === 1;
    }, 'the first trial to start');
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    await page.goto(`${ui.url}/#/searches`);
    await page.locator(`#searches tr[data-workflow="${searchId}"]`).waitFor();
    expect(await page.locator(`#searches tr[data-workflow="${searchId}"]`).innerText()).toContain('ui-search');
    await page.locator(`#searches tr[data-workflow="${searchId}"] a`).click();
    // While the gate is shut, trial 0 runs and nothing has finished.
    await page.locator('#trials tr[data-trial="0"][data-state="running"]').waitFor();
    expect(await page.locator('#trials tr[data-trial]').count()).toBe(1);
    expect(await page.locator('#search-summary').innerText()).toContain('0/4 trials finished');
    expect(await page.locator('#best').innerText()).toContain('No trial has produced the metric yet');

    writeFileSync(searchGate, '');
    const r = (await handle.result()) as HpoResult;
    await page.locator('#trials tr[data-trial="3"]:not([data-state="running"])').waitFor({ timeout: 60_000 });
    await page.waitForFunction(() => document.querySelector('h1 .pill')?.getAttribute('data-status') === 'completed');
    const rows = await page.locator('#trials tr[data-trial]').evaluateAll((trs) =>
      trs.map((tr) => ({
        index: Number(tr.getAttribute('data-trial')),
        state: tr.getAttribute('data-state'),
        lr: tr.querySelector('td[data-param="params.lr"]')?.textContent,
        value: Number(tr.querySelector('td.value')?.textContent),
        stopped: tr.querySelector('td.stopped')?.textContent,
        best: tr.classList.contains('best'),
      })),
    );
    expect(rows).toEqual(
      r.results.map((t) => ({
        index: t.index,
        state: t.status === 'failed' ? 'failed' : t.stoppedAtEpoch ? 'stopped-early' : 'succeeded',
        lr: t.overrides.find((o) => o.startsWith('params.lr='))!.slice('params.lr='.length),
        value: Number(t.value!.toPrecision(6)),
        stopped: t.stoppedAtEpoch ? `epoch ${t.stoppedAtEpoch}` : '',
        best: t.index === r.best.index,
      })),
    );
    // The fourth trial (a tiny learning rate) is stopped by the median rule at epoch 3, as in hpo.test.ts.
    expect(rows.map((x) => x.state)).toEqual(['succeeded', 'succeeded', 'succeeded', 'stopped-early']);
    expect(await page.locator('#best-trial').innerText()).toBe(`trial ${r.best.index}`);
    expect(Number(await page.locator('#best-value').innerText())).toBe(Number(r.best.value!.toPrecision(6)));
    expect(await page.locator('#trial-chart circle.trial').count()).toBe(4);
    expect(await page.locator(`#trial-chart circle.best[data-trial="${r.best.index}"]`).count()).toBe(1);
    await page.screenshot({ path: join(SHOTS, 'ui-search.png') });
    // A trial links to its run page.
    await page.locator('#trials tr[data-trial="3"] a').click();
    await page.locator('g.step[data-step="train"][data-status="succeeded"]').waitFor();
    await page.close();
  }, 300_000);

  it('shows registered models: versions with their metrics, aliases and their history, from a real MLflow', async () => {
    const registry = new MlflowModelRegistry(new MlflowRestClient({ uri: mlflow.url }));
    const name = `ui-model-${process.pid}`;
    const rmse = [2.5, 1.75, 3.125];
    const versions: string[] = [];
    for (const [i, value] of rmse.entries()) {
      const mv = await registry.publish({
        name,
        experiment: 'ui-test',
        runKey: { tag: 'mlpipe.step_key', value: `ui-wf-${i}/run/register` },
        runName: 'register',
        runTags: {},
        files: { 'model.json': Buffer.from(`{"i":${i}}`) },
        versionTags: { 'mlpipe.metric.rmse': String(value), 'mlpipe.metric.r2': String(0.5 + i / 10), 'mlpipe.workflow_id': `ui-wf-${i}` },
      });
      versions.push(mv.version);
      await registry.setAlias(name, 'challenger', mv.version);
    }
    await moveAlias(registry, name, 'champion', versions[0]!, 'promote', 'first model');
    await moveAlias(registry, name, 'champion', versions[1]!, 'promote', 'rmse 1.75 < 2.5');
    await rollbackAlias(registry, name, 'champion');

    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    await page.goto(`${ui.url}/#/models`);
    await page.locator(`#models tr[data-model="${name}"]`).waitFor();
    expect(await page.locator(`#models tr[data-model="${name}"] td.aliases`).innerText()).toContain(`champion → v${versions[0]}`);
    await page.locator(`#models tr[data-model="${name}"] a`).click();
    await page.locator('#versions tr[data-version]').first().waitFor();
    const shown = await page.locator('#versions tr[data-version]').evaluateAll((trs) =>
      trs.map((tr) => ({
        version: tr.getAttribute('data-version'),
        rmse: Number(tr.querySelector('td[data-metric="rmse"]')?.textContent),
        aliases: tr.querySelector('td.aliases')?.textContent,
      })),
    );
    // Newest first; the metrics as tagged; champion back on the first version after the rollback.
    const back = await Promise.all(versions.map((v) => registry.version(name, v)));
    expect(shown).toEqual(
      [...back].reverse().map((mv) => ({
        version: mv!.version,
        rmse: Number(mv!.tags['mlpipe.metric.rmse']),
        aliases: mv!.aliases.sort().join(', '),
      })),
    );
    expect(shown.map((x) => x.rmse)).toEqual([...rmse].reverse());
    expect(await page.locator('#aliases tr[data-alias="champion"] td').innerText()).toBe(`v${versions[0]}`);
    expect(await page.locator('#aliases tr[data-alias="challenger"] td').innerText()).toBe(`v${versions[2]}`);
    const history = await page
      .locator('.alias-history[data-alias="champion"] tr[data-action]')
      .evaluateAll((trs) =>
        trs.map(
          (tr) => `${tr.getAttribute('data-action')} ${tr.querySelector('.to')?.textContent} ${tr.querySelector('.from')?.textContent}`,
        ),
      );
    // Newest first.
    expect(history).toEqual([
      `rollback v${versions[0]} v${versions[1]}`,
      `promote v${versions[1]} v${versions[0]}`,
      `promote v${versions[0]} —`,
    ]);
    await page.screenshot({ path: join(SHOTS, 'ui-model.png') });
    await page.close();
  }, 120_000);

  it("shows a monitor's drift checks over time with their reports", async () => {
    const check = async (current: string): Promise<MonitorResult> =>
      (await (
        await client.workflow.start(MONITOR_WORKFLOW, {
          taskQueue: project.taskQueue,
          workflowId: uniqueId('ui-monitor'),
          args: [{ pipeline: 'ui-monitored', overrides: [`params.current=${current}`] }],
          workflowRunTimeout: '3 minutes',
        })
      ).result()) as MonitorResult;
    // The reference: the ingested data of a finished run.
    await (
      await client.workflow.start(PIPELINE_WORKFLOW, {
        taskQueue: project.taskQueue,
        workflowId: uniqueId('ui-monitored'),
        args: [{ pipeline: 'ui-monitored' }],
      })
    ).result();
    const results = [await check('same.csv'), await check('drifted.csv')];
    expect(results.map((r) => r.drift.datasetDrift)).toEqual([false, true]);

    const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
    await page.goto(`${ui.url}/#/models`);
    await page.locator('#monitors tr[data-monitor="ui-monitored"]').waitFor();
    expect(await page.locator('#monitors tr[data-monitor="ui-monitored"]').innerText()).toContain('2');
    await page.locator('#monitors tr[data-monitor="ui-monitored"] a').click();
    await page.locator('#checks tr[data-check]').first().waitFor();
    // Newest first.
    const rows = await page.locator('#checks tr[data-check]').evaluateAll((trs) =>
      trs.map((tr) => ({
        check: tr.getAttribute('data-check'),
        drift: tr.getAttribute('data-drift'),
        columns: tr.querySelector('td.columns')?.textContent,
      })),
    );
    expect(rows).toEqual(
      [...results].reverse().map((r) => ({
        check: r.drift.recordKey.split('/').pop(),
        drift: String(r.drift.datasetDrift),
        columns: r.drift.driftedColumns.join(', '),
      })),
    );
    expect(rows[0]!.columns).toContain('a');
    expect(await page.locator('#drift-chart circle.check.drift').count()).toBe(1);
    expect(await page.locator('#drift-chart circle.check.ok').count()).toBe(1);
    // The newest check's report is shown; another can be opened.
    const newest = rows[0]!.check!;
    await page.waitForFunction((id) => document.getElementById('drift-report')?.getAttribute('data-check') === id, newest);
    const reportText = async (): Promise<string> => {
      const frame = page.frames().find((f) => f.url().includes('/report'));
      return frame
        ? await frame
            .locator('body')
            .innerText()
            .catch(() => '')
        : '';
    };
    await waitFor(async () => (await reportText()).includes('Data drift: ui-monitored'), 'the drift report in the frame', 30_000);
    await page.locator(`#checks tr[data-check="${rows[1]!.check}"] a.open-report`).click();
    await page.waitForFunction((id) => document.getElementById('drift-report')?.getAttribute('data-check') === id, rows[1]!.check!);
    await page.screenshot({ path: join(SHOTS, 'ui-monitor.png') });
    await page.close();
    // A check ID that is not on record, or one that leaves the folder, is refused.
    expect((await raw('/api/monitors/ui-monitored/nope/report')).status).toBe(404);
    expect((await raw('/api/monitors/ui-monitored/..%2F..%2Fruns/report')).status).toBe(400);
  }, 300_000);

  it('says so when the model registry is unreachable', async () => {
    const down = await startUiServer({
      connect: async () => new TemporalClient({ connection: await Connection.connect({ address: inject('temporalAddress') }) }),
      temporalAddress: inject('temporalAddress'),
      store: new LocalArtifactStore(project.settings.artifactsDir),
      mlflow: new MlflowRestClient({ uri: 'http://127.0.0.1:1', maxAttempts: 1, timeoutMs: 2000 }),
    });
    try {
      const page = await browser.newPage();
      await page.goto(`${down.url}/#/models`);
      await page.locator('#registry-problem').waitFor();
      expect(await page.locator('#registry-problem').innerText()).toContain(
        'The model registry (MLflow) is unreachable at http://127.0.0.1:1',
      );
      expect(await page.locator('#banner').innerText()).toContain('mlpipe dev --registry');
      // The monitors (from the store) are still listed.
      await page.locator('#monitors').waitFor();
      await page.close();
    } finally {
      await down.stop();
    }
  });
});

describe('live training progress in Chromium', () => {
  const workers = workerProcesses(project);
  afterAll(() => workers.killAll());

  /** The train step's progress as the server holds it (its last heartbeat). */
  const serverProgress = async (workflowId: string): Promise<{ done: number; total: number } | undefined> => {
    const d = await client.workflow.getHandle(workflowId).describe();
    const a = d.raw.pendingActivities?.find((x) => x.activityId === 'train');
    const payload = a?.heartbeatDetails?.payloads?.[0];
    const details = payload
      ? (defaultPayloadConverter.fromPayload(payload) as { progress?: { done?: number; total?: number } })
      : undefined;
    const p = details?.progress;
    return p?.done !== undefined && p.total !== undefined ? { done: p.done, total: p.total } : undefined;
  };

  it("shows a training step's progress (epoch n/N) and its curve growing while it trains, then the final state", async () => {
    // The train step runs on a worker process of its own, which the test pauses (SIGSTOP) to look at
    // the page while a progress report stands still; the workflow stays on the test's worker.
    const trainQueue = `${project.taskQueue}-train`;
    project.write(
      'pipelines/ui-train.yaml',
      `name: ui-train
steps:
  data:
    uses: ingest.file
    with: { path: data.csv }
  train:
    uses: train.tfjs-mlp
    needs: data
    taskQueue: ${trainQueue}
    cache: false
    inputs: { train: '\${steps.data.outputs.dataset}', validation: '\${steps.data.outputs.dataset}' }
    with: { target: y, hidden: [16], epochs: 1500, batchSize: 32, seed: 1, backend: cpu }
`,
    );
    const trainer = workers.spawn('train', { MLPIPE_TASK_QUEUE: trainQueue, MLPIPE_TRACKING: 'off' });
    const workflowId = uniqueId('ui-train');
    const handle = await client.workflow.start(PIPELINE_WORKFLOW, {
      taskQueue: project.taskQueue,
      workflowId,
      args: [{ pipeline: 'ui-train' }],
    });
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    try {
      await page.goto(`${ui.url}/#/run/${encodeURIComponent(workflowId)}`);
      await page.locator('g.step[data-step="train"]').waitFor();
      const livePoints = (): Promise<number> =>
        page.evaluate(() => Number(document.querySelector('#chart-box .chart')?.getAttribute('data-points') ?? 0));
      // Details opened before the step reports anything come to show its progress without a click.
      await page.locator('g.step[data-step="train"]').click();
      await page.waitForFunction(() => /epoch \d+\/1500/.test(document.getElementById('progress')?.textContent ?? ''), undefined, {
        timeout: 180_000,
      });

      /** Waits for a report past `after`, pauses the trainer, and waits for the page to show that report. */
      const freezeAfter = async (after: number): Promise<{ done: number; total: number }> => {
        const seen = await whileRunning(
          handle,
          async () => {
            const p = await serverProgress(workflowId);
            return p && p.done > after ? p : undefined;
          },
          `a progress report past epoch ${after}`,
        );
        trainer.kill('SIGSTOP');
        await page.locator('g.step[data-step="train"]').click();
        // The page must come to show the report the server holds. A heartbeat the trainer sent just
        // before the pause may still reach the server after it, so the server's report is read again
        // on every look rather than once.
        const shows = (text: string): Promise<boolean> =>
          page.evaluate((t) => document.getElementById('details')?.textContent?.includes(t) ?? false, text);
        let p = seen;
        const deadline = Date.now() + 60_000;
        for (;;) {
          p = (await serverProgress(workflowId)) ?? p;
          if (await shows(`epoch ${p.done}/${p.total}`)) break;
          if (Date.now() > deadline) {
            const text = await page.locator('#details').innerText();
            throw new Error(`the page never showed the server's report epoch ${p.done}/${p.total}; it shows: ${text.slice(0, 400)}`);
          }
          await new Promise((r) => setTimeout(r, 200));
        }
        expect(await page.locator('g.step[data-step="train"]').getAttribute('data-status')).toBe('running');
        expect(await page.locator('#chart-box h2').innerText()).toBe('Training: train (live)');
        return p;
      };

      const first = await freezeAfter(0);
      expect(first.total).toBe(1500);
      expect(first.done).toBeLessThan(1500);
      const pointsFirst = await livePoints();
      expect(pointsFirst).toBeGreaterThanOrEqual(1);
      trainer.kill('SIGCONT');
      const second = await freezeAfter(first.done);
      expect(second.done).toBeGreaterThan(first.done);
      // The live curve grew: a point for the new report.
      await page.waitForFunction((n) => Number(document.querySelector('#chart-box .chart')?.getAttribute('data-points')) > n, pointsFirst);
      expect(await page.locator('#chart-box circle.loss.point').count()).toBe(await livePoints());
      trainer.kill('SIGCONT');

      // The end: succeeded, and the chart from the training history, one point per epoch.
      await handle.result();
      await page.waitForSelector('g.step[data-step="train"][data-status="succeeded"]', { timeout: 60_000 });
      await page.locator('g.step[data-step="train"]').click();
      await page.waitForFunction(() => document.querySelector('#chart-box h2')?.textContent === 'Training: train');
      expect(await page.locator('#chart-box circle.loss.point').count()).toBe(1500);
    } finally {
      trainer.kill('SIGCONT');
      await page.close();
    }
  }, 600_000);
});

describe('the UI over a gs:// store', () => {
  const workers = workerProcesses(project);
  let emu: Emulator | undefined;
  afterAll(async () => {
    workers.killAll();
    await emu?.stop();
  });

  it("shows a monitor's drift checks and reports that a worker wrote to gs:// (GCS emulator)", async () => {
    emu = await startEmulator(['ui-bucket']);
    const location = `gs://ui-bucket/p${process.pid}`;
    const queue = `${project.taskQueue}-gcs`;
    const gcsEnv = { MLPIPE_GCS_ENDPOINT: emu.endpoint };
    const worker = workers.spawn('gcs', { ...gcsEnv, MLPIPE_TASK_QUEUE: queue, MLPIPE_ARTIFACTS: location, MLPIPE_TRACKING: 'off' });
    const start = async (type: string, args: unknown): Promise<unknown> =>
      (
        await client.workflow.start(type, {
          taskQueue: queue,
          workflowId: uniqueId('ui-gcs'),
          args: [args],
          workflowRunTimeout: '5 minutes',
        })
      ).result();
    await start(PIPELINE_WORKFLOW, { pipeline: 'ui-monitored' });
    const r = (await start(MONITOR_WORKFLOW, { pipeline: 'ui-monitored', overrides: ['params.current=drifted.csv'] })) as MonitorResult;
    expect(worker.exitCode).toBeNull();
    // The store `mlpipe ui` opens for a gs:// MLPIPE_ARTIFACTS, on the emulator's client.
    const gcsStore = new GcsArtifactStore({
      uri: location,
      cacheDir: mkdtempSync(join(tmpdir(), 'mlpipe-ui-gcs-cache-')),
      storage: emu.storage,
    });
    const gcsUi = await startUiServer({
      connect: async () => new TemporalClient({ connection: await Connection.connect({ address: inject('temporalAddress') }) }),
      temporalAddress: inject('temporalAddress'),
      store: gcsStore,
    });
    try {
      const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
      await page.goto(`${gcsUi.url}/#/models`);
      expect(gcsStore.location.startsWith(location)).toBe(true);
      await page.waitForFunction((l) => document.getElementById('services')?.textContent?.includes(`store ${l} ✓`), gcsStore.location);
      await page.locator('#monitors tr[data-monitor="ui-monitored"] a').click();
      await page.locator('#checks tr[data-check]').first().waitFor();
      expect(
        await page
          .locator('#checks tr[data-check]')
          .evaluateAll((trs) => trs.map((tr) => [tr.getAttribute('data-check'), tr.getAttribute('data-drift')])),
      ).toEqual([[r.drift.recordKey.split('/').pop(), String(r.drift.datasetDrift)]]);
      await waitFor(
        async () => {
          const frame = page.frames().find((f) => f.url().includes('/report'));
          return frame
            ? (
                await frame
                  .locator('body')
                  .innerText()
                  .catch(() => '')
              ).includes('Data drift: ui-monitored')
            : false;
        },
        'the drift report from gs://',
        30_000,
      );
      await page.close();
    } finally {
      await gcsUi.stop();
    }
  }, 300_000);
});
