/**
 * train.tfjs-sequence called directly (real tfjs, real local store) on small synthetic window sets:
 * a noisy sine per series. Behaviour, not accuracy: it beats the naive forecast, stops early, keeps
 * quantiles ordered, is reproducible with a seed, and resumes from its checkpoint.
 */
import { describe, expect, it } from 'vitest';
import type { ArtifactRef } from '../../engine/types.js';
import { prng } from '../../engine/random.js';
import { decodeForecasts, encodeWindows, type WindowSet } from '../../lib/windows.js';
import { loadTf } from '../../lib/tf.js';
import {
  deserializeSequenceModel,
  ensembleDocument,
  meanForecasts,
  networkInputs,
  parseSequenceModel,
  predictSequence,
  sequenceMembers,
} from '../../lib/sequence-model.js';
import { windowBases } from '../../lib/forecast-base.js';
import { trainSequence } from '../../plugins/train/sequence.js';
import { failure, runPlugin, stoppingContext, testContext, type TestContext } from './step-context.js';
import { forecastTable, WINDOW_PARAMS } from './forecast-fixtures.js';
import { ingestFile } from '../../plugins/ingest/file.js';
import { window as processWindow } from '../../plugins/process/window.js';
import { evaluateForecast } from '../../plugins/evaluate/forecast.js';

const LOOKBACK = 24;
const L = LOOKBACK;
const H = 6;
const PERIOD = 12;

/**
 * Windows over `series` noisy sines (period 12, a phase per series), already scaled: x [N, L, 2]
 * (the target and a calendar-like feature, the position in the period), xf [N, H, 1] (the same
 * feature for the forecast steps), y [N, H].
 */
export function sineWindows(opts: {
  series: number;
  length: number;
  noise: number;
  seed: number;
  start?: number;
  lookback?: number;
}): WindowSet {
  const L = opts.lookback ?? LOOKBACK;
  const r = prng(opts.seed);
  const gauss = (): number => Math.sqrt(-2 * Math.log(r() + 1e-12)) * Math.cos(2 * Math.PI * r());
  const start = opts.start ?? 0;
  const x: number[] = [];
  const xf: number[] = [];
  const y: number[] = [];
  const series: number[] = [];
  const origin: number[] = [];
  for (let s = 0; s < opts.series; s++) {
    const values = Array.from(
      { length: opts.length },
      (_, t) => Math.sin((2 * Math.PI * (t + start)) / PERIOD + s) * 1.3 + opts.noise * gauss(),
    );
    const phase = (t: number): number => ((t + start) % PERIOD) / PERIOD - 0.5;
    for (let t0 = L; t0 + H <= opts.length; t0++) {
      for (let k = t0 - L; k < t0; k++) x.push(values[k]!, phase(k));
      for (let k = t0; k < t0 + H; k++) {
        xf.push(phase(k));
        y.push(values[k]!);
      }
      series.push(s);
      origin.push(Date.UTC(2024, 0, 1) + (t0 + start) * 86_400_000);
    }
  }
  return {
    lookback: opts.lookback ?? LOOKBACK,
    horizon: H,
    count: series.length,
    inputs: ['y', 'phase'],
    future: ['phase'],
    x: Float32Array.from(x),
    xf: Float32Array.from(xf),
    y: Float32Array.from(y),
    series: Int32Array.from(series),
    seriesIds: Array.from({ length: opts.series }, (_, s) => `s${s}`),
    origin: Float64Array.from(origin),
    season: PERIOD,
  } as WindowSet;
}

async function put(ctx: TestContext, w: WindowSet): Promise<ArtifactRef> {
  return ctx.store.put(encodeWindows(w), { name: 'windows.bin' });
}

async function sets(ctx: TestContext, noise = 0.1) {
  return {
    train: await put(ctx, sineWindows({ series: 3, length: 160, noise, seed: 1 })),
    validation: await put(ctx, sineWindows({ series: 3, length: 60, noise, seed: 2, start: 160 })),
    test: await put(ctx, sineWindows({ series: 3, length: 60, noise, seed: 3, start: 220 })),
  };
}

