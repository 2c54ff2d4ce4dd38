/**
 * The tfjs backend choice (lib/tf.ts) with the real tfjs packages. One process, one
 * tfjs: the tests run in order and build on what the previous one loaded.
 */
import { createRequire } from 'node:module';
import { afterEach, describe, expect, it } from 'vitest';
import { failure } from './step-context.js';
import { envBackend, loadTf } from '../../lib/tf.js';

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

  it('a forced backend that fails to load does not poison the process: the next load works', async () => {
    // The native package is an optional peer that is not installed here.
    expect(() => require.resolve('@tensorflow/tfjs-node')).toThrow();
    const e = await failure(loadTf('tfjs-node'));
    expect(e.code).toBe('STEP_FAILED');
    expect(e.retryable).toBe(false);
    expect(e.message).toMatch(/^No tfjs backend could start \(tfjs-node: .*@tensorflow\/tfjs-node/);
    expect(e.hint).toBe("Unset the step's backend param, or install @tensorflow/tfjs-node.");
    const again = await failure(loadTf('tfjs-node'));
    expect(again.code).toBe('STEP_FAILED');
    const { tf, backend, tried } = await loadTf();
    expect(backend).toBe('wasm');
    expect(tried.map((t) => t.split(':')[0])).toEqual(['tfjs-node-gpu', 'tfjs-node']);
    expect(tf.getBackend()).toBe('wasm');
    expect(Array.from(await tf.add(tf.tensor1d([1, 2]), tf.tensor1d([3, 4])).data())).toEqual([4, 6]);
  });

  it('a step asking for another backend than the loaded one is refused naming both; the same one or auto is served', async () => {
    const first = await loadTf();
    const e = await failure(loadTf('cpu'));
    expect(e.code).toBe('PLUGIN_PARAMS');
    expect(e.retryable).toBe(false);
    expect(e.message).toBe("The step's backend param asks for the tfjs backend 'cpu', but this process runs 'wasm' (tfjs has one backend per process).");
    expect(e.hint).toContain('MLPIPE_TF_BACKEND=cpu');
    expect((await loadTf('wasm')).tf).toBe(first.tf);
    expect(first.tf.getBackend()).toBe('wasm');
  });

  it('MLPIPE_TF_BACKEND and a different step backend conflict clearly', async () => {
    process.env['MLPIPE_TF_BACKEND'] = 'cpu';
    const e = await failure(loadTf('wasm'));
    expect(e.code).toBe('PLUGIN_PARAMS');
    expect(e.message).toBe("The step's backend param asks for the tfjs backend 'wasm', but MLPIPE_TF_BACKEND=cpu fixes this process's backend.");
    // Set after wasm was loaded: the process cannot honour it, and says so.
    const late = await failure(loadTf());
    expect(late.message).toBe("MLPIPE_TF_BACKEND asks for the tfjs backend 'cpu', but this process runs 'wasm' (tfjs has one backend per process).");
  });
});
