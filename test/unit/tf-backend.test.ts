/**
 * The tfjs backend choice (lib/tf.ts) with the real tfjs packages. One process, one
 * tfjs: the tests run in order and build on what the previous one loaded. `npm test` provisions
 * @tensorflow/tfjs-node (deploy/provision.sh --with-tfjs-node): a machine without it fails here.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { failure } from './step-context.js';
import { REPO_ROOT } from './paths.js';
import { envBackend, gpuVisible, loadTf, nativeThreadEnv } from '../../lib/tf.js';

const require = createRequire(import.meta.url);

describe('tfjs backend choice', () => {
  afterEach(() => {
    delete process.env['MLPIPE_TF_BACKEND'];
  });

  it('refuses an MLPIPE_TF_BACKEND that is not a backend, before loading anything', async () => {
    process.env['MLPIPE_TF_BACKEND'] = 'gpu-please';
    const e = await failure(loadTf());
    expect(e.code).toBe('INPUT_INVALID');
    expect(e.retryable).toBe(false);
    expect(e.message).toBe("MLPIPE_TF_BACKEND='gpu-please' is not a tfjs backend.");
    expect(e.hint).toBe('Set it to one of auto, tfjs-node-gpu, tfjs-node, wasm, cpu, or unset it.');
    expect(envBackend({ MLPIPE_TF_BACKEND: ' auto ' })).toBeUndefined();
    expect(envBackend({ MLPIPE_TF_BACKEND: 'cpu' })).toBe('cpu');
  });

  it('runs TensorFlow ops on one intra-op thread on 2 cores or fewer, unless the environment says otherwise', () => {
    expect(nativeThreadEnv({}, 1)).toEqual({ TF_NUM_INTRAOP_THREADS: '1' });
    expect(nativeThreadEnv({}, 2)).toEqual({ TF_NUM_INTRAOP_THREADS: '1' });
    expect(nativeThreadEnv({}, 4)).toEqual({});
    expect(nativeThreadEnv({ TF_NUM_INTRAOP_THREADS: '2' }, 2)).toEqual({});
    expect(nativeThreadEnv({ TF_NUM_INTRAOP_THREADS: '' }, 2)).toEqual({});
  });

  it('sees a GPU only where the driver lists one and CUDA_VISIBLE_DEVICES does not hide it', () => {
    const none = mkdtempSync(join(tmpdir(), 'mlpipe-gpus-'));
    const one = mkdtempSync(join(tmpdir(), 'mlpipe-gpus-'));
    mkdirSync(join(one, '0000:00:1e.0'));
    expect(gpuVisible({}, join(none, 'missing'))).toBe(false);
    expect(gpuVisible({}, none)).toBe(false);
    expect(gpuVisible({}, one)).toBe(true);
    expect(gpuVisible({ CUDA_VISIBLE_DEVICES: '' }, one)).toBe(false);
    expect(gpuVisible({ CUDA_VISIBLE_DEVICES: '-1' }, one)).toBe(false);
    expect(gpuVisible({ CUDA_VISIBLE_DEVICES: '0' }, one)).toBe(true);
  });

  it('a forced backend that fails to load does not poison the process: the next load is native TensorFlow', async () => {
    // tfjs-node-gpu is not a dependency (GPU workers install it); tfjs-node is provisioned.
    expect(() => require.resolve('@tensorflow/tfjs-node-gpu')).toThrow();
    expect(() => require.resolve('@tensorflow/tfjs-node')).not.toThrow();
    const e = await failure(loadTf('tfjs-node-gpu'));
    expect(e.code).toBe('STEP_FAILED');
    expect(e.retryable).toBe(false);
    expect(e.message).toMatch(/^No tfjs backend could start \(tfjs-node-gpu: (no NVIDIA GPU is visible|.*@tensorflow\/tfjs-node-gpu)/);
    expect(e.hint).toBe("Unset the step's backend param, or build the backend: bash deploy/provision.sh --with-tfjs-node-gpu.");
    const again = await failure(loadTf('tfjs-node-gpu'));
    expect(again.code).toBe('STEP_FAILED');
    const { tf, backend, tried } = await loadTf();
    expect(backend).toBe('tfjs-node');
    expect(tried.map((t) => t.split(':')[0])).toEqual(['tfjs-node-gpu']);
    expect(tf.getBackend()).toBe('tensorflow');
    expect(Array.from(await tf.add(tf.tensor1d([1, 2]), tf.tensor1d([3, 4])).data())).toEqual([4, 6]);
  });

  it('a step asking for another backend than the loaded one is refused naming both; the same one or auto is served', async () => {
    const first = await loadTf();
    const e = await failure(loadTf('cpu'));
    expect(e.code).toBe('PLUGIN_PARAMS');
    expect(e.retryable).toBe(false);
    expect(e.message).toBe(
      "The step's backend param asks for the tfjs backend 'cpu', but this process runs 'tfjs-node' (tfjs has one backend per process).",
    );
    expect(e.hint).toContain('MLPIPE_TF_BACKEND=cpu');
    expect((await loadTf('tfjs-node')).tf).toBe(first.tf);
    expect(first.tf.getBackend()).toBe('tensorflow');
  });

  it('MLPIPE_TF_BACKEND and a different step backend conflict clearly', async () => {
    process.env['MLPIPE_TF_BACKEND'] = 'cpu';
    const e = await failure(loadTf('wasm'));
    expect(e.code).toBe('PLUGIN_PARAMS');
    expect(e.message).toBe(
      "The step's backend param asks for the tfjs backend 'wasm', but MLPIPE_TF_BACKEND=cpu fixes this process's backend.",
    );
    // Set after tfjs-node was loaded: the process cannot honour it, and says so.
    const late = await failure(loadTf());
    expect(late.message).toBe(
      "MLPIPE_TF_BACKEND asks for the tfjs backend 'cpu', but this process runs 'tfjs-node' (tfjs has one backend per process).",
    );
  });

  // One process per backend (tfjs has one backend per process): what a worker started with
  // MLPIPE_TF_BACKEND=<name> gets, and what it prints.
  const probe = join(mkdtempSync(join(tmpdir(), 'mlpipe-tf-probe-')), 'probe.mts');
  writeFileSync(
    probe,
    [
      `import { loadTf } from ${JSON.stringify(join(REPO_ROOT, 'lib', 'tf.ts'))};`,
      'const { tf, backend } = await loadTf();',
      'const m = tf.sequential({ layers: [tf.layers.dense({ units: 2, inputShape: [3], kernelInitializer: tf.initializers.glorotUniform({ seed: 1 }) })] });',
      'const out = Array.from(await (m.predict(tf.ones([1, 3])) as import("@tensorflow/tfjs").Tensor).data());',
      'console.log(JSON.stringify({ backend, active: tf.getBackend(), out }));',
    ].join('\n'),
  );
  for (const name of ['tfjs-node', 'wasm', 'cpu'] as const) {
    it(`MLPIPE_TF_BACKEND=${name}: that backend runs, and neither tfjs's banner nor TensorFlow's start-up lines are printed`, async () => {
      const { stdout, stderr } = await promisify(execFile)(process.execPath, ['--import', 'tsx', probe], {
        cwd: REPO_ROOT,
        env: { ...process.env, MLPIPE_TF_BACKEND: name },
      });
      const got = JSON.parse(stdout.trim().split('\n').pop()!) as { backend: string; active: string; out: number[] };
      expect(got.backend).toBe(name);
      expect(got.active).toBe(name === 'tfjs-node' ? 'tensorflow' : name);
      expect(got.out).toHaveLength(2);
      expect(stdout + stderr).not.toMatch(/install our node backend|oneDNN|cpu_feature_guard/);
    });
  }
});
