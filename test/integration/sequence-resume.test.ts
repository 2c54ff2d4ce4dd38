/**
 * train.tfjs-sequence resumes after its worker process is SIGKILLed: a real `mlpipe worker`
 * process trains a GRU on process.window's windows, is killed after a checkpoint, a second worker
 * process takes the retried attempt, goes on from the newest checkpoint and finishes the run. The
 * epochs before that checkpoint are not trained again: the checkpoints written form one increasing
 * sequence, the retried attempt trains only the epochs after it, and the history holds each epoch once.
 *
 * Waits are on events (checkpoint records, the run's state), never on a fixed time.
 */
import type { Client } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalArtifactStore } from '../../adapters/local-store.js';
import { PIPELINE_WORKFLOW, type PipelineResult } from '../../engine/contracts.js';
import type { ArtifactRef } from '../../engine/types.js';
import { decodeForecasts, decodeWindows } from '../../lib/windows.js';
import { createClient, createTestProject, uniqueId } from './helpers.js';
import { checkpointMeta, exited, pendingStep, whileRunning, workerProcesses } from './processes.js';

const project = createTestProject('seq-crash');
let client: Client;
const workers = workerProcesses(project);
const MINUTE = 60_000;
const EPOCHS = 24;

beforeAll(async () => {
  client = await createClient();
  // Four daily series: weekly seasonality, a slow trend, noise (deterministic).
  const rows = ['id,date,value'];
  let s = 7;
  const noise = (): number => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31 - 0.5) * 2;
  for (const [k, id] of ['a', 'b', 'c', 'd'].entries()) {
    for (let t = 0; t < 500; t++) {
      const date = new Date(Date.UTC(2023, 0, 1) + t * 86_400_000).toISOString().slice(0, 10);
      rows.push(`${id},${date},${(100 + 10 * k + 0.02 * t + 8 * Math.sin((2 * Math.PI * t) / 7 + k) + noise()).toFixed(3)}`);
    }
  }
  project.write('series.csv', `${rows.join('\n')}\n`);
  project.write(
    'pipelines/seq-crash.yaml',
    [
      'name: seq-crash',
      'steps:',
      '  data:',
      '    uses: ingest.file',
      '    with: { path: series.csv }',
      '  window:',
      '    uses: process.window',
      '    needs: data',
      "    inputs: { dataset: '${steps.data.outputs.dataset}' }",
      '    with: { timeColumn: date, seriesColumn: id, target: value, frequency: day, lookback: 28, horizon: 7, testSteps: 35, validationSteps: 35, calendar: [dayOfWeek] }',
      '  train:',
      '    uses: train.tfjs-sequence',
      '    needs: window',
      '    heartbeat: 30s',
      '    retry: { initialInterval: 200ms }',
      '    cache: false',
      '    inputs:',
      "      train: '${steps.window.outputs.train}'",
      "      validation: '${steps.window.outputs.validation}'",
      "      predict: '${steps.window.outputs.test}'",
      `    with: { model: gru, units: 32, epochs: ${EPOCHS}, batchSize: 32, seed: 3, checkpoint: { everyEpochs: 2, keep: 2 } }`,
      '',
    ].join('\n'),
  );
});

afterAll(async () => {
  workers.killAll();
  await client?.connection.close();
});

