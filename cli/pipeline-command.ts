/** `mlpipe validate`, `graph`, `plugins`: the project's pipelines and plugins, compiled here (no server). */
import { parseArgs } from 'node:util';
import { z } from 'zod';
import type { Settings } from '../app/project.js';
import { loadProjectRegistry } from '../app/project-plugins.js';
import { renderMermaid } from './graph.js';
import { out, usageError } from './output.js';
import { compile } from './shared.js';

export async function cmdValidate(argv: string[], settings: Settings): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { 'show-config': { type: 'boolean', default: false }, json: { type: 'boolean', default: false } },
  });
  const [ref, ...overrides] = positionals;
  if (!ref) throw usageError('mlpipe validate needs a pipeline name or path.');
  const compiled = await compile(settings, ref, overrides);
  if (values.json) {
    out(JSON.stringify(compiled, null, 2));
    return 0;
  }
  const choices = Object.entries(compiled.configChoices).map(([g, o]) => `${g}=${o}`);
  out(
    `ok: ${compiled.file}: pipeline '${compiled.name}', ${compiled.order.length} steps, maxParallel ${compiled.maxParallel}${choices.length ? `, config ${choices.join(' ')}` : ''}`,
  );
  if (values['show-config']) {
    out(JSON.stringify({ params: compiled.params, conf: compiled.config }, null, 2));
  }
  return 0;
}

export async function cmdGraph(argv: string[], settings: Settings): Promise<number> {
  const { positionals } = parseArgs({ args: argv, allowPositionals: true, options: {} });
  const [ref, ...overrides] = positionals;
  if (!ref) throw usageError('mlpipe graph needs a pipeline name or path.');
  out(renderMermaid(await compile(settings, ref, overrides)));
  return 0;
}

export async function cmdPlugins(argv: string[], settings: Settings): Promise<number> {
  const registry = await loadProjectRegistry(settings.projectDir);
  const [name] = argv;
  if (name) {
    const p = registry.require(name);
    out(`${p.name} (version ${p.version})\n  ${p.description}`);
    out(`  inputs: ${typeof p.inputs === 'function' ? '(depend on params)' : JSON.stringify(p.inputs ?? {})}`);
    out(`  outputs: ${typeof p.outputs === 'function' ? '(depend on params)' : JSON.stringify(p.outputs)}`);
    out(`  params (JSON Schema):\n${JSON.stringify(z.toJSONSchema(p.params, { io: 'input', unrepresentable: 'any' }), null, 2)}`);
    return 0;
  }
  for (const p of registry.list().sort((a, b) => a.name.localeCompare(b.name))) out(`${p.name.padEnd(16)} ${p.description}`);
  return 0;
}
