/**
 * Scheduled drift monitoring on the real dev server: no drift starts nothing; drift starts exactly
 * one retrain even when two monitors fire at once (single-flight by workflow ID), and each posts a
 * Slack-compatible alert; schedules are created, listed, paused, triggered and deleted with the
 * CLI, and with the documented `temporal schedule create` command.
 */
import { WorkflowNotFoundError } from '@temporalio/client';
import { execFile } from 'node:child_process';
import http from 'node:http';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { PredictionLogWriter } from '../../engine/prediction-log.js';
import { MONITOR_WORKFLOW, PIPELINE_WORKFLOW, retrainWorkflowId, type PipelineResult, type MonitorResult } from '../../engine/contracts.js';
import { openStore } from '../../cli/store-commands.js';
import { createTestProject, REPO, uniqueId, useWorkerAndClient, waitFor } from './helpers.js';
import { describeFailure } from '../../engine/errors.js';

const run = promisify(execFile);
const project = createTestProject('monitor');
const name = `monitored-${process.pid}`;

// Reference and current data: x ~ sin, c in three categories; "drifted" moves x and adds a category.
const rows = (n: number, f: (i: number) => [number, string]): string =>
  ['x,c', ...Array.from({ length: n }, (_, i) => f(i).join(','))].join('\n') + '\n';
project.write(
  'data/ref.csv',
  rows(600, (i) => [Math.sin(i) * 10, ['a', 'b', 'c'][i % 3]!]),
);
project.write(
  'data/same.csv',
  rows(500, (i) => [Math.sin(i + 0.25) * 10, ['a', 'b', 'c'][(i + 1) % 3]!]),
);
project.write(
  'data/drifted.csv',
  rows(500, (i) => [Math.sin(i) * 10 + 7, ['a', 'b', 'c', 'd'][i % 4]!]),
);
project.write(
  `pipelines/${name}.yaml`,
  `name: ${name}
params:
  data: data/ref.csv
  current: data/same.csv
  ticks: 1
monitor:
  current: \${params.current}
  reference: { step: ingest, output: dataset }
  alert: { webhookEnv: MLPIPE_TEST_WEBHOOK }
steps:
  ingest:
    uses: ingest.file
    with:
      path: \${params.data}
  hold:
    uses: util.sleep
    needs: ingest
    cache: false
    with:
      ticks: \${params.ticks}
      tickMs: 100
`,
);

const env = useWorkerAndClient(project);
const received: { text: string; blocks: { type: string }[] }[] = [];
let hook: http.Server;

beforeAll(async () => {
  hook = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      received.push(JSON.parse(body) as { text: string; blocks: { type: string }[] });
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
    });
  });
  await new Promise<void>((r) => hook.listen(0, '127.0.0.1', r));
  process.env['MLPIPE_TEST_WEBHOOK'] = `http://127.0.0.1:${(hook.address() as { port: number }).port}/hooks/slack`;
});
afterAll(async () => {
  delete process.env['MLPIPE_TEST_WEBHOOK'];
  await new Promise((r) => hook.close(r));
});

function monitor(overrides: string[], id = uniqueId('monitor'), heartbeatTimeoutMs?: number) {
  return env.client.workflow.start(MONITOR_WORKFLOW, {
    taskQueue: project.taskQueue,
    workflowId: id,
    args: [{ pipeline: name, overrides, ...(heartbeatTimeoutMs ? { heartbeatTimeoutMs } : {}) }],
    workflowRunTimeout: '2 minutes',
  });
}

