/**
 * Optional packages: the parts of mlpipe a project may not use (Google Cloud Storage, Vertex AI,
 * onnxruntime) are optional peer dependencies, loaded when first needed. A missing one fails with
 * TOOL_MISSING (non-retryable: another attempt on the same worker cannot install it), naming the
 * package, what needs it and the command that installs it.
 */
import { createRequire } from 'node:module';
import { PipelineError } from '../engine/errors.js';

const require = createRequire(import.meta.url);

function isMissing(e: unknown, pkg: string): boolean {
  const code = (e as { code?: unknown } | undefined)?.code;
  const message = e instanceof Error ? e.message : String(e);
  return (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') && message.includes(pkg);
}

export function missingPackage(pkg: string, usedFor: string, cause?: unknown): PipelineError {
  return new PipelineError('TOOL_MISSING', `${usedFor} needs the npm package '${pkg}', which is not installed.`, {
    hint: `Install it next to mlpipe on every worker that needs it: npm install ${pkg}`,
    retryable: false,
    cause,
  });
}

/** Whether `pkg` can be resolved from mlpipe (installed next to it). */
export function isInstalled(pkg: string): boolean {
  try {
    require.resolve(`${pkg}/package.json`);
    return true;
  } catch {
    return false;
  }
}

/** `await import(...)` of an optional package (or of a module that imports it). */
export async function importOptional<T>(pkg: string, usedFor: string, load: () => Promise<T>): Promise<T> {
  try {
    return await load();
  } catch (e) {
    if (isMissing(e, pkg)) throw missingPackage(pkg, usedFor, e);
    throw e;
  }
}

/** Synchronous `require` of an optional CommonJS package, for code that cannot wait. */
export function requireOptional<T>(pkg: string, usedFor: string): T {
  try {
    return require(pkg) as T;
  } catch (e) {
    if (isMissing(e, pkg)) throw missingPackage(pkg, usedFor, e);
    throw e;
  }
}
