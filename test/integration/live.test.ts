/**
 * A run as it happens, against a real dev server: a step's `ctx.progress` in the heartbeat details,
 * `mlpipe run` printing it as plain lines (not a TTY) and `mlpipe status` beside the step; runs found
 * by `temporal workflow list --query` on mlpipe's search attributes; step activities and the run
 * named by their summaries; a namespace without the search attributes still runs pipelines, and the
 * worker says how to add them.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import { NativeConnection } from '@temporalio/worker';
import { describe, expect, inject, it } from 'vitest';
import { createPipelineWorker } from '../../app/worker.js';
import { missingSearchAttributes, searchAttributesHint } from '../../app/visibility.js';
import { PIPELINE_WORKFLOW, type StepProgress } from '../../engine/contracts.js';
import { stepProgressOf } from '../../engine/progress.js';
import { createTestProject, REPO, uniqueId, useWorkerAndClient, waitFor } from './helpers.js';

const project = createTestProject('live');
symlinkSync(join(REPO, 'node_modules'), join(project.dir, 'node_modules'));
project.write('package.json', JSON.stringify({ name: 'live-project', private: true, type: 'module' }));
// Reports item i of 3 (a made-up loss), then waits for the test to create gate-<i> before going on.
project.write(
  'mlpipe.plugins.ts',
  `import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { definePlugin } from ${JSON.stringify(join(REPO, 'plugins', 'sdk.ts'))};

export const plugins = [
  definePlugin({
    name: 'custom.count',
    version: '1',
    description: 'Counts to n, one item per gate file.',
    params: z.object({ n: z.number() }).strict(),
    outputs: { counted: 'json' },
    async run(ctx, p) {
      for (let i = 1; i <= p.n; i++) {
        ctx.progress({ done: i, total: p.n, unit: 'item', metrics: { loss: 1 / (i + 1), val_loss: 1 / i } });
        while (!existsSync(join(ctx.projectDir, 'gate-' + i))) await new Promise((r) => setTimeout(r, 100));
      }
      return { counted: p.n };
    },
  }),
];
`,
);
project.write('pipelines/count.yaml', 'name: count\nsteps:\n  count:\n    uses: custom.count\n    with: { n: 3 }\n    cache: false\n');
const env = useWorkerAndClient(project);

const cliEnv = {
  ...process.env,
  TEMPORAL_ADDRESS: project.settings.temporalAddress,
  MLPIPE_TASK_QUEUE: project.taskQueue,
  MLPIPE_PROJECT_DIR: project.dir,
  MLPIPE_ARTIFACTS: project.settings.artifactsDir,
};

function mlpipe(args: string[]): { child: ChildProcess; output: () => string; done: Promise<number | null> } {
  const child = spawn(process.execPath, [join(REPO, 'bin', 'mlpipe.mjs'), ...args], { cwd: project.dir, env: cliEnv });
  let text = '';
  child.stdout!.on('data', (d: Buffer) => (text += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (text += d.toString()));
  return { child, output: () => text, done: new Promise((r) => child.on('close', r)) };
}

function temporal(...args: string[]): string {
  return execFileSync(inject('temporalBin'), [...args, '--address', project.settings.temporalAddress], { encoding: 'utf8' });
}

/** The step's progress from describe() of the run (its pending activity's heartbeat details). */
async function progressOf(client: Client, workflowId: string, stepId: string): Promise<StepProgress | undefined> {
  const d = await client.workflow.getHandle(workflowId).describe();
  const a = (d.raw.pendingActivities ?? []).find((p) => p.activityId === stepId);
  const payload = a?.heartbeatDetails?.payloads?.[0];
  return payload ? stepProgressOf(defaultPayloadConverter.fromPayload(payload)) : undefined;
}

/** A string payload as the Temporal CLI prints it in JSON (base64 of its JSON). */
const payloadText = (s: string): string => Buffer.from(JSON.stringify(s)).toString('base64');

