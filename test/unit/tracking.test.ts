import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { deliver, type DeliverInput } from '../../activities/tracking.js';
import { LocalArtifactStore } from '../../adapters/local-store.js';
import { MlflowRestClient } from '../../adapters/mlflow/rest.js';
import type { NewRun, TrackedRun, TrackingBackend } from '../../engine/ports.js';
import {
  chunkBatch,
  flattenParams,
  isValidKey,
  LIMITS,
  missingPoints,
  numericLeaves,
  sanitizeKey,
  type Batch,
  type MetricPoint,
} from '../../engine/tracking.js';
import type { TrackingEvent } from '../../engine/contracts.js';

/** An in-memory TrackingBackend; `failAfterApply` makes the next logBatch with metrics apply, then throw (a lost answer). */
class MemoryBackend implements TrackingBackend {
  readonly kind = 'rest' as const;
  readonly location = 'memory';
  experiments = new Map<string, string>();
  runs: (TrackedRun & { tags: Record<string, string>; params: Record<string, string>; metrics: MetricPoint[]; status: string })[] = [];
  failAfterApply = 0;
  creates = 0;
  async getOrCreateExperiment(name: string): Promise<string> {
    if (!this.experiments.has(name)) this.experiments.set(name, String(this.experiments.size + 1));
    return this.experiments.get(name)!;
  }
  async findRunByTag(experimentId: string, key: string, value: string): Promise<TrackedRun | undefined> {
    return this.runs.find((r) => r.experimentId === experimentId && r.tags[key] === value);
  }
  async createRun(o: NewRun): Promise<TrackedRun> {
    this.creates++;
    const run = {
      mlflowRunId: `r${this.runs.length}`,
      experimentId: o.experimentId,
      artifactUri: 'mem:/',
      tags: Object.fromEntries(o.tags.map((t) => [t.key, t.value])),
      params: {},
      metrics: [],
      status: 'RUNNING',
    };
    this.runs.push(run);
    return run;
  }
  private run(id: string) {
    return this.runs.find((r) => r.mlflowRunId === id)!;
  }
  async logBatch(runId: string, b: Batch): Promise<void> {
    const r = this.run(runId);
    for (const p of b.params) {
      if (r.params[p.key] !== undefined && r.params[p.key] !== p.value) throw new Error('param changed');
      r.params[p.key] = p.value;
    }
    for (const t of b.tags) r.tags[t.key] = t.value;
    r.metrics.push(...b.metrics);
    if (b.metrics.length && this.failAfterApply > 0) {
      this.failAfterApply--;
      throw Object.assign(new Error('socket closed'), { code: 'TIMEOUT' });
    }
  }
  async metricHistory(runId: string, key: string): Promise<MetricPoint[]> {
    return this.run(runId).metrics.filter((m) => m.key === key);
  }
  async updateRun(runId: string, status: string): Promise<void> {
    this.run(runId).status = status;
  }
  uploads: { runId: string; path: string; data: string }[] = [];
  async uploadArtifact(run: TrackedRun, path: string, data: Uint8Array): Promise<void> {
    this.uploads.push({ runId: run.mlflowRunId, path, data: Buffer.from(data).toString('utf8') });
  }
}

const log = { info: () => undefined, warn: () => undefined };
const store = new LocalArtifactStore(mkdtempSync(join(tmpdir(), 'mlpipe-track-')));

function events(): TrackingEvent[] {
  return [
    {
      seq: 0,
      type: 'run-started',
      pipeline: 'p',
      file: 'pipelines/p.yaml',
      workflowId: 'wf',
      runId: 'run',
      startedAt: '2026-01-01T00:00:00.000Z',
      params: { seed: 1 },
      config: { model: { hidden: [8, 4] } },
      labels: {},
    },
    {
      seq: 1,
      type: 'step-ended',
      step: {
        stepId: 'train',
        uses: 'train.x',
        pluginVersion: '1',
        status: 'succeeded',
        params: { epochs: 3 },
        attempt: 1,
        outputs: { metrics: { rmse: 2 }, backend: 'wasm' },
        series: [1, 2, 3].map((e) => ({ key: 'loss', value: 1 / e, step: e, timestamp: 1000 + e })),
        startedAt: '2026-01-01T00:00:01.000Z',
        endedAt: '2026-01-01T00:00:03.000Z',
      },
    },
    {
      seq: 2,
      type: 'step-ended',
      step: {
        stepId: 'evaluate',
        uses: 'evaluate.model',
        pluginVersion: '1',
        status: 'cached',
        params: {},
        attempt: 1,
        outputs: { metrics: { rmse: 5, r2: 0.5 } },
      },
    },
    { seq: 3, type: 'run-ended', status: 'FINISHED', endedAt: '2026-01-01T00:00:04.000Z' },
  ];
}

