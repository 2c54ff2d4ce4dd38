/**
 * Compiles a pipeline YAML into a plain-JSON `CompiledPipeline`, or reports every problem it finds
 * with file, line, column, key path and a hint. Pure: files come in through `ConfigFiles` and
 * plugins through `PluginCatalog`.
 */
import type { ZodError } from 'zod';
import type { PluginCatalog, PluginInfo } from './catalog.js';
import { applyValueOverrides, composeConfig, keyPaths, parseOverride, type ConfigFiles, type Override } from './config.js';
import { parseDuration } from './duration.js';
import { validateSpace } from './hpo.js';
import { PipelineError, SpecErrors, type ErrorCode, type Location } from './errors.js';
import { forEachTemplate, lookup, parseTemplate, references, resolveDeep, type RefPath } from './expressions.js';
import { LIMITS } from './limits.js';
import { DEFAULT_MAX_PARALLEL, KNOWN_KEYS, pipelineSchema, type PipelineSpec, type StepSpec } from './spec.js';
import { closest, didYouMean } from './suggest.js';
import { defaultHeartbeatMs, STEP_DEFAULTS } from './step-defaults.js';
import type { CompiledPipeline, CompiledStep, RetrySpec } from './types.js';
import { parseYaml, type SourceDoc } from './yaml-doc.js';

export interface CompileOptions {
  /** Path shown in messages (relative to the project when possible). */
  file: string;
  text: string;
  conf: ConfigFiles;
  catalog: PluginCatalog;
  overrides?: string[];
  /**
   * Checks a local path that an override put into a plugin's path param (or `monitor.current`):
   * throws INPUT_INVALID when it leaves the project folder. Without it such paths are not checked.
   */
  confinePath?: (value: string, what: string) => void;
}

/** Runtime roots an expression may read, and what each offers. */
const RUN_FIELDS = ['id', 'workflowId', 'pipeline', 'labels'];
const STEP_FIELDS = ['outputs', 'status'];
const ROOTS = ['params', 'conf', 'steps', 'run'];

/** What every part of a compile shares: the options, the parsed document and the problems found so far. */
interface Source {
  opts: CompileOptions;
  doc: SourceDoc;
  problems: PipelineError[];
  at: (path: (string | number)[]) => Location;
}

/** The pipeline's params and config with the overrides applied. */
interface Composed {
  allOverrides: string[];
  params: Record<string, unknown>;
  config: Record<string, unknown>;
  configChoices: Record<string, string>;
  configSources: string[];
  /** Key paths (conf.* and params.*) that the run's overrides set (not the spec's own `config.overrides`). */
  overridden: RefPath[];
  /** When the config could not be composed, references to conf.* are not checked (its problems are reported). */
  configOk: boolean;
}

/** What the step and section checks read. */
interface Compilation extends Source, Composed {
  spec: PipelineSpec;
  stepIds: string[];
  needsOf: Record<string, string[]>;
  ancestors: Map<string, Set<string>>;
  defaults: NonNullable<PipelineSpec['stepDefaults']>;
  staticScope: { params: Record<string, unknown>; conf: Record<string, unknown> };
  /** Each step's params with params/config expressions resolved. */
  staticWith: Record<string, Record<string, unknown>>;
  outputsOf: (id: string) => string[] | undefined;
  /** Overrides the pipeline lets name any file (`overridablePaths`). */
  openPaths: Set<string>;
}

const has = (o: object, k: string): boolean => Object.hasOwn(o, k);
const isStatic = (refs: RefPath[]): boolean => refs.every((r) => r[0] === 'params' || r[0] === 'conf');

export function compilePipeline(opts: CompileOptions): CompiledPipeline {
  const doc = parseYaml(opts.file, opts.text);
  const problems: PipelineError[] = [];
  const at = (path: (string | number)[]): Location => doc.locate(path);
  const source: Source = { opts, doc, problems, at };

  const spec = parseSpec(source);
  const stepIds = checkStepCount(source, spec);
  const composed = applyOverrides(source, spec);
  const needsOf = checkNeeds(source, spec, stepIds);
  checkCycle(source, stepIds, needsOf);
  // Go on after DAG problems: `validate` reports every problem it can find in one pass.
  const staticScope = { params: composed.params, conf: composed.config };
  const staticWith = staticParams(spec, stepIds, composed.configOk, staticScope);
  const cx: Compilation = {
    ...source,
    ...composed,
    spec,
    stepIds,
    needsOf,
    ancestors: ancestorSets(stepIds, needsOf),
    defaults: spec.stepDefaults ?? {},
    staticScope,
    staticWith,
    outputsOf: (id) => opts.catalog.get(spec.steps[id]!.uses)?.outputNames(staticWith[id]!),
    openPaths: new Set(spec.overridablePaths ?? []),
  };
  const steps = compileSteps(cx);
  checkRegisterModel(cx, steps);
  const monitor = checkMonitor(cx, steps);
  checkHpo(cx, steps);
  if (problems.length) throw new SpecErrors(problems);
  markDeferred(cx, steps);
  return assemble(cx, steps, monitor);
}

/** The document checked against the pipeline schema; schema problems go to `problems`. */
function parseSpec({ opts, doc, problems }: Source): PipelineSpec {
  if (doc.value === null || typeof doc.value !== 'object' || Array.isArray(doc.value)) {
    throw new PipelineError('SPEC_INVALID', 'A pipeline file must be a YAML mapping with at least `name` and `steps`.', {
      where: { file: opts.file, line: 1 },
      hint: 'Start from an example in pipelines/, e.g. pipelines/diamond.yaml.',
    });
  }
  const parsed = pipelineSchema.safeParse(doc.value);
  let spec: PipelineSpec;
  if (parsed.success) spec = parsed.data;
  else {
    // Unknown keys (typos) alone do not stop the compile: without them, the rest is checked too.
    problems.push(...schemaProblems(parsed.error, doc));
    const again = parsed.error.issues.every((i) => i.code === 'unrecognized_keys')
      ? pipelineSchema.safeParse(withoutKeys(doc.value, parsed.error))
      : undefined;
    if (!again?.success) throw new SpecErrors(problems);
    spec = again.data;
  }
  return spec;
}

