/**
 * The prediction server over a real exported forecaster (process.window -> train.tfjs-sequence with
 * quantiles -> export.onnx, onnxruntime-node): a history window in, H forecasts with their times and
 * quantiles out; hostile bodies get 400s naming the field; the prediction log keeps every history
 * row of each request under the table's column names (with its position), and monitor.drift
 * compares those rows with the rows of the training windows. A seed ensemble's export (every
 * member's network and their Mean) is served the same way.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isForecastContract } from '../../adapters/onnx/contract.js';
import { loadOnnxModel } from '../../adapters/onnx/runtime.js';
import { collectPredictions, PredictionLogWriter } from '../../engine/prediction-log.js';
import type { ArtifactRef } from '../../engine/types.js';
import { forecastCodec } from '../../lib/forecast-input.js';
import { exportOnnx } from '../../plugins/export/onnx.js';
import { ingestFile } from '../../plugins/ingest/file.js';
import { monitorDrift } from '../../plugins/monitor/drift.js';
import { window as processWindow } from '../../plugins/process/window.js';
import { trainSequence } from '../../plugins/train/sequence.js';
import { startPredictionServer, type RunningServer } from '../../serve/server.js';
import { forecastTable, WINDOW_PARAMS } from './forecast-fixtures.js';
import { runPlugin, testContext } from './step-context.js';

const ctx = testContext();
let server: RunningServer;
let log: PredictionLogWriter;
let rows: { store: string; day: string; sales: number; temp: number; promo: number }[];
let dataset: ArtifactRef;

const post = (body: unknown, headers: Record<string, string> = {}) =>
  fetch(`${server.url}/predict`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });

/** A valid request: the 21 rows of `store` ending at row `end` (exclusive), and the next 7 days' promo flags. */
function request(store: string, end: number) {
  const own = rows.filter((r) => r.store === store);
  return {
    series: store,
    history: own.slice(end - 21, end).map((r) => ({ day: r.day, sales: r.sales, temp: r.temp, promo: r.promo })),
    future: own.slice(end, end + 7).map((r) => ({ promo: r.promo })),
  };
}

beforeAll(async () => {
  const file = forecastTable();
  rows = readFileSync(file, 'utf8')
    .trim()
    .split('\n')
    .slice(1)
    .map((l) => {
      const [store, day, sales, temp, promo] = l.split(',');
      return { store: store!, day: day!, sales: Number(sales), temp: Number(temp), promo: Number(promo) };
    });
  dataset = (await runPlugin(ingestFile, ctx, { path: file }))['dataset'] as ArtifactRef;
  const w = await runPlugin(processWindow, ctx, WINDOW_PARAMS, { dataset });
  const trained = await runPlugin(
    trainSequence,
    ctx,
    { model: 'gru', units: 12, epochs: 4, seed: 2, quantiles: [0.1, 0.5, 0.9], backend: 'wasm' },
    { train: w['train'], validation: w['validation'] },
  );
  const exported = await runPlugin(exportOnnx, ctx, {}, { model: trained['model'], state: w['state'], windows: w['test'] });
  const predictor = await loadOnnxModel(await ctx.store.get(exported['onnx'] as ArtifactRef));
  log = new PredictionLogWriter(ctx.store, 'sales', '1', { flushRows: 100_000 });
  server = await startPredictionServer({
    predictor,
    codecFor: (c) => (isForecastContract(c) ? forecastCodec(c) : undefined),
    model: { name: 'sales', version: '1', source: 'test' },
    log,
    port: 0,
    maxBodyBytes: 64 * 1024,
    maxInstances: 50,
  });
}, 180_000);

afterAll(async () => {
  await server?.close();
});

