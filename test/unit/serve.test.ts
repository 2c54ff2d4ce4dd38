/**
 * The prediction server over an in-memory predictor (our OnnxPredictor interface) and a real local
 * store: log sampling, swapping models while a request runs, the log's accounting.
 */
import { mkdtempSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { LocalArtifactStore } from '../../adapters/local-store.js';
import type { OnnxPredictor } from '../../adapters/onnx/runtime.js';
import { startPredictionServer } from '../../serve/server.js';
import { collectPredictions, PredictionLogWriter } from '../../engine/prediction-log.js';

/** y = a + 10 b, optionally slow; `closed` says whether the server released it. */
function fakePredictor(sha: string, delayMs = 0): OnnxPredictor & { closed: boolean } {
  const p = {
    closed: false,
    contract: {
      inputs: [
        { name: 'a', type: 'number' as const, nullable: false },
        { name: 'b', type: 'number' as const, nullable: true },
      ],
      task: 'regression' as const,
      target: 'y',
      output: 'prediction',
    },
    sha256: sha.padEnd(64, '0'),
    bytes: 1,
    async predictColumns() {
      throw new Error('unused');
    },
    async runTensors() {
      throw new Error('unused');
    },
    async predict(records: Record<string, unknown>[]) {
      if (delayMs) await new Promise((r) => setTimeout(r, delayMs));
      return Float32Array.from(records, (r) => (r['a'] as number) + 10 * ((r['b'] as number | null) ?? 0));
    },
    async close() {
      p.closed = true;
    },
  };
  return p;
}

/** y = a / b: NaN for 0 / 0, Infinity for a / 0, like a derived ratio over zero households. */
function ratioPredictor(): OnnxPredictor & { calls: number } {
  const p = {
    ...fakePredictor('ratio'),
    calls: 0,
    async predict(records: Record<string, unknown>[]) {
      p.calls++;
      return Float32Array.from(records, (r) => (r['a'] as number) / ((r['b'] as number | null) ?? 1));
    },
  };
  return p;
}

/** Polls /metrics until `line` appears (the server counts a request after it ends). */
async function metricsWith(url: string, line: string): Promise<string> {
  for (;;) {
    const text = await (await fetch(`${url}/metrics`)).text();
    if (text.split('\n').includes(line)) return text;
    await new Promise((r) => setTimeout(r, 20));
  }
}

const post = (url: string, body: unknown) =>
  fetch(`${url}/predict`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

describe('prediction server', () => {
  it('logs a sample of predictions when asked, and counts the rest', async () => {
    const store = new LocalArtifactStore(mkdtempSync(join(tmpdir(), 'mlpipe-serve-')));
    const log = new PredictionLogWriter(store, 'm', '1', { flushRows: 10_000 });
    const server = await startPredictionServer({
      predictor: fakePredictor('a'),
      model: { name: 'm', version: '1', source: 'mem' },
      log,
      port: 0,
      logSample: 0.25,
    });
    try {
      const instances = Array.from({ length: 4000 }, (_, i) => ({ a: i, b: null }));
      const r = (await (await post(server.url, { instances })).json()) as { predictions: number[] };
      expect(r.predictions.slice(0, 3)).toEqual([0, 1, 2]);
      const metrics = await (await fetch(`${server.url}/metrics`)).text();
      const sampledOut = Number(/mlpipe_prediction_log_sampled_out_total (\d+)/.exec(metrics)?.[1]);
      await server.close();
      const logged = await collectPredictions(store, 'm');
      expect(logged.rows + sampledOut).toBe(4000);
      // 25% of 4,000: 1,000 expected; 6 standard deviations either side.
      expect(Math.abs(logged.rows - 1000)).toBeLessThan(6 * Math.sqrt(4000 * 0.25 * 0.75));
      const first = JSON.parse(logged.text.split('\n')[0]!) as Record<string, unknown>;
      expect(first['prediction']).toBe(first['a']);
      expect(first).toMatchObject({ model_version: '1', b: null });
    } finally {
      await server.close().catch(() => undefined);
    }
  });

  it('swaps models: a request in flight finishes on the old one, which is then released', async () => {
    const store = new LocalArtifactStore(mkdtempSync(join(tmpdir(), 'mlpipe-serve-')));
    const old = fakePredictor('old', 400);
    const next = fakePredictor('new');
    const server = await startPredictionServer({
      predictor: old,
      model: { name: 'm', version: '1', source: 'mem' },
      log: new PredictionLogWriter(store, 'm', '1'),
      port: 0,
    });
    try {
      const slow = post(server.url, { a: 1, b: 2 });
      await new Promise((r) => setTimeout(r, 100));
      const swapped = server.swap({
        predictor: next,
        model: { name: 'm', version: '2', source: 'mem' },
        log: new PredictionLogWriter(store, 'm', '2'),
      });
      const fresh = (await (await post(server.url, { a: 5, b: 0 })).json()) as { model: { version: string } };
      expect(fresh.model.version).toBe('2');
      expect(old.closed).toBe(false); // still answering the slow request
      const answered = (await (await slow).json()) as { prediction: number; model: { version: string } };
      expect(answered).toMatchObject({ prediction: 21, model: { version: '1' } });
      await swapped;
      expect(old.closed).toBe(true);
      expect((await (await fetch(`${server.url}/model`)).json()) as object).toMatchObject({ version: '2', sha256: next.sha256 });
      await server.close();
      const logged = await collectPredictions(store, 'm');
      expect(logged.versions.sort()).toEqual(['1', '2']);
      expect(logged.rows).toBe(2);
    } finally {
      await server.close().catch(() => undefined);
    }
  });

  it('answers 422 naming the records whose prediction is NaN or infinite, counts them and logs nothing of the request', async () => {
    const store = new LocalArtifactStore(mkdtempSync(join(tmpdir(), 'mlpipe-serve-')));
    const server = await startPredictionServer({
      predictor: ratioPredictor(),
      model: { name: 'm', version: '1', source: 'mem' },
      log: new PredictionLogWriter(store, 'm', '1'),
      port: 0,
    });
    try {
      const batch = await post(server.url, {
        instances: [
          { a: 1, b: 2 },
          { a: 0, b: 0 },
          { a: 3, b: 0 },
        ],
      });
      expect(batch.status).toBe(422);
      const body = (await batch.json()) as { error: string; message: string; details: unknown[] };
      expect(body.error).toBe('PREDICTION_NOT_FINITE');
      expect(body.message).toContain('The model produced NaN for 2 of 3 record(s) (first: instances[1])');
      expect(body.details).toEqual([
        { index: 1, fields: { a: 0, b: 0 }, reason: 'model produced NaN' },
        { index: 2, fields: { a: 3, b: 0 }, reason: 'model produced Infinity' },
      ]);
      const single = await post(server.url, { a: -1, b: 0 });
      expect(single.status).toBe(422);
      expect(((await single.json()) as { details: unknown[] }).details).toEqual([
        { index: 0, fields: { a: -1, b: 0 }, reason: 'model produced -Infinity' },
      ]);
      const fine = (await (await post(server.url, { a: 3, b: 2 })).json()) as { prediction: number };
      expect(fine.prediction).toBe(1.5);
      const metrics = await metricsWith(server.url, 'mlpipe_predictions_nonfinite_total 3');
      expect(metrics).toContain('mlpipe_predict_errors_total{code="PREDICTION_NOT_FINITE"} 2');
      expect(metrics).toContain('mlpipe_predict_requests_total{status="422"} 2');
      await server.close();
      const logged = await collectPredictions(store, 'm');
      expect(logged.rows).toBe(1);
      expect(JSON.parse(logged.text)).toMatchObject({ a: 3, b: 2, prediction: 1.5 });
    } finally {
      await server.close().catch(() => undefined);
    }
  });

  it('a client that sends half a body and hangs up is counted as aborted, not as a server error', async () => {
    const predictor = ratioPredictor();
    const server = await startPredictionServer({ predictor, model: { name: 'm', version: '1', source: 'mem' }, port: 0 });
    try {
      const socket = net.connect(server.port, '127.0.0.1');
      await new Promise<void>((resolve) => socket.once('connect', resolve));
      // Expect: 100-continue: the server answers "100 Continue" once it is handling the request.
      socket.write(
        'POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 200\r\nExpect: 100-continue\r\n\r\n',
      );
      await new Promise<void>((resolve) => socket.once('data', (d: Buffer) => (expect(d.toString()).toContain('100 Continue'), resolve())));
      socket.write('{"instances": [{"a": 1, "b"');
      socket.destroy();
      const metrics = await metricsWith(server.url, 'mlpipe_predict_errors_total{code="CLIENT_ABORTED"} 1');
      expect(metrics).toContain('mlpipe_predict_requests_total{status="499"} 1');
      expect(metrics).not.toContain('status="500"');
      expect(metrics).not.toContain('INTERNAL');
      expect(predictor.calls).toBe(0);
      // The server still answers.
      expect((await (await post(server.url, { a: 1, b: 4 })).json()) as object).toMatchObject({ prediction: 0.25 });
    } finally {
      await server.close();
    }
  });

  it('the log is read several chunks at a time, in time order, reporting progress after each read', async () => {
    const store = new LocalArtifactStore(mkdtempSync(join(tmpdir(), 'mlpipe-serve-')));
    const writer = new PredictionLogWriter(store, 'm', '1', { flushRows: 1_000_000 });
    for (let k = 0; k < 20; k++) {
      const at = new Date(Date.UTC(2026, 10, 20, 0, k)).toISOString();
      writer.append([0, 1].map((i) => ({ a: 2 * k + i, prediction: 0, model_version: '1', predicted_at: at, request_id: `r${k}` })));
      await writer.flush();
    }
    await writer.close();
    const progress: string[] = [];
    const log = await collectPredictions(store, 'm', undefined, undefined, {
      concurrency: 4,
      onProgress: (p) => progress.push(`${p.phase} ${p.done}/${p.total}`),
    });
    expect(log).toMatchObject({ rows: 40, chunks: 20 });
    expect(
      log.text
        .trim()
        .split('\n')
        .map((l) => (JSON.parse(l) as { a: number }).a),
    ).toEqual(Array.from({ length: 40 }, (_, i) => i));
    expect(progress.filter((p) => p.startsWith('index'))).toHaveLength(20);
    expect(progress.at(-1)).toBe('rows 20/20');
  });

  it('the log reads a time window: older chunks are left out, rows outside it filtered', async () => {
    const store = new LocalArtifactStore(mkdtempSync(join(tmpdir(), 'mlpipe-serve-')));
    const row = (at: string, a: number) => ({ a, prediction: a, model_version: '1', predicted_at: at, request_id: 'r' });
    const writer = new PredictionLogWriter(store, 'm', '1');
    writer.append([row('2026-11-20T10:00:00.000Z', 1), row('2026-11-20T11:00:00.000Z', 2)]);
    await writer.flush();
    writer.append([row('2026-11-24T23:00:00.000Z', 3), row('2026-11-25T01:00:00.000Z', 4)]);
    await writer.close();
    const all = await collectPredictions(store, 'm');
    expect(all).toMatchObject({ rows: 4, chunks: 2 });
    const day = await collectPredictions(store, 'm', new Date('2026-11-25T00:00:00.000Z'));
    expect(day).toMatchObject({ rows: 1, chunks: 1 });
    expect(JSON.parse(day.text)).toMatchObject({ a: 4 });
  });
});
