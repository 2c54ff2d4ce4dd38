import { realpathSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { PluginCatalog } from '../engine/catalog.js';
import { compilePipeline } from '../engine/compile.js';
import { PipelineError } from '../engine/errors.js';
import { checkOverrides, shown } from '../engine/limits.js';
import type { CompiledPipeline } from '../engine/types.js';
import type { ProjectPipelines } from '../engine/ports.js';
import { fsConfigFiles, gitCommit, readSpecFile, resolveInside, resolvePipelineFile } from './project.js';

/**
 * Reads a pipeline (by name or path) and its conf/ from disk and compiles it. Throws PipelineError (SpecErrors for several problems).
 * The name and the overrides may come from a workflow input: they are checked against the limits,
 * and every path they lead to stays inside the project folder.
 */
export function loadPipeline(projectDir: string, ref: string, catalog: PluginCatalog, overrides: string[] = []): CompiledPipeline {
  if (typeof ref !== 'string' || ref.length === 0)
    throw new PipelineError('INPUT_INVALID', 'The pipeline must be a name or a path (a non-empty string).');
  if (!Array.isArray(overrides)) throw new PipelineError('INPUT_INVALID', 'The overrides must be a list of strings.');
  checkOverrides(overrides);
  const path = resolvePipelineFile(projectDir, ref);
  const rel = relative(realpathSync(projectDir), path);
  const file = rel.startsWith('..') ? path : rel;
  return compilePipeline({
    file,
    text: readSpecFile(path, file),
    conf: fsConfigFiles(join(projectDir, 'conf'), projectDir),
    catalog,
    overrides,
    confinePath: (value, what) => void localPath(projectDir, value, what),
  });
}

/**
 * The real path of a local file named by a value from a run's input, inside the project folder;
 * undefined for a URL that is not a local file (http://, gs://).
 */
export function localPath(projectDir: string, value: string, what: string): string | undefined {
  let path = value;
  if (/^file:/i.test(value)) {
    try {
      path = fileURLToPath(value);
    } catch (e) {
      throw new PipelineError('INPUT_INVALID', `${what}: '${shown(value)}' is not a usable file URL (${(e as Error).message}).`);
    }
  } else if (/^[a-z][a-z0-9+.-]*:\/\//i.test(value)) return undefined;
  return resolveInside(projectDir, path, what);
}

/** The project port the activities use (engine/ports.ts), for the project in `projectDir`. */
export function projectPipelines(projectDir: string, catalog: PluginCatalog): ProjectPipelines {
  return {
    dir: projectDir,
    compile: (ref, overrides = []) => loadPipeline(projectDir, ref, catalog, overrides),
    localPath: (value, what) => localPath(projectDir, value, what),
    gitCommit: () => gitCommit(projectDir),
  };
}
