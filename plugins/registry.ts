/**
 * The explicit plugin registry. Built once from a list; duplicate names are rejected here, unknown
 * names at compile time (and by runStep as a backstop).
 */
import type { z } from 'zod';
import type { ParamIssue, PluginCatalog, PluginInfo } from '../engine/catalog.js';
import { PipelineError } from '../engine/errors.js';
import { didYouMean } from '../engine/suggest.js';
import { isArtifactRef } from '../engine/types.js';
import type { AnyPlugin } from './sdk.js';

export interface Registry extends PluginCatalog {
  plugin(name: string): AnyPlugin | undefined;
  /** The plugin, or a non-retryable PLUGIN_UNKNOWN error with a suggestion. */
  require(name: string): AnyPlugin;
  list(): AnyPlugin[];
}

export function inputKinds(plugin: AnyPlugin, params: unknown): Record<string, string> {
  if (typeof plugin.inputs !== 'function') return plugin.inputs ?? {};
  const schema: z.ZodType = plugin.params;
  const parsed = schema.safeParse(params);
  return parsed.success ? plugin.inputs(parsed.data) : {};
}

export function outputKinds(plugin: AnyPlugin, params: unknown): Record<string, string> | undefined {
  if (typeof plugin.outputs !== 'function') return plugin.outputs;
  const schema: z.ZodType = plugin.params;
  const parsed = schema.safeParse(params);
  return parsed.success ? plugin.outputs(parsed.data) : undefined;
}

/**
 * The inputs a step gets, against the plugin's declarations (for these parsed params): every
 * required input present, artifact kinds as artifact references. Throws PLUGIN_INPUT.
 */
export function checkPluginInputs(plugin: AnyPlugin, params: unknown, inputs: Record<string, unknown>, stepId: string): void {
  for (const [name, kind] of Object.entries(inputKinds(plugin, params))) {
    const key = name.replace(/\?$/, '');
    const v = inputs[key];
    if ((v === undefined || v === null) && !name.endsWith('?')) {
      throw new PipelineError(
        'PLUGIN_INPUT',
        `Step '${stepId}': input '${key}' is missing (the step that should provide it gave no value).`,
      );
    }
    if (v !== undefined && v !== null && ['artifact', 'dataset', 'model'].includes(kind) && !isArtifactRef(v)) {
      throw new PipelineError(
        'PLUGIN_INPUT',
        `Step '${stepId}': input '${key}' must be an artifact reference (${kind}), got ${JSON.stringify(v).slice(0, 80)}.`,
      );
    }
  }
}

/** What `run` returned, against the declared outputs (for these parsed params). Throws PLUGIN_OUTPUT. */
export function checkPluginOutputs(plugin: AnyPlugin, params: unknown, outputs: Record<string, unknown>): void {
  const declared = outputKinds(plugin, params);
  if (!declared) return;
  const missing = Object.keys(declared).filter((k) => !(k in outputs));
  if (missing.length) {
    throw new PipelineError('PLUGIN_OUTPUT', `Plugin '${plugin.name}' did not return declared output(s) ${missing.join(', ')}.`, {
      hint: 'This is a bug in the plugin.',
    });
  }
}

/** The plugin's deferred outputs or inputs for params (the defaults filled in); none when they do not parse. */
function deferredNames(p: AnyPlugin, which: 'outputs' | 'inputs'): (params: Record<string, unknown>) => string[] {
  return (params) => {
    const fn = p.deferred?.[which];
    if (!fn) return [];
    const schema: z.ZodType = p.params;
    const parsed = schema.safeParse(params);
    return parsed.success ? (fn as (p: unknown) => string[])(parsed.data) : [];
  };
}

export function createRegistry(plugins: AnyPlugin[]): Registry {
  const byName = new Map<string, AnyPlugin>();
  for (const p of plugins) {
    if (byName.has(p.name)) {
      throw new PipelineError(
        'PLUGIN_DUPLICATE',
        `Two plugins are named '${p.name}' (versions ${byName.get(p.name)!.version} and ${p.version}).`,
        {
          hint: 'Plugin names must be unique; rename one of them.',
        },
      );
    }
    byName.set(p.name, p);
  }
  const info = (p: AnyPlugin): PluginInfo => ({
    name: p.name,
    version: p.version,
    inputNames: (params) => inputKinds(p, params),
    cacheable: p.cacheable ?? true,
    codeParams: p.codeParams ?? [],
    codeHint: p.codeHint,
    pathParams: p.pathParams ?? [],
    runsCode: p.runsCode === true,
    ...(p.heartbeat?.blocksEventLoopMs ? { blocksEventLoopMs: p.heartbeat.blocksEventLoopMs } : {}),
    ...(p.deferred ? { deferredOutputs: deferredNames(p, 'outputs'), deferredInputs: deferredNames(p, 'inputs') } : {}),
    outputNames: (params) => {
      const kinds = outputKinds(p, params);
      return kinds ? Object.keys(kinds) : undefined;
    },
    checkParams: (params): ParamIssue[] => {
      const schema: z.ZodType = p.params;
      const r = schema.safeParse(params);
      if (r.success) return [];
      return r.error.issues.flatMap((i): ParamIssue[] => {
        const path = i.path.map((x) => (typeof x === 'symbol' ? String(x) : x));
        if (i.code === 'unrecognized_keys') {
          return i.keys.map((k) => ({ path: [...path, k], message: `is not a param of this plugin.` }));
        }
        return [{ path, message: i.message.replace(/^Invalid input: /, '') }];
      });
    },
  });
  return {
    get: (name) => {
      const p = byName.get(name);
      return p ? info(p) : undefined;
    },
    names: () => [...byName.keys()],
    plugin: (name) => byName.get(name),
    require(name) {
      const p = byName.get(name);
      if (!p) {
        throw new PipelineError('PLUGIN_UNKNOWN', `No plugin named '${name}' on this worker.${didYouMean(name, byName.keys())}`, {
          hint: "Check the step's `uses`, or run a worker built with that plugin.",
        });
      }
      return p;
    },
    list: () => [...byName.values()],
  };
}
