/**
 * Backend parity: the first epochs of the housing MLP (bench/train-epochs.ts) from the same seeded
 * initial weights on every installed backend, each in its own process, give the same losses within
 * float32 tolerance. tfjs-node is provisioned by `npm test`; tfjs-node-gpu joins in where it is installed.
 *
 * Tolerance: float32 has a 2^-24 (6e-8) relative rounding step; the backends sum in different orders
 * (TensorFlow's oneDNN kernels, XNNPACK in wasm, plain JS loops), so the untrained model's first-batch
 * loss may differ by a few steps (bound 1e-6) and an epoch's mean loss after up to 32 Adam steps by
 * more (bound 1e-5).
 * Over hundreds of steps the differences grow to about 1e-2 (docs/benchmarks.md), so longer runs
 * are compared by their test metrics, not bit for bit.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import type { EpochsResult } from '../../bench/train-epochs.js';
import { REPO_ROOT } from './paths.js';
import { isInstalled as installed } from '../../adapters/optional.js';

export const FIRST_BATCH_RTOL = 1e-6;
export const EPOCH_LOSS_RTOL = 1e-5;

async function epochOn(backend: string): Promise<EpochsResult> {
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ['--import', 'tsx', join(REPO_ROOT, 'bench', 'train-epochs.ts'), JSON.stringify({ rows: 8192, epochs: 2 })],
    {
      cwd: REPO_ROOT,
      env: { ...process.env, MLPIPE_TF_BACKEND: backend },
    },
  );
  return JSON.parse(stdout.trim().split('\n').pop()!) as EpochsResult;
}

const rel = (a: number, b: number): number => Math.abs(a - b) / Math.abs(b);

describe('backend parity', () => {
  it('two epochs from the same initial weights give the same losses on every installed backend', async () => {
    // Required, not skipped: provisioning installs it, so its absence is a failure.
    expect(installed('@tensorflow/tfjs-node')).toBe(true);
    const backends = [...(installed('@tensorflow/tfjs-node-gpu') ? ['tfjs-node-gpu'] : []), 'tfjs-node', 'wasm', 'cpu'];
    const runs: EpochsResult[] = [];
    for (const b of backends) runs.push(await epochOn(b));
    expect(runs.map((r) => r.backend)).toEqual(backends);
    const ref = runs.find((r) => r.backend === 'cpu')!;
    expect(ref.rows).toBe(8192);
    expect(ref.losses).toHaveLength(2);
    // Training happened: the second epoch's mean loss is well below the first's.
    expect(ref.losses[1]!).toBeLessThan(ref.losses[0]! * 0.9);
    const report: string[] = [];
    for (const r of runs) {
      expect(r.initialWeightsSha256, r.backend).toBe(ref.initialWeightsSha256);
      expect(rel(r.firstBatchLoss, ref.firstBatchLoss), `${r.backend} first batch`).toBeLessThanOrEqual(FIRST_BATCH_RTOL);
      r.losses.forEach((loss, e) => expect(rel(loss, ref.losses[e]!), `${r.backend} epoch ${e + 1}`).toBeLessThanOrEqual(EPOCH_LOSS_RTOL));
      report.push(
        `${r.backend} ${r.losses.map((l) => l.toPrecision(9)).join(', ')} (max rel ${Math.max(...r.losses.map((l, e) => rel(l, ref.losses[e]!))).toExponential(1)}; first batch rel ${rel(r.firstBatchLoss, ref.firstBatchLoss).toExponential(1)})`,
      );
    }
    console.info(`backend parity, epoch losses vs cpu: ${report.join('; ')}`);
  }, 120_000);
});
