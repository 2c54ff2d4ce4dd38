/**
 * Hostile workflow input, started with the Temporal client as anyone with access to the task queue
 * could: each run must fail at once with a stable code, after exactly one compilePipeline attempt,
 * with no workflow task failing (a run stuck retrying its workflow task never ends).
 */
import { WorkflowFailedError, WorkflowNotFoundError, type WorkflowHandle } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { spawn } from 'node:child_process';
import { mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PIPELINE_WORKFLOW, type PipelineInput } from '../../engine/contracts.js';
import { activitiesOf, createTestProject, REPO, uniqueId, useWorkerAndClient } from './helpers.js';

const project = createTestProject('hostile');
const outside = mkdtempSync(join(tmpdir(), 'mlpipe-hostile-outside-'));
writeFileSync(join(outside, 'secret.yaml'), 'name: secret\nsteps:\n  a: { uses: util.echo }\n');
symlinkSync(join(outside, 'secret.yaml'), join(project.dir, 'pipelines', 'escape.yaml'));
// Nine aliases per level, eight levels: 43 million nodes if expanded.
const laughs = [
  'a: &a [x, x, x, x, x, x, x, x, x]',
  ...'bcdefgh'.split('').map((k, i) => `${k}: &${k} [${Array(9).fill(`*${'abcdefg'[i]}`).join(', ')}]`),
];
project.write('pipelines/laughs.yaml', `${laughs.join('\n')}\nname: laughs\nsteps:\n  a: { uses: util.echo }\n`);
project.write('pipelines/proto.yaml', 'name: proto\nsteps:\n  __proto__: { uses: util.echo }\n  b: { uses: util.echo }\n');
project.write('pipelines/zero.yaml', 'name: zero\nsteps:\n  a: { uses: util.echo, timeout: 0s }\n');
project.write(
  'pipelines/many.yaml',
  'name: many\nsteps:\n  a: { uses: util.ecko }\n  b: { uses: util.echo, needs: [c, zz] }\n  c: { uses: util.echo, needs: b }\n  d:\n    uses: util.sleep\n    with: { ticks: -1, tickMs: "${params.nope}" }\n',
);
project.write('pipelines/intervals.yaml', 'name: intervals\nsteps:\n  a: { uses: util.echo, retry: { initialInterval: 5m } }\n');

const env = useWorkerAndClient(project);

function start(input: PipelineInput): Promise<WorkflowHandle> {
  return env.client.workflow.start(PIPELINE_WORKFLOW, {
    taskQueue: project.taskQueue,
    workflowId: uniqueId('hostile'),
    args: [input],
    workflowRunTimeout: '2 minutes',
  });
}

/** Runs the input to its end and reads what happened from the result and the history. */
async function outcome(input: PipelineInput): Promise<{
  type?: string;
  message: string;
  status: string;
  compileAttempts: number[];
  workflowTaskFailures: number;
  activities: string[];
}> {
  const handle = await start(input);
  const error = await handle.result().then(
    () => new Error('the run succeeded'),
    (e: unknown) => e as Error,
  );
  expect(error).toBeInstanceOf(WorkflowFailedError);
  const cause = (error as WorkflowFailedError).cause as ApplicationFailure;
  const events = (await handle.fetchHistory()).events ?? [];
  const { names: activities, attempts } = activitiesOf(events);
  return {
    type: cause.type ?? undefined,
    message: cause.message,
    status: (await handle.describe()).status.name,
    compileAttempts: attempts,
    workflowTaskFailures: events.filter((e) => e.workflowTaskFailedEventAttributes).length,
    activities,
  };
}

