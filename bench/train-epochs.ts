/**
 * Trains the housing MLP for a few epochs on one tfjs backend, in this process, and prints one JSON
 * line: the backend, a fingerprint of the initial weights (seeded, so equal on every backend), the
 * loss of the untrained model on the first batch, each epoch's mean training loss and duration.
 * tfjs has one backend per process, so `bench/train.ts` and the backend parity test run this once
 * per backend (MLPIPE_TF_BACKEND=<name>).
 *
 *   MLPIPE_TF_BACKEND=wasm node --import tsx bench/train-epochs.ts '{"rows":4096,"epochs":1}'
 *
 * The model is the housing pipeline's (conf/housing: hidden [128, 64], relu, Adam, batch 512) on the
 * 13 raw columns of pipelines/data/california-housing.csv (8 numbers, ocean_proximity one-hot),
 * standardized, in file order: the same float32 inputs and weights on every backend.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadTf } from '../lib/tf.js';

export interface EpochsOptions {
  rows?: number;
  epochs?: number;
  batchSize?: number;
  hidden?: number[];
  learningRate?: number;
}

export interface EpochsResult {
  backend: string;
  rows: number;
  features: number;
  batchSize: number;
  initialWeightsSha256: string;
  firstBatchLoss: number;
  losses: number[];
  msPerEpoch: number[];
}

const REPO = join(dirname(fileURLToPath(import.meta.url)), '..');
const OCEAN = ['<1H OCEAN', 'INLAND', 'ISLAND', 'NEAR BAY', 'NEAR OCEAN'];
const NUMERIC = [
  'longitude',
  'latitude',
  'housing_median_age',
  'total_rooms',
  'total_bedrooms',
  'population',
  'households',
  'median_income',
];

/** The housing CSV as standardized float32 features and target, the first `rows` rows. */
export function housingMatrix(rows: number): { x: Float32Array; y: Float32Array; rows: number; features: number } {
  const lines = readFileSync(join(REPO, 'pipelines', 'data', 'california-housing.csv'), 'utf8')
    .trim()
    .split('\n');
  const header = lines[0]!.split(',');
  const at = (name: string): number => header.indexOf(name);
  const raw: number[][] = [];
  const target: number[] = [];
  for (const line of lines.slice(1, rows + 1)) {
    const cells = line.split(',');
    const ocean = cells[at('ocean_proximity')]!.replace(/"/g, '');
    raw.push([...NUMERIC.map((c) => (cells[at(c)] === '' ? NaN : Number(cells[at(c)]))), ...OCEAN.map((o) => (o === ocean ? 1 : 0))]);
    target.push(Number(cells[at('median_house_value')]));
  }
  const width = raw[0]!.length;
  const x = new Float32Array(raw.length * width);
  for (let j = 0; j < width; j++) {
    const col = raw.map((r) => r[j]!).filter((v) => Number.isFinite(v));
    const mean = col.reduce((a, b) => a + b, 0) / col.length;
    const std = Math.sqrt(col.reduce((a, b) => a + (b - mean) ** 2, 0) / col.length) || 1;
    raw.forEach((r, i) => (x[i * width + j] = Number.isFinite(r[j]!) ? (r[j]! - mean) / std : 0));
  }
  const mean = target.reduce((a, b) => a + b, 0) / target.length;
  const std = Math.sqrt(target.reduce((a, b) => a + (b - mean) ** 2, 0) / target.length);
  return { x, y: Float32Array.from(target, (v) => (v - mean) / std), rows: raw.length, features: width };
}

export async function trainEpochs(o: EpochsOptions = {}): Promise<EpochsResult> {
  const { tf, backend } = await loadTf();
  const m = housingMatrix(o.rows ?? 20_640);
  const batchSize = o.batchSize ?? 512;
  const hidden = o.hidden ?? [128, 64];
  const model = tf.sequential();
  hidden.forEach((units, i) =>
    model.add(
      tf.layers.dense({
        units,
        activation: 'relu',
        kernelInitializer: tf.initializers.glorotUniform({ seed: 11 + i }),
        ...(i === 0 ? { inputShape: [m.features] } : {}),
      }),
    ),
  );
  model.add(tf.layers.dense({ units: 1, kernelInitializer: tf.initializers.glorotUniform({ seed: 99 }) }));
  model.compile({ optimizer: tf.train.adam(o.learningRate ?? 1e-3), loss: 'meanSquaredError' });
  const sha = createHash('sha256');
  for (const w of model.getWeights()) sha.update(Buffer.from((await w.data()).buffer as ArrayBuffer));
  const x = tf.tensor2d(m.x, [m.rows, m.features]);
  const y = tf.tensor2d(m.y, [m.rows, 1]);
  const first = model.evaluate(
    tf.slice(x, [0, 0], [batchSize, -1]),
    tf.slice(y, [0, 0], [batchSize, -1]),
  ) as import('@tensorflow/tfjs-core').Scalar;
  const firstBatchLoss = (await first.data())[0]!;
  const losses: number[] = [];
  const msPerEpoch: number[] = [];
  for (let e = 0; e < (o.epochs ?? 1); e++) {
    const t0 = performance.now();
    const h = await model.fit(x, y, { epochs: 1, batchSize, shuffle: false, verbose: 0 });
    msPerEpoch.push(performance.now() - t0);
    losses.push(h.history['loss']![0] as number);
  }
  return {
    backend,
    rows: m.rows,
    features: m.features,
    batchSize,
    initialWeightsSha256: sha.digest('hex'),
    firstBatchLoss,
    losses,
    msPerEpoch,
  };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const result = await trainEpochs(JSON.parse(process.argv[2] ?? '{}') as EpochsOptions);
  console.log(JSON.stringify(result));
}
