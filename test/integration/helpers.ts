/** Shared set-up for integration tests: a throwaway project folder, a real worker, a client. */
import { Client, Connection, type WorkflowHandle } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import { DefaultLogger, NativeConnection, Runtime } from '@temporalio/worker';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, inject } from 'vitest';
import { createPipelineWorker, type PipelineWorker } from '../../app/worker.js';
import type { Settings } from '../../app/project.js';
import type { TrackingBackend } from '../../engine/ports.js';
import { trackingWorkflowId } from '../../engine/contracts.js';

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

let runtimeInstalled = false;
function quietRuntime(): void {
  if (runtimeInstalled) return;
  runtimeInstalled = true;
  try {
    Runtime.install({ logger: new DefaultLogger('ERROR') });
  } catch {
    // already installed in this process
  }
}

export interface TestProject {
  dir: string;
  settings: Settings;
  taskQueue: string;
  write(relPath: string, text: string): void;
  journal(): JournalLine[];
}

/** The environment of an `mlpipe` process spawned on a test project: its server, task queue, folder and store. */
export function projectEnv(project: TestProject): NodeJS.ProcessEnv {
  return {
    ...process.env,
    TEMPORAL_ADDRESS: project.settings.temporalAddress,
    MLPIPE_TASK_QUEUE: project.taskQueue,
    MLPIPE_PROJECT_DIR: project.dir,
    MLPIPE_ARTIFACTS: project.settings.artifactsDir,
  };
}

export interface JournalLine {
  at: string;
  pid: number;
  step: string;
  attempt: number;
  event: string;
  runId: string;
  [k: string]: unknown;
}

let counter = 0;
/** A project folder with the repository's pipelines/ and conf/ copied in, and its own queue and store. */
export function createTestProject(name: string): TestProject {
  const dir = mkdtempSync(join(tmpdir(), `mlpipe-${name}-`));
  cpSync(join(REPO, 'pipelines'), join(dir, 'pipelines'), { recursive: true });
  cpSync(join(REPO, 'conf'), join(dir, 'conf'), { recursive: true });
  const taskQueue = `test-${name}-${process.pid}-${++counter}`;
  const settings: Settings = {
    projectDir: dir,
    stateDir: join(dir, '.mlpipe'),
    artifactsDir: join(dir, '.mlpipe', 'artifacts'),
    cacheDir: join(dir, '.cache'),
    temporalAddress: inject('temporalAddress'),
    namespace: 'default',
    taskQueue,
  };
  return {
    dir,
    settings,
    taskQueue,
    write(relPath, text) {
      mkdirSync(dirname(join(dir, relPath)), { recursive: true });
      writeFileSync(join(dir, relPath), text);
    },
    journal() {
      const f = join(dir, 'journal.jsonl');
      if (!existsSync(f)) return [];
      return readFileSync(f, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as JournalLine);
    },
  };
}

export async function startWorker(
  project: TestProject,
  options: { tracking?: TrackingBackend | null } = {},
): Promise<{ worker: PipelineWorker; stop: () => Promise<void> }> {
  quietRuntime();
  const connection = await NativeConnection.connect({ address: project.settings.temporalAddress });
  const { worker } = await createPipelineWorker({ settings: project.settings, connection, tracking: options.tracking });
  const running = worker.run();
  return {
    worker,
    async stop() {
      if (worker.getState() === 'RUNNING') worker.shutdown();
      await running;
      await connection.close();
    },
  };
}

export async function createClient(): Promise<Client> {
  const connection = await Connection.connect({ address: inject('temporalAddress') });
  return new Client({ connection });
}

type HistoryEvent = NonNullable<Awaited<ReturnType<WorkflowHandle['fetchHistory']>>['events']>[number];

/**
 * The activities a run's history records, in order, and the attempt each ended at: scheduled ones
 * (their started events) and local ones (their markers: the compile runs locally since `local-compile`).
 */
export function activitiesOf(events: HistoryEvent[]): { names: string[]; attempts: number[] } {
  const names: string[] = [];
  const attempts: number[] = [];
  for (const e of events) {
    const scheduled = e.activityTaskScheduledEventAttributes?.activityType?.name;
    if (scheduled) names.push(scheduled);
    if (e.activityTaskStartedEventAttributes) attempts.push(e.activityTaskStartedEventAttributes.attempt ?? 0);
    const marker = e.markerRecordedEventAttributes;
    const data = marker?.markerName === 'core_local_activity' ? marker.details?.['data']?.payloads?.[0] : undefined;
    if (data) {
      const la = defaultPayloadConverter.fromPayload(data) as { activityType?: string; activity_type?: string; attempt?: number };
      names.push(la.activityType ?? la.activity_type ?? '?');
      attempts.push(la.attempt ?? 0);
    }
  }
  return { names, attempts };
}

export function uniqueId(prefix: string): string {
  return `${prefix}-${process.pid}-${Date.now()}-${++counter}`;
}

/** Polls until `fn` returns a truthy value, or fails after `timeoutMs`. */
export async function waitFor<T>(fn: () => T | Promise<T>, what: string, timeoutMs = 60_000): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Waits until the tracking workflow of the pipeline run `handle` has completed (all its events delivered). */
export async function waitForTracking(
  client: Client,
  handle: { workflowId: string; firstExecutionRunId: string },
  timeoutMs = 60_000,
): Promise<string> {
  const id = trackingWorkflowId(`${handle.workflowId}/${handle.firstExecutionRunId}`);
  await waitFor(
    () =>
      client.workflow
        .getHandle(id)
        .describe()
        .then(
          (d) => d.status.name === 'COMPLETED',
          () => false,
        ),
    'tracking to finish',
    timeoutMs,
  );
  return id;
}

/**
 * Registers hooks that start a worker for `project` and a client before the file's tests and stop
 * both after. Read `.client` inside tests.
 */
export function useWorkerAndClient(project: TestProject): { readonly client: Client } {
  let client: Client | undefined;
  let stop: (() => Promise<void>) | undefined;
  beforeAll(async () => {
    client = await createClient();
    stop = (await startWorker(project)).stop;
  });
  afterAll(async () => {
    await stop?.();
    await client?.connection.close();
  });
  return {
    get client(): Client {
      if (!client) throw new Error('the client is available inside tests only');
      return client;
    },
  };
}
