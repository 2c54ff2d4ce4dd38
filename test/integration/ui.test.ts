/**
 * The web UI in a real headless Chromium (Debian's, driven by playwright-core) against a real
 * Temporal dev server and worker: the run page of a running pipeline draws every step, a step
 * changes colour when it finishes without a reload, the artifact preview shows a dataset's
 * columns, the training chart has points; hostile API requests are refused; an unreachable
 * Temporal is said so on the page.
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
import { PIPELINE_WORKFLOW, statusQueryName, type PipelineResult, type PipelineStatus } from '../../engine/contracts.js';
import type { ArtifactRef } from '../../engine/types.js';
import { startUiServer, type UiServer } from '../../ui/server.js';
import { createClient, createTestProject, REPO, startWorker, uniqueId, waitFor } from './helpers.js';

const CHROMIUM = process.env['CHROMIUM'] ?? '/usr/bin/chromium';
const SHOTS = process.env['MLPIPE_UI_SCREENSHOTS'] === 'docs' ? join(REPO, 'docs') : mkdtempSync(join(tmpdir(), 'mlpipe-ui-shots-'));

const project = createTestProject('ui');
const gate = join(project.dir, 'gate');
let client: Client;
let stopWorker: () => Promise<void>;
let browser: Browser;
let ui: UiServer;

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
  client = await createClient();
  stopWorker = (await startWorker(project, { tracking: null })).stop;
  ui = await startUiServer({
    connect: async () => new TemporalClient({ connection: await Connection.connect({ address: inject('temporalAddress') }) }),
    temporalAddress: inject('temporalAddress'),
    store: new LocalArtifactStore(project.settings.artifactsDir),
  });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
});
afterAll(async () => {
  writeFileSync(gate, '');
  await browser?.close();
  await ui?.stop();
  await stopWorker?.();
  await client?.connection.close();
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
