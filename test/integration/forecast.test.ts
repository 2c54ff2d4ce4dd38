/**
 * Forecasting end to end on a real Temporal dev server: pipelines/forecast-unemployment.yaml reads
 * the BLS series, cuts windows and walk-forward folds (process.window), trains boosted trees on lag
 * features (train.gbdt-forecast, the real LightGBM library) for the test year and each fold, scores
 * the backtest and the test year against the seasonal baselines (evaluate.forecast) and passes its
 * gate; a second run is served from the cache. model=combo (a TCN and ETS, train.forecast-combine)
 * exports one ONNX graph of both, which `mlpipe serve --run` serves: its /predict answer for a test
 * window is the combination's weights applied to the TCN's own forecast of that window and the
 * served ETS form's recursion on the raw history sent.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { freePort } from '../../dev/temporal-server.js';
import { parseEtsModel, servedEtsForecast } from '../../lib/ets-served.js';
import { PIPELINE_WORKFLOW, type PipelineResult } from '../../engine/contracts.js';
import type { ArtifactRef } from '../../engine/types.js';
import { LocalArtifactStore } from '../../adapters/local-store.js';
import { decodeForecasts, decodeWindows, parseWindowState } from '../../lib/windows.js';
import { createTestProject, projectEnv, REPO, uniqueId, useWorkerAndClient, waitFor } from './helpers.js';

const project = createTestProject('forecast');
const env = useWorkerAndClient(project);

async function run(overrides: string[] = [], workflowId = uniqueId('forecast')): Promise<PipelineResult> {
  const handle = await env.client.workflow.start(PIPELINE_WORKFLOW, {
    taskQueue: project.taskQueue,
    workflowId,
    args: [{ pipeline: 'forecast-unemployment', overrides }],
    workflowRunTimeout: '5 minutes',
  });
  return (await handle.result()) as PipelineResult;
}

describe('forecast-unemployment', () => {
  it('windows, trains, backtests over the folds and evaluates the test year against seasonal naive', async () => {
    const r = await run();
    expect(Object.fromEntries(Object.entries(r.steps).map(([id, s]) => [id, s.status]))).toEqual({
      ingest: 'succeeded',
      validate: 'succeeded',
      window: 'succeeded',
      train: 'succeeded',
      // model=gbdt (the default): the sequence model, ETS, their combination and the ONNX export are other branches.
      train_sequence: 'skipped',
      train_ets: 'skipped',
      combine: 'skipped',
      export: 'skipped',
      backtest: 'succeeded',
      evaluate: 'succeeded',
    });
    const counts = r.outputs['window']!['counts'] as Record<string, unknown>;
    expect(counts).toMatchObject({ series: 14, gaps: 0, duplicates: 0, inputs: ['unemployed', 'rate', 'month_sin', 'month_cos'] });
    const store = new LocalArtifactStore(project.settings.artifactsDir);
    const test = decodeWindows(await store.get(r.outputs['window']!['test'] as ArtifactRef));
    // The last 12 months, horizon 6: 7 origins per series.
    expect(test.count).toBe(14 * 7);
    const forecasts = decodeForecasts(await store.get(r.outputs['train']!['forecasts'] as ArtifactRef));
    expect(forecasts.windows).toBe((r.outputs['window']!['test'] as ArtifactRef).sha256);
    const metrics = r.outputs['evaluate']!['metrics'] as Record<string, number>;
    const baseline = r.outputs['evaluate']!['baseline'] as Record<string, number>;
    expect(metrics['mase']).toBeLessThan(0.9 * baseline['mase']!); // the gate held
    expect((r.outputs['evaluate']!['horizon'] as Record<string, number[]>)['mase']).toHaveLength(6);
    const backtest = r.outputs['backtest']!['backtest'] as { folds: { fold: number; mase: number }[]; mean: Record<string, number> };
    expect(backtest.folds.map((f) => f.fold)).toEqual([1, 2, 3]);
    expect((r.outputs['backtest']!['metrics'] as Record<string, number>)['mase']).toBeCloseTo(
      backtest.folds.reduce((a, f) => a + f.mase, 0) / 3,
      4,
    );
    const again = await run();
    expect(again.steps['train']!.status).toBe('cached');
    expect(again.steps['evaluate']!.status).toBe('cached');
  }, 300_000);

  it('model=combo exports the TCN and ETS as one graph; mlpipe serve --run answers a test window with the served combination', async () => {
    const workflowId = uniqueId('forecast-combo');
    // Few epochs and one ETS fit per series (the served form reads only the model's parameters).
    const r = await run(['model=combo', 'training.epochs=3', 'model.ets_refit=block'], workflowId);
    expect(r.steps['export']!.status).toBe('succeeded');
    expect(r.steps['train']!.status).toBe('skipped');
    const parity = r.outputs['export']!['parity'] as { rows: number; maxRelativeError: number };
    expect(parity.rows).toBe(14 * 7);
    expect(parity.maxRelativeError).toBeLessThan(1e-4);

    const store = new LocalArtifactStore(project.settings.artifactsDir);
    const test = decodeWindows(await store.get(r.outputs['window']!['test'] as ArtifactRef));
    const state = parseWindowState(JSON.parse((await store.get(r.outputs['window']!['state'] as ArtifactRef)).toString('utf8')), 'test');
    const tcn = decodeForecasts(await store.get(r.outputs['train_sequence']!['forecasts'] as ArtifactRef));
    const ets = parseEtsModel(JSON.parse((await store.get(r.outputs['train_ets']!['model'] as ArtifactRef)).toString('utf8')), 'test');
    const combination = r.outputs['combine']!['model'] as { members: string[]; weights: number[] };
    expect(combination.members).toEqual(['tcn', 'ets']);

    // A test window of the third series: its 24 raw months before the origin, from the table itself.
    const i = Math.min(test.count - 1, test.series.findIndex((s) => s === 2) + 3);
    const id = test.seriesIds[test.series[i]!]!;
    const origin = test.origin[i]!;
    const rows = readFileSync(join(REPO, 'pipelines', 'data', 'unemployment-by-industry.csv'), 'utf8')
      .trim()
      .split('\n')
      .slice(1)
      .map((l) => l.split(','))
      .filter(([industry, month]) => industry === id && Date.parse(`${month}T00:00:00Z`) < origin)
      .sort((a, b) => a[1]!.localeCompare(b[1]!))
      .slice(-24);
    expect(rows).toHaveLength(24);
    const history = rows.map(([, month, unemployed, rate]) => ({ month, unemployed: Number(unemployed), rate: Number(rate) }));
    // The reference: the TCN's own forecast of this window (unscaled) and the ETS form's recursion on the raw values.
    const { mean, std } = state.scaling[id]!;
    const viaEts = servedEtsForecast(
      history.map((h) => h.unemployed),
      ets.series[id] ?? null,
      6,
      'least-squares',
    );
    const expected = Array.from({ length: 6 }, (_, h) => {
      const viaTcn = tcn.values[i * 6 + h]! * std + mean;
      return combination.weights[0]! * viaTcn + combination.weights[1]! * viaEts[h]!;
    });

    const port = await freePort();
    const serve = spawn(
      process.execPath,
      [join(REPO, 'bin', 'mlpipe.mjs'), 'serve', '--run', workflowId, '--port', String(port), '--no-log'],
      {
        cwd: project.dir,
        env: projectEnv(project),
      },
    );
    try {
      let out = '';
      serve.stdout.on('data', (d: Buffer) => (out += d.toString()));
      serve.stderr.on('data', (d: Buffer) => (out += d.toString()));
      await waitFor(() => out.includes('listening on'), 'the prediction server', 120_000);
      expect(out).toContain(`from ${workflowId}/export.onnx`);
      const res = await fetch(`http://127.0.0.1:${port}/predict`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ series: id, history }),
      });
      expect(res.status).toBe(200);
      const body = (await res.json()) as { prediction: { series: string; forecasts: { time: string; value: number }[] } };
      expect(body.prediction.series).toBe(id);
      const served = body.prediction.forecasts.map((f) => f.value);
      expect(served).toHaveLength(6);
      expect(body.prediction.forecasts[0]!.time.slice(0, 10)).toBe(new Date(origin).toISOString().slice(0, 10));
      for (let h = 0; h < 6; h++) expect(Math.abs(served[h]! - expected[h]!), `step ${h + 1}`).toBeLessThan(1e-4 * std);
      // The members differ on this window, so both are in the answer.
      const tcnOnly = Array.from({ length: 6 }, (_, h) => tcn.values[i * 6 + h]! * std + mean);
      expect(Math.max(...served.map((v, h) => Math.abs(v - tcnOnly[h]!)))).toBeGreaterThan(1e-3 * std);
    } finally {
      serve.kill('SIGTERM');
    }
  }, 300_000);
});