describe('live progress and names in Temporal', () => {
  it('shows progress in mlpipe run and mlpipe status, and finds the run by its search attributes', async () => {
    const workflowId = uniqueId('live-count');
    const run = mlpipe(['run', 'count', '--id', workflowId, '--label', 'team=ml', '--label', 'purpose=test']);

    // Item 1: in the heartbeat details, then beside the step in `mlpipe status`.
    const first = await waitFor(
      async () => (await progressOf(env.client, workflowId, 'count').catch(() => undefined))?.done === 1,
      'item 1',
    );
    expect(first).toBe(true);
    const status = mlpipe(['status', workflowId]);
    expect(await status.done).toBe(0);
    expect(status.output()).toMatch(/▶ count +running +item 1\/3 loss 0\.5 val 1/);
    await waitFor(() => run.output().includes('item 1/3'), 'the progress line of item 1 in mlpipe run');

    // Item 2: the rate is known now, so the line has an ETA.
    project.write('gate-1', '');
    await waitFor(async () => (await progressOf(env.client, workflowId, 'count'))?.done === 2, 'item 2');
    await waitFor(() => /item 2\/3 loss 0\.333 val 0\.5 eta \d+s/.test(run.output()), 'the progress line of item 2 with an ETA');
    project.write('gate-2', '');
    project.write('gate-3', '');
    expect(await run.done).toBe(0);
    const out = run.output();
    // Not a TTY: plain lines, one per item, no cursor control.
    expect(out).toMatch(/^… count +item 1\/3 loss 0\.5 val 1$/m);
    expect(out).toMatch(/^… count +item 2\/3 loss 0\.333 val 0\.5 eta \d+s$/m);
    expect(out).not.toContain('\x1b[');
    expect(out).toMatch(/✓ count +succeeded/);
    expect(existsSync(join(project.dir, 'gate-3'))).toBe(true);

    // Search attributes: by pipeline, by label; the list shows the run.
    const listed = await waitFor(() => {
      const t = temporal('workflow', 'list', '--query', 'MlpipePipeline="count" AND MlpipeLabels="team=ml"');
      return t.includes(workflowId) ? t : undefined;
    }, 'the run in a search-attribute query');
    expect(listed).toContain(PIPELINE_WORKFLOW);
    // What a user sees (kept in the test log).
    console.log(`mlpipe run output:\n${out}\ntemporal workflow list --query:\n${listed}`);
    expect(temporal('workflow', 'list', '--query', 'MlpipePipeline="count" AND MlpipeLabels="team=other"')).not.toContain(workflowId);
    const described = JSON.parse(temporal('workflow', 'describe', '-w', workflowId, '--output', 'json')) as Record<string, unknown>;
    const text = JSON.stringify(described);
    expect(described['executionConfig']).toMatchObject({ userMetadata: { summary: 'count · purpose=test team=ml' } });
    expect(text).toMatch(/MlpipeVersion/);

    // The step's activity carries its summary.
    const history = temporal('workflow', 'show', '-w', workflowId, '--output', 'json');
    const scheduled = (
      JSON.parse(history) as { events: { activityTaskScheduledEventAttributes?: unknown; userMetadata?: unknown }[] }
    ).events.filter(
      (e) => e.activityTaskScheduledEventAttributes && JSON.stringify(e.activityTaskScheduledEventAttributes).includes('runStep'),
    );
    expect(scheduled).toHaveLength(1);
    const metadata = JSON.stringify(scheduled[0]!.userMetadata);
    expect(metadata.includes('count · custom.count') || metadata.includes(payloadText('count · custom.count'))).toBe(true);
  });

  it('runs pipelines in a namespace without the search attributes, and says how to add them', async () => {
    const namespace = `nosa-${process.pid}-${Date.now()}`;
    temporal('operator', 'namespace', 'create', '--namespace', namespace);
    const connection = await Connection.connect({ address: project.settings.temporalAddress });
    try {
      const missing = await waitFor(() => missingSearchAttributes(connection, namespace), 'the new namespace');
      expect(missing).toEqual(['MlpipePipeline', 'MlpipeLabels', 'MlpipeVersion']);
      expect(searchAttributesHint(namespace, missing)).toContain(
        `temporal operator search-attribute create --namespace ${namespace} --name MlpipePipeline --type Keyword --name MlpipeLabels --type KeywordList --name MlpipeVersion --type Keyword`,
      );
      const warnings: string[] = [];
      const warn = console.warn;
      console.warn = (m: string) => void warnings.push(String(m));
      const native = await NativeConnection.connect({ address: project.settings.temporalAddress });
      const settings = { ...project.settings, namespace, taskQueue: `${project.taskQueue}-nosa` };
      let w: Awaited<ReturnType<typeof createPipelineWorker>>;
      try {
        w = await createPipelineWorker({ settings, connection: native, tracking: null });
      } finally {
        console.warn = warn;
      }
      expect(warnings.join('\n')).toContain(`temporal operator search-attribute create --namespace ${namespace}`);
      const running = w.worker.run();
      try {
        const client = new Client({ connection, namespace });
        const r = await client.workflow.execute(PIPELINE_WORKFLOW, {
          taskQueue: settings.taskQueue,
          workflowId: uniqueId('nosa-diamond'),
          args: [{ pipeline: 'diamond', labels: { team: 'ml' } }],
        });
        expect(r).toMatchObject({ state: 'succeeded' });
      } finally {
        w.worker.shutdown();
        await running;
        await native.close();
      }
    } finally {
      await connection.close();
    }
  });
});