/** Mean absolute error of forecasts (scaled) against the windows' y, and of the naive forecast (last value). */
function errors(w: WindowSet, values: Float32Array): { model: number; naive: number } {
  let model = 0;
  let naive = 0;
  for (let i = 0; i < w.count; i++) {
    const last = w.x[(i * L + L - 1) * w.inputs.length]!;
    for (let h = 0; h < H; h++) {
      const y = w.y[i * H + h]!;
      model += Math.abs(values[i * H + h]! - y);
      naive += Math.abs(last - y);
    }
  }
  return { model: model / (w.count * H), naive: naive / (w.count * H) };
}

const BASE = { epochs: 15, batchSize: 32, learningRate: 0.01, units: 16, seed: 7, backend: 'wasm' } as const;

describe('train.tfjs-sequence', () => {
  for (const model of ['lstm', 'gru', 'tcn'] as const) {
    it(`${model}: learns noisy sines far better than the naive forecast`, async () => {
      const ctx = testContext();
      const { train, validation, test } = await sets(ctx);
      const out = await runPlugin(
        trainSequence,
        ctx,
        { ...BASE, model, tcn: { kernelSize: 3, dilations: [1, 2, 4] } },
        { train, validation, predict: test },
      );
      const f = decodeForecasts(await ctx.store.get(out['forecasts'] as ArtifactRef));
      const w = sineWindows({ series: 3, length: 60, noise: 0.1, seed: 3, start: 220 });
      expect(f.count).toBe(w.count);
      expect(f.horizon).toBe(H);
      const e = errors(w, f.values);
      expect(e.model).toBeLessThan(0.5 * e.naive);
      expect(out['metrics']).toMatchObject({ epochs: 15, epochsThisAttempt: 15, resumedFromEpoch: 0, predicted: w.count });
      // Progress per epoch, and the curve to tracking.
      expect(ctx.heartbeats.at(-1)?.progress).toMatchObject({ done: 15, total: 15, unit: 'epoch' });
      expect(ctx.series.filter((s) => s.key === 'val_loss')).toHaveLength(15);
      console.info(`${model}: test MAE (scaled) ${e.model.toFixed(4)} vs naive ${e.naive.toFixed(4)}`);
    }, 240_000);
  }

  it('is reproducible with a seed on one backend, and a resumed run ends where an uninterrupted one does', async () => {
    const params = { ...BASE, model: 'gru', epochs: 8, checkpoint: { everyEpochs: 4, keep: 2 } } as const;
    const run = async (ctx: TestContext, epochs: number) => {
      const { train, validation, test } = await sets(ctx);
      const out = await runPlugin(trainSequence, ctx, { ...params, epochs }, { train, validation, predict: test });
      return { out, values: decodeForecasts(await ctx.store.get(out['forecasts'] as ArtifactRef)).values };
    };
    const a = await run(testContext(), 8);
    const b = await run(testContext(), 8);
    expect(Array.from(b.values)).toEqual(Array.from(a.values));
    // A first attempt that stopped after the epoch-4 checkpoint (12 epochs asked; killed after epoch 4's
    // save, as far as its checkpoint knows), then a retry in the same step context: it goes on from epoch 4.
    const ctx = testContext();
    await run(ctx, 5); // writes the checkpoint of epoch 4, then ends at 5 without one
    const resumed = await run(ctx, 8);
    expect(resumed.out['metrics']).toMatchObject({ resumedFromEpoch: 4, epochsThisAttempt: 4, epochs: 8 });
    expect(ctx.logs.some((l) => /resumed from the checkpoint of epoch 4/.test(l.message))).toBe(true);
    // Same data, same seed: the resumed model is the uninterrupted one.
    for (let i = 0; i < a.values.length; i++) expect(resumed.values[i]).toBeCloseTo(a.values[i]!, 5);
  }, 240_000);

  it('keeps the finished folds of an interrupted backtest and resumes the next from its epoch checkpoint', async () => {
    const params = { ...BASE, model: 'gru', epochs: 6, checkpoint: { everyEpochs: 2, keep: 2 } } as const;
    const inputs = async (ctx: TestContext) => {
      const { train, validation } = await sets(ctx);
      const folds = [];
      for (const [k, start] of [100, 140].entries())
        folds.push({
          train: await put(ctx, sineWindows({ series: 3, length: start, noise: 0.1, seed: 10 + k })),
          test: await put(ctx, sineWindows({ series: 3, length: 40, noise: 0.1, seed: 20 + k, start })),
        });
      return { train, validation, folds };
    };
    const foldValues = async (ctx: TestContext, out: Record<string, unknown>) =>
      Promise.all((out['foldForecasts'] as ArtifactRef[]).map(async (r) => Array.from(decodeForecasts(await ctx.store.get(r)).values)));
    const straight = testContext();
    const whole = await runPlugin(trainSequence, straight, params, await inputs(straight));
    expect(whole['metrics']).toMatchObject({ foldEpochs: 6, foldsResumed: 0, foldsTrainedThisAttempt: 2, foldEpochsThisAttempt: 12 });
    // The first attempt is stopped in fold 2 after its epoch-4 checkpoint (the signal, as a cancel or a lost worker would).
    const ctx = stoppingContext((p) => p.message === 'backtest fold 2/2' && p.done === 5);
    const bound = await inputs(ctx);
    await expect(runPlugin(trainSequence, ctx, params, bound)).rejects.toThrow('stopped');
    // The retry: the same step's checkpoints, a live signal.
    const retry = { ...ctx, signal: new AbortController().signal };
    const resumed = await runPlugin(trainSequence, retry, params, bound);
    expect(resumed['metrics']).toMatchObject({
      epochsThisAttempt: 0,
      resumedFromEpoch: 6,
      foldsResumed: 1,
      foldsTrainedThisAttempt: 1,
      foldResumedFromEpoch: 4,
      foldEpochsThisAttempt: 2,
    });
    expect(ctx.logs.some((l) => /kept 1 finished fold/.test(l.message))).toBe(true);
    // Same seed, same data: the folds' forecasts are the uninterrupted run's, exactly.
    expect(await foldValues(ctx, resumed)).toEqual(await foldValues(straight, whole));
    // Lost after the last fold, before the step returned (the same step's checkpoints again): no fold is trained again.
    const again = await runPlugin(trainSequence, { ...ctx, signal: new AbortController().signal }, params, bound);
    expect(again['metrics']).toMatchObject({ epochsThisAttempt: 0, foldsResumed: 2, foldsTrainedThisAttempt: 0 });
    expect(await foldValues(ctx, again)).toEqual(await foldValues(straight, whole));
  }, 240_000);

  it('stops early when the validation loss stops improving, keeping the best weights', async () => {
    const ctx = testContext();
    const { train, validation } = await sets(ctx, 0.6);
    const out = await runPlugin(
      trainSequence,
      ctx,
      { ...BASE, model: 'lstm', epochs: 300, learningRate: 0.05, units: 32, earlyStopping: { patience: 3 } },
      { train, validation },
    );
    const m = out['metrics'] as Record<string, number>;
    expect(m['epochs']).toBeLessThan(300);
    expect(m['epochs']! - m['bestEpoch']!).toBe(3);
    expect(ctx.logs.some((l) => l.message === 'early stopping')).toBe(true);
    expect(out['forecasts']).toBeNull();
  }, 240_000);

  it("stops at a search's median bar (stopIfWorseThan)", async () => {
    const ctx = testContext();
    const { train, validation } = await sets(ctx);
    const out = await runPlugin(
      trainSequence,
      ctx,
      { ...BASE, model: 'tcn', epochs: 20, stopIfWorseThan: { curve: Array<number>(20).fill(-1), afterEpochs: 3 } },
      { train, validation },
    );
    expect(out['metrics']).toMatchObject({ epochs: 3, stoppedByMedianRule: 3 });
    expect(out['curve']).toHaveLength(3);
  }, 120_000);

  it('forecasts ordered quantiles that bracket the truth', async () => {
    const ctx = testContext();
    const { train, validation, test } = await sets(ctx, 0.4);
    const out = await runPlugin(
      trainSequence,
      ctx,
      { ...BASE, model: 'gru', epochs: 30, quantiles: [0.1, 0.5, 0.9] },
      { train, validation, predict: test },
    );
    const doc = parseSequenceModel(JSON.parse((await ctx.store.get(out['model'] as ArtifactRef)).toString('utf8')), 'test');
    expect(doc.quantiles).toEqual([0.1, 0.5, 0.9]);
    const { tf } = await loadTf('wasm');
    const model = await deserializeSequenceModel(tf, doc);
    const w = sineWindows({ series: 3, length: 60, noise: 0.4, seed: 3, start: 220 });
    const q = predictSequence(tf, model, doc, w);
    model.dispose();
    expect(q.length).toBe(w.count * H * 3);
    let below = 0;
    let above = 0;
    for (let i = 0; i < w.count * H; i++) {
      expect(q[i * 3]!).toBeLessThanOrEqual(q[i * 3 + 1]!);
      expect(q[i * 3 + 1]!).toBeLessThanOrEqual(q[i * 3 + 2]!);
      if (w.y[i]! < q[i * 3]!) below++;
      if (w.y[i]! > q[i * 3 + 2]!) above++;
    }
    const n = w.count * H;
    // Nominal 10% each side; generous bounds for a small model and 30 epochs.
    expect(below / n).toBeLessThan(0.25);
    expect(above / n).toBeLessThan(0.25);
    expect((below + above) / n).toBeGreaterThan(0.02);
    // The point forecast is the median level.
    const f = decodeForecasts(await ctx.store.get(out['forecasts'] as ArtifactRef));
    for (let i = 0; i < 10; i++) expect(f.values[i]).toBeCloseTo(q[i * 3 + 1]!, 5);
  }, 240_000);

  it('relative to a base: the forecast is the network plus the base, and a level the training never saw is followed', async () => {
    const ctx = testContext();
    const { train, validation } = await sets(ctx);
    // Test windows 4 (scaled) units above anything in training: a level model is lost there.
    const shifted = sineWindows({ series: 3, length: 60, noise: 0.1, seed: 3, start: 220 });
    for (let i = 0; i < shifted.count; i++) for (let l = 0; l < L; l++) shifted.x[(i * L + l) * 2] = shifted.x[(i * L + l) * 2]! + 4;
    shifted.y.forEach((v, k) => (shifted.y[k] = v + 4));
    const test = await put(ctx, shifted);
    const mae = {} as Record<string, number>;
    for (const relativeTo of ['none', 'seasonalLast'] as const) {
      const out = await runPlugin(trainSequence, ctx, { ...BASE, model: 'gru', relativeTo }, { train, validation, predict: test });
      mae[relativeTo] = errors(shifted, decodeForecasts(await ctx.store.get(out['forecasts'] as ArtifactRef)).values).model;
      const doc = parseSequenceModel(JSON.parse((await ctx.store.get(out['model'] as ArtifactRef)).toString('utf8')), 'test');
      expect(doc.relativeTo).toBe(relativeTo === 'none' ? undefined : relativeTo);
      expect(doc.season).toBe(PERIOD);
    }
    const naive = errors(shifted, new Float32Array(shifted.count * H)).naive;
    expect(mae['seasonalLast']!).toBeLessThan(0.5 * naive);
    expect(mae['seasonalLast']!).toBeLessThan(0.5 * mae['none']!);

    // A network whose read-out is zero forecasts exactly the base, its input is relative to the last value.
    const out = await runPlugin(trainSequence, ctx, { ...BASE, model: 'gru', epochs: 1, relativeTo: 'seasonalLast' }, { train });
    const doc = parseSequenceModel(JSON.parse((await ctx.store.get(out['model'] as ArtifactRef)).toString('utf8')), 'test');
    const { tf } = await loadTf('wasm');
    const model = await deserializeSequenceModel(tf, doc);
    const head = model.getLayer('head');
    head.setWeights(head.getWeights().map((w) => tf.zerosLike(w)));
    const values = predictSequence(tf, model, doc, shifted);
    model.dispose();
    const bases = windowBases('seasonalLast', shifted);
    for (let k = 0; k < values.length; k++) expect(values[k]).toBeCloseTo(bases[k]!, 5);
    const inputs = networkInputs(doc, shifted.x, shifted.count);
    expect(inputs[(L - 1) * 2]).toBe(0);
    expect(inputs[1]).toBe(shifted.x[1]); // other inputs as they are
    expect(() => parseSequenceModel({ ...doc, relativeTo: 'median' }, 'test')).toThrow(/relativeTo/);
  }, 240_000);

  it('rejects what it cannot train on, with the reason', async () => {
    const ctx = testContext();
    const { train, validation } = await sets(ctx);
    const noVal = await failure(runPlugin(trainSequence, ctx, { ...BASE, earlyStopping: { patience: 2 } }, { train }));
    expect(noVal.code).toBe('PLUGIN_PARAMS');
    const reach = await failure(
      runPlugin(trainSequence, ctx, { ...BASE, model: 'tcn', tcn: { kernelSize: 5, dilations: [2, 4] } }, { train, validation }),
    );
    expect(reach.message).toMatch(/reach back 24 steps, not less than the lookback 24/);
    const other = await put(ctx, sineWindows({ series: 1, length: 60, noise: 0.1, seed: 9, lookback: 12 }));
    const shape = await failure(runPlugin(trainSequence, ctx, BASE, { train, validation: other }));
    expect(shape.message).toMatch(/do not match the train windows/);
    expect(() => trainSequence.params.parse({ quantiles: [0.1, 0.9] })).toThrow(/include 0.5/);
  });

  it('backtests walk-forward folds: one forecast set per fold, scored by evaluate.forecast against the baselines', async () => {
    const ctx = testContext();
    const dataset = (await runPlugin(ingestFile, ctx, { path: forecastTable() }))['dataset'] as ArtifactRef;
    const w = await runPlugin(processWindow, ctx, { ...WINDOW_PARAMS, folds: 2, foldSteps: 14 }, { dataset });
    const out = await runPlugin(
      trainSequence,
      ctx,
      { ...BASE, model: 'gru', epochs: 6 },
      { train: w['train'], validation: w['validation'], predict: w['test'], folds: w['folds'] },
    );
    const folds = out['foldForecasts'] as ArtifactRef[];
    expect(folds).toHaveLength(2);
    const ev = await runPlugin(
      evaluateForecast,
      ctx,
      {},
      { windows: w['test'], forecasts: out['forecasts'], state: w['state'], folds: w['folds'], foldForecasts: folds },
    );
    const backtest = ev['backtest'] as { folds: unknown[]; mean: Record<string, number> };
    expect(backtest.folds).toHaveLength(2);
    expect(backtest.mean['mase']).toBeGreaterThan(0);
    expect(ctx.heartbeats.at(-1)?.progress).toMatchObject({ done: 2, total: 2, unit: 'fold' });
  }, 240_000);
});