/** The step ids: at least one, at most LIMITS.steps. */
function checkStepCount({ at }: Source, spec: PipelineSpec): string[] {
  const stepIds = Object.keys(spec.steps);
  if (stepIds.length === 0) {
    throw new PipelineError('SPEC_INVALID', 'The pipeline has no steps.', {
      where: at(['steps']),
      hint: 'Add at least one step under `steps:`.',
    });
  }
  if (stepIds.length > LIMITS.steps) {
    throw new PipelineError('SPEC_INVALID', `The pipeline has ${stepIds.length} steps; a pipeline has at most ${LIMITS.steps}.`, {
      where: at(['steps']),
      hint: 'Fan out inside a step (one step over many items), or split the pipeline.',
    });
  }
  return stepIds;
}

/** Overrides: `params.*` go to pipeline params, the rest to the composed config. */
function applyOverrides({ opts, problems }: Source, spec: PipelineSpec): Composed {
  const specOverrides = typeof spec.config === 'object' ? (spec.config.overrides ?? []) : [];
  const allOverrides = [...specOverrides, ...(opts.overrides ?? [])];
  const parsedOverrides: { ov: Override; index: number }[] = [];
  allOverrides.forEach((text, index) => {
    try {
      parsedOverrides.push({ ov: parseOverride(text, index), index });
    } catch (e) {
      problems.push(e as PipelineError);
    }
  });
  const paramOverrides = parsedOverrides.filter(({ ov }) => ov.path[0] === 'params');
  const configOverrides = parsedOverrides.filter(({ ov }) => ov.path[0] !== 'params');

  const configName = typeof spec.config === 'string' ? spec.config : spec.config?.name;
  let config: Record<string, unknown> = {};
  let configChoices: Record<string, string> = {};
  let configSources: string[] = [];
  /** Key paths (conf.* and params.*) that the run's overrides set (not the spec's own `config.overrides`). */
  const fromRun = (index: number): boolean => index >= specOverrides.length;
  const overridden: RefPath[] = paramOverrides.filter(({ index }) => fromRun(index)).map(({ ov }) => ov.path);
  /** When the config could not be composed, references to conf.* are not checked (its problems are reported). */
  let configOk = true;
  if (configName) {
    try {
      const composed = composeConfig(
        configName,
        opts.conf,
        configOverrides.map((o) => o.ov),
        configOverrides.map((o) => o.index),
      );
      config = composed.config;
      configChoices = composed.choices;
      configSources = composed.sources;
      overridden.push(...composed.overridden.filter(({ index }) => fromRun(index)).map(({ path }) => ['conf', ...path]));
    } catch (e) {
      if (!(e instanceof PipelineError)) throw e;
      problems.push(e);
      configOk = false;
    }
  } else if (configOverrides.length > 0) {
    const first = configOverrides[0]!;
    problems.push(
      new PipelineError('OVERRIDE_UNKNOWN_KEY', `Override '${first.ov.text}' targets the config, but this pipeline has no \`config:\`.`, {
        where: { file: '<overrides>', path: [first.index] },
        hint: 'Override pipeline params with params.<name>=value, or add `config: <name>` to the pipeline.',
      }),
    );
  }
  const params = applyValueOverrides(spec.params ?? {}, paramOverrides, 'params', ['params'], problems);
  return { allOverrides, params, config, configChoices, configSources, overridden, configOk };
}

/**
 * A local path whose value an override set (through the params or config its template reads)
 * must stay inside the project, unless the pipeline lists that override in `overridablePaths`.
 * Paths the pipeline author wrote may point anywhere.
 */
function confine(cx: Compilation, template: unknown, value: unknown, what: string, path: (string | number)[]): void {
  const { opts, overridden, openPaths, problems, at } = cx;
  if (!opts.confinePath || typeof value !== 'string' || value.includes('${')) return;
  const keys = overridesRead(template, overridden);
  const fromInput = [...keys].filter((k) => !openPaths.has(k));
  if (fromInput.length === 0) return;
  try {
    opts.confinePath(value, `${what} (set by override ${fromInput.join(', ')})`);
  } catch (e) {
    if (!(e instanceof PipelineError)) throw e;
    problems.push(
      new PipelineError(e.code, e.message, {
        where: at(path),
        hint: `${e.hint ? `${e.hint} ` : ''}A pipeline lets an override name any file by listing it in overridablePaths.`,
      }),
    );
  }
}

/** The overrides (as written: `data`, `params.path`) whose values the templates in `template` read. */
function overridesRead(template: unknown, overridden: RefPath[]): Set<string> {
  const keys = new Set<string>();
  forEachTemplate(template, (text) => {
    try {
      for (const part of parseTemplate(text)) {
        if (!('expr' in part)) continue;
        for (const ref of references(part.expr)) {
          for (const o of overridden) {
            const n = Math.min(o.length, ref.length);
            if (o.slice(0, n).every((k, i) => String(k) === String(ref[i]))) keys.add((o[0] === 'conf' ? o.slice(1) : o).join('.'));
          }
        }
      }
    } catch {
      /* reported with the step's expressions */
    }
  });
  return keys;
}

