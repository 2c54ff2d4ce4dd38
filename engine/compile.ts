/**
 * Compiles a pipeline YAML into a plain-JSON `CompiledPipeline`, or reports every problem it finds
 * with file, line, column, key path and a hint. Pure: files come in through `ConfigFiles` and
 * plugins through `PluginCatalog`.
 */
import type { ZodError } from 'zod';
import type { PluginCatalog } from './catalog.js';
import { applyValueOverrides, composeConfig, keyPaths, parseOverride, type ConfigFiles, type Override } from './config.js';
import { parseDuration } from './duration.js';
import { validateSpace } from './hpo.js';
import { PipelineError, SpecError, SpecErrors, type ErrorCode, type Location } from './errors.js';
import { forEachTemplate, lookup, parseTemplate, references, resolveDeep, type RefPath } from './expressions.js';
import { DEFAULT_MAX_PARALLEL, DEFAULT_TIMEOUT_MS, KNOWN_KEYS, pipelineSchema, type PipelineSpec, type StepSpec } from './spec.js';
import { closest, didYouMean } from './suggest.js';
import { defaultHeartbeatMs } from './step-defaults.js';
import type { CompiledPipeline, CompiledStep, RetrySpec } from './types.js';
import { parseYaml, type SourceDoc } from './yaml-doc.js';

export interface CompileOptions {
  /** Path shown in messages (relative to the project when possible). */
  file: string;
  text: string;
  conf: ConfigFiles;
  catalog: PluginCatalog;
  overrides?: string[];
}

/** Runtime roots an expression may read, and what each offers. */
const RUN_FIELDS = ['id', 'workflowId', 'pipeline', 'labels'];
const STEP_FIELDS = ['outputs', 'status'];
const ROOTS = ['params', 'conf', 'steps', 'run'];

