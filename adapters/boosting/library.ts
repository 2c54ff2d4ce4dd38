/**
 * Where the XGBoost and LightGBM shared libraries come from, and loading them with koffi (FFI).
 * Default: the provisioning cache (`deploy/provision.sh --with-boosting` unpacks the PyPI wheels
 * `xgboost-cpu` and `lightgbm` there); MLPIPE_XGBOOST_LIB / MLPIPE_LIGHTGBM_LIB name another file
 * (e.g. libxgboost.so of the CUDA wheel `xgboost-cu12`). A missing library is TOOL_MISSING.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import koffi, { type LibraryHandle } from 'koffi';
import { PipelineError } from '../../engine/errors.js';
import { mlpipeCacheDir } from '../../engine/cache-dir.js';

/** The wheel versions provisioning unpacks (also pinned in deploy/provision.sh). */
export const XGBOOST_VERSION = '3.2.0';
export const LIGHTGBM_VERSION = '4.7.0';

export type LibraryName = 'xgboost' | 'lightgbm';

const ENV: Record<LibraryName, string> = { xgboost: 'MLPIPE_XGBOOST_LIB', lightgbm: 'MLPIPE_LIGHTGBM_LIB' };
const FILE: Record<LibraryName, string> = { xgboost: 'xgboost/lib/libxgboost.so', lightgbm: 'lightgbm/lib/lib_lightgbm.so' };

export function boostingCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return join(mlpipeCacheDir(env), `boosting-xgboost-${XGBOOST_VERSION}-lightgbm-${LIGHTGBM_VERSION}`);
}

/** The shared library's path: the override variable, else the provisioning cache. Throws TOOL_MISSING when the file is not there. */
export function libraryPath(name: LibraryName, env: NodeJS.ProcessEnv = process.env): string {
  const override = env[ENV[name]];
  const path = override || join(boostingCacheDir(env), FILE[name]);
  if (!existsSync(path)) {
    throw new PipelineError(
      'TOOL_MISSING',
      override
        ? `${ENV[name]}=${override}: no such file (the ${name} shared library).`
        : `The ${name} shared library is not installed (looked for ${path}).`,
      {
        hint: override
          ? `Point ${ENV[name]} at the library file, or unset it to use the provisioned one (bash deploy/provision.sh --with-boosting).`
          : `Install it: bash deploy/provision.sh --with-boosting (or npm run setup -- --with-boosting), or set ${ENV[name]}=/path/to/${FILE[name].split('/').pop()}.`,
        retryable: false,
      },
    );
  }
  return path;
}

const loaded = new Map<string, LibraryHandle>();

/** Loads the library once per path. A file that is not a loadable library is TOOL_MISSING too. */
export function loadLibrary(name: LibraryName, env: NodeJS.ProcessEnv = process.env): { lib: LibraryHandle; path: string } {
  const path = libraryPath(name, env);
  let lib = loaded.get(path);
  if (!lib) {
    try {
      lib = koffi.load(path);
    } catch (e) {
      throw new PipelineError('TOOL_MISSING', `The ${name} shared library at ${path} does not load: ${(e as Error).message}`, {
        hint: `Reinstall it (rm -rf ${boostingCacheDir(env)} && bash deploy/provision.sh --with-boosting), or fix ${ENV[name]}.`,
        retryable: false,
        cause: e,
      });
    }
    loaded.set(path, lib);
  }
  return { lib, path };
}

/** The bytes at a native pointer, copied into a Buffer. */
export function copyBytes(ptr: unknown, length: number): Buffer {
  if (length === 0) return Buffer.alloc(0);
  return Buffer.from(new Uint8Array(koffi.view(ptr, length)));
}

export { koffi };