describe('drift monitor', () => {
  it('needs a reference: before any run it fails saying so', async () => {
    const h = await monitor([]);
    await expect(h.result()).rejects.toThrow();
    const cause = await h.result().catch((e: unknown) => describeFailure(e).message);
    expect(cause).toMatch(/No run of 'monitored-\d+' .* has produced 'ingest.dataset' yet/);
  });

  it('without drift: records the check, starts no retrain, posts no alert', async () => {
    const first = await env.client.workflow.start(PIPELINE_WORKFLOW, {
      taskQueue: project.taskQueue,
      workflowId: uniqueId('reference-run'),
      args: [{ pipeline: name }],
    });
    expect(((await first.result()) as PipelineResult).state).toBe('succeeded');
    const r = (await (await monitor(['params.current=data/same.csv'])).result()) as MonitorResult;
    expect(r.drift.datasetDrift).toBe(false);
    expect(r.retrain).toBe('no-drift');
    expect(r.referenceFrom).toMatchObject({ workflowId: first.workflowId, step: 'ingest' });
    expect(received).toEqual([]);
    await expect(env.client.workflow.getHandle(retrainWorkflowId(name)).describe()).rejects.toBeInstanceOf(WorkflowNotFoundError);
  });

  it('heartbeats while reading a prediction log of many chunks and computing drift: a 1 s heartbeat timeout is kept', async () => {
    // 120 chunks of 1,000 rows in the worker's store, read 8 at a time; the run fails with a
    // heartbeat timeout if prepareMonitor or computeMonitorDrift goes 1 s without one.
    const store = openStore(project.settings);
    const model = `hb-${process.pid}`;
    const writer = new PredictionLogWriter(store, model, '1', { flushRows: 1_000_000 });
    const at = new Date().toISOString();
    for (let chunk = 0; chunk < 120; chunk++) {
      writer.append(
        Array.from({ length: 1000 }, (_, i) => ({
          x: Math.sin(chunk * 1000 + i + 0.25) * 10,
          c: ['a', 'b', 'c'][i % 3]!,
          prediction: i,
          model_version: '1',
          predicted_at: at,
          request_id: `r${chunk}`,
        })),
      );
      await writer.flush();
    }
    await writer.close();
    const h = await monitor([`params.current=predictions:${model}`], uniqueId('monitor-hb'), 1000);
    const r = (await h.result()) as MonitorResult;
    expect(r.currentFrom).toMatchObject({ predictions: model, rows: 120_000, chunks: 120, versions: ['1'] });
    expect(r.drift.numberOfColumns).toBe(2);
    expect(r.drift.datasetDrift).toBe(false);
    // Each data activity ran once: no attempt timed out.
    const history = await h.fetchHistory();
    const scheduled = history
      .events!.filter((e) => e.activityTaskScheduledEventAttributes)
      .map((e) => e.activityTaskScheduledEventAttributes!);
    expect(scheduled.map((a) => a.activityType?.name)).toEqual(['prepareMonitor', 'computeMonitorDrift']);
    expect(scheduled.every((a) => String(a.heartbeatTimeout?.seconds) === '1')).toBe(true);
    expect(history.events!.filter((e) => e.activityTaskTimedOutEventAttributes)).toHaveLength(0);
    expect(
      history.events!.filter((e) => e.activityTaskStartedEventAttributes).map((e) => e.activityTaskStartedEventAttributes!.attempt),
    ).toEqual([1, 1]);
  });

  it('refuses a heartbeat timeout that is not a whole number of milliseconds from 1000, without retrying', async () => {
    const h = await env.client.workflow.start(MONITOR_WORKFLOW, {
      taskQueue: project.taskQueue,
      workflowId: uniqueId('monitor-bad'),
      args: [{ pipeline: name, heartbeatTimeoutMs: 'fast' }],
      workflowRunTimeout: '1 minute',
    });
    const cause = await h.result().then(
      () => '',
      (e: unknown) => `${describeFailure(e).type}: ${describeFailure(e).message}`,
    );
    expect(cause).toBe('INPUT_INVALID: heartbeatTimeoutMs must be a whole number of milliseconds, at least 1000; got "fast".');
  });

  it('on drift: two monitors at once start exactly one retrain, and both alert', async () => {
    // The retrain holds for 6 s, so both monitors find it running.
    const overrides = ['params.current=data/drifted.csv', 'params.ticks=60'];
    const [a, b] = await Promise.all([monitor(overrides), monitor(overrides)]);
    const results = (await Promise.all([a.result(), b.result()])) as MonitorResult[];
    for (const r of results) {
      expect(r.drift.datasetDrift).toBe(true);
      expect(r.drift.driftedColumns).toEqual(['x', 'c']);
      expect(r.retrainWorkflowId).toBe(retrainWorkflowId(name));
      expect(r.alert).toMatchObject({ sent: true, status: 200 });
    }
    expect(results.map((r) => r.retrain).sort()).toEqual(['already-running', 'started']);
    // Exactly one execution with the retrain ID, started by the monitor, outliving it.
    const executions = await waitFor(async () => {
      const list = [];
      for await (const w of env.client.workflow.list({ query: `WorkflowId = '${retrainWorkflowId(name)}'` })) list.push(w);
      return list.length ? list : undefined;
    }, 'the retrain in visibility');
    expect(executions).toHaveLength(1);
    const retrain = env.client.workflow.getHandle(retrainWorkflowId(name));
    const result = (await retrain.result()) as PipelineResult;
    expect(result.state).toBe('succeeded');
    expect(result.steps['hold']!.status).toBe('succeeded');
    // Two alerts, Slack's shape.
    expect(received).toHaveLength(2);
    for (const m of received) {
      expect(m.text).toMatch(new RegExp(`Data drift in \\*${name}\\*: 2 of 2 columns drifted`));
      expect(m.blocks.map((x) => x.type)).toEqual(['section', 'section']);
    }
  });
});