describe('train.tfjs-sequence seed ensemble', () => {
  it('combines member forecasts by their element-wise mean, and a document keeps its members apart', async () => {
    expect(Array.from(meanForecasts([Float32Array.of(1, 2, 3), Float32Array.of(3, 4, 5), Float32Array.of(2, 0, 4)]))).toEqual([2, 2, 4]);
    const one = Float32Array.of(1.5, -2);
    expect(meanForecasts([one])).toBe(one);
    expect(() => meanForecasts([])).toThrow(/no member forecasts/);
    expect(() => meanForecasts([Float32Array.of(1), Float32Array.of(1, 2)])).toThrow(/different lengths/);

    const ctx = testContext();
    const { train } = await sets(ctx);
    const out = await runPlugin(trainSequence, ctx, { ...BASE, model: 'tcn', epochs: 1, ensemble: 3 }, { train });
    const doc = parseSequenceModel(JSON.parse((await ctx.store.get(out['model'] as ArtifactRef)).toString('utf8')), 'test');
    expect(doc.seed).toBe(BASE.seed);
    expect(doc.members?.map((m) => m.seed)).toEqual([BASE.seed + 1, BASE.seed + 2]);
    const members = sequenceMembers(doc);
    expect(members.map((m) => m.seed)).toEqual([7, 8, 9]);
    expect(members.every((m) => m.members === undefined && m.modelTopology === doc.modelTopology)).toBe(true);
    expect(new Set(members.map((m) => m.weightData)).size).toBe(3); // three different networks
    expect(ensembleDocument(members)).toEqual(doc);
    // A single model is its own only member, and stays a document without `members`.
    expect(sequenceMembers(members[1]!)).toEqual([members[1]]);
    expect(ensembleDocument([members[1]!])).toEqual(members[1]);
    expect(() => parseSequenceModel({ ...doc, members: [{ seed: 1 }] }, 'test')).toThrow(/members/);
    expect(out['metrics']).toMatchObject({ members: 3, epochs: 1, epochsThisAttempt: 3 });
    expect(() => trainSequence.params.parse({ ensemble: 0 })).toThrow();
  }, 120_000);

  it('forecasts (test windows and folds) the mean of what each seed trains alone, each member with its own early stopping', async () => {
    const params = { ...BASE, model: 'tcn', epochs: 30, learningRate: 0.05, earlyStopping: { patience: 2 } } as const;
    const inputs = async (ctx: TestContext) => {
      const { train, validation, test } = await sets(ctx, 0.6);
      const folds = [];
      for (const [k, start] of [100, 140].entries())
        folds.push({
          train: await put(ctx, sineWindows({ series: 3, length: start, noise: 0.6, seed: 10 + k })),
          test: await put(ctx, sineWindows({ series: 3, length: 40, noise: 0.6, seed: 20 + k, start })),
        });
      return { train, validation, predict: test, folds };
    };
    const values = async (ctx: TestContext, ref: unknown) => decodeForecasts(await ctx.store.get(ref as ArtifactRef)).values;
    const alone = [];
    for (const seed of [7, 8, 9]) {
      const ctx = testContext();
      const out = await runPlugin(trainSequence, ctx, { ...params, seed }, await inputs(ctx));
      const folds = out['foldForecasts'] as ArtifactRef[];
      alone.push({
        bestEpoch: (out['metrics'] as Record<string, number>)['bestEpoch']!,
        test: await values(ctx, out['forecasts']),
        folds: [await values(ctx, folds[0]), await values(ctx, folds[1])],
      });
    }
    const ctx = testContext();
    const out = await runPlugin(trainSequence, ctx, { ...params, ensemble: 3 }, await inputs(ctx));
    const m = out['metrics'] as Record<string, number>;
    expect(m).toMatchObject({
      members: 3,
      bestEpoch: alone[0]!.bestEpoch,
      bestEpochMin: Math.min(...alone.map((a) => a.bestEpoch)),
      bestEpochMax: Math.max(...alone.map((a) => a.bestEpoch)),
      foldsTrainedThisAttempt: 6,
      foldEpochsThisAttempt: 2 * alone.reduce((s, a) => s + a.bestEpoch, 0),
    });
    expect(m['ensembleValLoss']).toBeGreaterThan(0);
    expect(Array.from(await values(ctx, out['forecasts']))).toEqual(Array.from(meanForecasts(alone.map((a) => a.test))));
    const folds = out['foldForecasts'] as ArtifactRef[];
    for (const k of [0, 1])
      expect(Array.from(await values(ctx, folds[k]))).toEqual(Array.from(meanForecasts(alone.map((a) => a.folds[k]!))));
    // Progress names the member, and the tracked curves keep the members apart.
    expect(ctx.series.filter((s) => s.key === 'member3_val_loss').length).toBeGreaterThan(0);
    expect(ctx.series.filter((s) => s.key === 'val_loss')).toHaveLength(alone[0]!.bestEpoch + 2);
  }, 240_000);

  it('a retry keeps the finished members and goes on with the current one from its epoch checkpoint', async () => {
    const params = { ...BASE, model: 'tcn', epochs: 6, ensemble: 3, checkpoint: { everyEpochs: 2, keep: 2 } } as const;
    const inputs = async (ctx: TestContext) => {
      const { train, validation, test } = await sets(ctx);
      const folds = [
        {
          train: await put(ctx, sineWindows({ series: 3, length: 120, noise: 0.1, seed: 10 })),
          test: await put(ctx, sineWindows({ series: 3, length: 40, noise: 0.1, seed: 20, start: 120 })),
        },
      ];
      return { train, validation, predict: test, folds };
    };
    const values = async (ctx: TestContext, out: Record<string, unknown>) => [
      Array.from(decodeForecasts(await ctx.store.get(out['forecasts'] as ArtifactRef)).values),
      Array.from(decodeForecasts(await ctx.store.get((out['foldForecasts'] as ArtifactRef[])[0]!)).values),
    ];
    const straight = testContext();
    const whole = await runPlugin(trainSequence, straight, params, await inputs(straight));
    expect(whole['metrics']).toMatchObject({ members: 3, membersResumed: 0, epochsThisAttempt: 18 });
    // Stopped in member 2's epoch 5, after its epoch-4 checkpoint.
    const stop = new AbortController();
    const progress: string[] = [];
    const ctx = testContext(process.cwd(), undefined, {
      signal: stop.signal,
      onHeartbeat: (d) => {
        const p = (d as { progress?: { message?: string; done?: number; unit?: string } } | undefined)?.progress;
        if (p?.message) progress.push(`${p.message} ${p.unit} ${p.done}`);
        if (p?.message === 'member 2/3' && p.done === 5) stop.abort(new Error('stopped'));
      },
    });
    const bound = await inputs(ctx);
    await expect(runPlugin(trainSequence, ctx, params, bound)).rejects.toThrow('stopped');
    expect(progress).toContain('member 1/3 epoch 6');
    const retry = { ...ctx, signal: new AbortController().signal };
    const resumed = await runPlugin(trainSequence, retry, params, bound);
    // Member 1 is not trained again; member 2 goes on from epoch 4 (2 epochs), member 3 trains whole (6).
    expect(resumed['metrics']).toMatchObject({ members: 3, membersResumed: 1, resumedFromEpoch: 6, epochsThisAttempt: 8 });
    expect(ctx.logs.some((l) => /member 1\/3: resumed from the checkpoint of epoch 6 .*, training finished/.test(l.message))).toBe(true);
    expect(ctx.logs.some((l) => /member 2\/3: resumed from the checkpoint of epoch 4/.test(l.message))).toBe(true);
    expect(progress.some((p) => p.startsWith('member 3/3: backtest fold 1/1'))).toBe(true);
    // Same seeds, same data: the uninterrupted ensemble's forecasts.
    const [a, b] = [await values(straight, whole), await values(ctx, resumed)];
    for (const k of [0, 1]) for (let i = 0; i < a[k]!.length; i++) expect(b[k]![i]).toBeCloseTo(a[k]![i]!, 5);
  }, 240_000);
});
