import { defineConfig } from 'vitest/config';
import { useRunTmpdir } from './test/global-tmp.js';

// Before anything starts: every temporary file of the run goes into one folder, deleted at its end.
useRunTmpdir();

// pool 'forks': the Temporal native bridge is not safe under worker threads (sdk-typescript#876).
export default defineConfig({
  test: {
    pool: 'forks',
    globalSetup: ['test/global-tmp.ts'],
    projects: [
      {
        // A busy shared machine can be several times slower: unit timeouts leave room for that.
        test: { name: 'unit', include: ['test/unit/**/*.test.ts'], pool: 'forks', testTimeout: 30_000, sequence: { groupOrder: 0 } },
      },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          pool: 'forks',
          globalSetup: ['test/integration/global-setup.ts'],
          testTimeout: 120_000,
          hookTimeout: 120_000,
          // Files share one dev server; two at a time keeps a 2-core machine responsive.
          maxWorkers: 2,
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
