/**
 * ONNX export of a forecaster with its window transform: process.window's windows of a real table
 * (two series, an observed and a known-future covariate, day-of-week features), train.tfjs-sequence
 * (LSTM, GRU, TCN with quantiles), export.onnx with the test windows: onnxruntime agrees with tfjs
 * within 1e-4 of each series' std, the official checker passes, and onnx's reference evaluator (a
 * second runtime, Python) gives the same forecasts. train.ets's served form (lib/ets-served.ts) and a
 * train.forecast-combine combination of a TCN and ETS: parity with their own runtimes, the combined
 * graph equal to the weighted sum of the members' own graphs; the explicit errors of each binding.
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
import { trainEts } from '../../plugins/train/ets.js';
import { trainForecastCombine } from '../../plugins/train/forecast-combine.js';
import { trainGbdtForecast } from '../../plugins/train/gbdt-forecast.js';
import { parseEtsModel, servedEtsForecast } from '../../lib/ets-served.js';
import { etsSeriesModels } from '../../lib/onnx-ets.js';
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

  /** The same two raw windows (both series) as feeds for a contract, and their histories. */
  function feedsFor(contract: OnnxForecastContract) {
    const origin = Date.UTC(2024, 5, 3);
    const history = Float64Array.from({ length: 2 * 21 }, (_, i) => 600 + 300 * Math.floor(i / 21) + 50 * Math.sin(i) + 3 * (i % 21));
    const raw = {
      count: 2,
      series: [0, 1],
      history,
      covariates: Float64Array.from({ length: 2 * 21 * contract.covariates.length }, (_, i) =>
        i % 2 ? (i % 3 === 0 ? 1 : 0) : 12 + (i % 5),
      ),
      futureCovariates: Float64Array.from({ length: 2 * 7 * contract.futureCovariates.length }, (_, i) => (i === 3 ? 1 : 0)),
      origin: [origin, origin],
    };
    return { feeds: forecastTensors(contract, raw), history };
  }

  async function onnxRun(bytes: Uint8Array, feeds: ReturnType<typeof forecastTensors>): Promise<Float32Array> {
    const predictor = await loadOnnxModel(bytes);
    try {
      return await predictor.runTensors(feeds);
    } finally {
      await predictor.close();
    }
  }

  let ets: Record<string, unknown> | undefined;
  const etsModel = async (): Promise<Record<string, unknown>> =>
    (ets ??= await runPlugin(
      trainEts,
      ctx,
      { refit: 'block' },
      { train: windows['train'], validation: windows['validation'], predict: windows['test'], state: windows['state'] },
    ));

  for (const etsInitial of ['least-squares', 'classical'] as const) {
    it(`train.ets (${etsInitial} states): the served form's graph agrees with its recursion within 1e-4 of the std; the checker and the reference evaluator agree`, async () => {
      const trained = await etsModel();
      const out = await runPlugin(
        exportOnnx,
        ctx,
        { etsInitial },
        { model: trained['model'], state: windows['state'], windows: windows['test'] },
      );
      const parity = out['parity'] as { rows: number; maxAbsError: number; maxRelativeError: number };
      expect(parity.rows).toBeGreaterThan(20);
      expect(parity.maxRelativeError).toBeLessThan(1e-4);
      console.info(
        `ets (${etsInitial}): ONNX parity on ${parity.rows} test windows: ${parity.maxRelativeError.toExponential(2)} of the series' std`,
      );
      const bytes = await ctx.store.get(out['onnx'] as ArtifactRef);
      const contract = readContract(decodeModel(bytes)) as OnnxForecastContract;
      // The sequence graph's contract, without covariates (ETS reads none).
      expect(contract).toMatchObject({
        kind: 'forecast',
        lookback: 21,
        horizon: 7,
        quantiles: [],
        covariates: [],
        calendar: [],
        seriesIds: ['north', 'south'],
      });
      const { feeds, history } = feedsFor(contract);
      expect(Object.keys(feeds).sort()).toEqual(['history', 'series']);
      const viaOrt = await onnxRun(bytes, feeds);
      const doc = parseEtsModel(JSON.parse((await ctx.store.get(trained['model'] as ArtifactRef)).toString('utf8')), 'test');
      const models = etsSeriesModels(doc, ['north', 'south']);
      for (let w = 0; w < 2; w++) {
        const expected = servedEtsForecast(history.subarray(w * 21, (w + 1) * 21), models[w]!, 7, etsInitial);
        for (let h = 0; h < 7; h++) expect(Math.abs(viaOrt[w * 7 + h]! - expected[h]!)).toBeLessThan(1e-3);
      }
      const dir = mkdtempSync(join(tmpdir(), 'mlpipe-onnx-ets-'));
      writeFileSync(join(dir, 'model.onnx'), bytes);
      const tensors = Object.fromEntries(
        Object.entries(feeds).map(([k, t]) => [k, { dims: t.dims, data: Array.from(t.data as ArrayLike<number | bigint>, Number) }]),
      );
      writeFileSync(join(dir, 'feeds.json'), JSON.stringify({ tensors }));
      const checked = await python([join(dir, 'model.onnx'), join(dir, 'feeds.json')]);
      expect(checked['op_types']).toEqual(expect.arrayContaining(['Gather', 'MatMul']));
      const viaRef = checked['predictions'] as number[];
      for (let i = 0; i < viaOrt.length; i++) expect(Math.abs(viaRef[i]! - viaOrt[i]!)).toBeLessThan(1e-3);
    }, 240_000);
  }

  const combined = async (
    weights?: number[],
  ): Promise<{ tcn: Record<string, unknown>; ets: Record<string, unknown>; combine: Record<string, unknown> }> => {
    const tcn = await runPlugin(
      trainSequence,
      ctx,
      {
        model: 'tcn',
        tcn: { kernelSize: 3, dilations: [1, 2, 4] },
        relativeTo: 'last',
        units: 12,
        epochs: 3,
        batchSize: 32,
        seed: 4,
        backend: 'wasm',
      },
      { train: windows['train'], validation: windows['validation'], predict: windows['test'] },
    );
    const e = await etsModel();
    const combine = await runPlugin(
      trainForecastCombine,
      ctx,
      weights ? { members: ['tcn', 'ets'], method: 'weighted', weights } : { members: ['tcn', 'ets'] },
      { tcn_forecasts: tcn['forecasts'], ets_forecasts: e['forecasts'] },
    );
    return { tcn, ets: e, combine };
  };

  for (const weights of [undefined, [3, 1]]) {
    it(`a TCN + ETS combination (${weights ? 'weighted 3:1' : 'mean'}): one graph, parity with tfjs + the ETS recursion, equal to the weighted sum of the members' own graphs`, async () => {
      const { tcn, ets: e, combine } = await combined(weights);
      const out = await runPlugin(
        exportOnnx,
        ctx,
        { members: ['tcn', 'ets'] },
        {
          combination: combine['model'],
          tcn_model: tcn['model'],
          ets_model: e['model'],
          state: windows['state'],
          windows: windows['test'],
        },
      );
      const parity = out['parity'] as { rows: number; maxRelativeError: number };
      expect(parity.rows).toBeGreaterThan(20);
      expect(parity.maxRelativeError).toBeLessThan(1e-4);
      const bytes = await ctx.store.get(out['onnx'] as ArtifactRef);
      const contract = readContract(decodeModel(bytes)) as OnnxForecastContract;
      // The TCN's contract: its covariates and calendar features (the ETS part ignores them).
      expect(contract).toMatchObject({
        kind: 'forecast',
        lookback: 21,
        horizon: 7,
        covariates: ['temp', 'promo'],
        futureCovariates: ['promo'],
      });
      expect(contract.calendar).toEqual(['dow_sin', 'dow_cos']);
      const alone = async (model: unknown): Promise<Float32Array> => {
        const o = await runPlugin(exportOnnx, ctx, {}, { model, state: windows['state'] });
        const b = await ctx.store.get(o['onnx'] as ArtifactRef);
        return onnxRun(b, feedsFor(readContract(decodeModel(b)) as OnnxForecastContract).feeds);
      };
      const { feeds } = feedsFor(contract);
      const viaCombo = await onnxRun(bytes, feeds);
      const viaTcn = await alone(tcn['model']);
      const viaEts = await alone(e['model']);
      const [wt, we] = weights ? [weights[0]! / 4, weights[1]! / 4] : [0.5, 0.5];
      expect(viaCombo.length).toBe(14);
      for (let i = 0; i < 14; i++) expect(Math.abs(viaCombo[i]! - (wt * viaTcn[i]! + we * viaEts[i]!))).toBeLessThan(1e-2);
      // The members differ, so the weights matter.
      expect(Math.max(...viaTcn.map((v, i) => Math.abs(v - viaEts[i]!)))).toBeGreaterThan(1);
    }, 240_000);
  }

  it('refuses a train.gbdt-forecast model (alone or as a member) with what to export instead, and malformed combination bindings', async () => {
    const gbdt = await runPlugin(
      trainGbdtForecast,
      ctx,
      { rounds: 10, numLeaves: 4, minDataInLeaf: 5 },
      { train: windows['train'], validation: windows['validation'], predict: windows['test'] },
    );
    const alone = await failure(runPlugin(exportOnnx, ctx, {}, { model: gbdt['model'], state: windows['state'] }));
    expect(alone.code).toBe('PLUGIN_INPUT');
    expect(alone.message).toMatch(/input 'model' is a train.gbdt-forecast model, which has no ONNX export/);
    expect(alone.hint).toMatch(/train.tfjs-sequence .*train.ets .*combination/);
    const e = await etsModel();
    const combination = { method: 'mean', members: ['gbdt', 'ets'], weights: [0.5, 0.5] };
    const member = await failure(
      runPlugin(
        exportOnnx,
        ctx,
        { members: ['gbdt', 'ets'] },
        { combination, gbdt_model: gbdt['model'], ets_model: e['model'], state: windows['state'] },
      ),
    );
    expect(member.message).toMatch(/member 'gbdt' is a train.gbdt-forecast model, which has no ONNX export/);

    const members = { members: ['gbdt', 'ets'] };
    const cases: [string, Record<string, unknown>, Record<string, unknown>, RegExp][] = [
      [
        'both',
        members,
        { model: e['model'], combination, gbdt_model: e['model'], ets_model: e['model'] },
        /bind 'model' \(one model\) or 'combination'/,
      ],
      ['neither', members, { gbdt_model: e['model'], ets_model: e['model'] }, /nothing to export/],
      ['members not named', {}, { combination }, /the combination's members are 'gbdt', 'ets'; the step's 'members' param is \[\]/],
      ['other members named', { members: ['tcn', 'ets'] }, { combination }, /the step's 'members' param is \[tcn, ets\]/],
      ['a member missing', members, { combination, ets_model: e['model'] }, /no model bound for member 'gbdt'/],
      ['not a combination', {}, { combination: { method: 'vote', members: ['a'] } }, /not a train.forecast-combine model output/],
      [
        'a median of three',
        { members: ['a', 'b', 'c'] },
        { combination: { method: 'median', members: ['a', 'b', 'c'] }, a_model: e['model'], b_model: e['model'], c_model: e['model'] },
        /median of 3 forecasters has no ONNX export/,
      ],
      [
        'no sequence member',
        { members: ['a', 'b'] },
        { combination: { method: 'mean', members: ['a', 'b'], weights: [0.5, 0.5] }, a_model: e['model'], b_model: e['model'] },
        /exactly one train.tfjs-sequence member/,
      ],
      ['an ETS model checked on a raw dataset', {}, { model: e['model'], test: windows['train'] }, /bind 'windows'/],
    ];
    for (const [what, params, bound, message] of cases) {
      const err = await failure(runPlugin(exportOnnx, ctx, params, { state: windows['state'], ...bound }));
      expect(err.code, what).toBe('PLUGIN_INPUT');
      expect(err.message, what).toMatch(message);
    }
  }, 240_000);
});