/** Plugins and needs: every step's plugin exists, and its needs (deduplicated) are other steps of the pipeline. */
function checkNeeds({ opts, problems, at }: Source, spec: PipelineSpec, stepIds: string[]): Record<string, string[]> {
  const needsOf: Record<string, string[]> = {};
  for (const id of stepIds) {
    const step = spec.steps[id]!;
    if (!opts.catalog.get(step.uses)) {
      const near = closest(step.uses, opts.catalog.names());
      problems.push(
        new PipelineError('PLUGIN_UNKNOWN', `Step '${id}' uses unknown plugin '${step.uses}'.${near ? ` Did you mean '${near}'?` : ''}`, {
          where: at(['steps', id, 'uses']),
          hint: `Run 'mlpipe plugins' to list plugins. Available: ${opts.catalog.names().sort().join(', ')}.`,
        }),
      );
    }
    const needs = step.needs === undefined ? [] : Array.isArray(step.needs) ? step.needs : [step.needs];
    needsOf[id] = [];
    needs.forEach((n, i) => {
      const path = Array.isArray(step.needs) ? ['steps', id, 'needs', i] : ['steps', id, 'needs'];
      if (n === id) {
        problems.push(
          new PipelineError('DAG_CYCLE', `Step '${id}' needs itself.`, { where: at(path), hint: 'Remove it from its own `needs`.' }),
        );
      } else if (!has(spec.steps, n)) {
        problems.push(
          new PipelineError(
            'DAG_MISSING_NEED',
            `Step '${id}' needs '${n}', which is not a step of this pipeline.${didYouMean(n, stepIds)}`,
            {
              where: at(path),
              hint: `Steps: ${listed(stepIds)}.`,
            },
          ),
        );
      } else if (!needsOf[id]!.includes(n)) {
        needsOf[id]!.push(n);
      }
    });
  }
  return needsOf;
}

function checkCycle({ problems, at }: Source, stepIds: string[], needsOf: Record<string, string[]>): void {
  const cycle = findCycle(stepIds, needsOf);
  if (cycle) {
    problems.push(
      new PipelineError('DAG_CYCLE', `The steps form a cycle: ${cycle.join(' -> ')}.`, {
        where: at(['steps', cycle[0]!, 'needs']),
        hint: 'A step cannot (even indirectly) need itself; remove one of these `needs`.',
      }),
    );
  }
}

/**
 * Params with params/config expressions resolved, for every step: a step's declared outputs may
 * depend on its params, and its children are checked against those outputs.
 */
function staticParams(
  spec: PipelineSpec,
  stepIds: string[],
  configOk: boolean,
  staticScope: Compilation['staticScope'],
): Record<string, Record<string, unknown>> {
  const staticWith: Record<string, Record<string, unknown>> = {};
  for (const id of stepIds) {
    const raw = spec.steps[id]!.with ?? {};
    if (!configOk) {
      staticWith[id] = raw;
      continue;
    }
    try {
      staticWith[id] = resolveDeep(raw, staticScope, isStatic) as Record<string, unknown>;
    } catch {
      staticWith[id] = raw; // reported with its location below
    }
  }
  return staticWith;
}

/** Every step whose plugin exists and whose checks pass, compiled; stops looking after LIMITS.problems problems. */
function compileSteps(cx: Compilation): Record<string, CompiledStep> {
  const { opts, problems, stepIds } = cx;
  const steps: Record<string, CompiledStep> = {};
  for (const id of stepIds) {
    if (problems.length >= LIMITS.problems) {
      // Enough to act on; looking further would only cost the worker time.
      problems.push(
        new PipelineError(problems[0]!.code, `Stopped looking after ${problems.length} problems.`, {
          where: { file: opts.file },
          hint: 'Fix these and validate again.',
        }),
      );
      break;
    }
    const compiled = compileStep(cx, id);
    if (compiled) steps[id] = compiled;
  }
  return steps;
}

/** One step: its expressions, params, inputs, retry and timeouts checked; undefined when it has problems (they are reported). */
function compileStep(cx: Compilation, id: string): CompiledStep | undefined {
  const { opts, problems, at, spec, configOk, defaults, staticScope } = cx;
  const step = spec.steps[id]!;
  const plugin = opts.catalog.get(step.uses);
  if (!plugin) return undefined; // reported above
  const stepPath = ['steps', id];
  const before = problems.length;

  checkStepExpressions(cx, id, step, plugin, stepPath);
  if (problems.length > before) return undefined;
  if (!configOk && readsConf([step.with, step.when])) return undefined; // its values are unknown: the config's problems are reported

  const resolved = resolveStatic(cx, step, stepPath);
  if (!resolved) return undefined;
  const { withResolved, when } = resolved;
  checkPluginParams(cx, id, plugin, withResolved, stepPath);
  const inputs = bindInputs(cx, id, step, plugin, withResolved, stepPath);
  const retry = retryOf(cx, step);
  const cacheSpec = typeof step.cache === 'object' ? step.cache : undefined;
  checkCacheIgnore(cx, id, cacheSpec, withResolved, stepPath);
  const { timeoutMs, heartbeatMs } = checkTimeouts(cx, id, step, plugin, retry, stepPath);
  confineStepPaths(cx, id, step, plugin, withResolved, stepPath);
  return dropUndefined({
    id,
    uses: step.uses,
    pluginVersion: plugin.version,
    description: step.description,
    // Resolved again at run time: literal `${` (escapes, values from params) stays literal.
    with: resolveDeep(step.with ?? {}, staticScope, isStatic, { escapeResolved: true }) as Record<string, unknown>,
    inputs,
    needs: cx.needsOf[id]!,
    when,
    ifNeedsSkipped: step.ifNeedsSkipped ?? 'skip',
    retry: dropUndefined(retry),
    timeoutMs,
    heartbeatMs,
    cache: (typeof step.cache === 'boolean' ? step.cache : cacheSpec?.enabled) ?? defaults.cache ?? plugin.cacheable,
    cacheIgnore: cacheSpec?.ignore,
    taskQueue: step.taskQueue ?? defaults.taskQueue,
    env: step.env?.length ? [...new Set(step.env)] : undefined,
    line: at(stepPath).line,
  });
}

