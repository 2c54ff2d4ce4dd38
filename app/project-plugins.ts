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
  return (
    !!x &&
    typeof x.name === 'string' &&
    typeof x.version === 'string' &&
    typeof x.run === 'function' &&
    typeof x.params?.safeParse === 'function'
  );
}

let typescriptLoader: Promise<void> | undefined;

/**
 * A project's plugins may be TypeScript. From a checkout, mlpipe itself runs through tsx, which
 * loads them too; the installed package is JavaScript, so it registers tsx's loader once, before
 * importing a .ts file.
 */
function loadTypeScript(file: string): Promise<void> {
  if (!/\.m?ts$/.test(file) || import.meta.url.endsWith('.ts')) return Promise.resolve();
  typescriptLoader ??= import('tsx/esm/api').then(({ register }) => void register());
  return typescriptLoader;
}

export async function loadProjectRegistry(projectDir: string): Promise<Registry> {
  const file = PROJECT_PLUGIN_FILES.map((f) => join(projectDir, f)).find((f) => existsSync(f));
  if (!file) return createDefaultRegistry();
  let mod: { plugins?: unknown; default?: unknown };
  try {
    await loadTypeScript(file);
    mod = (await import(pathToFileURL(file).href)) as typeof mod;
  } catch (e) {
    // A syntax error comes from esbuild (through tsx) as "Transform failed ...\n<file>:2:24: ERROR: <what>".
    const message = e instanceof Error ? e.message : String(e);
    const syntax = /:(\d+):(\d+): ERROR: (.+)$/m.exec(message);
    const first =
      syntax?.[3] ??
      message
        .split('\n')
        .find((l) => l.trim())
        ?.trim() ??
      'unknown error';
    throw new PipelineError('PLUGIN_INVALID', `${file} failed to load: ${first}`, {
      where: { file, ...(syntax ? { line: Number(syntax[1]), column: Number(syntax[2]) + 1 } : {}) },
      hint: `Fix the file (its imports resolve from ${projectDir}; a syntax error or an exception at import ends here); check with 'node --import tsx ${file}'.`,
      cause: e,
    });
  }
  const list = mod.plugins ?? mod.default;
  if (!Array.isArray(list) || !list.every(isPlugin)) {
    throw new PipelineError('PLUGIN_INVALID', `${file} must export \`plugins\`: an array of definePlugin(...) results.`, {
      where: { file },
      hint: 'export const plugins = [myPlugin];  // with myPlugin = definePlugin({ name, version, params, outputs, run })',
    });
  }
  return createDefaultRegistry(list);
}