const input = (evs: TrackingEvent[], known: DeliverInput['known'] = { steps: {} }): DeliverInput => ({
  key: 'wf/run',
  config: { enabled: true, experiment: 'exp' },
  events: evs,
  known,
});

describe('tracking delivery', () => {
  it('creates a parent and nested runs with params, tags, metrics, curves and statuses', async () => {
    const b = new MemoryBackend();
    const known = await deliver(b, store, input(events()), false, log);
    expect(b.runs).toHaveLength(3);
    const [parent, train, evaluate] = b.runs;
    expect(parent!.params).toEqual({ 'model.hidden': '[8,4]', 'params.seed': '1' });
    expect(parent!.status).toBe('FINISHED');
    expect(parent!.tags['mlpipe.training_backend']).toBe('wasm');
    // evaluate.* metrics are copied to the parent run.
    expect(parent!.metrics.map((m) => [m.key, m.value])).toEqual([
      ['rmse', 5],
      ['r2', 0.5],
    ]);
    expect(train!.tags['mlflow.parentRunId']).toBe(parent!.mlflowRunId);
    expect(train!.metrics.filter((m) => m.key === 'loss').map((m) => m.step)).toEqual([1, 2, 3]);
    expect(train!.metrics.find((m) => m.key === 'duration_seconds')!.value).toBe(2);
    expect(evaluate!.tags['mlpipe.cached']).toBe('true');
    expect(evaluate!.metrics.find((m) => m.key === 'cache_hit')!.value).toBe(1);
    expect(known.steps['train']!.mlflowRunId).toBe(train!.mlflowRunId);
  });

  it('model selection: the comparison as metrics, the table as an artifact of the step run, the winner as a parent tag', async () => {
    const b = new MemoryBackend();
    const table = await store.put('| rank | candidate |\n', { name: 'model-comparison.md', mediaType: 'text/markdown' });
    const evs = events();
    evs.splice(2, 0, {
      seq: 2,
      type: 'step-ended',
      step: {
        stepId: 'select',
        uses: 'evaluate.select',
        pluginVersion: '1',
        status: 'succeeded',
        params: {},
        attempt: 1,
        outputs: { winner: 'xgboost', metrics: { rmse: 3 }, comparison: { mlp: { rmse: 4 }, xgboost: { rmse: 3 } }, table },
      },
    });
    await deliver(b, store, input(evs.map((e, i) => ({ ...e, seq: i }))), false, log);
    const select = b.runs.find((r) => r.tags['mlpipe.step'] === 'select')!;
    expect(select.metrics.filter((m) => m.key.startsWith('comparison.')).map((m) => [m.key, m.value])).toEqual([
      ['comparison.mlp.rmse', 4],
      ['comparison.xgboost.rmse', 3],
    ]);
    expect(b.uploads).toEqual([{ runId: select.mlflowRunId, path: 'model-comparison.md', data: '| rank | candidate |\n' }]);
    const parent = b.runs[0]!;
    expect(parent.tags['mlpipe.selected_model']).toBe('xgboost');
    expect(parent.metrics.find((m) => m.key === 'select.rmse')!.value).toBe(3);
  });

  it('a retry after a lost answer creates no second run and no duplicate metric point', async () => {
    const b = new MemoryBackend();
    b.failAfterApply = 1; // the train step's batch is applied, then the answer is lost
    const all = events();
    await expect(deliver(b, store, input(all), false, log)).rejects.toThrow('socket closed');
    const before = b.runs.flatMap((r) => r.metrics).length;
    await deliver(b, store, input(all), true, log);
    expect(b.creates).toBe(3);
    expect(b.runs).toHaveLength(3);
    const train = b.runs.find((r) => r.tags['mlpipe.step'] === 'train')!;
    expect(train.metrics.filter((m) => m.key === 'loss')).toHaveLength(3);
    const ids = b.runs.flatMap((r) => r.metrics.map((m) => `${r.mlflowRunId}/${m.key}/${m.step}/${m.timestamp}`));
    expect(new Set(ids).size).toBe(ids.length);
    expect(b.runs.flatMap((r) => r.metrics).length).toBeGreaterThan(before);
  });

  it('delivers in pieces: later batches reuse the runs found earlier', async () => {
    const b = new MemoryBackend();
    const all = events();
    const k1 = await deliver(b, store, input(all.slice(0, 2)), false, log);
    await deliver(b, store, input(all.slice(2), k1), false, log);
    expect(b.runs).toHaveLength(3);
    expect(b.runs[0]!.status).toBe('FINISHED');
  });

  it('continues a tracking workflow recorded before MLflow run IDs were mlflowRunId (known runs and parent as runId)', async () => {
    const b = new MemoryBackend();
    const all = events();
    const k1 = await deliver(b, store, input(all.slice(0, 2)), false, log);
    // The known runs and the config as an older worker returned and recorded them.
    const legacy = JSON.parse(JSON.stringify(k1).replaceAll('"mlflowRunId"', '"runId"')) as DeliverInput['known'];
    const search = await b.createRun({ experimentId: '1', runName: 'search', startTime: 0, tags: [] });
    const k2 = await deliver(
      b,
      store,
      { ...input(all.slice(2), legacy), config: { enabled: true, experiment: 'exp', parentRunId: search.mlflowRunId } },
      false,
      log,
    );
    expect(b.runs).toHaveLength(4);
    expect(k2.parent!.mlflowRunId).toBe(k1.parent!.mlflowRunId);
    expect(k2.steps['train']!.mlflowRunId).toBe(k1.steps['train']!.mlflowRunId);
    expect(b.runs[0]!.status).toBe('FINISHED');
    // A fresh start with the older name of the parent field nests the run all the same.
    const c = new MemoryBackend();
    await deliver(c, store, { ...input(all), config: { enabled: true, experiment: 'exp', parentRunId: 'search-run' } }, false, log);
    expect(c.runs[0]!.tags['mlflow.parentRunId']).toBe('search-run');
  });

  it('reports progress before every event and write, and stops when the attempt is abandoned', async () => {
    const b = new MemoryBackend();
    const beats: number[] = [];
    await deliver(b, store, input(events()), false, log, (n) => void beats.push(n));
    // One call per event (4) and per metrics write (train, evaluate, evaluate's metrics on the parent).
    expect(beats.filter((n, i) => i === 0 || n !== beats[i - 1])).toEqual([0, 1, 2, 3]);
    expect(beats.length).toBe(7);
    // A cancelled or timed-out attempt: progress throws, and nothing more is written.
    const stopped = new MemoryBackend();
    let calls = 0;
    const abandon = (): void => {
      if (++calls > 2) throw new Error('activity timed out');
    };
    await expect(deliver(stopped, store, input(events()), false, log, abandon)).rejects.toThrow('activity timed out');
    expect(stopped.runs.map((r) => r.tags['mlpipe.step'] ?? 'parent')).toEqual(['parent', 'train']);
    expect(stopped.runs[1]!.metrics).toEqual([]);
    expect(stopped.runs[0]!.status).toBe('RUNNING');
  });

  it('skipped steps get no run', async () => {
    const b = new MemoryBackend();
    const evs = events();
    evs[2] = {
      seq: 2,
      type: 'step-ended',
      step: { stepId: 'evaluate', uses: 'evaluate.model', pluginVersion: '1', status: 'skipped', params: {}, attempt: 0 },
    };
    await deliver(b, store, input(evs), false, log);
    expect(b.runs).toHaveLength(2);
  });
});