/** Check every expression of the step: what it reads exists, and no code param holds one. */
function checkStepExpressions(cx: Compilation, id: string, step: StepSpec, plugin: PluginInfo, stepPath: string[]): void {
  const { problems, at, configOk, params, config, spec, ancestors, outputsOf } = cx;
  const checkTemplates = (value: unknown, base: (string | number)[]): void =>
    forEachTemplate(value, (text, path) => {
      const where = at([...base, ...path]);
      try {
        for (const part of parseTemplate(text)) {
          if (!('expr' in part)) continue;
          for (const ref of references(part.expr)) {
            if (ref[0] === 'conf' && !configOk) continue;
            const problem = checkReference(ref, id, { params, config, spec, ancestors, outputsOf });
            if (problem)
              problems.push(
                new PipelineError('EXPR_REFERENCE', `In '\${${part.source}}': ${problem.message}`, { where, hint: problem.hint }),
              );
          }
        }
      } catch (e) {
        if (e instanceof PipelineError) problems.push(new PipelineError(e.code, e.message, { where, hint: e.hint }));
        else throw e;
      }
    });
  checkTemplates(step.with ?? {}, [...stepPath, 'with']);
  problems.push(...codeProblems(id, step.with ?? {}, plugin, (path) => at([...stepPath, 'with', ...path])));
  checkTemplates(step.inputs ?? {}, [...stepPath, 'inputs']);
  if (typeof step.when === 'string') checkTemplates({ when: step.when }, stepPath);
}

/** Resolve what is known now: the step's params and `when` as far as params and config give them; undefined on a problem (reported). */
function resolveStatic(
  { problems, at, staticScope }: Compilation,
  step: StepSpec,
  stepPath: string[],
): { withResolved: Record<string, unknown>; when: string | boolean | undefined } | undefined {
  let withResolved: Record<string, unknown>;
  let when: string | boolean | undefined = step.when;
  try {
    withResolved = resolveDeep(step.with ?? {}, staticScope, isStatic) as Record<string, unknown>;
    if (typeof when === 'string') {
      const w = resolveDeep(when, staticScope, isStatic);
      when = typeof w === 'string' && w === when ? when : Boolean(w);
    }
  } catch (e) {
    if (e instanceof PipelineError) {
      problems.push(new PipelineError(e.code, e.message, { where: at(stepPath), hint: e.hint }));
      return undefined;
    }
    throw e;
  }
  return { withResolved, when };
}

/** Params against the plugin's schema; values still waiting for step outputs are checked at run time. */
function checkPluginParams(
  { problems, at }: Compilation,
  id: string,
  plugin: PluginInfo,
  withResolved: Record<string, unknown>,
  stepPath: string[],
): void {
  for (const issue of plugin.checkParams(withResolved)) {
    if (dependsOnRuntime(withResolved, issue.path)) continue;
    problems.push(
      new PipelineError(
        'PLUGIN_PARAMS',
        `Step '${id}' (${plugin.name}): ${issue.path.length ? `'${issue.path.join('.')}' ` : ''}${issue.message}`,
        {
          where: at([...stepPath, 'with', ...issue.path]),
          hint: `Check the params of '${plugin.name}' with 'mlpipe plugins ${plugin.name}'.`,
        },
      ),
    );
  }
}

/** Inputs: explicit bindings, else a parent output with the input's name. */
function bindInputs(
  { problems, at, needsOf, outputsOf }: Compilation,
  id: string,
  step: StepSpec,
  plugin: PluginInfo,
  withResolved: Record<string, unknown>,
  stepPath: string[],
): Record<string, string> {
  const inputs: Record<string, string> = {};
  const declared = Object.keys(plugin.inputNames(withResolved)).map((k) => ({ name: k.replace(/\?$/, ''), optional: k.endsWith('?') }));
  for (const [name, template] of Object.entries(step.inputs ?? {})) {
    if (!declared.some((d) => d.name === name)) {
      problems.push(
        new PipelineError(
          'PLUGIN_INPUT',
          `Step '${id}': plugin '${plugin.name}' has no input '${name}'.${didYouMean(
            name,
            declared.map((d) => d.name),
          )}`,
          {
            where: at([...stepPath, 'inputs', name]),
            hint: declared.length ? `Its inputs: ${declared.map((d) => d.name).join(', ')}.` : `'${plugin.name}' takes no inputs.`,
          },
        ),
      );
    } else inputs[name] = template;
  }
  for (const d of declared) {
    if (inputs[d.name] !== undefined) continue;
    const providers = needsOf[id]!.filter((p) => outputsOf(p)?.includes(d.name));
    if (providers.length === 1) inputs[d.name] = `\${steps.${providers[0]}.outputs.${d.name}}`;
    else if (providers.length > 1) {
      problems.push(
        new PipelineError('PLUGIN_INPUT', `Step '${id}': input '${d.name}' could come from ${providers.join(' or ')}.`, {
          where: at([...stepPath, 'needs']),
          hint: `Bind it explicitly: inputs: { ${d.name}: \${steps.${providers[0]}.outputs.${d.name}} }`,
        }),
      );
    } else if (!d.optional) {
      problems.push(
        new PipelineError(
          'PLUGIN_INPUT',
          `Step '${id}': input '${d.name}' of '${plugin.name}' is not bound, and no step it needs has an output '${d.name}'.`,
          {
            where: at(stepPath),
            hint: `Add inputs: { ${d.name}: \${steps.<step>.outputs.<output>} } and list that step in needs.`,
          },
        ),
      );
    }
  }
  return inputs;
}

/** The step's retry policy over the pipeline's step defaults, durations in ms. */
function retryOf({ defaults }: Compilation, step: StepSpec): RetrySpec {
  const retrySpec = { ...defaults.retry, ...step.retry };
  const retry: RetrySpec = {
    maximumAttempts: retrySpec.maximumAttempts,
    maximumInfraAttempts: retrySpec.maximumInfraAttempts,
    serviceWaitMs: retrySpec.serviceWait === undefined ? undefined : parseDuration(retrySpec.serviceWait),
    initialIntervalMs: retrySpec.initialInterval === undefined ? undefined : parseDuration(retrySpec.initialInterval),
    backoffCoefficient: retrySpec.backoffCoefficient,
    maximumIntervalMs: retrySpec.maximumInterval === undefined ? undefined : parseDuration(retrySpec.maximumInterval),
    nonRetryableErrorTypes: retrySpec.nonRetryableErrorTypes,
  };
  return retry;
}

