/**
 * Hyperparameter search on the real dev server: trials as child workflows, at most `parallel` at
 * once, failed trials tolerated up to the limit, continue-as-new between generations without
 * rerunning finished trials, the best trial picked and run in full, and trials sharing the step
 * cache (the steps upstream of the searched keys run once) with the same metrics as without it.
 */
import { WorkflowFailedError } from '@temporalio/client';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { HPO_WORKFLOW, type PipelineResult, type HpoResult } from '../../engine/contracts.js';
import { createTestProject, uniqueId, useWorkerAndClient, type JournalLine } from './helpers.js';
import { describeFailure } from '../../engine/errors.js';

const project = createTestProject('hpo');
// The objective is the trial's x itself (util.echo returns its values); `mode=boom` makes a trial fail.
project.write(
  'pipelines/search.yaml',
  `name: search
params:
  x: 0
  mode: ok
hpo:
  metric: { step: objective, output: score, key: score, goal: minimize }
  space:
    params.x: { type: discrete, values: [5, 3, 8, 1, 9, 4, 7, 6] }
  trials: 8
  parallel: 2
  algorithm: grid
steps:
  check:
    uses: util.shell
    retry: { maximumAttempts: 1 }
    with:
      command: test "$MODE" = ok
      env: { MODE: "\${params.mode}" }
  objective:
    uses: util.echo
    needs: check
    cache: false
    with:
      sleepMs: 300
      journal: journal.jsonl
      values:
        score: \${params.x}
  report:
    uses: util.echo
    needs: objective
    with:
      values:
        final: true
`,
);
const env = useWorkerAndClient(project);

function search(input: Record<string, unknown>, id = uniqueId('hpo')) {
  return env.client.workflow.start(HPO_WORKFLOW, {
    taskQueue: project.taskQueue,
    workflowId: id,
    args: [{ pipeline: 'search', ...input }],
    workflowRunTimeout: '5 minutes',
  });
}

function trialLines(hpoId: string): JournalLine[] {
  return project.journal().filter((l) => String(l['workflowId'] ?? '').startsWith(`${hpoId}/trial-`));
}