describe('MLflow rules', () => {
  it('chunks log-batch requests within every limit', () => {
    const metrics = Array.from({ length: 2500 }, (_, i) => ({ key: `m${i % 7}`, value: i, timestamp: i, step: i }));
    const params = Array.from({ length: 250 }, (_, i) => ({ key: `p${i}`, value: 'v' }));
    const tags = Array.from({ length: 120 }, (_, i) => ({ key: `t${i}`, value: 'x'.repeat(7000) }));
    const parts = chunkBatch({ metrics, params, tags });
    for (const p of parts) {
      expect(p.metrics.length).toBeLessThanOrEqual(LIMITS.metricsPerBatch);
      expect(p.params.length).toBeLessThanOrEqual(LIMITS.paramsPerBatch);
      expect(p.tags.length).toBeLessThanOrEqual(LIMITS.tagsPerBatch);
      expect(p.metrics.length + p.params.length + p.tags.length).toBeLessThanOrEqual(LIMITS.itemsPerBatch);
      expect(JSON.stringify({ run_id: 'x'.repeat(32), ...p }).length).toBeLessThanOrEqual(LIMITS.bodyBytes);
    }
    expect(parts.flatMap((p) => p.metrics)).toEqual(metrics);
    expect(parts.flatMap((p) => p.params)).toEqual(params);
    expect(parts.flatMap((p) => p.tags)).toHaveLength(120);
  });

  it('keys: sanitized to what MLflow accepts', () => {
    expect(sanitizeKey('a b/c.d-e:f')).toBe('a b/c.d-e:f');
    expect(sanitizeKey('/x..y$z')).toBe('x.y_z');
    expect(isValidKey(sanitizeKey('é'.repeat(300)))).toBe(true);
    expect(isValidKey('../x')).toBe(false);
  });

  it('flattens config to dotted params and numeric outputs to metrics', () => {
    expect(flattenParams({ a: { b: 1, c: [1, 2] }, d: 'x', e: {} })).toEqual([
      { key: 'a.b', value: '1' },
      { key: 'a.c', value: '[1,2]' },
      { key: 'd', value: 'x' },
      { key: 'e', value: '{}' },
    ]);
    expect(flattenParams({ long: 'y'.repeat(7000) })[0]!.value.length).toBeLessThanOrEqual(LIMITS.paramValueLength);
    expect(numericLeaves({ rmse: 1, nested: { a: 2, ok: true }, s: 'x', ref: { kind: 'artifact', size: 3 }, nan: NaN })).toEqual([
      { key: 'rmse', value: 1 },
      { key: 'nested.a', value: 2 },
      { key: 'nested.ok', value: 1 },
    ]);
  });

  it('missingPoints keeps only points not yet stored', () => {
    const p = (step: number, ts = step): MetricPoint => ({ key: 'k', value: step, step, timestamp: ts });
    expect(missingPoints([p(1), p(2), p(3)], [p(1), p(2, 99)])).toEqual([p(2), p(3)]);
  });
});

