/**
 * Pipelines that come with the run (`submitted` in the workflow input, sent by `mlpipe run`) rather
 * than from the worker's project folder. The spec in the worker's project is trusted code; a
 * submitted one is not: whoever may start a workflow on the task queue wrote it. So on top of the
 * compile a worker does for its own pipelines, a submitted pipeline:
 *
 * - must use the plugins the client compiled it with, at the same versions (PLUGIN_UNKNOWN,
 *   PLUGIN_VERSION_MISMATCH, naming the worker's task queue): never a silent cache miss;
 * - runs no step whose plugin runs code (`runsCode`, util.shell) and asks for no worker variables
 *   (`env:`) unless the worker trusts submitted pipelines (SUBMITTED_CODE_REFUSED);
 * - names local files only inside the worker's project, or as one of the client's files that the
 *   client put in the artifact store (read from there by digest); every path param is checked, not
 *   only those an override set, and `overridablePaths` opens nothing.
 *
 * Pure: the path check and the catalogue come in as arguments.
 */
import type { PluginCatalog } from './catalog.js';
import { PipelineError, SpecErrors } from './errors.js';
import { shown } from './limits.js';
import type { CompiledPipeline, SubmittedFile } from './types.js';

const TRUST_HINT =
  "Put the pipeline in the workers' project and start it by name (mlpipe run --by-name), or start this task queue's workers with " +
  'MLPIPE_TRUST_SUBMITTED_PIPELINES=1 (then anyone who can start workflows on the queue may run commands on them).';

/** Before compiling: every plugin the client compiled with is here, at the same version. */
export function checkSubmittedPlugins(wanted: Record<string, string>, catalog: PluginCatalog, taskQueue: string): void {
  const problems: PipelineError[] = [];
  for (const [name, version] of Object.entries(wanted)) {
    const found = catalog.get(name);
    if (!found) {
      problems.push(
        new PipelineError(
          'PLUGIN_UNKNOWN',
          `The run needs plugin '${shown(name)}' version ${shown(version)}; this worker (task queue '${taskQueue}') has no plugin of that name.`,
          {
            hint: `Start workers with the project's plugins (mlpipe.plugins.ts) on task queue '${taskQueue}', or give this project a task queue of its own (--task-queue).`,
          },
        ),
      );
    } else if (found.version !== version) {
      problems.push(versionMismatch(name, version, found.version, taskQueue));
    }
  }
  if (problems.length === 1) throw problems[0]!;
  if (problems.length) throw new SpecErrors(problems);
}

/** The error of a worker whose plugin `name` is at `found` when the run wants `wanted`. */
export function versionMismatch(name: string, wanted: string, found: string, taskQueue: string, stepId?: string): PipelineError {
  return new PipelineError(
    'PLUGIN_VERSION_MISMATCH',
    `${stepId ? `Step '${stepId}': the` : 'The'} run was compiled with plugin '${name}' version ${shown(wanted)}; this worker (task queue '${taskQueue}') has version ${shown(found)}.`,
    {
      hint: `Deploy the same plugins (and mlpipe) to every worker of task queue '${taskQueue}', or run this project on a task queue of its own (--task-queue).`,
      details: { plugin: name, wanted, found, taskQueue },
    },
  );
}

export interface SubmittedChecks {
  catalog: PluginCatalog;
  /** The worker trusts submitted pipelines (MLPIPE_TRUST_SUBMITTED_PIPELINES): code-running steps and env: are allowed. */
  trusted: boolean;
  taskQueue: string;
  /** The client's files in the store, by the path the pipeline names them with. */
  files: Record<string, { sha256: string; size: number }>;
  /** A local path (not one of the client's files) must stay inside the worker's project: throws INPUT_INVALID. */
  confine: (value: string, what: string) => void;
}

/**
 * The compiled submitted pipeline, checked: marked `submitted`, code-running steps refused (unless
 * trusted), path params confined or bound to the client's files. Throws SpecErrors with every problem.
 */
export function checkSubmittedPipeline(compiled: CompiledPipeline, c: SubmittedChecks): CompiledPipeline {
  const problems: PipelineError[] = [];
  for (const id of compiled.order) {
    const step = compiled.steps[id]!;
    const plugin = c.catalog.get(step.uses);
    const where = (...path: (string | number)[]) => ({
      file: compiled.file,
      ...(step.line ? { line: step.line } : {}),
      path: ['steps', id, ...path],
    });
    if (plugin?.runsCode && !c.trusted) {
      problems.push(
        new PipelineError(
          'SUBMITTED_CODE_REFUSED',
          `Step '${id}' uses ${step.uses}, which runs commands or code from its params; this worker (task queue '${c.taskQueue}') does not run them from a pipeline submitted with the run.`,
          { where: where('uses'), hint: TRUST_HINT },
        ),
      );
    }
    if (step.env?.length && !c.trusted) {
      problems.push(
        new PipelineError(
          'SUBMITTED_CODE_REFUSED',
          `Step '${id}' asks for the worker's environment variables ${step.env.join(', ')}; a pipeline submitted with the run may not (task queue '${c.taskQueue}').`,
          { where: where('env'), hint: TRUST_HINT },
        ),
      );
    }
    const files: Record<string, SubmittedFile> = {};
    for (const name of plugin?.pathParams ?? []) {
      const value = Object.hasOwn(step.with, name) ? step.with[name] : undefined;
      if (typeof value !== 'string') continue;
      if (value.includes('${')) {
        problems.push(
          new PipelineError('INPUT_INVALID', `Step '${id}' param '${name}' ('${shown(value)}') is computed when the step runs.`, {
            where: where('with', name),
            hint: 'In a pipeline submitted with the run, paths are fixed when it is compiled (params, config, overrides), so they can be checked.',
          }),
        );
        continue;
      }
      const file = Object.hasOwn(c.files, value) ? c.files[value] : undefined;
      if (file) {
        files[name] = { sha256: file.sha256, size: file.size, path: value };
        continue;
      }
      try {
        c.confine(value, `Step '${id}' param '${name}'`);
      } catch (e) {
        if (!(e instanceof PipelineError)) throw e;
        problems.push(
          new PipelineError(e.code, e.message, {
            where: where('with', name),
            hint: "A pipeline submitted with the run reads the client's files inside its project (sent through the artifact store) or files inside the worker's project.",
          }),
        );
      }
    }
    if (Object.keys(files).length) step.files = files;
  }
  if (problems.length) throw new SpecErrors(problems);
  compiled.submitted = true;
  return compiled;
}
