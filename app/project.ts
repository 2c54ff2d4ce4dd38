/**
 * Where a project's files and state live, and the settings read from the environment. One place for
 * every MLPIPE_* / TEMPORAL_* variable.
 */
import { existsSync, lstatSync, readdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import type { ConfigFiles } from '../engine/config.js';
import { DEFAULT_TASK_QUEUE } from '../engine/contracts.js';
import { PipelineError } from '../engine/errors.js';
import { checkText, decodeUtf8, LIMITS, shown } from '../engine/limits.js';
import { didYouMean } from '../engine/suggest.js';
import { mlpipeCacheDir } from '../engine/cache-dir.js';

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
  /**
   * MLPIPE_TRUST_SUBMITTED_PIPELINES=1: a worker runs the code-running steps (util.shell, `env:`) of
   * pipelines submitted with the run. Anyone who can start workflows on its task queue may then run
   * commands on it.
   */
  trustSubmitted?: boolean;
}

export function loadSettings(env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): Settings {
  const projectDir = resolve(env['MLPIPE_PROJECT_DIR'] ?? cwd);
  const stateDir = resolve(projectDir, env['MLPIPE_HOME'] ?? '.mlpipe');
  return {
    projectDir,
    stateDir,
    artifactsDir: env['MLPIPE_ARTIFACTS']?.startsWith('gs://')
      ? env['MLPIPE_ARTIFACTS']
      : resolve(projectDir, env['MLPIPE_ARTIFACTS'] ?? join(stateDir, 'artifacts')),
    cacheDir: mlpipeCacheDir(env),
    temporalAddress: env['TEMPORAL_ADDRESS'] ?? 'localhost:7233',
    namespace: env['TEMPORAL_NAMESPACE'] ?? 'default',
    taskQueue: env['MLPIPE_TASK_QUEUE'] ?? DEFAULT_TASK_QUEUE,
    trackingUri: ['off', 'false', '0', 'none'].includes((env['MLPIPE_TRACKING'] ?? '').toLowerCase())
      ? undefined
      : env['MLFLOW_TRACKING_URI'] || `file:${join(projectDir, 'mlruns')}`,
    experimentName: env['MLFLOW_EXPERIMENT_NAME'] || undefined,
    trustSubmitted: ['1', 'true', 'yes'].includes((env['MLPIPE_TRUST_SUBMITTED_PIPELINES'] ?? '').toLowerCase()),
  };
}

const PATH_HINT = "Paths that come with a run (pipeline names, config options, overridden paths) stay inside the worker's project folder.";

/**
 * Resolves `candidate` (relative to `root`, or absolute) to a real path inside `root`, following
 * symlinks, or throws a non-retryable INPUT_INVALID naming the value. Refuses NUL bytes,
 * backslashes, percent-encoding, '..' segments, overlong values, and anything whose real path
 * (a symlink's target included) is outside `root`. The path need not exist.
 */
export function resolveInside(root: string, candidate: string, what: string): string {
  const refuse = (why: string): never => {
    throw new PipelineError('INPUT_INVALID', `${what} '${shown(candidate)}' ${why}.`, { hint: PATH_HINT });
  };
  if (candidate.length === 0) refuse('is empty');
  if (candidate.length > 1024) refuse(`is ${candidate.length} characters long (at most 1024)`);
  if (candidate.includes('\0')) refuse('contains a NUL byte');
  if (candidate.includes('\\')) refuse('contains a backslash');
  if (/%[0-9a-f]{2}/i.test(candidate)) refuse('contains percent-encoding');
  checkText(candidate, what);
  if (candidate.split('/').includes('..')) refuse("contains a '..' segment");
  let rootReal: string;
  try {
    rootReal = realpathSync(root);
  } catch {
    return refuse(`cannot be checked: the project folder ${root} does not exist`);
  }
  // The real path of the longest existing prefix, then the rest as written.
  let existing = resolve(rootReal, candidate);
  const rest: string[] = [];
  for (;;) {
    try {
      existing = realpathSync(existing);
      break;
    } catch {
      let link = false;
      try {
        link = lstatSync(existing).isSymbolicLink();
      } catch {
        /* does not exist */
      }
      if (link) refuse('is a symbolic link whose target does not exist');
      const up = dirname(existing);
      if (up === existing) break;
      rest.unshift(basename(existing));
      existing = up;
    }
  }
  const real = join(existing, ...rest);
  const rel = relative(rootReal, real);
  if (rel === '..' || rel.startsWith(`..${sep}`) || isAbsolute(rel)) refuse('leads outside the project folder (symlinks resolved)');
  return real;
}

