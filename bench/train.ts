/**
 * Training speed per tfjs backend, side by side in one run: the housing MLP (bench/train-epochs.ts:
 * 13 features, hidden [128, 64], batch 512, all 20,640 rows) on every installed backend, each in its
 * own process (tfjs has one backend per process). The first epoch is a warm-up and not counted;
 * epochs/s is 1 / the median of the others. Also checks that the backends agree on the losses.
 *
 *   npm run bench:train                  # provisions tfjs-node first
 *   BENCH_EPOCHS=6 node --import tsx bench/train.ts
 *
 * Results: bench/results/train-<date>.json (with the machine's load average before and after).
 */
import { execFile } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { EpochsResult } from './train-epochs.js';
import { isInstalled as installed } from '../adapters/optional.js';

const REPO = join(dirname(fileURLToPath(import.meta.url)), '..');
/** Epochs per backend (the slow ones get fewer): BENCH_EPOCHS overrides all. */
const EPOCHS: Record<string, number> = { 'tfjs-node-gpu': 21, 'tfjs-node': 21, wasm: 9, cpu: 4 };

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

async function main(): Promise<void> {
  const backends = [
    ...(installed('@tensorflow/tfjs-node-gpu') ? ['tfjs-node-gpu'] : []),
    ...(installed('@tensorflow/tfjs-node') ? ['tfjs-node'] : []),
    'wasm',
    'cpu',
  ];
  const loadBefore = loadavg();
  const rows: { backend: string; epochs: number; msPerEpoch: number; epochsPerSecond: number; losses: number[] }[] = [];
  for (const backend of backends) {
    const epochs = Number(process.env['BENCH_EPOCHS'] ?? EPOCHS[backend]);
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ['--import', 'tsx', join(REPO, 'bench', 'train-epochs.ts'), JSON.stringify({ epochs })],
      {
        cwd: REPO,
        env: { ...process.env, MLPIPE_TF_BACKEND: backend },
        maxBuffer: 16 * 2 ** 20,
      },
    );
    const r = JSON.parse(stdout.trim().split('\n').pop()!) as EpochsResult;
    const ms = median(r.msPerEpoch.slice(1));
    rows.push({
      backend: r.backend,
      epochs: r.msPerEpoch.length - 1,
      msPerEpoch: Math.round(ms),
      epochsPerSecond: Number((1000 / ms).toFixed(2)),
      losses: r.losses.map((l) => Number(l.toPrecision(7))),
    });
    console.log(
      `${r.backend}: ${(1000 / ms).toFixed(2)} epochs/s (median ${Math.round(ms)} ms over ${r.msPerEpoch.length - 1} epochs after a warm-up); losses ${r.losses
        .slice(0, 4)
        .map((l) => l.toFixed(6))
        .join(' ')}`,
    );
  }
  const loadAfter = loadavg();
  const slowest = rows.find((r) => r.backend === 'wasm') ?? rows[rows.length - 1]!;
  console.log('\n| backend | epochs/s | ms per epoch (median) | vs wasm |\n|---|---|---|---|');
  for (const r of rows)
    console.log(`| ${r.backend} | ${r.epochsPerSecond} | ${r.msPerEpoch} | ${(slowest.msPerEpoch / r.msPerEpoch).toFixed(1)}x |`);
  console.log(
    `\nload average before ${loadBefore.map((l) => l.toFixed(2)).join(' ')}, after ${loadAfter.map((l) => l.toFixed(2)).join(' ')}; ${cpus().length} cores`,
  );
  const date = new Date().toISOString().slice(0, 10);
  mkdirSync(join(REPO, 'bench', 'results'), { recursive: true });
  writeFileSync(
    join(REPO, 'bench', 'results', `train-${date}.json`),
    `${JSON.stringify({ date: new Date().toISOString(), machine: { cores: cpus().length, cpu: cpus()[0]?.model, memoryGiB: Math.round(totalmem() / 2 ** 30), loadBefore, loadAfter }, model: { features: 13, hidden: [128, 64], batchSize: 512, rows: 20_640 }, results: rows }, null, 2)}\n`,
  );
}

await main();