describe('MLflow REST client, retry rules', () => {
  async function withServer(answers: number[], fn: (uri: string, hits: () => number) => Promise<void>): Promise<void> {
    const http = await import('node:http');
    let n = 0;
    const server = http.createServer((req, res) => {
      const status = answers[Math.min(n++, answers.length - 1)]!;
      req.resume();
      req.on('end', () => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(
          status === 200
            ? '{"run":{"info":{"run_id":"r","experiment_id":"1","artifact_uri":"mlflow-artifacts:/1/r/artifacts","status":"RUNNING"}}}'
            : `{"error_code":"${status === 404 ? 'RESOURCE_DOES_NOT_EXIST' : 'TEMPORARILY_UNAVAILABLE'}","message":"m"}`,
        );
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    try {
      await fn(`http://127.0.0.1:${(server.address() as { port: number }).port}`, () => n);
    } finally {
      server.close();
    }
  }
  const fast = { backoffMs: 1, maxBackoffMs: 2 };

  it('retries a read on 503 and succeeds', async () => {
    await withServer([503, 502, 200], async (uri, hits) => {
      const c = new MlflowRestClient({ uri, ...fast });
      expect((await c.getRun('r')).info.run_id).toBe('r');
      expect(hits()).toBe(3);
      await c.close();
    });
  });

  it('does not resend runs/create after a 500 (it may have been applied): ambiguous error instead', async () => {
    await withServer([500, 200], async (uri, hits) => {
      const c = new MlflowRestClient({ uri, ...fast });
      const err = await c
        .createRun({ experimentId: '1', runName: 'x', startTime: 0, tags: [] })
        .catch((e: unknown) => e as { ambiguous: boolean; code: string });
      expect(err).toMatchObject({ ambiguous: true });
      expect(hits()).toBe(1);
      await c.close();
    });
  });

  it('resends runs/create after a 429 (not applied) and maps error codes to types', async () => {
    await withServer([429, 200], async (uri, hits) => {
      const c = new MlflowRestClient({ uri, ...fast });
      expect((await c.createRun({ experimentId: '1', runName: 'x', startTime: 0, tags: [] })).mlflowRunId).toBe('r');
      expect(hits()).toBe(2);
      await c.close();
    });
    await withServer([404], async (uri) => {
      const c = new MlflowRestClient({ uri, ...fast });
      await expect(c.getRun('nope')).rejects.toMatchObject({
        name: 'MlflowError',
        code: 'TRACKING_ERROR',
        mlflowCode: 'RESOURCE_DOES_NOT_EXIST',
        httpStatus: 404,
      });
      await c.close();
    });
  });

  it('sends basic or bearer auth, never the URI user info in messages', async () => {
    const http = await import('node:http');
    const seen: string[] = [];
    const server = http.createServer((req, res) => {
      seen.push(req.headers.authorization ?? '');
      res.writeHead(503).end('down');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const port = (server.address() as { port: number }).port;
    try {
      const basic = new MlflowRestClient({ uri: `http://ana:s3cret@127.0.0.1:${port}`, maxAttempts: 1 });
      const err = (await basic.getRun('r').catch((e: unknown) => e)) as Error;
      expect(err.message).not.toContain('s3cret');
      expect(basic.location).not.toContain('s3cret');
      const bearer = new MlflowRestClient({ uri: `http://127.0.0.1:${port}`, auth: { token: 'tok' }, maxAttempts: 1 });
      await bearer.getRun('r').catch(() => undefined);
      expect(seen).toEqual([`Basic ${Buffer.from('ana:s3cret').toString('base64')}`, 'Bearer tok']);
      await basic.close();
      await bearer.close();
    } finally {
      server.close();
    }
  });
});