/** Reads a spec file (pipeline or config) within the size limit, as strict UTF-8. */
export function readSpecFile(path: string, shownAs: string): string {
  const { size } = statSync(path);
  if (size > LIMITS.fileBytes) {
    throw new PipelineError(
      'SPEC_INVALID',
      `${shownAs} is ${size} bytes; pipeline and config files are limited to ${LIMITS.fileBytes} bytes.`,
      {
        where: { file: shownAs },
        hint: 'Keep data out of the spec: put it in a data file and pass its path.',
      },
    );
  }
  return decodeUtf8(shownAs, readFileSync(path));
}

/** ConfigFiles over a conf/ folder on disk; every path stays inside the project folder. */
export function fsConfigFiles(confDir: string, projectDir: string): ConfigFiles {
  return {
    read(rel) {
      const path = resolveInside(projectDir, relative(projectDir, join(confDir, rel)), 'Config file');
      if (!existsSync(path)) return undefined;
      const file = relative(realpathSync(projectDir), path) || path;
      return { file, text: readSpecFile(path, file) };
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

/** Pipeline names: pipelines/<name>.yaml. */
export const PIPELINE_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

/**
 * Finds a pipeline file by name (pipelines/<name>.yaml) or by a path to a .yaml/.yml file inside
 * the project folder. Anything else (a path out of the project, a symlink leading out of it) is
 * INPUT_INVALID: the name may come from anyone who can start a workflow.
 */
export function resolvePipelineFile(projectDir: string, ref: string): string {
  checkText(ref, 'Pipeline');
  if (ref.length > LIMITS.pipelineRefChars) {
    throw new PipelineError(
      'INPUT_INVALID',
      `Pipeline '${shown(ref)}' is ${ref.length} characters long (at most ${LIMITS.pipelineRefChars}).`,
      { hint: PATH_HINT },
    );
  }
  const looksLikePath = ref.includes('/') || ref.includes('\\') || /\.ya?ml$/.test(ref);
  if (looksLikePath && !/\.ya?ml$/.test(ref)) {
    throw new PipelineError('INPUT_INVALID', `Pipeline '${shown(ref)}' is neither a name nor a path to a .yaml or .yml file.`, {
      hint: PATH_HINT,
    });
  }
  if (!looksLikePath && (!PIPELINE_NAME.test(ref) || ref.includes('..'))) {
    throw new PipelineError('INPUT_INVALID', `Pipeline '${shown(ref)}' is not a pipeline name (letters, digits, _ . -).`, {
      hint: PATH_HINT,
    });
  }
  const candidates = looksLikePath
    ? [resolveInside(projectDir, ref, 'Pipeline')]
    : [`${ref}.yaml`, `${ref}.yml`].map((f) => resolveInside(projectDir, join('pipelines', f), 'Pipeline'));
  for (const c of candidates) if (existsSync(c)) return c;
  const available = listPipelines(projectDir);
  throw new PipelineError(
    'SPEC_NOT_FOUND',
    `Pipeline '${ref}' not found (looked for ${candidates.map((c) => relative(projectDir, c) || c).join(', ')}).${didYouMean(ref, available)}`,
    {
      hint: available.length
        ? `Pipelines in ${join(projectDir, 'pipelines')}: ${available.join(', ')}.`
        : `Create pipelines/${ref}.yaml in ${projectDir}.`,
    },
  );
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
    if (existsSync(packed))
      return new RegExp(`^([0-9a-f]{40}) ${ref.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'm').exec(readFileSync(packed, 'utf8'))?.[1];
  } catch {
    /* not a readable repository */
  }
  return undefined;
}
