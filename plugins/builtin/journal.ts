import { appendFileSync, mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { StepContext } from '../sdk.js';

/**
 * Appends one JSON line per event to a journal file (synchronously, so a line written before a
 * crash is on disk). Tests and demos use it as an execution log: who ran, which attempt, when.
 */
export function journal(ctx: StepContext, file: string | undefined, event: string, extra: Record<string, unknown> = {}): void {
  if (!file) return;
  const path = resolve(ctx.projectDir, file);
  mkdirSync(dirname(path), { recursive: true });
  const line = {
    at: new Date().toISOString(),
    pid: process.pid,
    workflowId: ctx.workflowId,
    runId: ctx.runId,
    step: ctx.stepId,
    attempt: ctx.attempt,
    event,
    ...extra,
  };
  appendFileSync(path, `${JSON.stringify(line)}\n`);
}

export function abortable(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    if (signal.aborted) return reject(signal.reason as Error);
    const t = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolvePromise();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(t);
      reject(signal.reason as Error);
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
