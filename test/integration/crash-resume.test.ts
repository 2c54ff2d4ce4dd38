/**
 * Crash-resume with real processes: a worker (`mlpipe worker`, its own process) is SIGKILLed while a
 * long step runs; a new worker process takes over; the run completes. The steps' execution log
 * shows that no finished step ran twice and that the interrupted step ran again, resuming from its
 * last checkpoint.
 *
 * Waits are on events (journal lines, checkpoint records, the run's state), never on a fixed time: a
 * wait fails as soon as the run has ended without the event, and each test's timeout is a generous
 * backstop scaled to its work, so a slow machine makes a test slower, not red.
 */
import type { Client } from '@temporalio/client';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HPO_WORKFLOW, PIPELINE_WORKFLOW, type PipelineResult, type HpoResult } from '../../engine/contracts.js';
import { createClient, createTestProject, REPO, uniqueId } from './helpers.js';
import { attemptStarted, checkpointMeta, exited, whileRunning, workerProcesses } from './processes.js';

const project = createTestProject('crash');
let client: Client;
const workers = workerProcesses(project);
const spawnWorker = (label: string, env?: NodeJS.ProcessEnv) => workers.spawn(label, env);
const MINUTE = 60_000;

beforeAll(async () => {
  client = await createClient();
  project.write(
    'pipelines/crash.yaml',
    [
      'name: crash',
      'steps:',
      '  before:',
      '    uses: util.echo',
      '    with: { journal: journal.jsonl, values: { ready: true } }',
      '  train:',
      '    uses: util.sleep',
      '    needs: before',
      '    heartbeat: 2s',
      '    retry: { initialInterval: 200ms }',
      '    with: { ticks: 24, tickMs: 250, journal: journal.jsonl }',
      '  after:',
      '    uses: util.echo',
      '    needs: train',
      '    with: { journal: journal.jsonl, values: { done: true } }',
      '',
    ].join('\n'),
  );
});

afterAll(async () => {
  workers.killAll();
  await client?.connection.close();
});

/**
 * The housing pipeline with a heartbeat timeout shorter than the default 30 s, for a quicker test;
 * not so short that a loaded machine (a new worker loading tfjs and the data) misses heartbeats.
 */
function housingCopy(name: string, heartbeat = '10s'): void {
  const yaml = readFileSync(join(REPO, 'pipelines', 'california-housing.yaml'), 'utf8').replace(
    'heartbeat: 30s',
    `heartbeat: ${heartbeat}`,
  );
  project.write(`pipelines/${name}.yaml`, yaml.replace('name: california-housing', `name: ${name}`));
}