export function compilePipeline(opts: CompileOptions): CompiledPipeline {
  const doc = parseYaml(opts.file, opts.text);
  const problems: PipelineError[] = [];
  const at = (path: (string | number)[]): Location => doc.locate(path);

  if (doc.value === null || typeof doc.value !== 'object' || Array.isArray(doc.value)) {
    throw new SpecError('SPEC_INVALID', 'A pipeline file must be a YAML mapping with at least `name` and `steps`.', {
      where: { file: opts.file, line: 1 },
      hint: 'Start from an example in pipelines/, e.g. pipelines/diamond.yaml.',
    });
  }
  const parsed = pipelineSchema.safeParse(doc.value);
  if (!parsed.success) throw new SpecErrors(schemaProblems(parsed.error, doc));
  const spec: PipelineSpec = parsed.data;
  const stepIds = Object.keys(spec.steps);
  if (stepIds.length === 0) {
    throw new SpecError('SPEC_INVALID', 'The pipeline has no steps.', { where: at(['steps']), hint: 'Add at least one step under `steps:`.' });
  }

  // Overrides: `params.*` go to pipeline params, the rest to the composed config.
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
  if (problems.length) throw new SpecErrors(problems);
  const paramOverrides = parsedOverrides.filter(({ ov }) => ov.path[0] === 'params');
  const configOverrides = parsedOverrides.filter(({ ov }) => ov.path[0] !== 'params');

  const configName = typeof spec.config === 'string' ? spec.config : spec.config?.name;
  let config: Record<string, unknown> = {};
  let configChoices: Record<string, string> = {};
  let configSources: string[] = [];
  if (configName) {
    const composed = composeConfig(
      configName,
      opts.conf,
      configOverrides.map((o) => o.ov),
      configOverrides.map((o) => o.index),
    );
    config = composed.config;
    configChoices = composed.choices;
    configSources = composed.sources;
  } else if (configOverrides.length > 0) {
    const first = configOverrides[0]!;
    throw new SpecError('OVERRIDE_UNKNOWN_KEY', `Override '${first.ov.text}' targets the config, but this pipeline has no \`config:\`.`, {
      where: { file: '<overrides>', path: [first.index] },
      hint: 'Override pipeline params with params.<name>=value, or add `config: <name>` to the pipeline.',
    });
  }
  const params = applyValueOverrides(spec.params ?? {}, paramOverrides, 'params', ['params']);

  // Plugins and needs.
  const needsOf: Record<string, string[]> = {};
  for (const id of stepIds) {
    const step = spec.steps[id]!;
    if (!opts.catalog.get(step.uses)) {
      const near = closest(step.uses, opts.catalog.names());
      problems.push(
        new SpecError('PLUGIN_UNKNOWN', `Step '${id}' uses unknown plugin '${step.uses}'.${near ? ` Did you mean '${near}'?` : ''}`, {
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
        problems.push(new SpecError('DAG_CYCLE', `Step '${id}' needs itself.`, { where: at(path), hint: 'Remove it from its own `needs`.' }));
      } else if (!spec.steps[n]) {
        problems.push(
          new SpecError('DAG_MISSING_NEED', `Step '${id}' needs '${n}', which is not a step of this pipeline.${didYouMean(n, stepIds)}`, {
            where: at(path),
            hint: `Steps: ${stepIds.join(', ')}.`,
          }),
        );
      } else if (!needsOf[id]!.includes(n)) {
        needsOf[id]!.push(n);
      }
    });
  }
  const cycle = findCycle(stepIds, needsOf);
  if (cycle) {
    problems.push(
      new SpecError('DAG_CYCLE', `The steps form a cycle: ${cycle.join(' -> ')}.`, {
        where: at(['steps', cycle[0]!, 'needs']),
        hint: 'A step cannot (even indirectly) need itself; remove one of these `needs`.',
      }),
    );
  }
  if (problems.length) throw new SpecErrors(problems);

  const ancestors = ancestorSets(stepIds, needsOf);
  const defaults = spec.stepDefaults ?? {};
  const steps: Record<string, CompiledStep> = {};
  const staticScope = { params, conf: config };
  const isStatic = (refs: RefPath[]): boolean => refs.every((r) => r[0] === 'params' || r[0] === 'conf');

  // Params with params/config expressions resolved, for every step: a step's declared outputs may
  // depend on its params, and its children are checked against those outputs.
  const staticWith: Record<string, Record<string, unknown>> = {};
  for (const id of stepIds) {
    const raw = spec.steps[id]!.with ?? {};
    try {
      staticWith[id] = resolveDeep(raw, staticScope, isStatic) as Record<string, unknown>;
    } catch {
      staticWith[id] = raw; // reported with its location below
    }
  }
  const outputsOf = (id: string): string[] | undefined => opts.catalog.get(spec.steps[id]!.uses)?.outputNames(staticWith[id]!);

  for (const id of stepIds) {
    const step = spec.steps[id]!;
    const plugin = opts.catalog.get(step.uses)!;
    const stepPath = ['steps', id];
    const before = problems.length;

    // Check every expression of the step.
    const checkTemplates = (value: unknown, base: (string | number)[]): void =>
      forEachTemplate(value, (text, path) => {
        const where = at([...base, ...path]);
        try {
          for (const part of parseTemplate(text)) {
            if (!('expr' in part)) continue;
            for (const ref of references(part.expr)) {
              const problem = checkReference(ref, id, { params, config, spec, ancestors, outputsOf });
              if (problem) problems.push(new SpecError('EXPR_REFERENCE', `In '\${${part.source}}': ${problem.message}`, { where, hint: problem.hint }));
            }
          }
        } catch (e) {
          if (e instanceof PipelineError) problems.push(new SpecError(e.code, e.message, { where, hint: e.hint }));
          else throw e;
        }
      });
    checkTemplates(step.with ?? {}, [...stepPath, 'with']);
    checkTemplates(step.inputs ?? {}, [...stepPath, 'inputs']);
    if (typeof step.when === 'string') checkTemplates({ when: step.when }, stepPath);
    if (problems.length > before) continue;

    // Resolve what is known now.
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
        problems.push(new SpecError(e.code, e.message, { where: at(stepPath), hint: e.hint }));
        continue;
      }
      throw e;
    }

    // Params against the plugin's schema; values still waiting for step outputs are checked at run time.
    for (const issue of plugin.checkParams(withResolved)) {
      if (dependsOnRuntime(withResolved, issue.path)) continue;
      problems.push(
        new SpecError('PLUGIN_PARAMS', `Step '${id}' (${plugin.name}): ${issue.path.length ? `'${issue.path.join('.')}' ` : ''}${issue.message}`, {
          where: at([...stepPath, 'with', ...issue.path]),
          hint: `Check the params of '${plugin.name}' with 'mlpipe plugins ${plugin.name}'.`,
        }),
      );
    }

    // Inputs: explicit bindings, else a parent output with the input's name.
    const inputs: Record<string, string> = {};
    const declared = Object.keys(plugin.inputNames(withResolved)).map((k) => ({ name: k.replace(/\?$/, ''), optional: k.endsWith('?') }));
    for (const [name, template] of Object.entries(step.inputs ?? {})) {
      if (!declared.some((d) => d.name === name)) {
        problems.push(
          new SpecError('PLUGIN_INPUT', `Step '${id}': plugin '${plugin.name}' has no input '${name}'.${didYouMean(name, declared.map((d) => d.name))}`, {
            where: at([...stepPath, 'inputs', name]),
            hint: declared.length ? `Its inputs: ${declared.map((d) => d.name).join(', ')}.` : `'${plugin.name}' takes no inputs.`,
          }),
        );
      } else inputs[name] = template;
    }
    for (const d of declared) {
      if (inputs[d.name] !== undefined) continue;
      const providers = needsOf[id]!.filter((p) => outputsOf(p)?.includes(d.name));
      if (providers.length === 1) inputs[d.name] = `\${steps.${providers[0]}.outputs.${d.name}}`;
      else if (providers.length > 1) {
        problems.push(
          new SpecError('PLUGIN_INPUT', `Step '${id}': input '${d.name}' could come from ${providers.join(' or ')}.`, {
            where: at([...stepPath, 'needs']),
            hint: `Bind it explicitly: inputs: { ${d.name}: \${steps.${providers[0]}.outputs.${d.name}} }`,
          }),
        );
      } else if (!d.optional) {
        problems.push(
          new SpecError('PLUGIN_INPUT', `Step '${id}': input '${d.name}' of '${plugin.name}' is not bound, and no step it needs has an output '${d.name}'.`, {
            where: at(stepPath),
            hint: `Add inputs: { ${d.name}: \${steps.<step>.outputs.<output>} } and list that step in needs.`,
          }),
        );
      }
    }

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
    const cacheSpec = typeof step.cache === 'object' ? step.cache : undefined;
    for (const [i, path] of (cacheSpec?.ignore ?? []).entries()) {
      const head = path.split('.')[0]!;
      if (!(head in withResolved)) {
        problems.push(
          new SpecError('SPEC_INVALID', `Step '${id}': cache.ignore names '${path}', but '${head}' is not set in the step's with:.${didYouMean(head, Object.keys(withResolved))}`, {
            where: at([...stepPath, 'cache', 'ignore', i]),
            hint: Object.keys(withResolved).length ? `Params set in with: ${Object.keys(withResolved).join(', ')}.` : 'The step sets no params in with:.',
          }),
        );
      }
    }
    const timeout = step.timeout ?? defaults.timeout;
    const heartbeat = step.heartbeat ?? defaults.heartbeat;
    steps[id] = dropUndefined({
      id,
      uses: step.uses,
      pluginVersion: plugin.version,
      description: step.description,
      with: withResolved,
      inputs,
      needs: needsOf[id]!,
      when,
      ifNeedsSkipped: step.ifNeedsSkipped ?? 'skip',
      retry: dropUndefined(retry),
      timeoutMs: timeout === undefined ? DEFAULT_TIMEOUT_MS : parseDuration(timeout)!,
      heartbeatMs: heartbeat === undefined ? defaultHeartbeatMs(plugin.blocksEventLoopMs) : parseDuration(heartbeat),
      cache: (typeof step.cache === 'boolean' ? step.cache : cacheSpec?.enabled) ?? defaults.cache ?? plugin.cacheable,
      cacheIgnore: cacheSpec?.ignore,
      taskQueue: step.taskQueue ?? defaults.taskQueue,
      line: at(stepPath).line,
    });
  }
  /** A section that names a step's output (`section` is its key path): the step and the output must exist. */
  const checkStepOutput = (section: string[], step: string, output: string): void => {
    const target = steps[step];
    if (!target) {
      problems.push(new SpecError('SPEC_INVALID', `${section.join('.')}.step: there is no step '${step}'.${didYouMean(step, stepIds)}`, { where: at([...section, 'step']), hint: `Steps: ${stepIds.join(', ')}.` }));
      return;
    }
    const declared = opts.catalog.get(target.uses)?.outputNames(staticWith[step] ?? {});
    if (declared && !declared.includes(output)) {
      problems.push(new SpecError('SPEC_INVALID', `${section.join('.')}: step '${step}' (${target.uses}) has no output '${output}'.`, { where: at(section), hint: `Its outputs: ${declared.join(', ')}.` }));
    }
  };
  const register = spec.tracking?.registerModel;
  if (register) checkStepOutput(['tracking', 'registerModel'], register.step, register.output);
  let monitor: CompiledPipeline['monitor'];
  if (spec.monitor) {
    const m = spec.monitor;
    checkStepOutput(['monitor', 'reference'], m.reference.step, m.reference.output);
    try {
      const current = resolveDeep(m.current, staticScope, isStatic);
      if (typeof current !== 'string' || current.includes('${')) {
        problems.push(new SpecError('SPEC_INVALID', 'monitor.current must be known before the run starts (params and config only).', { where: at(['monitor', 'current']) }));
      } else {
        monitor = { current, ...(m.window ? { windowMs: parseDuration(m.window)! } : {}), reference: dropUndefined({ step: m.reference.step, output: m.reference.output, model: m.reference.model }), drift: m.drift, retrain: m.retrain, ...(m.alert ? { alert: m.alert } : {}) };
      }
    } catch (e) {
      if (e instanceof PipelineError) problems.push(new SpecError(e.code, e.message, { where: at(['monitor', 'current']), hint: e.hint }));
      else throw e;
    }
  }
  if (spec.hpo) {
    const h = spec.hpo;
    checkStepOutput(['hpo', 'metric'], h.metric.step, h.metric.output);
    for (const problem of validateSpace(h.space)) problems.push(new SpecError('SPEC_INVALID', `hpo.space.${problem}.`, { where: at(['hpo', 'space', problem.split(':')[0]!]) }));
  }
  if (problems.length) throw new SpecErrors(problems);

  return dropUndefined({
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
      ...(register ? { registerModel: { name: register.name, step: register.step, output: register.output, aliases: register.aliases } } : {}),
    },
  });
}

