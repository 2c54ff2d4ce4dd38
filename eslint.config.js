// Lint rules. The important ones: imports run one way between the layers (ARCHITECTURE.md), workflow
// code stays deterministic (no Node built-ins, no value imports of activities, no timers or
// randomness of its own), and no promise is left floating anywhere.
import { builtinModules } from 'node:module';
import prettier from 'eslint-config-prettier';
import tseslint from 'typescript-eslint';

const nodeBuiltins = [...builtinModules, ...builtinModules.map((m) => `${m}/**`), 'node:*'];
const temporal = ['@temporalio/*'];
const sdks = [...temporal, '@google-cloud/*', 'undici', '@duckdb/*', 'onnxruntime-node', '@tensorflow/*', 'protobufjs'];

/** The layers, lowest first. A layer may import the ones listed in `may`, never the others. */
const LAYERS = {
  engine: { may: [], packages: sdks, why: 'engine/ is the pure core: it imports no other layer and no SDK.' },
  adapters: { may: ['engine'], packages: temporal, why: 'adapters/ implement the engine ports: they import only engine/.' },
  lib: { may: ['engine', 'adapters'], packages: temporal, why: 'lib/ (shared ML code) imports only engine/ and adapters/.' },
  plugins: {
    may: ['engine', 'adapters', 'lib'],
    packages: temporal,
    why: 'Plugins never import Temporal, activities, workflows or the app: everything comes through the step context.',
  },
  activities: {
    may: ['engine', 'adapters', 'lib', 'plugins'],
    packages: ['@temporalio/worker', '@temporalio/workflow', '@temporalio/testing'],
    why: 'Activities get the project, stores and registry from the composition root (app/).',
  },
  workflows: { may: ['engine'], typesOf: ['activities'], packages: [], why: 'Workflows import only engine/ (and activities as types).' },
  serve: { may: ['engine', 'adapters'], packages: temporal, why: 'The prediction server needs no Temporal and no plugins.' },
  dev: { may: ['engine'], packages: temporal, why: 'dev/ launches local servers; it imports only engine/.' },
  ui: {
    may: ['engine', 'adapters'],
    packages: ['@temporalio/worker', '@temporalio/workflow', '@temporalio/activity', '@temporalio/testing'],
    why: 'The web UI reads Temporal as a client and the store through adapters/: no workers, plugins or the app.',
  },
  app: {
    may: ['engine', 'adapters', 'lib', 'plugins', 'activities', 'workflows', 'serve', 'dev'],
    packages: [],
    why: 'app/ (composition root) is used by the CLI, never the other way.',
  },
  api: {
    may: ['engine', 'adapters', 'lib', 'plugins', 'activities', 'workflows', 'serve', 'dev', 'app'],
    packages: [],
    why: "api/ is the package's public entry points (mlpipe, mlpipe/sdk, mlpipe/testing); only the CLI may use it.",
  },
  cli: {
    may: ['engine', 'adapters', 'lib', 'plugins', 'activities', 'workflows', 'serve', 'dev', 'ui', 'app', 'api'],
    packages: [],
    why: 'The CLI is the top layer.',
  },
};

/** Deterministic workflow code: no Node built-ins, no non-workflow SDKs, only the pure engine modules. */
const workflowPatterns = [
  { group: nodeBuiltins, message: 'Workflow code must be deterministic: no Node built-ins.' },
  {
    group: ['@temporalio/activity', '@temporalio/client', '@temporalio/worker', '@temporalio/testing', '@google-cloud/*', 'undici'],
    message: 'Not allowed in workflow code.',
  },
  {
    group: ['zod', 'zod/**'],
    allowTypeImports: true,
    message:
      "No zod in workflow code: a workflow evaluates the modules it imports at each run's start (the input schema is in engine/pipeline-input.ts).",
  },
  {
    group: [
      '**/engine/cache-key*',
      '**/engine/compile*',
      '**/engine/config*',
      '**/engine/yaml-doc*',
      '**/engine/gc*',
      '**/engine/lineage*',
    ],
    message: 'Workflow code uses only the pure run-time modules of engine/.',
  },
];

function layerPatterns(name) {
  const layer = LAYERS[name];
  const patterns = [];
  const forbidden = Object.keys(LAYERS).filter((l) => l !== name && !layer.may.includes(l) && !(layer.typesOf ?? []).includes(l));
  if (forbidden.length) patterns.push({ group: forbidden.map((l) => `**/${l}/**`), message: layer.why });
  for (const l of layer.typesOf ?? [])
    patterns.push({ group: [`**/${l}/**`], allowTypeImports: true, message: `${layer.why} Use import type.` });
  if (layer.packages.length) patterns.push({ group: layer.packages, message: layer.why });
  return patterns;
}

const layerConfigs = Object.keys(LAYERS).map((name) => ({
  files: [`${name}/**/*.ts`],
  rules: {
    '@typescript-eslint/no-restricted-imports': [
      'error',
      { patterns: [...layerPatterns(name), ...(name === 'workflows' ? workflowPatterns : [])] },
    ],
  },
}));

// engine/ modules that workflows import run inside the workflow sandbox too.
const workflowEngineModules = [
  'engine/expressions.ts',
  'engine/run-state.ts',
  'engine/errors.ts',
  'engine/types.ts',
  'engine/contracts.ts',
  'engine/limits.ts',
  'engine/step-defaults.ts',
  'engine/median-rule.ts',
  'engine/random.ts',
];

export default tseslint.config(
  { ignores: ['node_modules/**', '.mlpipe/**', 'dist/**', 'bin/**', 'eslint.config.js'] },
  ...tseslint.configs.recommended,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/explicit-module-boundary-types': 'off',
    },
  },
  ...layerConfigs,
  {
    files: workflowEngineModules,
    rules: { '@typescript-eslint/no-restricted-imports': ['error', { patterns: [...layerPatterns('engine'), ...workflowPatterns] }] },
  },
  {
    files: ['workflows/**/*.ts', ...workflowEngineModules],
    rules: {
      'no-restricted-globals': [
        'error',
        { name: 'setTimeout', message: 'Use sleep() from @temporalio/workflow.' },
        { name: 'setInterval', message: 'Not in workflows.' },
      ],
      'no-restricted-properties': [
        'error',
        { object: 'Math', property: 'random', message: 'Use uuid4() or seeded randomness from @temporalio/workflow.' },
      ],
    },
  },
  // Formatting is prettier's (npm run format; checked by npm run lint): no lint rule about layout.
  prettier,
);