describe('serving a forecaster', () => {
  it('answers a history window with 7 dated forecasts and ordered quantiles', async () => {
    const res = await post(request('north', 200));
    expect(res.status).toBe(200);
    const body = (await res.json()) as {
      prediction: { series: string; forecasts: { time: string; value: number; quantiles: Record<string, number> }[] };
    };
    const f = body.prediction.forecasts;
    expect(body.prediction.series).toBe('north');
    expect(f).toHaveLength(7);
    const own = rows.filter((r) => r.store === 'north');
    // The steps after the last history row.
    expect(f.map((s) => s.time.slice(0, 10))).toEqual(own.slice(200, 207).map((r) => r.day));
    for (const s of f) {
      expect(s.quantiles['0.1']!).toBeLessThanOrEqual(s.quantiles['0.5']!);
      expect(s.quantiles['0.5']!).toBeLessThanOrEqual(s.quantiles['0.9']!);
      expect(s.value).toBe(s.quantiles['0.5']);
      // In the target's units (north sells about 500 a day).
      expect(s.value).toBeGreaterThan(200);
      expect(s.value).toBeLessThan(900);
    }
    const model = (await (await fetch(`${server.url}/model`)).json()) as Record<string, unknown>;
    expect(model).toMatchObject({ kind: 'forecast', lookback: 21, horizon: 7, quantiles: [0.1, 0.5, 0.9], seriesIds: ['north', 'south'] });
  });

  it('answers a batch, one answer per request in order', async () => {
    const res = await post({ instances: [request('south', 150), request('north', 100)] });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { predictions: { series: string; forecasts: unknown[] }[] };
    expect(body.predictions.map((p) => p.series)).toEqual(['south', 'north']);
  });

  it('refuses hostile bodies with a 400 naming the field', async () => {
    const good = request('north', 120);
    const cases: [string, unknown, RegExp][] = [
      ['too short', { ...good, history: good.history.slice(1) }, /history: expected exactly 21 rows/],
      ['unknown series', { ...good, series: 'west' }, /series: unknown series 'west'/],
      ['missing series', { history: good.history, future: good.future }, /series: required/],
      [
        'a NaN string',
        { ...good, history: good.history.map((h, i) => (i === 4 ? { ...h, sales: 'NaN' } : h)) },
        /history\.4\.sales: expected a number, got "NaN"/,
      ],
      [
        'a null value',
        { ...good, history: good.history.map((h, i) => (i === 2 ? { ...h, temp: null } : h)) },
        /history\.2\.temp: expected a number, got null/,
      ],
      [
        'a gap in the days',
        { ...good, history: [...good.history.slice(0, 10), ...request('north', 131).history.slice(10)] },
        /history\.10\.day: not the day after the previous row/,
      ],
      [
        'a bad time',
        { ...good, history: good.history.map((h, i) => (i === 0 ? { ...h, day: 'yesterday' } : h)) },
        /history\.0\.day: not a time/,
      ],
      [
        'an unknown column',
        { ...good, history: good.history.map((h, i) => (i === 0 ? { ...h, price: 3 } : h)) },
        /history\.0\.price: not an input of this model/,
      ],
      ['no future promo', { series: good.series, history: good.history }, /future: /],
      ['an empty list', [], /No forecast requests/],
      ['a number', 42, /The body must be/],
    ];
    for (const [what, body, message] of cases) {
      const res = await post(body);
      const answer = (await res.json()) as { error: string; message: string; details?: unknown[] };
      expect(res.status, what).toBe(400);
      expect(answer.error, what).toBe('INVALID_INPUT');
      expect(answer.message, what).toMatch(message);
    }
    // 1e999 parses as Infinity: refused as not finite.
    const inf = await post(JSON.stringify(good).replace(/"sales":[\d.]+/, '"sales":1e999'));
    expect(inf.status).toBe(400);
    expect(((await inf.json()) as { message: string }).message).toMatch(/history\.0\.sales/);
    const notJson = await post('{"series": "north", "history": [');
    expect(notJson.status).toBe(400);
    expect(((await notJson.json()) as { error: string }).error).toBe('INVALID_JSON');
    const many = await post({ instances: Array.from({ length: 51 }, () => ({ series: 'north' })) });
    expect(((await many.json()) as { error: string }).error).toBe('TOO_MANY_INSTANCES');
    const big = await post({ ...good, padding: 'x'.repeat(70 * 1024) });
    expect(big.status).toBe(413);
  });

  it("logs every history row of each request, which monitor.drift compares with the training windows' rows", async () => {
    for (let end = 60; end < 200; end += 5) {
      const res = await post({ instances: [request('north', end), request('south', end)] });
      expect(res.status).toBe(200);
    }
    await log.flush();
    const logged = await collectPredictions(ctx.store, 'sales');
    const lines = logged.text
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    // The last request (south, rows 174..194): its 21 history rows, oldest first, under the table's names.
    const south = rows.filter((r) => r.store === 'south');
    const lastRequest = lines.slice(-21);
    expect(lastRequest.map((l) => l['history_row'])).toEqual(Array.from({ length: 21 }, (_, k) => k));
    lastRequest.forEach((l, k) => {
      const r = south[174 + k]!;
      expect(l).toMatchObject({
        store: 'south',
        day: r.day,
        sales: r.sales,
        temp: r.temp,
        promo: r.promo,
        model_version: '1',
        request_instance: 1,
      });
    });
    expect(new Set(lastRequest.map((l) => l['request_id'])).size).toBe(1);
    // The forecast on the newest row's line only.
    expect(lastRequest.at(-1)!['prediction']).toHaveLength(7);
    expect(lastRequest.slice(0, -1).every((l) => l['prediction'] === null)).toBe(true);
    // Hostile requests were not logged; 28 batches of two requests, 21 rows each (plus the earlier tests' requests).
    expect(lines.every((l) => l['store'] === 'north' || l['store'] === 'south')).toBe(true);
    expect(lines.length % 21).toBe(0);
    expect(lines.length).toBeGreaterThanOrEqual(28 * 2 * 21);
    // Reference: the rows the training windows were cut from (before the validation and test blocks: 240 - 28 - 28 days per series).
    const trainRows = ['store,day,sales,temp,promo'];
    for (const id of ['north', 'south'])
      for (const r of rows.filter((x) => x.store === id).slice(0, 184))
        trainRows.push(`${r.store},${r.day},${r.sales},${r.temp},${r.promo}`);
    const reference = await ctx.store.put(`${trainRows.join('\n')}\n`, { name: 'train-rows.csv', mediaType: 'text/csv' });
    const current = await ctx.store.put(logged.text, { name: 'predictions.jsonl', mediaType: 'application/x-ndjson' });
    const drift = await runPlugin(monitorDrift, ctx, { columns: ['sales', 'temp', 'promo'] }, { reference, current });
    expect(typeof drift['share']).toBe('number');
    const report = JSON.parse((await ctx.store.get(drift['report'] as ArtifactRef)).toString('utf8')) as { metrics: unknown[] };
    expect(report.metrics.length).toBeGreaterThan(0);
    expect(Array.isArray(drift['driftedColumns'])).toBe(true);
  }, 120_000);

  it('serves a seed ensemble: the Mean of its members, answered as one model', async () => {
    // A step context of its own (its own checkpoints), the same store.
    const c = testContext(process.cwd(), ctx.store);
    const w = await runPlugin(processWindow, c, WINDOW_PARAMS, { dataset });
    const trained = await runPlugin(
      trainSequence,
      c,
      { model: 'gru', units: 12, epochs: 3, seed: 2, quantiles: [0.1, 0.5, 0.9], ensemble: 2, backend: 'wasm' },
      { train: w['train'], validation: w['validation'] },
    );
    const exported = await runPlugin(exportOnnx, c, {}, { model: trained['model'], state: w['state'], windows: w['test'] });
    const predictor = await loadOnnxModel(await c.store.get(exported['onnx'] as ArtifactRef));
    const own = await startPredictionServer({
      predictor,
      codecFor: (m) => (isForecastContract(m) ? forecastCodec(m) : undefined),
      model: { name: 'sales-ensemble', version: '1', source: 'test' },
      port: 0,
      maxBodyBytes: 64 * 1024,
      maxInstances: 50,
    });
    try {
      const res = await fetch(`${own.url}/predict`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(request('north', 200)),
      });
      expect(res.status).toBe(200);
      const f = ((await res.json()) as { prediction: { forecasts: { value: number; quantiles: Record<string, number> }[] } }).prediction
        .forecasts;
      expect(f).toHaveLength(7);
      for (const s of f) {
        expect(s.quantiles['0.1']!).toBeLessThanOrEqual(s.quantiles['0.5']!);
        expect(s.quantiles['0.5']!).toBeLessThanOrEqual(s.quantiles['0.9']!);
        expect(s.value).toBeGreaterThan(200);
        expect(s.value).toBeLessThan(900);
      }
    } finally {
      await own.close();
    }
  }, 180_000);
});