/** `cache.ignore` names params the step sets. */
function checkCacheIgnore(
  { problems, at }: Compilation,
  id: string,
  cacheSpec: { ignore?: string[] } | undefined,
  withResolved: Record<string, unknown>,
  stepPath: string[],
): void {
  for (const [i, path] of (cacheSpec?.ignore ?? []).entries()) {
    const head = path.split('.')[0]!;
    if (!has(withResolved, head)) {
      problems.push(
        new PipelineError(
          'SPEC_INVALID',
          `Step '${id}': cache.ignore names '${path}', but '${head}' is not set in the step's with:.${didYouMean(head, Object.keys(withResolved))}`,
          {
            where: at([...stepPath, 'cache', 'ignore', i]),
            hint: Object.keys(withResolved).length
              ? `Params set in with: ${listed(Object.keys(withResolved))}.`
              : 'The step sets no params in with:.',
          },
        ),
      );
    }
  }
}

/** The step's timeout and heartbeat timeout in ms, checked (with its retry intervals) against what Temporal accepts. */
function checkTimeouts(
  { problems, at, defaults }: Compilation,
  id: string,
  step: StepSpec,
  plugin: PluginInfo,
  retry: RetrySpec,
  stepPath: string[],
): { timeoutMs: number; heartbeatMs: number | undefined } {
  const timeout = step.timeout ?? defaults.timeout;
  const heartbeat = step.heartbeat ?? defaults.heartbeat;
  const timeoutMs = timeout === undefined ? STEP_DEFAULTS.timeoutMs : parseDuration(timeout)!;
  // The default heartbeat timeout (engine/step-defaults.ts) applies where it is shorter than the timeout;
  // a step with a shorter timeout is watched by the timeout itself.
  const defaultHeartbeat = defaultHeartbeatMs(plugin.blocksEventLoopMs);
  const heartbeatMs = heartbeat === undefined ? (defaultHeartbeat < timeoutMs ? defaultHeartbeat : undefined) : parseDuration(heartbeat);
  // What Temporal would refuse when the workflow schedules the activity (its workflow task would then fail on every retry).
  const from = (key: string, sub?: string): (string | number)[] => {
    const own = sub
      ? (step.retry as Record<string, unknown> | undefined)?.[sub] !== undefined
      : (step as Record<string, unknown>)[key] !== undefined;
    return [...(own ? stepPath : ['stepDefaults']), key, ...(sub ? [sub] : [])];
  };
  if (heartbeatMs !== undefined && heartbeatMs >= timeoutMs) {
    problems.push(
      new PipelineError('SPEC_INVALID', `Step '${id}': heartbeat (${heartbeatMs} ms) must be shorter than the timeout (${timeoutMs} ms).`, {
        where: at(from('heartbeat')),
        hint: 'The heartbeat timeout says how fast a dead worker is noticed; make it a fraction of the step timeout.',
      }),
    );
  }
  const initialMs = retry.initialIntervalMs ?? STEP_DEFAULTS.initialIntervalMs;
  const maxMs = retry.maximumIntervalMs ?? STEP_DEFAULTS.maximumIntervalMs;
  if (maxMs < initialMs) {
    problems.push(
      new PipelineError(
        'SPEC_INVALID',
        `Step '${id}': retry.maximumInterval (${maxMs} ms${retry.maximumIntervalMs === undefined ? ', the default' : ''}) is shorter than retry.initialInterval (${initialMs} ms).`,
        {
          where: at(from('retry', retry.maximumIntervalMs === undefined ? 'initialInterval' : 'maximumInterval')),
          hint: 'Temporal refuses a retry policy whose maximum interval is below its initial interval; set both.',
        },
      ),
    );
  }
  return { timeoutMs, heartbeatMs };
}

/** The plugin's path params, where an override set them, stay inside the project. */
function confineStepPaths(
  cx: Compilation,
  id: string,
  step: StepSpec,
  plugin: PluginInfo,
  withResolved: Record<string, unknown>,
  stepPath: string[],
): void {
  for (const name of plugin.pathParams ?? []) {
    const raw = has(step.with ?? {}, name) ? step.with![name] : undefined;
    const value = has(withResolved, name) ? withResolved[name] : undefined;
    if (raw !== undefined) confine(cx, raw, value, `step '${id}' param '${name}'`, [...stepPath, 'with', name]);
  }
}

/** A section that names a step's output (`section` is its key path): the step and the output must exist. */
function checkStepOutput(
  { opts, problems, at, stepIds, staticWith }: Compilation,
  steps: Record<string, CompiledStep>,
  section: string[],
  step: string,
  output: string,
): void {
  const target = has(steps, step) ? steps[step] : undefined;
  if (!target) {
    problems.push(
      new PipelineError('SPEC_INVALID', `${section.join('.')}.step: there is no step '${step}'.${didYouMean(step, stepIds)}`, {
        where: at([...section, 'step']),
        hint: `Steps: ${listed(stepIds)}.`,
      }),
    );
    return;
  }
  const declared = opts.catalog.get(target.uses)?.outputNames(staticWith[step] ?? {});
  if (declared && !declared.includes(output)) {
    problems.push(
      new PipelineError('SPEC_INVALID', `${section.join('.')}: step '${step}' (${target.uses}) has no output '${output}'.`, {
        where: at(section),
        hint: `Its outputs: ${declared.join(', ')}.`,
      }),
    );
  }
}

function checkRegisterModel(cx: Compilation, steps: Record<string, CompiledStep>): void {
  const register = cx.spec.tracking?.registerModel;
  if (register) checkStepOutput(cx, steps, ['tracking', 'registerModel'], register.step, register.output);
}

