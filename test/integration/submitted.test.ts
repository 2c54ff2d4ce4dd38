/**
 * Runs that carry their pipeline, on the real dev server: a client project submits a pipeline
 * (spec, config, a data file through the shared artifact store) to workers started in other folders
 * that have the plugins but none of the project's files. A worker with another version of a plugin,
 * or without it, fails the run (at the compile, or at the step on another task queue) once,
 * non-retryably, naming the plugin, both versions and its task queue. A shell step is refused by a
 * worker that does not trust submitted pipelines and runs on one started with the opt-in.
 */
import { WorkflowFailedError, type Client } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime } from '@temporalio/worker';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { Settings } from '../../app/project.js';
import { startPipelineRun } from '../../app/runs.js';
import { createPipelineWorker } from '../../app/worker.js';
import type { PipelineResult } from '../../engine/contracts.js';
import { errorFromFailure } from '../../engine/errors.js';
import { activitiesOf, createClient, REPO, uniqueId } from './helpers.js';

const store = mkdtempSync(join(tmpdir(), 'mlpipe-submitted-store-'));

function folder(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'mlpipe-submitted-'));
  for (const [rel, text] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, rel)), { recursive: true });
    writeFileSync(join(dir, rel), text);
  }
  return dir;
}

/** A project plugin module: acme.count at `version`, which counts the data lines of a CSV file. */
const pluginsModule = (version: string) => `import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { definePlugin, z } from ${JSON.stringify(join(REPO, 'api', 'sdk.ts'))};

export const count = definePlugin({
  name: 'acme.count',
  version: ${JSON.stringify(version)},
  description: 'Counts the data lines of a CSV file.',
  params: z.object({ path: z.string() }),
  pathParams: ['path'],
  outputs: { lines: 'json', version: 'json' },
  async run(ctx, p) {
    const text = readFileSync(resolve(ctx.projectDir, p.path), 'utf8');
    return { lines: text.trim().split('\\n').length - 1, version: ${JSON.stringify(version)} };
  },
});
export const plugins = [count];
`;

const settingsOf = (projectDir: string, taskQueue: string): Settings => ({
  projectDir,
  stateDir: join(projectDir, '.mlpipe'),
  artifactsDir: store,
  cacheDir: join(projectDir, '.cache'),
  temporalAddress: inject('temporalAddress'),
  namespace: 'default',
  taskQueue,
});

const queues = { v1: uniqueId('sub-v1'), v2: uniqueId('sub-v2'), none: uniqueId('sub-none'), trusted: uniqueId('sub-trusted') };

/** The client's project: a pipeline, its config, a data file and the plugin module. */
const client = folder({
  'mlpipe.plugins.ts': pluginsModule('1'),
  'pipelines/count.yaml': `name: count
config: count
params:
  data: pipelines/data/rows.csv
steps:
  count:
    uses: acme.count
    with: { path: '\${params.data}' }
  report:
    uses: util.echo
    needs: count
    with:
      values: { lines: '\${steps.count.outputs.lines}', label: '\${conf.label}' }
`,
  'pipelines/gpu.yaml': `name: gpu
params:
  data: pipelines/data/rows.csv
steps:
  count:
    uses: acme.count
    taskQueue: ${queues.v2}
    with: { path: '\${params.data}' }
`,
  'pipelines/shell.yaml': `name: shell
steps:
  sh:
    uses: util.shell
    with: { command: 'echo from a submitted pipeline' }
`,
  'pipelines/shell-elsewhere.yaml': `name: shell-elsewhere
steps:
  sh:
    uses: util.shell
    taskQueue: ${queues.v1}
    with: { command: 'echo sent to an untrusting worker' }
`,
  'pipelines/data/rows.csv': 'a,b\n1,2\n3,4\n5,6\n',
  'pipelines/data/only-here.csv': `a,b\n${Date.now()},${process.pid}\n`,
  'conf/count.yaml': 'label: from the client conf\n',
});

let temporal: Client;
const stops: (() => Promise<void>)[] = [];

/** A worker in a folder of its own: only the plugin module (at `version`), or none. */
async function startWorkerIn(taskQueue: string, version: string | undefined, trustSubmittedPipelines = false): Promise<void> {
  const dir = folder(version ? { 'mlpipe.plugins.ts': pluginsModule(version) } : {});
  const connection = await NativeConnection.connect({ address: inject('temporalAddress') });
  const { worker } = await createPipelineWorker({
    settings: settingsOf(dir, taskQueue),
    connection,
    tracking: null,
    trustSubmittedPipelines,
  });
  const running = worker.run();
  stops.push(async () => {
    worker.shutdown();
    await running;
    await connection.close();
  });
}

beforeAll(async () => {
  try {
    Runtime.install({ logger: new DefaultLogger('ERROR') });
  } catch {
    // already installed in this process
  }
  temporal = await createClient();
  await startWorkerIn(queues.v1, '1');
  await startWorkerIn(queues.v2, '2');
  await startWorkerIn(queues.none, undefined);
  await startWorkerIn(queues.trusted, '1', true);
}, 120_000);

afterAll(async () => {
  for (const stop of stops) await stop();
  await temporal?.connection.close();
});

