/**
 * The command line and the Temporal CLI against a real dev server: `temporal workflow start` with the
 * documented input, `mlpipe run` following a run, `mlpipe status` showing what a step waits for, and
 * bad input that starts nothing.
 */
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { existsSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, inject, it } from 'vitest';
import { freePort, isListening } from '../../dev/temporal-server.js';
import type { PipelineResult } from '../../engine/contracts.js';
import { COMMAND_HELP } from '../../cli/help.js';
import { createTestProject, REPO, uniqueId, useWorkerAndClient, waitFor } from './helpers.js';
import { whileRunning } from './processes.js';
import { PIPELINE_WORKFLOW } from '../../engine/contracts.js';
import { defaultPayloadConverter } from '@temporalio/common';
import type { WorkflowHandle } from '@temporalio/client';

const project = createTestProject('cli');
// A project plugin, picked up by the CLI and by workers started in this project folder.
symlinkSync(join(REPO, 'node_modules'), join(project.dir, 'node_modules'));
project.write('package.json', JSON.stringify({ name: 'my-ml-project', private: true, type: 'module' }));
project.write(
  'mlpipe.plugins.ts',
  `import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { definePlugin } from ${JSON.stringify(join(REPO, 'plugins', 'sdk.ts'))};

/** Doubles a number. */
export const plugins = [
  definePlugin({
    name: 'custom.double',
    version: '1',
    description: 'Doubles n.',
    params: z.object({ n: z.number() }).strict(),
    outputs: { value: 'json' },
    async run(_ctx, p) {
      return { value: p.n * 2 };
    },
  }),
  definePlugin({
    name: 'custom.gate',
    version: '1',
    description: 'Reads a file, waiting for it as for a service that is down while it is missing.',
    params: z.object({ file: z.string() }).strict(),
    outputs: { text: 'json' },
    async run(ctx, p) {
      const gate = { name: 'the gate', location: p.file, isUnavailable: (e: unknown) => (e as { code?: unknown }).code === 'ENOENT' };
      return { text: await ctx.untilAvailable(gate, () => readFile(join(ctx.projectDir, p.file), 'utf8')) };
    },
  }),
];
`,
);
project.write('pipelines/custom.yaml', 'name: custom\nsteps:\n  twice:\n    uses: custom.double\n    with: { n: 21 }\n');
const env = useWorkerAndClient(project);
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

const cliEnv = (): Record<string, string> => ({
  TEMPORAL_ADDRESS: project.settings.temporalAddress,
  MLPIPE_TASK_QUEUE: project.taskQueue,
  MLPIPE_PROJECT_DIR: project.dir,
  MLPIPE_ARTIFACTS: project.settings.artifactsDir,
});

function mlpipe(...args: string[]): Promise<Ran> {
  return runCommand(process.execPath, [join(REPO, 'bin', 'mlpipe.mjs'), ...args], cliEnv());
}

/** The `waiting` message in the heartbeat details of each pending step activity. */
async function waitingSteps(handle: WorkflowHandle): Promise<Map<string, string>> {
  const found = new Map<string, string>();
  for (const a of (await handle.describe()).raw.pendingActivities ?? []) {
    const payload = a.heartbeatDetails?.payloads?.[0];
    const waiting = payload ? (defaultPayloadConverter.fromPayload(payload) as { waiting?: unknown }).waiting : undefined;
    if (typeof waiting === 'string' && a.activityId) found.set(a.activityId, waiting);
  }
  return found;
}

/** Workflows ever started on this test's task queue. */
async function startedCount(): Promise<number> {
  const { count } = await env.client.workflow.count(`TaskQueue = '${project.taskQueue}'`);
  return count;
}