/** The monitor section: its reference output exists and `monitor.current` is known before the run (and confined when an override set it). */
function checkMonitor(cx: Compilation, steps: Record<string, CompiledStep>): CompiledPipeline['monitor'] {
  const { problems, at, spec, staticScope } = cx;
  let monitor: CompiledPipeline['monitor'];
  if (spec.monitor) {
    const m = spec.monitor;
    checkStepOutput(cx, steps, ['monitor', 'reference'], m.reference.step, m.reference.output);
    try {
      const current = resolveDeep(m.current, staticScope, isStatic);
      if (typeof current !== 'string' || current.includes('${')) {
        problems.push(
          new PipelineError('SPEC_INVALID', 'monitor.current must be known before the run starts (params and config only).', {
            where: at(['monitor', 'current']),
          }),
        );
      } else {
        if (!current.startsWith('predictions:')) confine(cx, m.current, current, 'monitor.current', ['monitor', 'current']);
        monitor = {
          current,
          ...(m.window ? { windowMs: parseDuration(m.window)! } : {}),
          reference: dropUndefined({ step: m.reference.step, output: m.reference.output, model: m.reference.model }),
          drift: m.drift,
          retrain: m.retrain,
          ...(m.alert ? { alert: m.alert } : {}),
        };
      }
    } catch (e) {
      if (e instanceof PipelineError)
        problems.push(new PipelineError(e.code, e.message, { where: at(['monitor', 'current']), hint: e.hint }));
      else throw e;
    }
  }
  return monitor;
}

/** The hpo section: its metric output exists and its search space is valid. */
function checkHpo(cx: Compilation, steps: Record<string, CompiledStep>): void {
  const { problems, at, spec } = cx;
  if (spec.hpo) {
    const h = spec.hpo;
    checkStepOutput(cx, steps, ['hpo', 'metric'], h.metric.step, h.metric.output);
    for (const problem of validateSpace(h.space))
      problems.push(new PipelineError('SPEC_INVALID', `hpo.space.${problem}.`, { where: at(['hpo', 'space', problem.split(':')[0]!]) }));
  }
}

/** The `steps.<id>.<...>` references in the templates of `value`, as paths after `steps`. */
function stepRefs(value: unknown): RefPath[] {
  const out: RefPath[] = [];
  forEachTemplate(value, (text) => {
    try {
      for (const part of parseTemplate(text))
        if ('expr' in part) for (const ref of references(part.expr)) if (ref[0] === 'steps') out.push(ref.slice(1));
    } catch {
      out.push(['*']); // reported elsewhere; unreadable counts as reading everything
    }
  });
  return out;
}

/**
 * Which dataset outputs a step may pass on deferred (lib/dataset.ts), and to whom: an output its
 * plugin can defer, read by at least one step, and only ever as a whole input binding
 * (`\${steps.a.outputs.dataset}`) of an input that takes a deferred dataset. Any other use (an
 * expression in `with:` or `when:`, part of a string, the hpo, monitor or registerModel section, no
 * reader at all: a result of the run) keeps it a Parquet file.
 */
function markDeferred(cx: Compilation, steps: Record<string, CompiledStep>): void {
  const { opts, spec, staticWith } = cx;
  const sections = JSON.stringify([spec.hpo ?? null, spec.monitor ?? null, spec.tracking ?? null]);
  for (const [id, step] of Object.entries(steps)) {
    const outputs = opts.catalog.get(step.uses)?.deferredOutputs?.(staticWith[id] ?? {}) ?? [];
    if (!outputs.length || sections.includes(JSON.stringify(id))) continue;
    const defer: Record<string, string[]> = {};
    for (const output of outputs) {
      const readers = new Set<string>();
      let whole = true;
      const reads = (ref: RefPath): boolean =>
        ref[0] === '*' || (ref[0] === id && (ref.length < 3 || ref[1] !== 'outputs' || ref[2] === output));
      for (const [other, s] of Object.entries(steps)) {
        if (other === id) continue;
        if (stepRefs([s.with, s.when]).some(reads)) whole = false;
        const takes = opts.catalog.get(s.uses)?.deferredInputs?.(staticWith[other] ?? {}) ?? [];
        for (const [name, template] of Object.entries(s.inputs)) {
          if (!stepRefs(template).some(reads)) continue;
          if (template === `\${steps.${id}.outputs.${output}}` && takes.includes(name.replace(/\?$/, ''))) readers.add(other);
          else whole = false;
        }
      }
      if (whole && readers.size) defer[output] = [...readers];
    }
    if (Object.keys(defer).length) step.defer = defer;
  }
}

/** The compiled pipeline, refused when it is too large to travel through Temporal's history. */
function assemble(cx: Compilation, steps: Record<string, CompiledStep>, monitor: CompiledPipeline['monitor']): CompiledPipeline {
  const { opts, spec, params, config, configChoices, configSources, allOverrides, stepIds } = cx;
  const register = spec.tracking?.registerModel;
  const compiled: CompiledPipeline = dropUndefined({
    hpo: spec.hpo,
    monitor,
    name: spec.name,
    description: spec.description,
    file: opts.file,
    params,
    config,
    configChoices,
    configSources,
    overrides: allOverrides,
    maxParallel: spec.maxParallel ?? DEFAULT_MAX_PARALLEL,
    cache: spec.cache ?? true,
    order: stepIds,
    steps,
    tracking: {
      enabled: spec.tracking?.enabled ?? true,
      experiment: spec.tracking?.experiment,
      ...(register
        ? { registerModel: { name: register.name, step: register.step, output: register.output, aliases: register.aliases } }
        : {}),
    },
  });
  const bytes = new TextEncoder().encode(JSON.stringify(compiled)).length;
  if (bytes > LIMITS.compiledBytes) {
    throw new PipelineError(
      'SPEC_INVALID',
      `The compiled pipeline is ${bytes} bytes; it travels through Temporal's history as one payload, limited here to ${LIMITS.compiledBytes}.`,
      {
        where: { file: opts.file },
        hint: 'Keep large values (lists of items, inline data) in data files and pass their paths.',
      },
    );
  }
  return compiled;
}

/** A copy of `value` without the keys zod reported as unrecognized. */
function withoutKeys(value: unknown, error: ZodError): unknown {
  const copy = structuredClone(value);
  for (const issue of error.issues) {
    if (issue.code !== 'unrecognized_keys') continue;
    const owner = lookup(
      copy,
      issue.path.map((p) => (typeof p === 'symbol' ? String(p) : p)),
    );
    if (owner !== null && typeof owner === 'object') for (const k of issue.keys) delete (owner as Record<string, unknown>)[k];
  }
  return copy;
}

