/**
 * The tfjs backend for training and prediction, chosen once per process:
 * `@tensorflow/tfjs-node-gpu` when it loads and a GPU is visible, else `@tensorflow/tfjs-node`
 * (native TensorFlow; `provision.sh --with-tfjs-node` builds it), else the wasm backend
 * (`@tensorflow/tfjs-backend-wasm`), else the pure-JS cpu backend (`@tensorflow/tfjs-backend-cpu`),
 * all over `@tensorflow/tfjs-core` and `@tensorflow/tfjs-layers` (not the `@tensorflow/tfjs` umbrella,
 * which also brings webgl, the converter and tfjs-data). `MLPIPE_TF_BACKEND` (the process's choice) or a
 * step's `backend` param forces one. tfjs has one global backend per process, shared by steps that
 * run at the same time, so it is not switched under them: a step asking for another backend than
 * the one loaded (or than MLPIPE_TF_BACKEND) fails, non-retryable, naming both. A forced backend
 * that fails to load leaves nothing behind: the next load tries again. The native packages are
 * optional: they cannot be installed everywhere. tfjs's "install our node backend" banner and
 * TensorFlow's informational start-up lines are silenced: the chosen backend is logged instead.
 */
import { existsSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { PipelineError } from '../engine/errors.js';

export type BackendName = 'tfjs-node-gpu' | 'tfjs-node' | 'wasm' | 'cpu';
export const BACKENDS: BackendName[] = ['tfjs-node-gpu', 'tfjs-node', 'wasm', 'cpu'];

/** What the steps use of tfjs: the core (tensors, ops, io, optimizers) and the layers API. */
export type Tf = typeof import('@tensorflow/tfjs-core') & typeof import('@tensorflow/tfjs-layers');

const require = createRequire(import.meta.url);

export interface LoadedTf {
  tf: Tf;
  backend: BackendName;
  /** Backends tried before it, with why they failed. */
  tried: string[];
}

/** The load in progress or done, and what it was asked for (undefined: the first that works). */
let current: { want?: BackendName; load: Promise<LoadedTf> } | undefined;

/**
 * Whether an NVIDIA GPU is visible to this process: the driver lists one and CUDA_VISIBLE_DEVICES
 * does not hide them all. Without one, tfjs-node-gpu would silently run TensorFlow on the CPU.
 */
export function gpuVisible(env: NodeJS.ProcessEnv = process.env, gpusDir = '/proc/driver/nvidia/gpus'): boolean {
  const only = env['CUDA_VISIBLE_DEVICES']?.trim();
  if (only !== undefined && (only === '' || only.startsWith('-1'))) return false;
  try {
    return existsSync(gpusDir) && readdirSync(gpusDir).length > 0;
  } catch {
    return false;
  }
}

/**
 * TensorFlow's thread settings for this process, read once when tfjs-node loads: on a machine of
 * 2 cores or fewer, one intra-op thread (TF_NUM_INTRAOP_THREADS=1) unless the environment sets it.
 * There the op's own pool competes with its caller, DuckDB, the worker and a second trial for the
 * same cores: 12 housing trials at parallel 2 took 9 to 22% less time with it in 4 of 5 pairs of
 * runs, with the same results (docs/benchmarks.md). On more cores TensorFlow's default (one thread
 * per core) stays.
 */
export function nativeThreadEnv(env: NodeJS.ProcessEnv = process.env, cores = availableParallelism()): Record<string, string> {
  return cores <= 2 && env['TF_NUM_INTRAOP_THREADS'] === undefined ? { TF_NUM_INTRAOP_THREADS: '1' } : {};
}

async function tryBackend(name: BackendName): Promise<Tf> {
  if (name === 'tfjs-node-gpu' || name === 'tfjs-node') {
    if (name === 'tfjs-node-gpu' && !gpuVisible())
      throw new Error('no NVIDIA GPU is visible (/proc/driver/nvidia/gpus is empty or CUDA_VISIBLE_DEVICES hides it)');
    // TensorFlow's informational start-up lines (oneDNN, CPU instructions) are noise to users.
    process.env['TF_CPP_MIN_LOG_LEVEL'] ??= '1';
    Object.assign(process.env, nativeThreadEnv());
    // Importing a native package registers the 'tensorflow' backend on its own tfjs copy.
    const tf = (await import(`@tensorflow/${name}`)) as Tf;
    await tf.setBackend('tensorflow');
    await tf.ready();
    return tf;
  }
  const [core, layers] = await Promise.all([
    import('@tensorflow/tfjs-core'),
    import('@tensorflow/tfjs-layers'),
    import('@tensorflow/tfjs-backend-cpu'),
  ]);
  const tf: Tf = { ...core, ...layers };
  if (name === 'wasm') {
    const wasm = await import('@tensorflow/tfjs-backend-wasm');
    const dist = join(dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json')), 'dist');
    wasm.setWasmPaths(`${dist}/`);
    if (!(await tf.setBackend('wasm'))) throw new Error('wasm backend refused to start');
  } else {
    await tf.setBackend('cpu');
    // The cpu backend prints "install our node backend" on its first tensor; we choose backends here.
    const cpu = tf.backend() as { firstUse?: boolean };
    if (cpu.firstUse !== undefined) cpu.firstUse = false;
  }
  await tf.ready();
  return tf;
}

/** MLPIPE_TF_BACKEND, checked: a backend name, or undefined for unset / `auto`. */
export function envBackend(env: NodeJS.ProcessEnv = process.env): BackendName | undefined {
  const raw = env['MLPIPE_TF_BACKEND']?.trim();
  if (!raw || raw === 'auto') return undefined;
  if (!(BACKENDS as string[]).includes(raw)) {
    throw new PipelineError('INPUT_INVALID', `MLPIPE_TF_BACKEND='${raw.slice(0, 40)}' is not a tfjs backend.`, {
      hint: `Set it to one of auto, ${BACKENDS.join(', ')}, or unset it.`,
    });
  }
  return raw as BackendName;
}

async function load(want: BackendName | undefined, source: string): Promise<LoadedTf> {
  const tried: string[] = [];
  for (const name of want ? [want] : BACKENDS) {
    try {
      return { tf: await tryBackend(name), backend: name, tried };
    } catch (e) {
      tried.push(`${name}: ${(e as Error).message.split('\n')[0]}`);
    }
  }
  throw new PipelineError('STEP_FAILED', `No tfjs backend could start (${tried.join('; ')}).`, {
    retryable: false,
    hint: want
      ? want === 'tfjs-node' || want === 'tfjs-node-gpu'
        ? `Unset ${source}, or build the backend: bash deploy/provision.sh --with-${want}.`
        : `Unset ${source}, or reinstall the npm dependencies.`
      : 'Reinstall the npm dependencies.',
  });
}

function conflict(loaded: BackendName, asked: BackendName, by: string): PipelineError {
  return new PipelineError(
    'PLUGIN_PARAMS',
    `${by} asks for the tfjs backend '${asked}', but this process runs '${loaded}' (tfjs has one backend per process).`,
    {
      hint: `Use backend: ${loaded} or auto in every step this worker runs, or run this step on a worker started with MLPIPE_TF_BACKEND=${asked}.`,
    },
  );
}

/** The first backend that works, in preference order, or the one asked for (see the module comment). */
export async function loadTf(prefer: BackendName | 'auto' = 'auto'): Promise<LoadedTf> {
  const env = envBackend();
  const asked = prefer === 'auto' ? undefined : prefer;
  if (env && asked && asked !== env) {
    throw new PipelineError(
      'PLUGIN_PARAMS',
      `The step's backend param asks for the tfjs backend '${asked}', but MLPIPE_TF_BACKEND=${env} fixes this process's backend.`,
      {
        hint: `Use backend: ${env} or auto, or run this step on a worker started with MLPIPE_TF_BACKEND=${asked} (or without it).`,
      },
    );
  }
  const want = asked ?? env;
  const source = asked ? "the step's backend param" : 'MLPIPE_TF_BACKEND';
  for (;;) {
    if (!current) {
      const attempt = { want, load: load(want, source) };
      current = attempt;
      // A failed load is forgotten, so the next call tries again instead of failing forever.
      attempt.load.catch(() => {
        if (current === attempt) current = undefined;
      });
    }
    const pending = current;
    let got: LoadedTf;
    try {
      got = await pending.load;
    } catch (e) {
      if (current === pending) current = undefined;
      // Another caller's forced backend failed: that says nothing about this request.
      if (pending.want !== want) continue;
      throw e;
    }
    if (want && got.backend !== want) throw conflict(got.backend, want, asked ? "The step's backend param" : 'MLPIPE_TF_BACKEND');
    return got;
  }
}
