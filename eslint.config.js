// Lint rules. The important ones: workflow code stays deterministic (no Node built-ins, no value
// imports of activities/plugins/adapters, no timers or randomness of its own), and no promise is
// left floating anywhere.
import tseslint from 'typescript-eslint';

const nodeBuiltins = ['fs', 'path', 'os', 'child_process', 'crypto', 'http', 'https', 'net', 'worker_threads', 'stream', 'process', 'timers'];

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
  {
    files: ['workflows/**/*.ts', 'engine/expressions.ts', 'engine/run-state.ts', 'engine/errors.ts', 'engine/types.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': [
        'error',
        {
          patterns: [
            { group: ['node:*', ...nodeBuiltins], message: 'Workflow code must be deterministic: no Node built-ins.' },
            { group: ['**/activities/**', '**/plugins/**', '**/adapters/**', '**/cli/**'], allowTypeImports: true, message: 'Workflows import activities only as types (import type).' },
            { group: ['@temporalio/activity', '@temporalio/client', '@temporalio/worker', '@temporalio/testing', '@google-cloud/*', 'undici'], message: 'Not allowed in workflow code.' },
            { group: ['**/engine/cache-key*', '**/engine/compile*', '**/engine/config*', '**/engine/yaml-doc*'], message: 'Workflow code uses only the pure run-time modules of engine/.' },
          ],
        },
      ],
      'no-restricted-globals': ['error', { name: 'setTimeout', message: 'Use sleep() from @temporalio/workflow.' }, { name: 'setInterval', message: 'Not in workflows.' }],
      'no-restricted-properties': ['error', { object: 'Math', property: 'random', message: 'Use uuid4() or seeded randomness from @temporalio/workflow.' }],
    },
  },
);
