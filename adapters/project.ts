/**
 * Where a project's files and state live, and the settings read from the environment. One place for
 * every MLPIPE_* / TEMPORAL_* variable.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { isAbsolute, join, relative, resolve } from 'node:path';
import type { ConfigFiles } from '../engine/config.js';
import { SpecError } from '../engine/errors.js';
import { didYouMean } from '../engine/suggest.js';

export interface Settings {
  /** Project folder: pipelines/, conf/ and relative paths are read from here. */
  projectDir: string;
  /** Local state (dev server database, artifacts, logs): MLPIPE_HOME, default <project>/.mlpipe. */
  stateDir: string;
  /** Artifact store: MLPIPE_ARTIFACTS, a folder (default <state>/artifacts) or gs://bucket/prefix. */
  artifactsDir: string;
  /** Cache for slow builds shared across checkouts: MLPIPE_CACHE_DIR, default ~/.cache/mlpipe. */
  cacheDir: string;
  temporalAddress: string;
  namespace: string;
  taskQueue: string;
  /**
   * MLflow tracking: MLFLOW_TRACKING_URI (http(s)://... or file:...), default MLflow's file store in
   * <project>/mlruns; undefined when MLPIPE_TRACKING=off.
   */
  trackingUri?: string;
  /** MLFLOW_EXPERIMENT_NAME: the experiment for pipelines whose spec names none. */
  experimentName?: string;
}

export function loadSettings(env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): Settings {
  const projectDir = resolve(env['MLPIPE_PROJECT_DIR'] ?? cwd);
  const stateDir = resolve(projectDir, env['MLPIPE_HOME'] ?? '.mlpipe');
  return {
    projectDir,
    stateDir,
    artifactsDir: env['MLPIPE_ARTIFACTS']?.startsWith('gs://') ? env['MLPIPE_ARTIFACTS'] : resolve(projectDir, env['MLPIPE_ARTIFACTS'] ?? join(stateDir, 'artifacts')),
    cacheDir: resolve(env['MLPIPE_CACHE_DIR'] ?? join(env['XDG_CACHE_HOME'] ?? join(homedir(), '.cache'), 'mlpipe')),
    temporalAddress: env['TEMPORAL_ADDRESS'] ?? 'localhost:7233',
    namespace: env['TEMPORAL_NAMESPACE'] ?? 'default',
    taskQueue: env['MLPIPE_TASK_QUEUE'] ?? 'mlpipe',
    trackingUri: ['off', 'false', '0', 'none'].includes((env['MLPIPE_TRACKING'] ?? '').toLowerCase())
      ? undefined
      : env['MLFLOW_TRACKING_URI'] || `file:${join(projectDir, 'mlruns')}`,
    experimentName: env['MLFLOW_EXPERIMENT_NAME'] || undefined,
  };
}

/** ConfigFiles over a conf/ folder on disk. */
export function fsConfigFiles(confDir: string, projectDir: string): ConfigFiles {
  return {
    read(rel) {
      const path = join(confDir, rel);
      if (!existsSync(path)) return undefined;
      return { file: relative(projectDir, path) || path, text: readFileSync(path, 'utf8') };
    },
    list(rel) {
      try {
        return readdirSync(join(confDir, rel)).sort();
      } catch {
        return [];
      }
    },
  };
}

/** Finds a pipeline file by name (pipelines/<name>.yaml) or path. */
export function resolvePipelineFile(projectDir: string, ref: string): string {
  const looksLikePath = ref.includes('/') || /\.ya?ml$/.test(ref);
  const candidates = looksLikePath
    ? [isAbsolute(ref) ? ref : resolve(projectDir, ref)]
    : [join(projectDir, 'pipelines', `${ref}.yaml`), join(projectDir, 'pipelines', `${ref}.yml`)];
  for (const c of candidates) if (existsSync(c)) return c;
  const available = listPipelines(projectDir);
  throw new SpecError('SPEC_NOT_FOUND', `Pipeline '${ref}' not found (looked for ${candidates.map((c) => relative(projectDir, c) || c).join(', ')}).${didYouMean(ref, available)}`, {
    hint: available.length ? `Pipelines in ${join(projectDir, 'pipelines')}: ${available.join(', ')}.` : `Create pipelines/${ref}.yaml in ${projectDir}.`,
  });
}

export function listPipelines(projectDir: string): string[] {
  try {
    return readdirSync(join(projectDir, 'pipelines'))
      .filter((f) => /\.ya?ml$/.test(f))
      .map((f) => f.replace(/\.ya?ml$/, ''))
      .sort();
  } catch {
    return [];
  }
}

/** The commit checked out in the project's git repository (reads .git directly), if any. */
export function gitCommit(projectDir: string): string | undefined {
  try {
    let gitDir = join(projectDir, '.git');
    if (!existsSync(gitDir)) return undefined;
    if (!statSync(gitDir).isDirectory()) {
      // A worktree or submodule: ".git" is a file naming the real folder.
      const m = /^gitdir: (.+)$/m.exec(readFileSync(gitDir, 'utf8'));
      if (!m) return undefined;
      gitDir = resolve(projectDir, m[1]!.trim());
    }
    const head = readFileSync(join(gitDir, 'HEAD'), 'utf8').trim();
    if (/^[0-9a-f]{40}$/.test(head)) return head;
    const ref = /^ref: (.+)$/.exec(head)?.[1];
    if (!ref) return undefined;
    const common = existsSync(join(gitDir, 'commondir')) ? resolve(gitDir, readFileSync(join(gitDir, 'commondir'), 'utf8').trim()) : gitDir;
    for (const dir of [gitDir, common]) {
      const file = join(dir, ref);
      if (existsSync(file)) return readFileSync(file, 'utf8').trim();
    }
    const packed = join(common, 'packed-refs');
    if (existsSync(packed)) return new RegExp(`^([0-9a-f]{40}) ${ref.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'm').exec(readFileSync(packed, 'utf8'))?.[1];
  } catch {
    /* not a readable repository */
  }
  return undefined;
}