async function run(
  pipeline: string,
  taskQueue: string,
  overrides: string[] = [],
): Promise<{ workflowId: string; result: Promise<PipelineResult> }> {
  const started = await startPipelineRun(temporal, settingsOf(client, taskQueue), pipeline, { overrides });
  return { workflowId: started.workflowId, result: temporal.workflow.getHandle(started.workflowId).result() as Promise<PipelineResult> };
}

/** How a run failed: the error it carries, and the attempts of every activity in its history. */
async function failureOf(pipeline: string, taskQueue: string) {
  const { workflowId, result } = await run(pipeline, taskQueue);
  const error = await result.then(
    () => new Error('the run succeeded'),
    (e: unknown) => e as Error,
  );
  expect(error).toBeInstanceOf(WorkflowFailedError);
  const events = (await temporal.workflow.getHandle(workflowId).fetchHistory()).events ?? [];
  const { names, attempts } = activitiesOf(events);
  return { error: errorFromFailure(error), activities: names, attempts };
}

describe('runs that carry their pipeline', () => {
  it("fail before any step when the worker's artifact store lacks the client's file (they do not share a store)", async () => {
    const own = { ...settingsOf(client, queues.v1), artifactsDir: mkdtempSync(join(tmpdir(), 'mlpipe-client-store-')) };
    const started = await startPipelineRun(temporal, own, 'count', { overrides: ['params.data=pipelines/data/only-here.csv'] });
    const error = await temporal.workflow
      .getHandle(started.workflowId)
      .result()
      .then(
        () => new Error('the run succeeded'),
        (e: unknown) => e as Error,
      );
    const e = errorFromFailure(error)!;
    expect(e.code).toBe('INPUT_INVALID');
    expect(e.message).toContain(`Step 'count' param 'path': the client's file pipelines/data/only-here.csv`);
    expect(e.message).toContain(`is not in this worker's artifact store (${store})`);
    expect(e.hint).toContain('same MLPIPE_ARTIFACTS');
  });

  it("run on a worker in another folder: its config from the input, the client's data file from the shared store", async () => {
    const { result } = await run('count', queues.v1);
    const r = await result;
    expect(r.state).toBe('succeeded');
    expect(r.outputs['count']).toEqual({ lines: 3, version: '1' });
    expect(r.outputs['report']).toEqual({ lines: 3, label: 'from the client conf' });
  });

  it('a worker with another version of the plugin fails the compile once, naming the plugin, both versions and its queue', async () => {
    const { error, activities, attempts } = await failureOf('count', queues.v2);
    // The run's failure is STEP_FAILED for a step, else the compile's own error.
    const e = error!;
    expect(e.code).toBe('PLUGIN_VERSION_MISMATCH');
    expect(e.message).toContain(
      `The run was compiled with plugin 'acme.count' version 1; this worker (task queue '${queues.v2}') has version 2.`,
    );
    expect(activities).toEqual(['compilePipeline']);
    expect(attempts).toEqual([1]);
  });

  it('a worker without the plugin fails the compile once, naming the plugin, the version and its queue', async () => {
    const { error, activities, attempts } = await failureOf('count', queues.none);
    expect(error!.code).toBe('PLUGIN_UNKNOWN');
    expect(error!.message).toContain(
      `The run needs plugin 'acme.count' version 1; this worker (task queue '${queues.none}') has no plugin of that name.`,
    );
    expect(activities).toEqual(['compilePipeline']);
    expect(attempts).toEqual([1]);
  });

  it('a step sent to a task queue whose worker has another version fails at its first attempt, with no retry', async () => {
    const { error, activities, attempts } = await failureOf('gpu', queues.v1);
    expect(error!.code).toBe('STEP_FAILED');
    expect(error!.message).toContain(
      `Step 'count' failed (PLUGIN_VERSION_MISMATCH): Step 'count': the run was compiled with plugin 'acme.count' version 1; this worker (task queue '${queues.v2}') has version 2.`,
    );
    expect(activities).toEqual(['compilePipeline', 'runStep']);
    expect(attempts).toEqual([1, 1]);
  });

  it('a shell step is refused by a worker that does not trust submitted pipelines, and runs on one that does', async () => {
    const { error, activities } = await failureOf('shell', queues.v1);
    expect(error!.code).toBe('SUBMITTED_CODE_REFUSED');
    expect(error!.message).toContain("Step 'sh' uses util.shell, which runs commands or code from its params");
    expect(error!.message).toContain('MLPIPE_TRUST_SUBMITTED_PIPELINES=1');
    expect(activities).toEqual(['compilePipeline']);
    const { result } = await run('shell', queues.trusted);
    expect((await result).outputs['sh']).toMatchObject({ exitCode: 0, stdout: 'from a submitted pipeline' });
  });

  it('each worker decides for itself: a trusting worker compiles it, the untrusting worker of its step refuses the step once', async () => {
    const { error, activities, attempts } = await failureOf('shell-elsewhere', queues.trusted);
    expect(error!.code).toBe('STEP_FAILED');
    expect(error!.message).toContain(
      `Step 'sh' failed (SUBMITTED_CODE_REFUSED): Step 'sh' uses util.shell, which runs commands or code from its params; this worker (task queue '${queues.v1}') does not run them`,
    );
    expect(activities).toEqual(['compilePipeline', 'runStep']);
    expect(attempts).toEqual([1, 1]);
  });
});