/** Whether any template in these values reads conf.*. */
function readsConf(values: unknown[]): boolean {
  let found = false;
  forEachTemplate(values, (text) => {
    try {
      for (const part of parseTemplate(text)) if ('expr' in part && references(part.expr).some((r) => r[0] === 'conf')) found = true;
    } catch {
      /* reported elsewhere */
    }
  });
  return found;
}

/** Names for a hint: the first 20, then how many more. */
function listed(names: readonly string[]): string {
  return names.length <= 20 ? names.join(', ') : `${names.slice(0, 20).join(', ')} and ${names.length - 20} more`;
}

function dropUndefined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

/**
 * A `${...}` inside a param the plugin declares as code (a shell line, SQL) would splice a value
 * (from params, overrides, labels or step outputs) into code: one problem per such template.
 */
function codeProblems(
  id: string,
  withSpec: Record<string, unknown>,
  plugin: PluginInfo,
  at: (path: (string | number)[]) => Location,
): PipelineError[] {
  const patterns = (plugin.codeParams ?? []).map((p) => p.split('.'));
  if (patterns.length === 0) return [];
  const out: PipelineError[] = [];
  forEachTemplate(withSpec, (text, path) => {
    // At, inside or above a code param (`steps: ${...}` would hand the whole list of SQL to a value).
    const code = patterns.find((pat) => pat.slice(0, path.length).every((seg, i) => seg === '*' || seg === String(path[i])));
    if (!code) return;
    let exprs: string[];
    try {
      exprs = parseTemplate(text).flatMap((part) => ('expr' in part ? [part.source] : []));
    } catch {
      return; // a syntax error, reported by the expression check
    }
    if (exprs.length === 0) return; // only $${ escapes: literal text
    out.push(
      new PipelineError(
        'EXPR_IN_CODE',
        `Step '${id}' (${plugin.name}): '${path.join('.')}' is code, so it cannot contain '\${${exprs[0]}}': the value would be spliced into it.`,
        {
          where: at(path),
          hint: plugin.codeHint ?? `Pass the value to '${plugin.name}' as data, not inside '${code.join('.')}'.`,
        },
      ),
    );
  });
  return out;
}

/** True when the value at `path` (or any parent of it) is still an unresolved template. */
/**
 * Reports every `${...}` in `with` at, inside or above a code param (`steps.*.sql` matches
 * steps.0.sql; a template giving all of `steps` is refused too).
 */
function dependsOnRuntime(value: unknown, path: (string | number)[]): boolean {
  let cur: unknown = value;
  for (let i = 0; i <= path.length; i++) {
    if (typeof cur === 'string' && cur.includes('${')) return true;
    if (i === path.length || cur === null || typeof cur !== 'object') return false;
    cur = (cur as Record<string | number, unknown>)[path[i]!];
  }
  return false;
}

function checkReference(
  ref: RefPath,
  stepId: string,
  ctx: {
    params: Record<string, unknown>;
    config: Record<string, unknown>;
    spec: PipelineSpec;
    ancestors: Map<string, Set<string>>;
    outputsOf: (id: string) => string[] | undefined;
  },
): { message: string; hint?: string } | undefined {
  const [root, ...rest] = ref;
  const dotted = rest.join('.');
  switch (root) {
    case 'params':
      if (rest.length && lookup(ctx.params, rest) === undefined) {
        return {
          message: `the pipeline has no param '${dotted}'.${didYouMean(dotted, keyPaths(ctx.params))}`,
          hint: Object.keys(ctx.params).length ? `Params: ${listed(Object.keys(ctx.params))}.` : 'Declare it under `params:`.',
        };
      }
      return undefined;
    case 'conf':
      if (rest.length && lookup(ctx.config, rest) === undefined) {
        return {
          message: `the config has no key '${dotted}'.${didYouMean(dotted, keyPaths(ctx.config))}`,
          hint: "Run 'mlpipe validate <pipeline> --show-config' to see the composed config.",
        };
      }
      return undefined;
    case 'run':
      if (rest.length && !RUN_FIELDS.includes(String(rest[0]))) {
        return {
          message: `'run.${String(rest[0])}' does not exist.${didYouMean(String(rest[0]), RUN_FIELDS)}`,
          hint: `run offers: ${RUN_FIELDS.join(', ')}.`,
        };
      }
      return undefined;
    case 'steps': {
      const [target, field, output] = rest.map(String);
      if (!target) return { message: 'write steps.<step>.outputs.<name> or steps.<step>.status', hint: undefined };
      const targetSpec: StepSpec | undefined = Object.hasOwn(ctx.spec.steps, target) ? ctx.spec.steps[target] : undefined;
      if (!targetSpec) {
        return { message: `there is no step '${target}'.${didYouMean(target, Object.keys(ctx.spec.steps))}` };
      }
      if (!ctx.ancestors.get(stepId)!.has(target)) {
        return {
          message: `step '${stepId}' reads step '${target}' but does not need it, so '${target}' may not have run yet.`,
          hint: `Add '${target}' to the needs of '${stepId}'.`,
        };
      }
      if (field === undefined) return { message: `write steps.${target}.outputs.<name> or steps.${target}.status` };
      if (!STEP_FIELDS.includes(field)) {
        return {
          message: `steps.${target}.${field} does not exist.${didYouMean(field, STEP_FIELDS)}`,
          hint: `A step offers: ${STEP_FIELDS.join(', ')}.`,
        };
      }
      if (field === 'outputs' && output !== undefined) {
        const names = ctx.outputsOf(target);
        if (names && !names.includes(output)) {
          return {
            message: `step '${target}' (${targetSpec.uses}) has no output '${output}'.${didYouMean(output, names)}`,
            hint: names.length ? `Its outputs: ${names.join(', ')}.` : `'${targetSpec.uses}' declares no outputs.`,
          };
        }
      }
      return undefined;
    }
    default:
      return {
        message: `unknown name '${String(root)}'.${didYouMean(String(root), ROOTS)}`,
        hint: `Expressions read ${ROOTS.map((r) => `${r}.…`).join(', ')}.`,
      };
  }
}