describe('temporal workflow start', () => {
  it('starts a pipeline with the documented command and JSON input', async () => {
    const workflowId = uniqueId('cli-temporal');
    const input = JSON.stringify({ pipeline: 'conditional', overrides: ['model=wide'] });
    const r = await runCommand(inject('temporalBin'), [
      'workflow',
      'start',
      '--address',
      project.settings.temporalAddress,
      '--type',
      'pipelineWorkflow',
      '--task-queue',
      project.taskQueue,
      '--workflow-id',
      workflowId,
      '--input',
      input,
    ]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const result = (await env.client.workflow.getHandle(workflowId).result()) as PipelineResult;
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

  it('status shows beside a running step what it waits for (its heartbeat details)', async () => {
    project.write(
      'pipelines/gate.yaml',
      'name: gate\nsteps:\n  before: { uses: util.echo }\n  opens:\n    uses: custom.gate\n    needs: before\n    with: { file: gate.txt }\n',
    );
    const workflowId = uniqueId('cli-gate');
    const handle = await env.client.workflow.start(PIPELINE_WORKFLOW, {
      taskQueue: project.taskQueue,
      workflowId,
      args: [{ pipeline: 'gate' }],
    });
    await whileRunning(handle, async () => (await waitingSteps(handle)).get('opens'), "the step's heartbeat to say what it waits for");
    const r = await mlpipe('status', workflowId);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const lines = r.stdout.split('\n');
    expect(lines[0]).toBe('gate: running');
    expect(lines).toEqual(expect.arrayContaining([expect.stringMatching(/^✓ before\s+succeeded/)]));
    expect(lines).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^▶ opens\s+running\s+waiting for the gate at gate\.txt \(unreachable for \d[^)]*\)$/),
      ]),
    );
    project.write('gate.txt', 'open');
    const result = (await handle.result()) as PipelineResult;
    expect(result.outputs['opens']).toEqual({ text: 'open' });
    // Once it has ended, status shows no wait.
    const after = await mlpipe('status', workflowId);
    expect(after.stdout).toMatch(/✓ opens\s+succeeded/);
    expect(after.stdout).not.toContain('waiting for');
  });

  it('run exits 1 and names the failed step when the run fails', async () => {
    project.write(
      'pipelines/fails.yaml',
      'name: fails\nsteps:\n  bad:\n    uses: util.flaky\n    with: { message: no space left, retryable: false }\n',
    );
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

  it('uses project plugins from mlpipe.plugins.ts in validate, plugins and run', async () => {
    const list = await mlpipe('plugins');
    expect(list.stdout).toMatch(/custom\.double\s+Doubles n\./);
    const r = await mlpipe('run', 'custom', '--no-cache');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('twice.value = 42');
    project.write('pipelines/custom-bad.yaml', 'name: custom-bad\nsteps:\n  twice:\n    uses: custom.double\n    with: { n: "21" }\n');
    const bad = await mlpipe('validate', 'custom-bad');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('pipelines/custom-bad.yaml:5:');
    expect(bad.stderr).toContain("error PLUGIN_PARAMS: Step 'twice' (custom.double): 'n' expected number, received string");
  });

  it('stops the housing pipeline on bad data with the file, line, column and row', async () => {
    const header =
      'longitude,latitude,housing_median_age,total_rooms,total_bedrooms,population,households,median_income,median_house_value,ocean_proximity';
    const good = '-122.23,37.88,41.0,880.0,129.0,322.0,126.0,8.3252,452600.0,NEAR BAY';
    project.write('data/malformed.csv', `${header}\n${good}\n-122.22,37.86,21.0\n`);
    const malformed = await mlpipe('run', 'california-housing', 'params.data=data/malformed.csv', '--no-cache');
    expect(malformed.code).toBe(1);
    expect(malformed.stderr).toContain("Step 'ingest' failed (DATA_INVALID)");
    expect(malformed.stderr).toContain('data/malformed.csv: 1 malformed row');
    expect(malformed.stderr).toContain("line 3, column 'total_rooms': missing columns");

    const rows = Array.from({ length: 1200 }, (_, i) => good.replace('880.0', i === 7 ? 'many' : '880.0')).join('\n');
    project.write('data/text.csv', `${header}\n${rows}\n`);
    const text = await mlpipe('run', 'california-housing', 'params.data=data/text.csv', '--no-cache');
    expect(text.code).toBe(1);
    expect(text.stderr).toContain("Step 'validate' failed (DATA_INVALID)");
    expect(text.stderr).toContain(`column 'total_rooms': 1 value is not a number (first at data row 8: "many")`);

    const noTarget = await mlpipe('run', 'california-housing', 'params.target=price', 'training.epochs=1');
    expect(noTarget.code).toBe(1);
    expect(noTarget.stderr).toContain(
      "Step 'split' failed (PLUGIN_PARAMS): process.split: the dataset has no column 'price'. Columns: longitude, latitude",
    );

    project.write('data/empty.csv', '');
    const empty = await mlpipe('run', 'california-housing', 'params.data=data/empty.csv');
    expect(empty.code).toBe(1);
    expect(empty.stderr).toContain('data/empty.csv: the file is empty.');
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
    expect(graph.stdout.split('\n')).toEqual(
      expect.arrayContaining(['flowchart TD', '  prepare --> left', '  prepare --> right', '  left --> report', '  right --> report']),
    );
  });

  it('exits 3 with a hint when no server is reachable', async () => {
    const r = await runCommand(process.execPath, [join(REPO, 'bin', 'mlpipe.mjs'), 'run', 'diamond'], {
      TEMPORAL_ADDRESS: '127.0.0.1:1',
      MLPIPE_PROJECT_DIR: project.dir,
    });
    expect(r.code).toBe(3);
    expect(r.stderr).toContain('No Temporal server at 127.0.0.1:1');
    expect(r.stderr).toContain('mlpipe dev');
  });

  it('dev starts a persistent dev server, a worker and the MLflow UI over mlruns/, prints both UIs, and stops all on SIGTERM', async () => {
    const port = await freePort();
    const uiPort = await freePort();
    const mlflowPort = await freePort();
    const webPort = await freePort();
    const db = join(project.dir, 'dev', 'temporal.db');
    const env = {
      ...process.env,
      MLPIPE_PROJECT_DIR: project.dir,
      MLPIPE_ARTIFACTS: project.settings.artifactsDir,
      MLPIPE_TASK_QUEUE: 'dev-queue',
    };
    const dev = spawn(
      process.execPath,
      [
        join(REPO, 'bin', 'mlpipe.mjs'),
        'dev',
        '--port',
        String(port),
        '--ui-port',
        String(uiPort),
        '--db',
        db,
        '--mlflow-port',
        String(mlflowPort),
        '--web-port',
        String(webPort),
      ],
      { cwd: project.dir, env, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    dev.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    try {
      await waitFor(() => stdout.includes('worker polling'), 'mlpipe dev to be ready', 150_000);
      expect(stdout).toContain(`Temporal dev server on 127.0.0.1:${port} (state in ${db})`);
      expect(stdout).toContain(`Web UI: http://127.0.0.1:${uiPort}`);
      expect(stdout).toContain(`MLflow UI: http://127.0.0.1:${mlflowPort} (file store ${join(project.dir, 'mlruns')})`);
      const ui = await fetch(`http://127.0.0.1:${uiPort}/`);
      expect(ui.status).toBe(200);
      expect(stdout).toContain(`mlpipe UI: http://127.0.0.1:${webPort}`);
      const web = await fetch(`http://127.0.0.1:${webPort}/api/health`);
      expect(((await web.json()) as { temporal: { ok: boolean } }).temporal.ok).toBe(true);
      const r = await runCommand(process.execPath, [join(REPO, 'bin', 'mlpipe.mjs'), 'run', 'diamond'], {
        TEMPORAL_ADDRESS: `127.0.0.1:${port}`,
        MLPIPE_PROJECT_DIR: project.dir,
        MLPIPE_TASK_QUEUE: 'dev-queue',
      });
      expect(r.code, `${r.stdout}\n${r.stderr}\n--- dev:\n${stdout}`).toBe(0);
      expect(r.stdout).toContain('diamond: succeeded');
      // The run reaches the MLflow UI of dev, through the file store the worker writes.
      const found = await waitFor(
        async () => {
          const res = await fetch(`http://127.0.0.1:${mlflowPort}/api/2.0/mlflow/experiments/get-by-name?experiment_name=diamond`);
          return res.ok ? ((await res.json()) as { experiment: { experiment_id: string } }) : undefined;
        },
        'the diamond experiment in the MLflow UI',
        30_000,
      );
      const runs = await fetch(`http://127.0.0.1:${mlflowPort}/api/2.0/mlflow/runs/search`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ experiment_ids: [found.experiment.experiment_id] }),
      });
      expect(((await runs.json()) as { runs: unknown[] }).runs.length).toBeGreaterThanOrEqual(1);
    } finally {
      dev.kill('SIGTERM');
    }
    const code = await new Promise((resolve) => dev.once('exit', (c, sig) => resolve(c ?? sig)));
    expect(code).toBe(0);
    expect(await isListening(`127.0.0.1:${port}`)).toBe(false);
    expect(await isListening(`127.0.0.1:${mlflowPort}`)).toBe(false);
  }, 240_000);

  it('dev --registry runs a real MLflow tracking server with a registry: the worker registers models in it, the UI shows them', async () => {
    const reg = createTestProject('dev-registry');
    const rows = ['a,b,y'];
    for (let i = 0; i < 120; i++) rows.push(`${Math.sin(i)},${Math.cos(i)},${2 * Math.sin(i) - Math.cos(i)}`);
    reg.write('data.csv', `${rows.join('\n')}\n`);
    reg.write(
      'pipelines/dev-registry.yaml',
      `name: dev-registry
steps:
  data:
    uses: ingest.file
    with: { path: data.csv }
  train:
    uses: train.tfjs-mlp
    needs: data
    inputs: { train: '\${steps.data.outputs.dataset}' }
    with: { target: y, hidden: [4], epochs: 2, batchSize: 64, seed: 1, backend: cpu }
  register:
    uses: deploy.mlflow-register
    needs: train
    inputs: { model: '\${steps.train.outputs.model}', metrics: '\${steps.train.outputs.metrics}' }
    with: { name: dev-model, metric: { key: trainLoss, goal: minimize }, requireRegistry: true }
`,
    );
    const [port, mlflowPort, webPort] = [await freePort(), await freePort(), await freePort()];
    const env: NodeJS.ProcessEnv = { ...process.env, MLPIPE_PROJECT_DIR: reg.dir, MLPIPE_TASK_QUEUE: 'dev-registry-queue' };
    delete env['MLFLOW_TRACKING_URI'];
    const dev = spawn(
      process.execPath,
      [
        join(REPO, 'bin', 'mlpipe.mjs'),
        'dev',
        '--registry',
        '--port',
        String(port),
        '--ui-port',
        String(await freePort()),
        '--mlflow-port',
        String(mlflowPort),
        '--web-port',
        String(webPort),
      ],
      { cwd: reg.dir, env, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    dev.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    dev.stderr.on('data', (d: Buffer) => (stdout += d.toString()));
    const registry = `http://127.0.0.1:${mlflowPort}`;
    try {
      await waitFor(() => stdout.includes('worker polling'), `mlpipe dev --registry to be ready (${stdout})`, 180_000);
      expect(stdout).toContain(`MLFLOW_TRACKING_URI=${registry}`);
      // The registry is a tracking server: its REST API answers, with the registry's routes.
      const search = await fetch(`${registry}/api/2.0/mlflow/registered-models/search?max_results=10`);
      expect(search.status).toBe(200);
      // The run is tracked by the dev worker, which registers the model in the dev registry.
      const r = await runCommand(process.execPath, [join(REPO, 'bin', 'mlpipe.mjs'), 'run', 'dev-registry'], {
        TEMPORAL_ADDRESS: `127.0.0.1:${port}`,
        MLPIPE_PROJECT_DIR: reg.dir,
        MLPIPE_TASK_QUEUE: 'dev-registry-queue',
      });
      expect(r.code, `${r.stdout}\n${r.stderr}\n--- dev:\n${stdout}`).toBe(0);
      const mv = (await (await fetch(`${registry}/api/2.0/mlflow/registered-models/alias?name=dev-model&alias=champion`)).json()) as {
        model_version: { version: string; tags: { key: string; value: string }[] };
      };
      expect(mv.model_version.version).toBe('1');
      const loss = Number(mv.model_version.tags.find((t) => t.key === 'mlpipe.metric.trainLoss')!.value);
      expect(loss).toBeGreaterThan(0);
      // The UI dev started reads the same registry.
      const health = (await (await fetch(`http://127.0.0.1:${webPort}/api/health`)).json()) as {
        mlflow?: { ok: boolean; location: string };
      };
      expect(health.mlflow).toEqual({ ok: true, location: registry });
      const model = (await (await fetch(`http://127.0.0.1:${webPort}/api/models/dev-model`)).json()) as {
        versions: { version: string; metrics: Record<string, number>; aliases: string[] }[];
      };
      expect(model.versions).toEqual([expect.objectContaining({ version: '1', metrics: expect.objectContaining({ trainLoss: loss }) })]);
      expect(model.versions[0]!.aliases.sort()).toEqual(['challenger', 'champion']);
    } finally {
      dev.kill('SIGTERM');
    }
    const code = await new Promise((resolve) => dev.once('exit', (c, sig) => resolve(c ?? sig)));
    expect(code).toBe(0);
    expect(await isListening(`127.0.0.1:${mlflowPort}`)).toBe(false);
    // The registry is kept in the project's .mlpipe/ across restarts.
    expect(existsSync(join(reg.dir, '.mlpipe', 'mlflow.db'))).toBe(true);
  }, 300_000);

  it('run --worker exits 0 after every successful run (no "Channel has been shut down" at the end)', async () => {
    for (let i = 0; i < 5; i++) {
      const r = await mlpipe('run', 'diamond', '--worker', '--no-cache', '--max-parallel', '4');
      expect(r.stderr, `run ${i}`).toBe('');
      expect(r.code, `run ${i}:\n${r.stdout}`).toBe(0);
      expect(r.stdout).toContain('diamond: succeeded (4 succeeded)');
    }
  }, 240_000);

  it('SIGTERM to a following run cancels the run and exits 1, as SIGINT does', async () => {
    project.write('pipelines/nap.yaml', 'name: nap\nsteps:\n  nap:\n    uses: util.sleep\n    with: { ticks: 40, tickMs: 250 }\n');
    for (const signal of ['SIGTERM', 'SIGINT'] as const) {
      const child = spawn(process.execPath, [join(REPO, 'bin', 'mlpipe.mjs'), 'run', 'nap', '--worker', '--no-cache'], {
        cwd: project.dir,
        env: { ...process.env, ...cliEnv() },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const exited = new Promise<number | string | null>((resolve) => child.once('exit', (c, sig) => resolve(c ?? sig)));
      await waitFor(() => /▶ nap\s+running/.test(stdout), 'the nap step to run', 60_000);
      const workflowId = /as workflow (nap-\w+)/.exec(stdout)![1]!;
      child.kill(signal);
      expect(await exited).toBe(1);
      expect(stderr).toContain(`${signal}: cancelling run ${workflowId}`);
      expect(stderr).toContain(`run ${workflowId} did not succeed`);
      const described = await env.client.workflow.getHandle(workflowId).describe();
      expect(described.status.name).toBe('CANCELLED');
    }
  }, 240_000);

  it('dev --port on a taken port exits 3 naming the port, and attaches to nothing', async () => {
    const taken = createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', () => r()));
    const port = (taken.address() as { port: number }).port;
    try {
      const r = await mlpipe('dev', '--port', String(port), '--no-mlflow');
      expect(r.code).toBe(3);
      expect(r.stderr).toContain(`error PORT_IN_USE: Port ${port} (Temporal frontend) is already in use.`);
      expect(r.stderr).toContain('Pick another with --port <port>, or stop the process listening on');
      expect(r.stdout).not.toContain('worker polling');
      // A Temporal server that is not ours is refused too, not joined.
      const [, serverPort] = project.settings.temporalAddress.split(':');
      const ours = await mlpipe('dev', '--port', serverPort!, '--no-mlflow');
      expect(ours.code).toBe(3);
      expect(ours.stderr).toContain(`Port ${serverPort} (Temporal frontend) is already in use.`);
    } finally {
      taken.close();
    }
  });

  it('--help on every subcommand and help <command>: exit 0 and a usage line', async () => {
    const commands = Object.keys(COMMAND_HELP);
    expect(commands.length).toBeGreaterThanOrEqual(20);
    // Four processes at a time: each one starts the whole CLI.
    for (let i = 0; i < commands.length; i += 4) {
      await Promise.all(
        commands.slice(i, i + 4).map(async (command) => {
          const r = await mlpipe(command, '--help');
          expect(r.code, command).toBe(0);
          expect(r.stdout, command).toMatch(new RegExp(`^Usage:\n  mlpipe ${command}\\b`));
        }),
      );
    }
    const r = await mlpipe('help', 'schedule');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('mlpipe schedule create <pipeline>');
    const unknown = await mlpipe('help', 'nope');
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("Unknown command 'nope'");
  }, 600_000);

  it('runs list has a STATUS column, and ends quietly when the reader closes the pipe', async () => {
    const list = await mlpipe('runs', 'list');
    expect(list.code).toBe(0);
    expect(list.stdout.split('\n')[0]).toMatch(/^STARTED\s+STATUS\s+PIPELINE\s+WORKFLOW$/);
    expect(list.stdout).toMatch(/\bsucceeded\s+diamond\s+diamond-/);
    expect(list.stdout).toMatch(/\bfailed\s+fails\s+fails-/);
    // `mlpipe runs list | head -0`: the reading end is gone before the first line is written.
    const child = spawn(process.execPath, [join(REPO, 'bin', 'mlpipe.mjs'), 'runs', 'list'], {
      cwd: project.dir,
      env: { ...process.env, ...cliEnv() },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout.destroy();
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise((resolve) => child.once('close', (c) => resolve(c)));
    expect(stderr).toBe('');
    expect(code).toBe(0);
  });

  it('a mlpipe.plugins.ts that fails to import is one PLUGIN_INVALID error naming the file, exit 2', async () => {
    const broken = createTestProject('cli-broken');
    broken.write('package.json', JSON.stringify({ type: 'module' }));
    const cli = (...args: string[]): Promise<Ran> =>
      runCommand(process.execPath, [join(REPO, 'bin', 'mlpipe.mjs'), ...args], {
        MLPIPE_PROJECT_DIR: broken.dir,
        TEMPORAL_ADDRESS: project.settings.temporalAddress,
      });
    broken.write('mlpipe.plugins.ts', '// plugins\nexport const plugins = [;\n');
    const syntax = await cli('validate', 'diamond');
    expect(syntax.code).toBe(2);
    expect(syntax.stderr).toContain(`${join(broken.dir, 'mlpipe.plugins.ts')}:2:`);
    expect(syntax.stderr).toContain(`error PLUGIN_INVALID: ${join(broken.dir, 'mlpipe.plugins.ts')} failed to load: Unexpected ";"`);
    expect(syntax.stderr).toContain('hint: Fix the file');
    expect(syntax.stderr).not.toMatch(/\n\s+at /);
    broken.write('mlpipe.plugins.ts', 'throw new Error("no GPU here\\nmore detail");\nexport const plugins = [];\n');
    const throwing = await cli('run', 'diamond');
    expect(throwing.code).toBe(2);
    expect(throwing.stderr).toContain('failed to load: no GPU here\n');
    expect(throwing.stderr).not.toContain('more detail');
  });
});