describe('train.tfjs-sequence crash-resume', () => {
  it(
    'a retried attempt on a new worker process resumes from the newest checkpoint after a SIGKILL, without redoing epochs',
    async () => {
      const first = workers.spawn('seq-first');
      const workflowId = uniqueId('seq-crash');
      const handle = await client.workflow.start(PIPELINE_WORKFLOW, {
        taskQueue: project.taskQueue,
        workflowId,
        args: [{ pipeline: 'seq-crash', cache: false }],
      });
      const checkpointEpoch = checkpointMeta(project, workflowId, 'train', 'epoch');
      // Every checkpoint epoch in the order written: a retry that started over would write 2 again.
      const written: number[] = [];
      const watch = setInterval(() => {
        const e = checkpointEpoch();
        if (e && e !== written[written.length - 1]) written.push(e);
      }, 100);
      // Every attempt of the step and why the one before it ended, for the failure message.
      const attempts = new Map<number, string>();
      const attemptWatch = setInterval(() => {
        void pendingStep(handle, 'train')
          .then((p) => {
            if (p && !attempts.has(p.attempt)) attempts.set(p.attempt, p.lastFailure ?? '');
          })
          .catch(() => undefined);
      }, 500);
      await whileRunning(handle, () => checkpointEpoch() >= 8, 'the epoch-8 checkpoint');
      first.kill('SIGKILL');
      const killedAt = Date.now();
      expect(await exited(first)).toBe('SIGKILL');
      const killedAfter = checkpointEpoch();
      expect(killedAfter).toBeGreaterThanOrEqual(8);
      expect(killedAfter).toBeLessThan(EPOCHS);

      const second = workers.spawn('seq-second');
      const result = (await handle.result()) as PipelineResult;
      clearInterval(watch);
      clearInterval(attemptWatch);
      second.kill('SIGTERM');

      const train = result.outputs['train']!;
      const metrics = train['metrics'] as Record<string, number>;
      const step = result.steps['train']!;
      const seen = `attempts seen (attempt: the failure before it): ${JSON.stringify([...attempts])}; worker logs in ${project.dir}`;
      expect(step.status, seen).toBe('succeeded');
      expect(step.attempt, seen).toBeGreaterThanOrEqual(2);
      // An attempt after the one the kill made may only follow a heartbeat timeout (a starved machine
      // missing a heartbeat), never an error; it too resumes from the newest checkpoint.
      for (const [n, failure] of attempts) if (n > 2) expect(failure, seen).toMatch(/heartbeat/i);
      const resumedFrom = metrics['resumedFromEpoch']!;
      if (step.attempt === 2) expect(resumedFrom).toBe(killedAfter);
      else expect(resumedFrom).toBeGreaterThanOrEqual(killedAfter);
      expect(result.steps['window']!.attempt).toBe(1);
      expect(metrics['epochsThisAttempt']).toBe(EPOCHS - resumedFrom);
      expect(metrics['epochs']).toBe(EPOCHS);
      // Checkpoint epochs only went up: a retry that started over would have written a smaller one.
      for (let i = 1; i < written.length; i++) expect(written[i]!).toBeGreaterThan(written[i - 1]!);
      expect(written).toContain(killedAfter);
      expect(written.at(-1)!).toBeGreaterThan(killedAfter);
      // The history has every epoch once, the first attempt's part carried over from the checkpoint.
      const store = new LocalArtifactStore(project.settings.artifactsDir);
      const history = JSON.parse((await store.get(train['history'] as ArtifactRef)).toString('utf8')) as { epoch: number; at: number }[];
      expect(history.map((h) => h.epoch)).toEqual(Array.from({ length: EPOCHS }, (_, i) => i + 1));
      // Epochs up to the checkpoint were trained once, by the first process (before the kill); the
      // later ones by the second (after it).
      expect(history.slice(0, killedAfter).every((h) => h.at < killedAt)).toBe(true);
      expect(history.slice(killedAfter).every((h) => h.at > killedAt)).toBe(true);
      // The run's forecasts belong to its test windows.
      const test = result.outputs['window']!['test'] as ArtifactRef;
      const forecasts = decodeForecasts(await store.get(train['forecasts'] as ArtifactRef));
      expect(forecasts.windows).toBe(test.sha256);
      expect(forecasts.count).toBe(decodeWindows(await store.get(test)).count);
      expect(Array.from(forecasts.values).every(Number.isFinite)).toBe(true);
      console.info(
        `sequence crash-resume: SIGKILL after the epoch-${killedAfter} checkpoint; attempt ${step.attempt} ran epochs ${resumedFrom + 1}-${EPOCHS} ` +
          `(${metrics['epochsThisAttempt']} epochs, backend ${String(train['backend'])}); checkpoints written ${written.join(', ')}`,
      );
    },
    15 * MINUTE,
  );
});