/** A cycle as a list of step ids (first repeated at the end), or undefined. Deterministic. */
export function findCycle(ids: string[], needsOf: Record<string, string[]>): string[] | undefined {
  const color = new Map<string, 1 | 2>();
  const stack: string[] = [];
  const visit = (id: string): string[] | undefined => {
    color.set(id, 1);
    stack.push(id);
    for (const n of Object.hasOwn(needsOf, id) ? needsOf[id]! : []) {
      if (color.get(n) === 1) {
        const cyc = stack.slice(stack.indexOf(n));
        // Present the cycle in dependency order: a -> b means b needs a.
        return [...cyc, n].reverse();
      }
      if (!color.has(n)) {
        const found = visit(n);
        if (found) return found;
      }
    }
    stack.pop();
    color.set(id, 2);
    return undefined;
  };
  for (const id of ids) {
    if (!color.has(id)) {
      const found = visit(id);
      if (found) return found;
    }
  }
  return undefined;
}

function ancestorSets(ids: string[], needsOf: Record<string, string[]>): Map<string, Set<string>> {
  const memo = new Map<string, Set<string>>();
  const get = (id: string): Set<string> => {
    const known = memo.get(id);
    if (known) return known;
    const s = new Set<string>();
    memo.set(id, s);
    for (const n of Object.hasOwn(needsOf, id) ? needsOf[id]! : []) {
      s.add(n);
      for (const a of get(n)) s.add(a);
    }
    return s;
  };
  for (const id of ids) get(id);
  return memo;
}

/**
 * The part of the DAG that `until` needs: that step and the steps it needs, transitively, in the
 * same order (an HPO trial runs up to its metric step). INPUT_INVALID when there is no such step.
 */
export function pruneUntil(compiled: CompiledPipeline, until: string): CompiledPipeline {
  if (!Object.hasOwn(compiled.steps, until)) {
    throw new PipelineError('INPUT_INVALID', `until: pipeline '${compiled.name}' has no step '${until}'.`, {
      hint: `Steps: ${compiled.order.join(', ')}.`,
    });
  }
  const keep = new Set<string>();
  const visit = (id: string): void => {
    if (keep.has(id)) return;
    keep.add(id);
    for (const n of compiled.steps[id]!.needs) visit(n);
  };
  visit(until);
  return {
    ...compiled,
    order: compiled.order.filter((id) => keep.has(id)),
    steps: Object.fromEntries(
      Object.entries(compiled.steps)
        .filter(([id]) => keep.has(id))
        .map(([id, step]) => [id, keptDefer(step, keep)]),
    ),
  };
}

/** A step's deferred outputs read by kept steps only: an output whose readers are all left out is a result, materialised. */
function keptDefer(step: CompiledStep, keep: Set<string>): CompiledStep {
  if (!step.defer) return step;
  const defer = Object.fromEntries(
    Object.entries(step.defer)
      .map(([o, readers]) => [o, readers.filter((r) => keep.has(r))] as const)
      .filter(([, readers]) => readers.length),
  );
  const { defer: _, ...rest } = step;
  return Object.keys(defer).length ? { ...rest, defer } : rest;
}

function schemaProblems(error: ZodError, doc: SourceDoc): PipelineError[] {
  const out: PipelineError[] = [];
  for (const issue of error.issues) {
    const path = issue.path.map((p) => (typeof p === 'symbol' ? String(p) : p));
    if (issue.code === 'unrecognized_keys') {
      const known = knownKeysFor(path);
      for (const key of issue.keys) {
        const where = doc.locate([...path, key]);
        const owner =
          path.length === 0
            ? 'the pipeline'
            : path[0] === 'steps' && path.length === 2
              ? `step '${String(path[1])}'`
              : `'${path.join('.')}'`;
        out.push(
          new PipelineError('SPEC_UNKNOWN_KEY', `Unknown key '${key}' in ${owner}.${didYouMean(key, known)}`, {
            where,
            hint: `Allowed keys: ${known.join(', ')}.`,
          }),
        );
      }
      continue;
    }
    const missing = lookup(doc.value, path) === undefined;
    const last = path[path.length - 1];
    const code: ErrorCode = 'SPEC_INVALID';
    const message = missing ? `'${String(last)}' is required.` : `'${path.join('.')}' ${issue.message.replace(/^Invalid input: /, '')}.`;
    out.push(new PipelineError(code, message, { where: doc.locate(path), hint: hintFor(path) }));
  }
  // Report in file order, as an editor would list them.
  return out.sort((a, b) => (a.where?.line ?? 0) - (b.where?.line ?? 0) || (a.where?.column ?? 0) - (b.where?.column ?? 0));
}

function knownKeysFor(path: (string | number)[]): string[] {
  if (path.length === 0) return KNOWN_KEYS.pipeline;
  if (path[0] === 'steps' && path.length === 2) return KNOWN_KEYS.step;
  if (path[path.length - 1] === 'retry') return KNOWN_KEYS.retry;
  if (path[0] === 'stepDefaults' && path.length === 1) return KNOWN_KEYS.stepDefaults;
  if (path[0] === 'tracking' && path.length === 1) return KNOWN_KEYS.tracking;
  if (path[0] === 'monitor' && path.length === 1) return KNOWN_KEYS.monitor;
  if (path[0] === 'hpo' && path.length === 1) return KNOWN_KEYS.hpo;
  if (path[0] === 'tracking' && path[1] === 'registerModel' && path.length === 2) return KNOWN_KEYS.registerModel;
  return [];
}

function hintFor(path: (string | number)[]): string | undefined {
  const last = path[path.length - 1];
  if (last === 'timeout' || last === 'heartbeat' || last === 'initialInterval' || last === 'maximumInterval' || last === 'serviceWait')
    return 'Durations look like 250ms, 30s, 5m or 1h30m.';
  if (last === 'uses') return "Name a plugin, e.g. util.echo; 'mlpipe plugins' lists them.";
  if (last === 'needs') return 'needs is a step id or a list of step ids.';
  return undefined;
}