function dropUndefined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

/** True when the value at `path` (or any parent of it) is still an unresolved template. */
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
    ancestors: Record<string, Set<string>>;
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
          hint: Object.keys(ctx.params).length ? `Params: ${Object.keys(ctx.params).join(', ')}.` : 'Declare it under `params:`.',
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
        return { message: `'run.${String(rest[0])}' does not exist.${didYouMean(String(rest[0]), RUN_FIELDS)}`, hint: `run offers: ${RUN_FIELDS.join(', ')}.` };
      }
      return undefined;
    case 'steps': {
      const [target, field, output] = rest.map(String);
      if (!target) return { message: "write steps.<step>.outputs.<name> or steps.<step>.status", hint: undefined };
      const targetSpec: StepSpec | undefined = ctx.spec.steps[target];
      if (!targetSpec) {
        return { message: `there is no step '${target}'.${didYouMean(target, Object.keys(ctx.spec.steps))}` };
      }
      if (!ctx.ancestors[stepId]!.has(target)) {
        return {
          message: `step '${stepId}' reads step '${target}' but does not need it, so '${target}' may not have run yet.`,
          hint: `Add '${target}' to the needs of '${stepId}'.`,
        };
      }
      if (field === undefined) return { message: `write steps.${target}.outputs.<name> or steps.${target}.status` };
      if (!STEP_FIELDS.includes(field)) {
        return { message: `steps.${target}.${field} does not exist.${didYouMean(field, STEP_FIELDS)}`, hint: `A step offers: ${STEP_FIELDS.join(', ')}.` };
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
  const color: Record<string, 0 | 1 | 2> = {};
  const stack: string[] = [];
  const visit = (id: string): string[] | undefined => {
    color[id] = 1;
    stack.push(id);
    for (const n of needsOf[id] ?? []) {
      if (color[n] === 1) {
        const cyc = stack.slice(stack.indexOf(n));
        // Present the cycle in dependency order: a -> b means b needs a.
        return [...cyc, n].reverse();
      }
      if (!color[n]) {
        const found = visit(n);
        if (found) return found;
      }
    }
    stack.pop();
    color[id] = 2;
    return undefined;
  };
  for (const id of ids) {
    if (!color[id]) {
      const found = visit(id);
      if (found) return found;
    }
  }
  return undefined;
}

function ancestorSets(ids: string[], needsOf: Record<string, string[]>): Record<string, Set<string>> {
  const memo: Record<string, Set<string>> = {};
  const get = (id: string): Set<string> => {
    if (memo[id]) return memo[id];
    const s = new Set<string>();
    memo[id] = s;
    for (const n of needsOf[id] ?? []) {
      s.add(n);
      for (const a of get(n)) s.add(a);
    }
    return s;
  };
  for (const id of ids) get(id);
  return memo;
}

function schemaProblems(error: ZodError, doc: SourceDoc): PipelineError[] {
  const out: PipelineError[] = [];
  for (const issue of error.issues) {
    const path = issue.path.map((p) => (typeof p === 'symbol' ? String(p) : p));
    if (issue.code === 'unrecognized_keys') {
      const known = knownKeysFor(path);
      for (const key of issue.keys) {
        const where = doc.locate([...path, key]);
        const owner = path.length === 0 ? 'the pipeline' : path[0] === 'steps' && path.length === 2 ? `step '${String(path[1])}'` : `'${path.join('.')}'`;
        out.push(
          new SpecError('SPEC_UNKNOWN_KEY', `Unknown key '${key}' in ${owner}.${didYouMean(key, known)}`, {
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
    out.push(new SpecError(code, message, { where: doc.locate(path), hint: hintFor(path) }));
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
  if (last === 'timeout' || last === 'heartbeat' || last === 'initialInterval' || last === 'maximumInterval' || last === 'serviceWait') return 'Durations look like 250ms, 30s, 5m or 1h30m.';
  if (last === 'uses') return "Name a plugin, e.g. util.echo; 'mlpipe plugins' lists them.";
  if (last === 'needs') return 'needs is a step id or a list of step ids.';
  return undefined;
}
