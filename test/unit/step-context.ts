import { expect } from 'vitest';
import { PipelineError } from '../../engine/errors.js';
/** A StepContext for calling plugins directly in tests: a real local store in a temp folder (mlpipe/testing). */
import { z } from 'zod';
import { testContext as publicTestContext, testStore, type TestContext, type TestContextOptions } from '../../api/testing.js';
import type { ArtifactStore } from '../../engine/ports.js';
import type { AnyPlugin, StepContext } from '../../plugins/sdk.js';

export type { TestContext, TestContextOptions } from '../../api/testing.js';

export function testContext(
  projectDir = process.cwd(),
  store: ArtifactStore = testStore(),
  options: Omit<TestContextOptions, 'projectDir' | 'store'> = {},
): TestContext {
  return publicTestContext({ ...options, projectDir, store });
}

/**
 * A context whose signal aborts with 'stopped' at the first heartbeat whose progress `at` accepts,
 * as a cancel or a lost worker would stop a step midway; a retry is `{ ...ctx, signal: <a live one> }`.
 */
export function stoppingContext(at: (progress: { unit?: string; message?: string; done?: number }) => boolean): TestContext {
  const stop = new AbortController();
  return testContext(process.cwd(), undefined, {
    signal: stop.signal,
    onHeartbeat: (d) => {
      const p = (d as { progress?: { unit?: string; message?: string; done?: number } } | undefined)?.progress;
      if (p && at(p)) stop.abort(new Error('stopped'));
    },
  });
}

/** Runs a plugin the way runStep does: params through its schema first. */
export async function runPlugin(
  plugin: AnyPlugin,
  ctx: StepContext,
  params: unknown,
  inputs: Record<string, unknown> = {},
): Promise<Record<string, unknown>> {
  const schema: z.ZodType = plugin.params;
  return plugin.run(ctx, schema.parse(params), inputs);
}

/** The PipelineError a promise rejects with (fails the test if it resolves or rejects with anything else). */
export async function failure(p: Promise<unknown>): Promise<PipelineError> {
  const e = await p.then(
    () => {
      throw new Error('expected a failure');
    },
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(PipelineError);
  return e as PipelineError;
}
