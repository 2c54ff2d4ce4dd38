import { existsSync, realpathSync, statSync } from 'node:fs';
import { isAbsolute, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { PluginCatalog } from '../engine/catalog.js';
import { compilePipeline } from '../engine/compile.js';
import type { ConfigFiles } from '../engine/config.js';
import type { SubmittedPipeline } from '../engine/contracts.js';
import { PipelineError } from '../engine/errors.js';
import { checkOverrides, decodeUtf8, shown } from '../engine/limits.js';
import { checkSubmittedPipeline, checkSubmittedPlugins } from '../engine/submitted.js';
import type { CompiledPipeline } from '../engine/types.js';
import type { ProjectPipelines } from '../engine/ports.js';
import { fsConfigFiles, gitCommit, readSpecFile, resolveInside, resolvePipelineFile } from './project.js';

/**
 * Reads a pipeline (by name or path) and its conf/ from disk and compiles it. Throws PipelineError (SpecErrors for several problems).
 * The name and the overrides may come from a workflow input: they are checked against the limits,
 * and every path they lead to stays inside the project folder.
 */
export function loadPipeline(projectDir: string, ref: string, catalog: PluginCatalog, overrides: string[] = []): CompiledPipeline {
  return loadPipelineSource(projectDir, ref, catalog, overrides).compiled;
}

/** What a client sends with a run: the compiled pipeline, and the spec and config files it was compiled from. */
export interface PipelineSource {
  compiled: CompiledPipeline;
  /** The spec's path as shown (relative to the project when inside it). */
  file: string;
  text: string;
  /** The config files the compile read: path relative to conf/ -> text. */
  conf: Record<string, string>;
}

/** loadPipeline, keeping the spec's text and the config files it read. */
export function loadPipelineSource(projectDir: string, ref: string, catalog: PluginCatalog, overrides: string[] = []): PipelineSource {
  if (typeof ref !== 'string' || ref.length === 0)
    throw new PipelineError('INPUT_INVALID', 'The pipeline must be a name or a path (a non-empty string).');
  if (!Array.isArray(overrides)) throw new PipelineError('INPUT_INVALID', 'The overrides must be a list of strings.');
  checkOverrides(overrides);
  const path = resolvePipelineFile(projectDir, ref);
  const rel = relative(realpathSync(projectDir), path);
  const file = rel.startsWith('..') ? path : rel;
  const text = readSpecFile(path, file);
  const disk = fsConfigFiles(join(projectDir, 'conf'), projectDir);
  const conf: Record<string, string> = {};
  const compiled = compilePipeline({
    file,
    text,
    conf: {
      read(relPath) {
        const f = disk.read(relPath);
        if (f) conf[relPath] = f.text;
        return f;
      },
      list: (relDir) => disk.list(relDir),
    },
    catalog,
    overrides,
    confinePath: (value, what) => void localPath(projectDir, value, what),
  });
  return { compiled, file, text, conf };
}

/** Config files that came with a submitted pipeline: a map, never the disk. */
export function submittedConfigFiles(conf: Record<string, string>): ConfigFiles {
  return {
    read: (relPath) => (Object.hasOwn(conf, relPath) ? { file: `conf/${relPath}`, text: conf[relPath]! } : undefined),
    list(relDir) {
      const prefix = relDir === '' || relDir === '.' ? '' : `${relDir.replace(/\/+$/, '')}/`;
      const names = new Set<string>();
      for (const key of Object.keys(conf)) if (key.startsWith(prefix)) names.add(key.slice(prefix.length).split('/')[0]!);
      return [...names].sort();
    },
  };
}

export interface SubmittedOptions {
  /** The worker trusts submitted pipelines: their code-running steps may run. */
  trusted: boolean;
  /** The worker's task queue, for messages. */
  taskQueue: string;
}

/**
 * Compiles a pipeline that came with the run (engine/submitted.ts). When the worker's project has
 * the same file with the same text, the pipeline is the worker's own: it compiles as a run by name
 * (its conf/, its files, trusted). Otherwise it compiles from the input alone, with the worker's
 * plugins, and is checked as untrusted.
 */
export function compileSubmittedPipeline(
  projectDir: string,
  submitted: SubmittedPipeline,
  catalog: PluginCatalog,
  overrides: string[],
  options: SubmittedOptions,
): CompiledPipeline {
  checkOverrides(overrides);
  checkSubmittedPlugins(submitted.plugins ?? {}, catalog, options.taskQueue);
  if (isOwnPipeline(projectDir, submitted)) return loadPipeline(projectDir, submitted.file, catalog, overrides);
  const files = submitted.files ?? {};
  const compiled = compilePipeline({
    file: submitted.file,
    text: decodeUtf8(submitted.file, new TextEncoder().encode(submitted.text)),
    conf: submittedConfigFiles(submitted.conf ?? {}),
    catalog,
    overrides,
    confinePath: (value, what) => {
      if (!Object.hasOwn(files, value)) localPath(projectDir, value, what);
    },
  });
  return checkSubmittedPipeline(compiled, {
    catalog,
    trusted: options.trusted,
    taskQueue: options.taskQueue,
    files,
    confine: (value, what) => void localPath(projectDir, value, what),
  });
}

/** The worker's project has the submitted spec's file (inside it) with exactly this text. */
function isOwnPipeline(projectDir: string, submitted: SubmittedPipeline): boolean {
  if (!/\.ya?ml$/.test(submitted.file) || isAbsolute(submitted.file)) return false;
  try {
    const path = resolveInside(projectDir, submitted.file, 'Pipeline');
    return existsSync(path) && statSync(path).isFile() && readSpecFile(path, submitted.file) === submitted.text;
  } catch {
    return false;
  }
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
export function projectPipelines(projectDir: string, catalog: PluginCatalog, options: { trustSubmitted?: boolean } = {}): ProjectPipelines {
  return {
    dir: projectDir,
    compile: (ref, overrides = []) => loadPipeline(projectDir, ref, catalog, overrides),
    compileSubmitted: (submitted, overrides, taskQueue) =>
      compileSubmittedPipeline(projectDir, submitted, catalog, overrides, { trusted: options.trustSubmitted === true, taskQueue }),
    localPath: (value, what) => localPath(projectDir, value, what),
    gitCommit: () => gitCommit(projectDir),
  };
}
