/** What several commands share: the Temporal runtime and client, compiling, the in-process worker. */
import type { Client } from '@temporalio/client';
import type { LogLevel } from '@temporalio/worker';
import { compileProjectPipeline } from '../app/runs.js';
import type { Settings } from '../app/project.js';
import { isListening } from '../dev/temporal-server.js';
import { PipelineError } from '../engine/errors.js';
import type { CompiledPipeline } from '../engine/types.js';

/**
 * `run` and `demo` print failures themselves, so their in-process worker only logs errors. They also
 * handle SIGINT / SIGTERM themselves (cancel the run, see followSignals), so the runtime must not stop
 * their worker on those signals (`ownSignals`).
 */
export async function installRuntime(defaultLevel: LogLevel = 'WARN', ownSignals = false): Promise<void> {
  const level = (process.env['MLPIPE_LOG_LEVEL'] ?? defaultLevel).toUpperCase() as LogLevel;
  const { DefaultLogger, Runtime } = await import('@temporalio/worker');
  Runtime.install({ logger: new DefaultLogger(level), ...(ownSignals ? { shutdownSignals: [] } : {}) });
}

/**
 * Calls `fn` every `ms`, one call at a time. `stop()` waits for the call in flight: a call still in
 * flight when the connection closes is retried by the client on a closed channel, and that throws
 * "Channel has been shut down" from a timer, after the command has succeeded.
 */
export function every(ms: number, fn: () => Promise<void>): { stop(): Promise<void> } {
  let inflight: Promise<void> | undefined;
  const timer = setInterval(() => {
    inflight ??= fn()
      .catch(() => undefined)
      .finally(() => (inflight = undefined));
  }, ms);
  return {
    stop: async () => {
      clearInterval(timer);
      await inflight;
    },
  };
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function connect(settings: Settings): Promise<Client> {
  if (!(await isListening(settings.temporalAddress))) {
    throw new PipelineError('TOOL_MISSING', `No Temporal server at ${settings.temporalAddress}.`, {
      hint: "Start one with 'mlpipe dev' (or 'temporal server start-dev'), or set TEMPORAL_ADDRESS.",
    });
  }
  const { Client, Connection } = await import('@temporalio/client');
  const connection = await Connection.connect({ address: settings.temporalAddress });
  return new Client({ connection, namespace: settings.namespace });
}

export function compile(settings: Settings, ref: string, overrides: string[]): Promise<CompiledPipeline> {
  return compileProjectPipeline(settings, ref, overrides);
}

export async function startBackgroundWorker(settings: Settings): Promise<() => Promise<void>> {
  const { worker, connection } = await (await import('../app/worker.js')).createPipelineWorker({ settings });
  const running = worker.run();
  return async () => {
    worker.shutdown();
    await running;
    await connection.close();
  };
}
