/**
 * Starts one real Temporal dev server (the CLI provisioned by deploy/provision.sh) for all
 * integration test files. A missing CLI fails the run: integration tests never skip.
 */
import type { TestProject } from 'vitest/node';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadSettings } from '../../app/project.js';
import { requireTemporalCli, startDevServer, type DevServer } from '../../dev/temporal-server.js';

let server: DevServer | undefined;

export async function setup(project: TestProject): Promise<void> {
  const bin = requireTemporalCli(loadSettings().cacheDir);
  const dir = mkdtempSync(join(tmpdir(), 'mlpipe-it-server-'));
  server = await startDevServer({ bin, headless: true, dbFile: join(dir, 'temporal.db'), logFile: join(dir, 'server.log') });
  project.provide('temporalAddress', server.address);
  project.provide('temporalBin', bin);
}

export async function teardown(): Promise<void> {
  await server?.stop();
}

declare module 'vitest' {
  export interface ProvidedContext {
    temporalAddress: string;
    temporalBin: string;
  }
}
