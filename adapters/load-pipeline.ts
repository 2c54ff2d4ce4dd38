import { readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import type { PluginCatalog } from '../engine/catalog.js';
import { compilePipeline } from '../engine/compile.js';
import type { CompiledPipeline } from '../engine/types.js';
import { fsConfigFiles, resolvePipelineFile } from './project.js';

/** Reads a pipeline (by name or path) and its conf/ from disk and compiles it. Throws SpecError(s). */
export function loadPipeline(projectDir: string, ref: string, catalog: PluginCatalog, overrides: string[] = []): CompiledPipeline {
  const path = resolvePipelineFile(projectDir, ref);
  const file = relative(projectDir, path).startsWith('..') ? path : relative(projectDir, path);
  return compilePipeline({
    file,
    text: readFileSync(path, 'utf8'),
    conf: fsConfigFiles(join(projectDir, 'conf'), projectDir),
    catalog,
    overrides,
  });
}
