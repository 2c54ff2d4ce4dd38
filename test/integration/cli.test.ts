/**
 * The command line and the Temporal CLI against a real dev server: `temporal workflow start` with the
 * documented input, `mlpipe run` following a run, and bad input that starts nothing.
 */
import type { Client } from '@temporalio/client';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { PipelineResult } from '../../engine/types.js';
import { createClient, createTestProject, REPO, startWorker, uniqueId } from './helpers.js';

const project = createTestProject('cli');
let client: Client;
let stopWorker: () => Promise<void>;

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

function runCommand(cmd: string, args: string[], env: Record<string, string> = {}): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: project.dir, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

function mlpipe(...args: string[]): Promise<Ran> {
  return runCommand(process.execPath, [join(REPO, 'bin', 'mlpipe.mjs'), ...args], {
    TEMPORAL_ADDRESS: project.settings.temporalAddress,
    MLPIPE_TASK_QUEUE: project.taskQueue,
    MLPIPE_PROJECT_DIR: project.dir,
    MLPIPE_ARTIFACTS: project.settings.artifactsDir,
  });
}

/** Workflows ever started on this test's task queue. */
async function startedCount(): Promise<number> {
  const { count } = await client.workflow.count(`TaskQueue = '${project.taskQueue}'`);
  return count;
}

beforeAll(async () => {
  client = await createClient();
  stopWorker = (await startWorker(project)).stop;
});
afterAll(async () => {
  await stopWorker?.();
  await client?.connection.close();
});

describe('temporal workflow start', () => {
  it('starts a pipeline with the documented command and JSON input', async () => {
    const workflowId = uniqueId('cli-temporal');
    const input = JSON.stringify({ pipeline: 'conditional', overrides: ['model=wide'] });
    const r = await runCommand(inject('temporalBin'), [
      'workflow', 'start',
      '--address', project.settings.temporalAddress,
      '--type', 'pipelineWorkflow',
      '--task-queue', project.taskQueue,
      '--workflow-id', workflowId,
      '--input', input,
    ]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const result = (await client.workflow.getHandle(workflowId).result()) as PipelineResult;
    expect(result.outputs['deploy']).toEqual({ deployed: 'wide-mlp' });
  });
});

describe('mlpipe', () => {
  it('run follows the run, prints step lines and outputs, and exits 0', async () => {
    const r = await mlpipe('run', 'diamond', 'params.greeting=hey', '--no-cache');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/started diamond as workflow diamond-\w+ on task queue/);
    for (const step of ['prepare', 'left', 'right', 'report']) expect(r.stdout).toMatch(new RegExp(`✓ ${step}\\s+succeeded`));
    expect(r.stdout).toContain('report.message = "hey from the right branch"');
    expect(r.stdout).toContain('diamond: succeeded (4 succeeded)');
  });

  it('run exits 1 and names the failed step when the run fails', async () => {
    project.write('pipelines/fails.yaml', 'name: fails\nsteps:\n  bad:\n    uses: util.flaky\n    with: { message: no space left, retryable: false }\n');
    const r = await mlpipe('run', 'fails');
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/✗ bad\s+failed/);
    expect(r.stderr).toContain("Step 'bad' failed (STEP_FAILED)");
    expect(r.stderr).toContain('no space left');
  });

  it('run rejects a bad pipeline with file, line and hint, exit 2, and starts nothing', async () => {
    project.write('pipelines/typo.yaml', 'name: typo\nsteps:\n  a:\n    uses: util.echo\n  b:\n    uses: util.echo\n    needs: [aa]\n');
    const before = await startedCount();
    const r = await mlpipe('run', 'typo');
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('pipelines/typo.yaml:7:');
    expect(r.stderr).toContain("error DAG_MISSING_NEED: Step 'b' needs 'aa', which is not a step of this pipeline. Did you mean 'a'?");
    const badOverride = await mlpipe('run', 'conditional', 'model=huge');
    expect(badOverride.code).toBe(2);
    expect(badOverride.stderr).toContain("Config group 'model' has no option 'huge'");
    expect(badOverride.stderr).toContain('Options in conf/demo/model/: small, wide.');
    const unknown = await mlpipe('run', 'diamnd');
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("Did you mean 'diamond'?");
    await new Promise((r) => setTimeout(r, 1000)); // visibility is eventually consistent
    expect(await startedCount()).toBe(before);
  });

  it('validate and graph', async () => {
    const ok = await mlpipe('validate', 'conditional', 'model=wide');
    expect(ok.code).toBe(0);
    expect(ok.stdout).toContain("pipeline 'conditional', 4 steps");
    expect(ok.stdout).toContain('config model=wide training=default');
    const bad = await mlpipe('validate', 'conditional', 'training.lrr=1');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("Did you mean 'training.lr'?");
    const graph = await mlpipe('graph', 'diamond');
    expect(graph.code).toBe(0);
    expect(graph.stdout.split('\n')).toEqual(expect.arrayContaining(['flowchart TD', '  prepare --> left', '  prepare --> right', '  left --> report', '  right --> report']));
  });

  it('exits 3 with a hint when no server is reachable', async () => {
    const r = await runCommand(process.execPath, [join(REPO, 'bin', 'mlpipe.mjs'), 'run', 'diamond'], { TEMPORAL_ADDRESS: '127.0.0.1:1', MLPIPE_PROJECT_DIR: project.dir });
    expect(r.code).toBe(3);
    expect(r.stderr).toContain('No Temporal server at 127.0.0.1:1');
    expect(r.stderr).toContain("mlpipe dev");
  });
});
