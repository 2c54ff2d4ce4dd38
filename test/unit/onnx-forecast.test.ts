/**
 * ONNX export of a forecaster with its window transform: process.window's windows of a real table
 * (two series, an observed and a known-future covariate, day-of-week features), train.tfjs-sequence
 * (LSTM, GRU, TCN with quantiles), export.onnx with the test windows: onnxruntime agrees with tfjs
 * within 1e-4 of each series' std, the official checker passes, and onnx's reference evaluator (a
 * second runtime, Python) gives the same forecasts.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { readContract, type OnnxForecastContract } from '../../adapters/onnx/contract.js';
import { decodeModel } from '../../adapters/onnx/proto.js';
import { loadOnnxModel } from '../../adapters/onnx/runtime.js';
import { mlpipeCacheDir } from '../../engine/cache-dir.js';
import type { ArtifactRef } from '../../engine/types.js';
import { forecastTensors } from '../../lib/forecast-input.js';
import { exportOnnx } from '../../plugins/export/onnx.js';
import { ingestFile } from '../../plugins/ingest/file.js';
import { window as processWindow } from '../../plugins/process/window.js';
import { trainSequence } from '../../plugins/train/sequence.js';
import { failure, runPlugin, testContext } from './step-context.js';
import { forecastTable, WINDOW_PARAMS } from './forecast-fixtures.js';

const REPO = join(import.meta.dirname, '..', '..');
const PYTHON = join(mlpipeCacheDir(), 'onnx-venv', 'bin', 'python');

async function python(args: string[]): Promise<Record<string, unknown>> {
  const { stdout } = await promisify(execFile)(PYTHON, [join(REPO, 'test', 'tools', 'onnx_check.py'), ...args], {
    maxBuffer: 64 * 2 ** 20,
  });
  return JSON.parse(stdout) as Record<string, unknown>;
}

describe('export.onnx of a train.tfjs-sequence forecaster', () => {
  const ctx = testContext(REPO);
  let windows: Record<string, unknown>;

  beforeAll(async () => {
    if (!existsSync(PYTHON)) throw new Error(`The ONNX checker is not installed (${PYTHON}): run 'bash deploy/provision.sh --with-onnx'.`);
    const dataset = (await runPlugin(ingestFile, ctx, { path: forecastTable() }))['dataset'] as ArtifactRef;
    windows = await runPlugin(processWindow, ctx, WINDOW_PARAMS, { dataset });
  }, 120_000);

  const cases = [
    { model: 'lstm', layers: 2 },
    { model: 'gru', layers: 1 },
    { model: 'tcn', tcn: { kernelSize: 3, dilations: [1, 2, 4] }, quantiles: [0.1, 0.5, 0.9] },
    // Relative to a base of the lookback (lib/forecast-base.ts): the graph computes the base and the relative input itself.
    { model: 'gru', layers: 1, relativeTo: 'seasonalLast' },
    { model: 'tcn', tcn: { kernelSize: 3, dilations: [1, 2, 4] }, quantiles: [0.1, 0.5, 0.9], relativeTo: 'last' },
    // A seed ensemble: every member's network in the graph, their forecasts combined by a Mean node.
    { model: 'tcn', tcn: { kernelSize: 3, dilations: [1, 2, 4] }, relativeTo: 'last', ensemble: 3 },
    { model: 'gru', layers: 1, quantiles: [0.1, 0.5, 0.9], ensemble: 2 },
  ] as const;
  for (const c of cases) {
    it(`${c.model}${'quantiles' in c ? ' with quantiles' : ''}${'relativeTo' in c ? ` relative to ${c.relativeTo}` : ''}${'ensemble' in c ? `, ${c.ensemble} seeds` : ''}: onnxruntime agrees with tfjs within 1e-4 of the std; the checker and the reference evaluator agree`, async () => {
      const trained = await runPlugin(
        trainSequence,
        ctx,
        { ...c, units: 12, epochs: 3, batchSize: 32, seed: 4, backend: 'wasm' },
        { train: windows['train'], validation: windows['validation'] },
      );
      const out = await runPlugin(exportOnnx, ctx, {}, { model: trained['model'], state: windows['state'], windows: windows['test'] });
      const parity = out['parity'] as { rows: number; maxAbsError: number; maxRelativeError: number };
      expect(parity.rows).toBeGreaterThan(20);
      expect(parity.maxRelativeError).toBeLessThan(1e-4);
      console.info(
        `${c.model}: ONNX parity on ${parity.rows} test windows: max |onnx - tfjs| ${parity.maxAbsError.toExponential(2)} = ${parity.maxRelativeError.toExponential(2)} of the series' std`,
      );

      const bytes = await ctx.store.get(out['onnx'] as ArtifactRef);
      const contract = readContract(decodeModel(bytes)) as OnnxForecastContract;
      expect(contract).toMatchObject({
        kind: 'forecast',
        lookback: 21,
        horizon: 7,
        covariates: ['temp', 'promo'],
        futureCovariates: ['promo'],
        seriesIds: ['north', 'south'],
      });
      expect(contract.calendar).toEqual(['dow_sin', 'dow_cos']);
      // A few windows through the official checker and the reference evaluator.
      const dir = mkdtempSync(join(tmpdir(), 'mlpipe-onnx-forecast-'));
      writeFileSync(join(dir, 'model.onnx'), bytes);
      const origin = Date.UTC(2024, 5, 3);
      const history = Float64Array.from({ length: 2 * 21 }, (_, i) => 600 + 50 * Math.sin(i));
      const raw = {
        count: 2,
        series: [0, 1],
        history,
        covariates: Float64Array.from({ length: 2 * 21 * 2 }, (_, i) => (i % 2 ? (i % 3 === 0 ? 1 : 0) : 12 + (i % 5))),
        futureCovariates: Float64Array.from({ length: 2 * 7 }, (_, i) => (i === 3 ? 1 : 0)),
        origin: [origin, origin],
      };
      const feeds = forecastTensors(contract, raw);
      const tensors = Object.fromEntries(
        Object.entries(feeds).map(([k, t]) => [k, { dims: t.dims, data: Array.from(t.data as ArrayLike<number | bigint>, Number) }]),
      );
      writeFileSync(join(dir, 'feeds.json'), JSON.stringify({ tensors }));
      const checked = await python([join(dir, 'model.onnx'), join(dir, 'feeds.json')]);
      expect(checked['opsets']).toEqual({ 'ai.onnx': 21 });
      expect(checked['op_types']).toContain(c.model === 'tcn' ? 'Conv' : c.model.toUpperCase());
      if ('ensemble' in c) {
        expect(checked['op_types']).toContain('Mean');
        expect(decodeModel(bytes).metadata_props?.find((m) => m.key === 'mlpipe.ensemble_members')?.value).toBe(String(c.ensemble));
      }
      const predictor = await loadOnnxModel(bytes);
      const viaOrt = await predictor.runTensors(feeds);
      await predictor.close();
      const viaRef = checked['predictions'] as number[];
      expect(viaRef.length).toBe(viaOrt.length);
      for (let i = 0; i < viaOrt.length; i++) expect(Math.abs(viaRef[i]! - viaOrt[i]!)).toBeLessThan(1e-3);
      if ('quantiles' in c) for (let i = 0; i < viaOrt.length; i += 3) expect(viaOrt[i]!).toBeLessThanOrEqual(viaOrt[i + 2]!);
    }, 240_000);
  }

  it('refuses a raw test dataset for a forecaster, and windows for a record model', async () => {
    const trained = await runPlugin(
      trainSequence,
      ctx,
      { model: 'gru', units: 4, epochs: 1, backend: 'wasm' },
      { train: windows['train'] },
    );
    const e = await failure(runPlugin(exportOnnx, ctx, {}, { model: trained['model'], state: windows['state'], test: windows['train'] }));
    expect(e.message).toMatch(/bind 'windows'/);
  }, 120_000);
});
