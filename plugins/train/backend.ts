/**
 * The tfjs backend for training and prediction, chosen once per process:
 * `@tensorflow/tfjs-node-gpu` when installed, else `@tensorflow/tfjs-node`, else the wasm backend of
 * `@tensorflow/tfjs`, else its pure-JS cpu backend. `MLPIPE_TF_BACKEND` or a step's `backend`
 * param forces one. The native packages are optional peers: they cannot be installed everywhere.
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { PipelineError } from '../../engine/errors.js';

export type BackendName = 'tfjs-node-gpu' | 'tfjs-node' | 'wasm' | 'cpu';
export const BACKENDS: BackendName[] = ['tfjs-node-gpu', 'tfjs-node', 'wasm', 'cpu'];

export type Tf = typeof import('@tensorflow/tfjs');

const require = createRequire(import.meta.url);
let chosen: Promise<{ tf: Tf; backend: BackendName; tried: string[] }> | undefined;

async function tryBackend(name: BackendName): Promise<Tf> {
  if (name === 'tfjs-node-gpu' || name === 'tfjs-node') {
    // Importing a native package registers the 'tensorflow' backend on its own tfjs copy.
    const tf = (await import(`@tensorflow/${name}`)) as Tf;
    await tf.setBackend('tensorflow');
    await tf.ready();
    return tf;
  }
  const tf = await import('@tensorflow/tfjs');
  if (name === 'wasm') {
    const wasm = await import('@tensorflow/tfjs-backend-wasm');
    const dist = join(dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json')), 'dist');
    wasm.setWasmPaths(`${dist}/`);
    if (!(await tf.setBackend('wasm'))) throw new Error('wasm backend refused to start');
  } else {
    await tf.setBackend('cpu');
  }
  await tf.ready();
  return tf;
}

/** The first backend that works, in preference order, or the one asked for. */
export function loadTf(prefer: BackendName | 'auto' = 'auto'): Promise<{ tf: Tf; backend: BackendName; tried: string[] }> {
  const forced = (process.env['MLPIPE_TF_BACKEND'] as BackendName | undefined) ?? (prefer === 'auto' ? undefined : prefer);
  chosen ??= (async () => {
    const tried: string[] = [];
    for (const name of forced ? [forced] : BACKENDS) {
      try {
        return { tf: await tryBackend(name), backend: name, tried };
      } catch (e) {
        tried.push(`${name}: ${(e as Error).message.split('\n')[0]}`);
      }
    }
    throw new PipelineError('STEP_FAILED', `No tfjs backend could start (${tried.join('; ')}).`, {
      retryable: false,
      hint: forced ? `Unset MLPIPE_TF_BACKEND or the step's backend param, or install @tensorflow/${forced}.` : 'Reinstall the npm dependencies.',
    });
  })();
  return chosen;
}
