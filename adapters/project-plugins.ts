/**
 * A project's own plugins: `mlpipe.plugins.ts` (or .mjs/.js) at the project root exporting
 * `plugins` (an array of definePlugin results). The CLI and every worker build their registry from
 * the built-in plugins plus these, so `validate`, `run` and the workers agree on what exists.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { PipelineError } from '../engine/errors.js';
import { createDefaultRegistry } from '../plugins/index.js';
import type { Registry } from '../plugins/registry.js';
import type { AnyPlugin } from '../plugins/sdk.js';

export const PROJECT_PLUGIN_FILES = ['mlpipe.plugins.ts', 'mlpipe.plugins.mts', 'mlpipe.plugins.mjs', 'mlpipe.plugins.js'];

function isPlugin(p: unknown): p is AnyPlugin {
  const x = p as AnyPlugin;
  return !!x && typeof x.name === 'string' && typeof x.version === 'string' && typeof x.run === 'function' && typeof x.params?.safeParse === 'function';
}

export async function loadProjectRegistry(projectDir: string): Promise<Registry> {
  const file = PROJECT_PLUGIN_FILES.map((f) => join(projectDir, f)).find((f) => existsSync(f));
  if (!file) return createDefaultRegistry();
  const mod = (await import(pathToFileURL(file).href)) as { plugins?: unknown; default?: unknown };
  const list = mod.plugins ?? mod.default;
  if (!Array.isArray(list) || !list.every(isPlugin)) {
    throw new PipelineError('PLUGIN_INVALID', `${file} must export \`plugins\`: an array of definePlugin(...) results.`, {
      where: { file },
      hint: "export const plugins = [myPlugin];  // with myPlugin = definePlugin({ name, version, params, outputs, run })",
    });
  }
  return createDefaultRegistry(list);
}
