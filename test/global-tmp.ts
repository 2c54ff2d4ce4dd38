/**
 * One temporary folder for the whole test run. vitest.config.ts calls useRunTmpdir() when it is
 * loaded, before any global setup, test worker, dev server or spawned process starts: TMPDIR points
 * into the folder and they all inherit it, so every mkdtemp(tmpdir()) of a test lands there. The
 * teardown deletes it when the run ends, passed or failed (a suite run leaves about 1.6 GiB of stores,
 * datasets and server files otherwise). MLPIPE_KEEP_TEST_TMP=1 keeps it, and prints where, to look at
 * what a failing test left behind.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const ROOT = 'MLPIPE_TEST_TMPDIR';

/** Makes the run's folder (once per process) and points TMPDIR at it. */
export function useRunTmpdir(): string {
  const root = (process.env[ROOT] ??= mkdtempSync(join(tmpdir(), 'mlpipe-tests-')));
  process.env['TMPDIR'] = root;
  return root;
}

/** Global setup: the run's folder is deleted at the end. */
export function setup(): () => void {
  const root = useRunTmpdir();
  return () => {
    if (process.env['MLPIPE_KEEP_TEST_TMP'] === '1') console.log(`test files kept in ${root}`);
    // The integration servers are stopped after this (their teardown runs later); a server's open
    // files go with their folder, and nothing of theirs is written outside it.
    else rmSync(root, { recursive: true, force: true, maxRetries: 3 });
  };
}