describe('crash-resume', () => {
  it(
    'resumes a run after its worker process is SIGKILLed mid-step, redoing only the interrupted step',
    async () => {
      const first = spawnWorker('first');
      const handle = await client.workflow.start(PIPELINE_WORKFLOW, {
        taskQueue: project.taskQueue,
        workflowId: uniqueId('crash'),
        args: [{ pipeline: 'crash', cache: false }],
        workflowRunTimeout: '3 minutes',
      });
      const { runId } = await handle.describe();
      const lines = () => project.journal().filter((l) => l.runId === runId);

      // Kill the worker once the long step has checkpointed a few ticks.
      await whileRunning(
        handle,
        () => lines().filter((l) => l.step === 'train' && l.event === 'tick').length >= 4,
        'train to reach tick 4',
      );
      first.kill('SIGKILL');
      expect(await exited(first)).toBe('SIGKILL');
      const killedAt = lines().filter((l) => l.step === 'train' && l.event === 'tick').length;
      expect(lines().some((l) => l.step === 'train' && l.event === 'finish')).toBe(false);

      const second = spawnWorker('second');
      const result = (await handle.result()) as PipelineResult;
      second.kill('SIGTERM');

      const log = lines();
      const count = (step: string, event: string): number => log.filter((l) => l.step === step && l.event === event).length;
      // Finished steps ran exactly once.
      expect(count('before', 'start')).toBe(1);
      expect(count('before', 'finish')).toBe(1);
      expect(count('after', 'start')).toBe(1);
      // The interrupted step ran again, in the new process, resuming after its last checkpoint.
      const starts = log.filter((l) => l.step === 'train' && l.event === 'start');
      expect(starts).toHaveLength(2);
      expect(starts[0]!.pid).toBe(first.pid);
      expect(starts[1]!.pid).toBe(second.pid);
      expect(starts[1]!.attempt).toBe(2);
      expect(starts[1]!['resumedFrom']).toBeGreaterThanOrEqual(killedAt - 1);
      expect(count('train', 'finish')).toBe(1);
      // No tick was lost, and at most the one in flight at the kill was done twice.
      const ticks = log.filter((l) => l.step === 'train' && l.event === 'tick').map((l) => l['tick'] as number);
      expect(new Set(ticks)).toEqual(new Set(Array.from({ length: 24 }, (_, i) => i + 1)));
      expect(ticks.length).toBeLessThanOrEqual(25);

      console.info(
        `crash-resume: worker ${first.pid} SIGKILLed after train tick ${killedAt}; worker ${second.pid} ran attempt 2 from checkpoint tick ${String(starts[1]!['resumedFrom'])}; ` +
          `journal: before x${count('before', 'start')}, train starts x${starts.length}, after x${count('after', 'start')}, ticks written ${ticks.length}/24`,
      );
      expect(result.steps['train']).toMatchObject({ status: 'succeeded', attempt: 2 });
      expect(result.outputs['train']).toEqual({ ticks: 24, resumedFrom: starts[1]!['resumedFrom'] });
      expect(result.outputs['after']).toEqual({ done: true });
    },
    5 * MINUTE,
  );

  it(
    'resumes training of the housing model from its last checkpoint after a SIGKILL, close to an uninterrupted run',
    async () => {
      // The real pipeline, with a heartbeat timeout short enough for a test, and a short training.
      housingCopy('housing-crash');
      const overrides = ['training.epochs=16', 'training.patience=100'];
      const worker = spawnWorker('train-first');
      const workflowId = uniqueId('housing-crash');
      const handle = await client.workflow.start(PIPELINE_WORKFLOW, {
        taskQueue: project.taskQueue,
        workflowId,
        args: [{ pipeline: 'housing-crash', overrides, cache: false }],
      });
      const checkpointEpoch = checkpointMeta(project, workflowId, 'train', 'epoch');
      await whileRunning(handle, () => checkpointEpoch() >= 10, 'the epoch-10 checkpoint');
      worker.kill('SIGKILL');
      await exited(worker);
      const killedAfter = checkpointEpoch();

      const second = spawnWorker('train-second');
      const resumed = (await handle.result()) as PipelineResult;
      const uninterrupted = (await client.workflow.execute(PIPELINE_WORKFLOW, {
        taskQueue: project.taskQueue,
        workflowId: uniqueId('housing-whole'),
        args: [{ pipeline: 'housing-crash', overrides, cache: false }],
      })) as PipelineResult;
      second.kill('SIGTERM');

      const metrics = resumed.outputs['train']!['metrics'] as Record<string, number>;
      expect(resumed.steps['train']!.attempt).toBe(2);
      expect(metrics['resumedFromEpoch']).toBe(killedAfter);
      expect(metrics['epochsThisAttempt']).toBe(16 - killedAfter);
      expect(metrics['epochs']).toBe(16);
      const whole = uninterrupted.outputs['train']!['metrics'] as Record<string, number>;
      expect(whole['epochsThisAttempt']).toBe(16);
      const rmse = (r: PipelineResult): number => (r.outputs['evaluate']!['metrics'] as Record<string, number>)['rmse']!;
      expect(Math.abs(rmse(resumed) - rmse(uninterrupted)) / rmse(uninterrupted)).toBeLessThan(0.005);
      console.info(
        `training crash-resume: SIGKILL after the epoch-${killedAfter} checkpoint; attempt 2 ran epochs ${killedAfter + 1}-16 (${metrics['epochsThisAttempt']} epochs); ` +
          `test RMSE resumed ${Math.round(rmse(resumed))} vs uninterrupted ${Math.round(rmse(uninterrupted))}`,
      );
    },
    15 * MINUTE,
  );

  it(
    'a checkpoint written on the wasm backend resumes on tfjs-node; the export of the resumed model passes the ONNX parity check',
    async () => {
      housingCopy('housing-backends');
      const overrides = ['training.epochs=10', 'training.patience=100'];
      const workflowId = uniqueId('housing-backends');
      const first = spawnWorker('backend-wasm', { MLPIPE_TF_BACKEND: 'wasm', MLPIPE_LOG_LEVEL: 'INFO' });
      const handle = await client.workflow.start(PIPELINE_WORKFLOW, {
        taskQueue: project.taskQueue,
        workflowId,
        args: [{ pipeline: 'housing-backends', overrides, cache: false }],
      });
      const checkpointEpoch = checkpointMeta(project, workflowId, 'train', 'epoch');
      await whileRunning(handle, () => checkpointEpoch() >= 5, 'the epoch-5 checkpoint');
      first.kill('SIGKILL');
      await exited(first);
      const killedAfter = checkpointEpoch();
      const second = spawnWorker('backend-native', { MLPIPE_TF_BACKEND: 'tfjs-node', MLPIPE_LOG_LEVEL: 'INFO' });
      const result = (await handle.result()) as PipelineResult;
      second.kill('SIGTERM');

      const log = (label: string): string => readFileSync(join(project.dir, `worker-${label}.log`), 'utf8');
      expect(log('backend-wasm')).toContain('training with tfjs backend wasm');
      expect(log('backend-native')).toContain('training with tfjs backend tfjs-node');
      expect(log('backend-native')).toContain(`resumed from the checkpoint of epoch ${killedAfter} (written on wasm)`);
      expect(log('backend-native')).not.toMatch(/install our node backend/);
      const train = result.outputs['train']!;
      const metrics = train['metrics'] as Record<string, number>;
      expect(train['backend']).toBe('tfjs-node');
      expect(result.steps['train']!.attempt).toBe(2);
      expect(metrics['resumedFromEpoch']).toBe(killedAfter);
      expect(metrics['epochsThisAttempt']).toBe(10 - killedAfter);
      // The resumed model passed the evaluation gate, and export.onnx checked onnxruntime against tfjs-node.
      expect(result.steps['evaluate']!.status).toBe('succeeded');
      const parity = result.outputs['export']!['parity'] as { rows: number; maxRelativeError: number };
      expect(parity.rows).toBeGreaterThan(4000);
      expect(parity.maxRelativeError).toBeLessThan(1e-4);
      console.info(
        `cross-backend resume: wasm checkpoint of epoch ${killedAfter} resumed on tfjs-node for ${metrics['epochsThisAttempt']} epochs; ONNX parity ${parity.maxRelativeError.toExponential(2)} of the target std on ${parity.rows} rows`,
      );
    },
    15 * MINUTE,
  );

  it(
    'survives five SIGKILLs during one training step without using up its retries, resuming from a checkpoint each time',
    async () => {
      // maximumAttempts stays at its default (3): five lost workers must not count against it.
      housingCopy('housing-kills');
      const epochs = 30; // checkpoints every 5 epochs: kills after the checkpoints of epochs 5 .. 25
      const overrides = [`training.epochs=${epochs}`, 'training.patience=100'];
      const workflowId = uniqueId('housing-kills');
      let worker = spawnWorker('kills-0');
      const handle = await client.workflow.start(PIPELINE_WORKFLOW, {
        taskQueue: project.taskQueue,
        workflowId,
        args: [{ pipeline: 'housing-kills', overrides, cache: false }],
      });
      const checkpointEpoch = checkpointMeta(project, workflowId, 'train', 'epoch');
      // Every checkpoint epoch in the order written: a resume that started over would write 5 again.
      const written: number[] = [];
      const watch = setInterval(() => {
        const e = checkpointEpoch();
        if (e && e !== written[written.length - 1]) written.push(e);
      }, 100);
      const kills: { atEpoch: number; resumeMs: number; attempt: number }[] = [];
      for (let k = 1; k <= 5; k++) {
        // After attempt k has resumed (or started) and written the checkpoint of epoch 5k.
        await whileRunning(handle, () => checkpointEpoch() >= 5 * k, `the epoch-${5 * k} checkpoint`);
        const atEpoch = checkpointEpoch();
        const killedAt = Date.now();
        worker.kill('SIGKILL');
        await exited(worker);
        worker = spawnWorker(`kills-${k}`);
        const next = await attemptStarted(handle, 'train', k + 1);
        kills.push({ atEpoch, resumeMs: next.lastStartedMs - killedAt, attempt: next.attempt });
      }
      const result = (await handle.result()) as PipelineResult;
      clearInterval(watch);
      worker.kill('SIGTERM');
      const metrics = result.outputs['train']!['metrics'] as Record<string, number>;
      expect(kills.map((k) => k.atEpoch)).toEqual([5, 10, 15, 20, 25]);
      // Each attempt went on from the checkpoint before it: no epoch interval was trained twice.
      expect(written).toEqual([5, 10, 15, 20, 25]);
      // One new attempt per kill (the Temporal attempt counts them; the step's error count does not).
      expect(kills.map((k) => k.attempt)).toEqual([2, 3, 4, 5, 6]);
      expect(result.steps['train']).toMatchObject({ status: 'succeeded', attempt: 6 });
      expect(result.steps['train']!.errors ?? 0).toBe(0);
      expect(metrics['resumedFromEpoch']).toBe(25);
      expect(metrics['epochsThisAttempt']).toBe(epochs - 25);
      expect(metrics['epochs']).toBe(epochs);
      // Within the bound of a lost worker: heartbeat timeout + retry interval + a new worker's start.
      for (const k of kills) expect(k.resumeMs).toBeLessThanOrEqual(45_000);
      console.info(
        `five kills during train: checkpoints at kill ${kills.map((k) => k.atEpoch).join(', ')}; ` +
          `SIGKILL -> next attempt started ${kills.map((k) => `${(k.resumeMs / 1000).toFixed(1)}s`).join(', ')}; finished at attempt ${result.steps['train']!.attempt} with 0 step errors`,
      );
    },
    20 * MINUTE,
  );

  it(
    'resumes a hyperparameter search after its worker is SIGKILLed, without rerunning finished trials',
    async () => {
      project.write(
        'pipelines/search-crash.yaml',
        [
          'name: search-crash',
          'params: { x: 0 }',
          'hpo:',
          '  metric: { step: objective, output: score, key: score, goal: minimize }',
          '  space:',
          '    params.x: { type: discrete, values: [6, 5, 4, 3, 2, 1] }',
          '  trials: 6',
          '  parallel: 2',
          '  algorithm: grid',
          '  final: false',
          'steps:',
          '  objective:',
          '    uses: util.echo',
          '    heartbeat: 2s',
          '    retry: { initialInterval: 200ms }',
          '    with:',
          '      sleepMs: 1500',
          '      journal: journal.jsonl',
          '      values:',
          '        score: ${params.x}',
          '',
        ].join('\n'),
      );
      const first = spawnWorker('hpo-first');
      const workflowId = uniqueId('hpo-crash');
      const handle = await client.workflow.start(HPO_WORKFLOW, {
        taskQueue: project.taskQueue,
        workflowId,
        args: [{ pipeline: 'search-crash' }],
      });
      const lines = () => project.journal().filter((l) => String(l['workflowId'] ?? '').startsWith(`${workflowId}/trial-`));
      await whileRunning(handle, () => lines().filter((l) => l.event === 'finish').length >= 3, 'three finished trials');
      first.kill('SIGKILL');
      await exited(first);
      // Trials whose child workflow had completed when the worker died. (A step can write its
      // 'finish' line and die before its completion reaches the server; Temporal then runs it again,
      // so the journal alone does not say what finished.)
      const completedBefore = new Set<string>();
      for (let i = 0; i < 6; i++) {
        const id = `${workflowId}/trial-${i}`;
        const d = await client.workflow
          .getHandle(id)
          .describe()
          .catch(() => undefined);
        if (d?.status.name === 'COMPLETED') completedBefore.add(id);
      }
      expect(completedBefore.size).toBeGreaterThanOrEqual(1);
      const second = spawnWorker('hpo-second');
      const result = (await handle.result()) as HpoResult;
      second.kill('SIGTERM');
      expect(result.trials).toBe(6);
      expect(result.best).toMatchObject({ value: 1, overrides: ['params.x=1'] });
      const log = lines();
      // A trial completed before the kill never started again; every trial finished.
      for (const id of completedBefore) expect(log.filter((l) => l['workflowId'] === id && l.event === 'start')).toHaveLength(1);
      const finishes = new Set(log.filter((l) => l.event === 'finish').map((l) => String(l['workflowId'])));
      expect([...finishes].sort()).toEqual(Array.from({ length: 6 }, (_, i) => `${workflowId}/trial-${i}`).sort());
      const restarted = log.filter((l) => l.event === 'start' && l.pid === second.pid).map((l) => String(l['workflowId']));
      console.info(
        `hpo crash-resume: worker ${first.pid} SIGKILLed with ${completedBefore.size} of 6 trials completed; worker ${second.pid} ran ${restarted.length} trial steps; each of 6 trials finished`,
      );
      // The second worker ran only trials that had not completed.
      expect(restarted.filter((id) => completedBefore.has(id))).toEqual([]);
      expect(restarted.length).toBeGreaterThanOrEqual(1);
    },
    10 * MINUTE,
  );
});
