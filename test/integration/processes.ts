/**
 * Real worker processes for crash tests: `mlpipe worker` spawned on a test project's task queue, to
 * be SIGKILLed; and what Temporal says about a step's current attempt (from describe, the server's
 * own timestamps).
 */
import type { WorkflowHandle } from '@temporalio/client';
import { tsToMs } from '@temporalio/common/lib/time.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, openSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { projectEnv, REPO, type TestProject } from './helpers.js';

export interface Workers {
  spawn(label: string, env?: NodeJS.ProcessEnv): ChildProcess;
  /** SIGKILLs every worker still alive (afterAll). */
  killAll(): void;
}

export function workerProcesses(project: TestProject): Workers {
  const children: ChildProcess[] = [];
  return {
    spawn(label, env = {}) {
      const log = openSync(join(project.dir, `worker-${label}.log`), 'a');
      const child = spawn(process.execPath, [join(REPO, 'bin', 'mlpipe.mjs'), 'worker'], {
        cwd: project.dir,
        env: { ...projectEnv(project), ...env },
        stdio: ['ignore', log, log],
      });
      children.push(child);
      return child;
    },
    killAll() {
      for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    },
  };
}

export function exited(child: ChildProcess): Promise<NodeJS.Signals | number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.signalCode ?? child.exitCode);
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve(signal ?? code)));
}

export interface PendingStep {
  attempt: number;
  started: boolean;
  /** When the current attempt started (server clock, epoch ms). */
  lastStartedMs?: number;
  lastFailure?: string;
}

/** The step's pending activity as the server sees it, or undefined when it is not pending. */
export async function pendingStep(handle: WorkflowHandle, stepId: string): Promise<PendingStep | undefined> {
  const d = await handle.describe();
  const a = d.raw.pendingActivities?.find((p) => p.activityId === stepId);
  if (!a) return undefined;
  return {
    attempt: a.attempt ?? 1,
    // PENDING_ACTIVITY_STATE_STARTED = 2
    started: a.state === 2,
    ...(a.lastStartedTime ? { lastStartedMs: tsToMs(a.lastStartedTime) } : {}),
    ...(a.lastFailure?.message ? { lastFailure: a.lastFailure.message } : {}),
  };
}

/** Waits until `fn` is truthy, polling; fails at once if the run has ended first (no wall-clock deadline: the test timeout is the backstop). */
export async function whileRunning<T>(handle: WorkflowHandle, fn: () => T | Promise<T>, what: string): Promise<NonNullable<T>> {
  for (let i = 0; ; i++) {
    const v = await fn();
    if (v) return v as NonNullable<T>;
    if (i % 10 === 0) {
      const d = await handle.describe();
      if (d.status.name !== 'RUNNING') throw new Error(`the run ended (${d.status.name}) before ${what}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Waits for the step's attempt number `attempt` to start on a worker; returns when (server clock). */
export async function attemptStarted(
  handle: WorkflowHandle,
  stepId: string,
  attempt: number,
): Promise<PendingStep & { lastStartedMs: number }> {
  return whileRunning(
    handle,
    async () => {
      const p = await pendingStep(handle, stepId);
      return p && p.started && p.attempt >= attempt && p.lastStartedMs !== undefined
        ? (p as PendingStep & { lastStartedMs: number })
        : undefined;
    },
    `attempt ${attempt} of step '${stepId}' to start`,
  );
}

/**
 * Reads a field of the newest checkpoint's meta of a step in a workflow's runs (the record
 * checkpoints/<workflow>/<run>/<step>/<cache key>.json, or a named stream's beside it); 0 while there
 * is none or it is being replaced.
 */
export function checkpointMeta(project: TestProject, workflowId: string, step: string, field: string, stream?: string): () => number {
  const records = join(project.settings.artifactsDir, 'records', 'checkpoints', encodeURIComponent(workflowId));
  // A named stream's record (ctx.checkpoint.stream(name)) sits beside the step's: <cache key>/stream-<name>.json.
  const pattern = new RegExp(stream ? `(^|/)${step}/[^/]+/stream-${stream}\\.json$` : `(^|/)${step}/[^/]+\\.json$`);
  return () => {
    try {
      if (!existsSync(records)) return 0;
      const file = readdirSync(records, { recursive: true, encoding: 'utf8' }).find((f) => pattern.test(f));
      if (!file) return 0;
      const value = (JSON.parse(readFileSync(join(records, file), 'utf8')) as { meta: Record<string, unknown> }).meta[field];
      return typeof value === 'number' ? value : 0;
    } catch {
      return 0; // being replaced right now
    }
  };
}