describe('schedules', () => {
  const cli = (args: string[]) =>
    run(process.execPath, [join(REPO, 'bin', 'mlpipe.mjs'), ...args], {
      env: {
        ...process.env,
        TEMPORAL_ADDRESS: inject('temporalAddress'),
        MLPIPE_PROJECT_DIR: project.dir,
        MLPIPE_TASK_QUEUE: project.taskQueue,
      },
    }).then(
      (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
      (e: { code: number; stdout: string; stderr: string }) => e,
    );

  it('create, list, pause, trigger (a monitor run happens), delete; bad input creates nothing', async () => {
    const id = `monitor-${name}`;
    const created = await cli(['schedule', 'create', name, 'params.current=data/same.csv', '--every', '1h']);
    expect(created.code, created.stderr).toBe(0);
    expect(created.stdout).toContain(`schedule ${id}: drift monitor of ${name} every 1h`);
    const listed = JSON.parse((await cli(['schedule', 'list', '--json'])).stdout) as {
      id: string;
      workflow: string;
      paused: boolean;
      every: number[];
    }[];
    expect(listed.find((s) => s.id === id)).toMatchObject({ workflow: 'monitorWorkflow', paused: false, every: [3_600_000] });
    expect((await cli(['schedule', 'pause', id])).code).toBe(0);
    expect((await env.client.schedule.getHandle(id).describe()).state.paused).toBe(true);
    expect((await cli(['schedule', 'trigger', id])).code).toBe(0);
    // A triggered run starts even when paused; it is a monitor run of the pipeline.
    const started = await waitFor(
      async () => {
        const d = await env.client.schedule.getHandle(id).describe();
        return d.info.recentActions[0]?.action.workflow;
      },
      'the triggered run',
      30_000,
    );
    const r = (await env.client.workflow.getHandle(started.workflowId).result()) as MonitorResult;
    expect(r).toMatchObject({ pipeline: name, retrain: 'no-drift' });
    expect((await cli(['schedule', 'delete', id])).code).toBe(0);
    const after = JSON.parse((await cli(['schedule', 'list', '--json'])).stdout) as { id: string }[];
    expect(after.some((s) => s.id === id)).toBe(false);

    const bad = await cli(['schedule', 'create', 'diamond', '--every', '1h', '--workflow', 'monitor']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/has no monitor: section/);
    const badEvery = await cli(['schedule', 'create', name, '--every', 'hourly']);
    expect(badEvery.code).toBe(2);
    expect(badEvery.stderr).toMatch(/--every 'hourly' is not a duration/);
    expect((await cli(['schedule', 'pause', 'nope'])).stderr).toMatch(/There is no schedule 'nope'/);
    const none = JSON.parse((await cli(['schedule', 'list', '--json'])).stdout) as { id: string }[];
    expect(none.filter((s) => s.id.includes(name))).toEqual([]);
  });

  it('the documented temporal schedule create command starts the same monitor', async () => {
    const id = `tctl-${name}`;
    const address = inject('temporalAddress');
    const bin = inject('temporalBin');
    await run(bin, [
      'schedule',
      'create',
      '--address',
      address,
      '--schedule-id',
      id,
      '--interval',
      '1h',
      '--overlap-policy',
      'Skip',
      '--workflow-id',
      id,
      '--type',
      'monitorWorkflow',
      '--task-queue',
      project.taskQueue,
      '--input',
      JSON.stringify({ pipeline: name, overrides: ['params.current=data/same.csv'] }),
    ]);
    await run(bin, ['schedule', 'trigger', '--address', address, '--schedule-id', id]);
    const started = await waitFor(
      async () => (await env.client.schedule.getHandle(id).describe()).info.recentActions[0]?.action.workflow,
      'the triggered run',
      30_000,
    );
    const r = (await env.client.workflow.getHandle(started.workflowId).result()) as MonitorResult;
    expect(r).toMatchObject({ pipeline: name, retrain: 'no-drift' });
    await env.client.schedule.getHandle(id).delete();
  });
});