describe('hostile workflow input', () => {
  it('ends each run FAILED at once with a stable code, after one compilePipeline attempt', async () => {
    const cases: [string, PipelineInput, string, RegExp][] = [
      ['pipeline traversal', { pipeline: '../../etc/passwd' }, 'INPUT_INVALID', /Pipeline '\.\.\/\.\.\/etc\/passwd'/],
      ['path with ..', { pipeline: 'pipelines/../../../etc/passwd.yaml' }, 'INPUT_INVALID', /'\.\.' segment/],
      ['absolute path out', { pipeline: join(outside, 'secret.yaml') }, 'INPUT_INVALID', /outside the project folder/],
      ['symlink out', { pipeline: 'escape' }, 'INPUT_INVALID', /outside the project folder/],
      ['encoded dots', { pipeline: '%2e%2e/%2e%2e/etc/passwd.yaml' }, 'INPUT_INVALID', /percent-encoding/],
      [
        'config option traversal',
        { pipeline: 'california-housing', overrides: ['training=../../x'] },
        'INPUT_INVALID',
        /'\.\.\/\.\.\/x' is not a config option name/,
      ],
      [
        'data path override out',
        { pipeline: 'california-housing', overrides: ['params.data=/etc/passwd'] },
        'INPUT_INVALID',
        /\/etc\/passwd.*outside the project folder/,
      ],
      [
        '1 MB override',
        { pipeline: 'diamond', overrides: [`params.greeting=${'x'.repeat(1 << 20)}`] },
        'INPUT_INVALID',
        /workflow input is \d+ bytes/,
      ],
      ['201 overrides', { pipeline: 'diamond', overrides: Array(201).fill('params.greeting=x') }, 'INPUT_INVALID', /overrides/],
      ['billion laughs', { pipeline: 'laughs' }, 'SPEC_YAML', /more than 100 YAML aliases/],
      ['__proto__ step id', { pipeline: 'proto' }, 'SPEC_INVALID', /steps\.__proto__.*cannot be a key/],
      [
        '__proto__ override',
        { pipeline: 'diamond', overrides: ['__proto__.polluted=1'] },
        'OVERRIDE_MALFORMED',
        /'__proto__' cannot be a key/,
      ],
      [
        'inherited param name',
        { pipeline: 'diamond', overrides: ['params.constructor=1'] },
        'OVERRIDE_UNKNOWN_KEY',
        /no key 'constructor'/,
      ],
      ['replacement characters', { pipeline: 'diamond', overrides: ['params.greeting=caf\uFFFD'] }, 'INPUT_INVALID', /not valid UTF-8/],
      ['bad label', { pipeline: 'diamond', labels: { 'owner name': 'x' } }, 'INPUT_INVALID', /Label key 'owner name'/],
      ['huge maxParallel', { pipeline: 'diamond', maxParallel: 1e9 }, 'INPUT_INVALID', /maxParallel/],
      ['zero timeout', { pipeline: 'zero' }, 'SPEC_INVALID', /must be more than 0/],
      ['maximumInterval below initialInterval', { pipeline: 'intervals' }, 'SPEC_INVALID', /maximumInterval/],
    ];
    const results = await Promise.all(cases.map(([, input]) => outcome(input)));
    cases.forEach(([name, , type, message], i) => {
      const r = results[i]!;
      expect({ name, type: r.type, status: r.status }).toEqual({ name, type, status: 'FAILED' });
      expect(r.message, name).toMatch(message);
      expect({ name, activities: r.activities, attempts: r.compileAttempts, workflowTaskFailures: r.workflowTaskFailures }).toEqual({
        name,
        activities: ['compilePipeline'],
        attempts: [1],
        workflowTaskFailures: 0,
      });
    });
  });

  it('cannot even start a run with a 10 MB override: Temporal refuses the input, nothing starts', async () => {
    const workflowId = uniqueId('hostile-10mb');
    const input = { pipeline: 'diamond', overrides: [`params.greeting=${'x'.repeat(10 << 20)}`] };
    const error = await env.client.workflow.start(PIPELINE_WORKFLOW, { taskQueue: project.taskQueue, workflowId, args: [input] }).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    const chain: string[] = [];
    for (let e: unknown = error; e instanceof Error; e = e.cause) chain.push(`${e.name}: ${e.message}`);
    expect(chain.join('\n')).toMatch(/RESOURCE_EXHAUSTED: .*larger than max/);
    await expect(env.client.workflow.getHandle(workflowId).describe()).rejects.toBeInstanceOf(WorkflowNotFoundError);
  });
});

/** The CLI compiles with the same checks before it starts anything: exit 2, every problem listed. */
function mlpipe(...args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(REPO, 'bin', 'mlpipe.mjs'), ...args], {
      cwd: project.dir,
      env: {
        ...process.env,
        TEMPORAL_ADDRESS: project.settings.temporalAddress,
        MLPIPE_TASK_QUEUE: project.taskQueue,
        MLPIPE_PROJECT_DIR: project.dir,
      },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stderr }));
  });
}

describe('hostile input on the command line', () => {
  it('validate lists every problem, each with file and line, and exits 2', async () => {
    const r = await mlpipe('validate', 'many');
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('4 problems found');
    for (const line of [
      'pipelines/many.yaml:3:',
      'error PLUGIN_UNKNOWN',
      'error DAG_MISSING_NEED',
      'error DAG_CYCLE',
      'pipelines/many.yaml:8:',
      'error EXPR_REFERENCE',
    ]) {
      expect(r.stderr).toContain(line);
    }
  });

  it('run refuses traversal, option traversal and bad labels with exit 2', async () => {
    const traversal = await mlpipe('run', '../../etc/passwd');
    expect(traversal).toMatchObject({ code: 2 });
    expect(traversal.stderr).toContain("error INPUT_INVALID: Pipeline '../../etc/passwd'");
    const option = await mlpipe('run', 'california-housing', 'training=../../x');
    expect(option).toMatchObject({ code: 2 });
    expect(option.stderr).toContain("'../../x' is not a config option name");
    const label = await mlpipe('run', 'diamond', '--label', 'owner name=ana');
    expect(label).toMatchObject({ code: 2 });
    expect(label.stderr).toContain("Label key 'owner name' is not allowed");
  });
});
