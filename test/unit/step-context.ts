import { expect } from 'vitest';
import { PipelineError } from '../../engine/errors.js';
/** A StepContext for calling plugins directly in tests: a real local store in a temp folder. */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { LocalArtifactStore } from '../../adapters/local-store.js';
import { scrubberFor, stepEnvironment } from '../../engine/secrets.js';
import { untilAvailable } from '../../engine/service-wait.js';
import type { AnyPlugin, Checkpoint, StepContext } from '../../plugins/sdk.js';

export interface TestContext extends StepContext {
  logs: { level: string; message: string; fields: Record<string, unknown> }[];
  /** What the plugin reported through logMetrics. */
  series: { key: string; value: number; step: number; timestamp: number }[];
}

export interface TestContextOptions {
  signal?: AbortSignal;
  onHeartbeat?: (details?: Record<string, unknown>) => void;
  attempt?: number;
  /** Worker variables the step asked for (`env: [NAME]`). */
  env?: string[];
  /** retry.serviceWait of the step (default 0: an unreachable service fails at once). */
  serviceWaitMs?: number;
}

export function testContext(
  projectDir = process.cwd(),
  store = new LocalArtifactStore(mkdtempSync(join(tmpdir(), 'mlpipe-ctx-store-'))),
  options: TestContextOptions = {},
): TestContext {
  const logs: TestContext['logs'] = [];
  const series: TestContext['series'] = [];
  const log = (level: string) => (fields: Record<string, unknown>, message: string) => void logs.push({ level, message, fields });
  let checkpoint: Checkpoint | undefined;
  let workDir: string | undefined;
  return {
    runId: 'run-1',
    workflowId: 'wf-1',
    pipeline: 'test',
    stepId: 'step',
    attempt: options.attempt ?? 1,
    store,
    logger: { debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error') },
    signal: options.signal ?? new AbortController().signal,
    heartbeat: (d) => options.onHeartbeat?.(d),
    untilAvailable: (service, fn) =>
      untilAvailable(fn, {
        service: service.name,
        location: service.location,
        isUnavailable: (e) => service.isUnavailable(e),
        boundMs: options.serviceWaitMs ?? 0,
        initialDelayMs: 1,
        maxDelayMs: 5,
        signal: options.signal,
        onWaiting: (w) => options.onHeartbeat?.({ waiting: w.message }),
      }),
    projectDir,
    env: stepEnvironment(process.env, options.env),
    redact: scrubberFor(process.env, options.env),
    get workDir() {
      workDir ??= mkdtempSync(join(tmpdir(), 'mlpipe-ctx-work-'));
      return workDir;
    },
    checkpoint: {
      async save(data, meta, _options) {
        checkpoint = { ref: await store.put(data), meta, savedAt: new Date().toISOString() };
        return checkpoint as Checkpoint<typeof meta>;
      },
      async latest() {
        return checkpoint ? ({ ...checkpoint, data: await store.get(checkpoint.ref) } as never) : undefined;
      },
    },
    logMetrics(values, options) {
      for (const [key, value] of Object.entries(values)) series.push({ key, value, step: options?.step ?? 0, timestamp: options?.timestamp ?? Date.now() });
    },
    logs,
    series,
  };
}

/** Runs a plugin the way runStep does: params through its schema first. */
export async function runPlugin(plugin: AnyPlugin, ctx: StepContext, params: unknown, inputs: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
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