describe('hpoWorkflow', () => {
  it('runs every trial as a child up to the metric step, two at a time, and runs the best in full', async () => {
    const h = await search({});
    const r = (await h.result()) as HpoResult;
    expect(r.trials).toBe(8);
    expect(r.failed).toBe(0);
    expect(r.best).toMatchObject({ overrides: ['params.x=1'], value: 1, status: 'succeeded' });
    expect(r.results.map((t) => t.value)).toEqual([5, 3, 8, 1, 9, 4, 7, 6]);
    // Trials stop at the metric step: no 'report' in a trial; the final run has it.
    const trial = env.client.workflow.getHandle(`${h.workflowId}/trial-0`);
    const tr = (await trial.result()) as PipelineResult;
    expect(Object.keys(tr.steps)).toEqual(['check', 'objective']);
    const final = (await env.client.workflow.getHandle(r.final!.workflowId).result()) as PipelineResult;
    expect(final.outputs['report']).toEqual({ final: true });
    expect(final.outputs['objective']).toEqual({ score: 1 });
    // At most two trials at once, from the objective step's start/finish journal.
    const events = trialLines(h.workflowId)
      .filter((l) => l.event === 'start' || l.event === 'finish')
      .map((l) => ({ t: Date.parse(l.at), d: l.event === 'start' ? 1 : -1 }))
      .sort((a, b) => a.t - b.t || a.d - b.d);
    let cur = 0;
    let max = 0;
    for (const e of events) max = Math.max(max, (cur += e.d));
    expect(max).toBe(2);
    expect(events.filter((e) => e.d === 1)).toHaveLength(8);
  });

  it('tolerates failed trials up to maxFailed, and fails the search past it', async () => {
    // Half the trials have mode=boom and fail at their first step.
    const base = readFileSync(join(project.dir, 'pipelines', 'search.yaml'), 'utf8')
      .replace(
        '    params.x: { type: discrete, values: [5, 3, 8, 1, 9, 4, 7, 6] }',
        '    params.x: { type: discrete, values: [5, 3] }\n    params.mode: { type: categorical, values: [ok, boom] }',
      )
      .replace('  trials: 8', '  trials: 4');
    project.write(
      'pipelines/tolerant.yaml',
      base.replace('name: search', 'name: tolerant').replace('  parallel: 2', '  parallel: 2\n  maxFailed: 2'),
    );
    project.write(
      'pipelines/strict.yaml',
      base.replace('name: search', 'name: strict').replace('  parallel: 2', '  parallel: 2\n  maxFailed: 1'),
    );
    const start = (pipeline: string) =>
      env.client.workflow.start(HPO_WORKFLOW, { taskQueue: project.taskQueue, workflowId: uniqueId(pipeline), args: [{ pipeline }] });
    const ok = (await (await start('tolerant')).result()) as HpoResult;
    expect(ok.failed).toBe(2);
    expect(ok.results.filter((t) => t.status === 'failed').map((t) => t.overrides)).toEqual([
      ['params.x=5', 'params.mode=boom'],
      ['params.x=3', 'params.mode=boom'],
    ]);
    expect(ok.results.find((t) => t.status === 'failed')?.error).toMatch(/check/);
    expect(ok.best).toMatchObject({ value: 3, overrides: ['params.x=3', 'params.mode=ok'] });
    const strict = await start('strict');
    const e = (await strict.result().catch((x: unknown) => x)) as WorkflowFailedError;
    expect(e).toBeInstanceOf(WorkflowFailedError);
    expect(e.cause?.message).toMatch(/2 trials failed, more than maxFailed \(1\)/);
    expect(describeFailure(e).type).toBe('HPO_FAILED');
  });

  it('continues as new between generations without rerunning finished trials', async () => {
    const h = await search({ trialsPerGeneration: 3 });
    const r = (await h.result()) as HpoResult;
    expect(r.generations).toBe(3);
    expect(r.trials).toBe(8);
    expect(r.best.value).toBe(1);
    // Each trial's objective ran exactly once.
    const starts = trialLines(h.workflowId).filter((l) => l.event === 'start');
    expect(starts).toHaveLength(8);
    expect(new Set(starts.map((l) => l['workflowId'])).size).toBe(8);
  });

  it('refuses a pipeline without hpo: and a space that does not compile, before running anything', async () => {
    const noHpo = await env.client.workflow.start(HPO_WORKFLOW, {
      taskQueue: project.taskQueue,
      workflowId: uniqueId('hpo-bad'),
      args: [{ pipeline: 'diamond' }],
    });
    await expect(noHpo.result()).rejects.toThrow(WorkflowFailedError);
    project.write(
      'pipelines/bad-space.yaml',
      `name: bad-space\nhpo:\n  metric: { step: a, output: score, key: score, goal: minimize }\n  space:\n    training.nope: { type: double, min: 0, max: 1 }\nsteps:\n  a:\n    uses: util.echo\n    with:\n      values: { score: 1 }\n`,
    );
    const bad = await env.client.workflow.start(HPO_WORKFLOW, {
      taskQueue: project.taskQueue,
      workflowId: uniqueId('hpo-bad'),
      args: [{ pipeline: 'bad-space' }],
    });
    const e = (await bad.result().catch((x: unknown) => x)) as WorkflowFailedError;
    expect(e).toBeInstanceOf(WorkflowFailedError);
    expect(describeFailure(e).message).toMatch(/trial 0 \(training.nope=.*\) does not compile/);
  });

  it('median stopping rule: a trial whose loss is worse than the median of earlier trials stops early', async () => {
    // y = 3a - 2b + 1; at lr 1e-6 the network barely learns, so its loss stays far above the others'.
    const rows = ['a,b,y'];
    for (let i = 0; i < 400; i++) {
      const a = Math.sin(i * 1.3);
      const b = Math.cos(i * 0.7);
      rows.push(`${a},${b},${3 * a - 2 * b + 1}`);
    }
    project.write('data.csv', `${rows.join('\n')}\n`);
    const pipeline = (step: string) => `name: stopping
params: { lr: 0.01 }
hpo:
  metric: { step: train, output: metrics, key: trainLoss, goal: minimize }
  space:
    params.lr: { type: discrete, values: [0.01, 0.012, 0.011, 0.000001] }
  trials: 4
  parallel: 1
  algorithm: grid
  final: false
  earlyStopping: { rule: median, step: ${step}, afterEpochs: 3, minTrials: 3 }
steps:
  data:
    uses: ingest.file
    with: { path: data.csv }
  train:
    uses: train.tfjs-mlp
    needs: data
    inputs: { train: '\${steps.data.outputs.dataset}' }
    with: { target: y, hidden: [8], epochs: 12, batchSize: 64, learningRate: '\${params.lr}', seed: 1, backend: cpu }
`;
    project.write('pipelines/stopping.yaml', pipeline('train'));
    const h = await env.client.workflow.start(HPO_WORKFLOW, {
      taskQueue: project.taskQueue,
      workflowId: uniqueId('hpo-median'),
      args: [{ pipeline: 'stopping' }],
      workflowRunTimeout: '5 minutes',
    });
    const r = (await h.result()) as HpoResult;
    expect(r.results.map((t) => t.stoppedAtEpoch)).toEqual([undefined, undefined, undefined, 3]);
    const stopped = (await env.client.workflow.getHandle(`${h.workflowId}/trial-3`).result()) as PipelineResult;
    expect(stopped.outputs['train']!['metrics']).toMatchObject({ epochs: 3, stoppedByMedianRule: 3 });
    expect(stopped.outputs['train']!['curve']).toHaveLength(3);
    const full = (await env.client.workflow.getHandle(`${h.workflowId}/trial-0`).result()) as PipelineResult;
    expect(full.outputs['train']!['curve']).toHaveLength(12);
    expect(r.best.stoppedAtEpoch).toBeUndefined();

    // A step that cannot be stopped is refused before any trial.
    project.write('pipelines/stopping.yaml', pipeline('data'));
    const bad = await env.client.workflow.start(HPO_WORKFLOW, {
      taskQueue: project.taskQueue,
      workflowId: uniqueId('hpo-median-bad'),
      args: [{ pipeline: 'stopping' }],
    });
    const err = await bad.result().catch((e: unknown) => e as WorkflowFailedError);
    expect(err).toBeInstanceOf(WorkflowFailedError);
    expect(describeFailure(err).message).toMatch(/takes no stopIfWorseThan/);
  }, 180_000);

  it('trials share the step cache by default: the steps upstream of the searched key run once, with the same metrics as without the cache', async () => {
    const rows = ['a,b,y'];
    for (let i = 0; i < 400; i++) {
      const a = Math.sin(i * 1.7);
      const b = Math.cos(i * 0.3);
      rows.push(`${a},${b},${2 * a + b * b - 1}`);
    }
    project.write('shared.csv', `${rows.join('\n')}\n`);
    // The housing search's shape: data steps upstream of training, the searched key only in training.
    project.write(
      'pipelines/shared.yaml',
      `name: shared
params: { lr: 0.01 }
hpo:
  metric: { step: score, output: metrics, key: rmse, goal: minimize }
  space:
    params.lr: { type: discrete, values: [0.01, 0.03, 0.005] }
  trials: 3
  parallel: 1
  algorithm: grid
  final: false
steps:
  data:
    uses: ingest.file
    with: { path: shared.csv }
  split:
    uses: process.split
    needs: data
    inputs: { dataset: '\${steps.data.outputs.dataset}' }
    with: { test: 0.2, validation: 0.2, seed: 3 }
  prep:
    uses: process.transform
    needs: split
    with:
      exclude: [y]
      steps:
        - { op: derive, name: ab, expr: a * b }
        - { op: standardize, columns: numeric }
  train:
    uses: train.tfjs-mlp
    needs: prep
    with: { target: y, hidden: [8], epochs: 4, batchSize: 64, learningRate: '\${params.lr}', seed: 1, backend: cpu }
  score:
    uses: evaluate.model
    needs: [train, prep]
    inputs:
      model: '\${steps.train.outputs.model}'
      test: '\${steps.prep.outputs.test}'
`,
    );
    const trials = async (cache: boolean) => {
      const h = await search({ pipeline: 'shared', ...(cache ? {} : { cache: false }) }, uniqueId(`hpo-shared-${cache ? 'on' : 'off'}`));
      const r = (await h.result()) as HpoResult;
      expect(r.failed).toBe(0);
      const runs = await Promise.all(
        r.results.map(async (t) => (await env.client.workflow.getHandle(t.workflowId).result()) as PipelineResult),
      );
      return {
        values: r.results.map((t) => t.value),
        statuses: runs.map((run) => ['data', 'split', 'prep', 'train', 'score'].map((s) => run.steps[s]!.status)),
        prepared: runs.map((run) => (run.outputs['prep']!['train'] as { sha256: string }).sha256),
      };
    };
    // Without the cache first (it writes no cache entries), then as `mlpipe hpo` runs a search.
    const off = await trials(false);
    const on = await trials(true);
    expect(off.statuses).toEqual(Array(3).fill(['succeeded', 'succeeded', 'succeeded', 'succeeded', 'succeeded']));
    // ingest.file always reads its file; split and prep run in the first trial and come from the cache in the others.
    expect(on.statuses).toEqual([
      ['succeeded', 'succeeded', 'succeeded', 'succeeded', 'succeeded'],
      ['succeeded', 'cached', 'cached', 'succeeded', 'succeeded'],
      ['succeeded', 'cached', 'cached', 'succeeded', 'succeeded'],
    ]);
    expect(new Set([...on.prepared, ...off.prepared]).size).toBe(1);
    expect(on.values.every((v) => typeof v === 'number' && Number.isFinite(v))).toBe(true);
    expect(new Set(on.values).size).toBe(3);
    expect(on.values).toEqual(off.values);
  }, 180_000);
});
