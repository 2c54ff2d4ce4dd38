/**
 * A walk-forward backtest resumes after its worker process is SIGKILLed: a real `mlpipe worker`
 * process trains train.tfjs-sequence (and train.gbdt-forecast) with process.window's three folds, is
 * killed once fold 1 is finished (for tfjs: in fold 2, after an epoch checkpoint), a second worker
 * process takes the retried attempt, keeps the model and the finished folds from the step's
 * checkpoints, and goes on with the next fold (tfjs: from its newest epoch). The finished folds are
 * not trained again (the step's metrics count them, and no fold checkpoint of an earlier fold is
 * written after the kill), and every fold's forecasts equal an uninterrupted run's (same seed, same
 * worker).
 *
 * Waits are on events (checkpoint records, the run's state), never on a fixed time.
 */
import type { Client } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalArtifactStore } from '../../adapters/local-store.js';
import { PIPELINE_WORKFLOW, type PipelineResult } from '../../engine/contracts.js';
import type { ArtifactRef } from '../../engine/types.js';
import { decodeForecasts } from '../../lib/windows.js';
import { createClient, createTestProject, uniqueId } from './helpers.js';
import { checkpointMeta, exited, whileRunning, workerProcesses } from './processes.js';

const project = createTestProject('backtest-crash');
let client: Client;
const workers = workerProcesses(project);
const MINUTE = 60_000;
const EPOCHS = 10;

/** process.window over `series`: three walk-forward folds of `steps` days each, and as many for validation and test. */
const windowStep = (lookback: number, steps: number): string[] => [
  '  window:',
  '    uses: process.window',
  '    needs: data',
  "    inputs: { dataset: '${steps.data.outputs.dataset}' }",
  `    with: { timeColumn: date, seriesColumn: id, target: value, frequency: day, lookback: ${lookback}, horizon: 7, testSteps: ${steps}, validationSteps: ${steps}, folds: 3, foldSteps: ${steps}, calendar: [dayOfWeek] }`,
];
const trainInputs = [
  '    inputs:',
  "      train: '${steps.window.outputs.train}'",
  "      validation: '${steps.window.outputs.validation}'",
  "      folds: '${steps.window.outputs.folds}'",
];

beforeAll(async () => {
  client = await createClient();
  // Daily series: weekly seasonality, a slow trend, noise (deterministic).
  const series = (count: number, days: number): string => {
    const rows = ['id,date,value'];
    let s = 11;
    const noise = (): number => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31 - 0.5) * 2;
    for (const [k, id] of ['a', 'b', 'c', 'd', 'e', 'f'].slice(0, count).entries()) {
      for (let t = 0; t < days; t++) {
        const date = new Date(Date.UTC(2022, 0, 1) + t * 86_400_000).toISOString().slice(0, 10);
        rows.push(`${id},${date},${(100 + 10 * k + 0.02 * t + 8 * Math.sin((2 * Math.PI * t) / 7 + k) + noise()).toFixed(3)}`);
      }
    }
    return `${rows.join('\n')}\n`;
  };
  // The recurrent network trains on a smaller set (each epoch steps through every window's lookback),
  // still large enough that fold 2's epochs last long enough to be killed in; the boosted trees on a
  // larger one, for the same reason.
  project.write('short.csv', series(3, 400));
  project.write('series.csv', series(6, 700));
  const pipeline = (name: string, data: string, window: string[], train: string[]) =>
    [
      `name: ${name}`,
      'steps:',
      '  data:',
      '    uses: ingest.file',
      `    with: { path: ${data} }`,
      ...window,
      '  train:',
      ...train,
      '    needs: window',
      '    heartbeat: 30s',
      '    retry: { initialInterval: 200ms }',
      '    cache: false',
      ...trainInputs,
      '',
    ].join('\n');
  project.write(
    'pipelines/seq-folds.yaml',
    pipeline('seq-folds', 'short.csv', windowStep(28, 35), [
      '    uses: train.tfjs-sequence',
      `    with: { model: gru, units: 16, epochs: ${EPOCHS}, batchSize: 32, seed: 3, checkpoint: { everyEpochs: 2, keep: 2 } }`,
    ]),
  );
  // Many slow rounds without early stopping, so a fold takes long enough to be killed in.
  project.write(
    'pipelines/gbdt-folds.yaml',
    pipeline('gbdt-folds', 'series.csv', windowStep(28, 35), [
      '    uses: train.gbdt-forecast',
      '    with: { rounds: 1500, learningRate: 0.02, numLeaves: 31, minDataInLeaf: 5, seed: 3, checkpoint: { everyRounds: 500, keep: 2 } }',
    ]),
  );
});

afterAll(async () => {
  workers.killAll();
  await client?.connection.close();
});

async function foldValues(result: PipelineResult): Promise<number[][]> {
  const store = new LocalArtifactStore(project.settings.artifactsDir);
  const refs = result.outputs['train']!['foldForecasts'] as ArtifactRef[];
  return Promise.all(refs.map(async (r) => Array.from(decodeForecasts(await store.get(r)).values)));
}

const start = (pipeline: string, workflowId: string) =>
  client.workflow.start(PIPELINE_WORKFLOW, { taskQueue: project.taskQueue, workflowId, args: [{ pipeline, cache: false }] });

describe('backtest crash-resume', () => {
  it(
    'train.tfjs-sequence: a retry after a SIGKILL in fold 2 keeps the model and fold 1, resumes fold 2 from its epoch checkpoint',
    async () => {
      const first = workers.spawn('seq-first');
      const workflowId = uniqueId('seq-folds');
      const handle = await start('seq-folds', workflowId);
      const fold = checkpointMeta(project, workflowId, 'train', 'fold', 'folds');
      const foldEpoch = checkpointMeta(project, workflowId, 'train', 'foldEpoch', 'folds');
      // Fold 2 has an epoch checkpoint: fold 1 is finished and saved.
      await whileRunning(handle, () => fold() === 2 && foldEpoch() < EPOCHS, 'an epoch checkpoint of fold 2');
      first.kill('SIGKILL');
      expect(await exited(first)).toBe('SIGKILL');
      const killedAt = { fold: fold(), epoch: foldEpoch() };
      expect(killedAt.fold).toBe(2);
      // What the retried attempt writes to the folds stream from here: never a fold before 2.
      const written: number[] = [];
      const watch = setInterval(() => {
        const f = fold();
        if (f && f !== written.at(-1)) written.push(f);
      }, 50);

      const second = workers.spawn('seq-second');
      const result = (await handle.result()) as PipelineResult;
      clearInterval(watch);
      const m = result.outputs['train']!['metrics'] as Record<string, number>;
      expect(result.steps['train']).toMatchObject({ status: 'succeeded', attempt: 2 });
      // The model was checkpointed when done: not trained again. Fold 1 kept; fold 2 from its epoch; fold 3 in full.
      expect(m).toMatchObject({
        epochs: EPOCHS,
        epochsThisAttempt: 0,
        resumedFromEpoch: EPOCHS,
        foldEpochs: EPOCHS,
        foldsResumed: 1,
        foldsTrainedThisAttempt: 2,
        foldResumedFromEpoch: killedAt.epoch,
        foldEpochsThisAttempt: EPOCHS - killedAt.epoch + EPOCHS,
      });
      expect(written.every((f) => f >= 2)).toBe(true);

      // The same pipeline uninterrupted, on the same worker process: the same fold forecasts.
      const straight = (await (await start('seq-folds', uniqueId('seq-folds-straight'))).result()) as PipelineResult;
      second.kill('SIGTERM');
      const sm = straight.outputs['train']!['metrics'] as Record<string, number>;
      expect(sm).toMatchObject({ foldsResumed: 0, foldsTrainedThisAttempt: 3, foldEpochsThisAttempt: 3 * EPOCHS });
      const resumed = await foldValues(result);
      const uninterrupted = await foldValues(straight);
      expect(resumed).toHaveLength(3);
      expect(resumed).toEqual(uninterrupted);
      console.info(
        `backtest crash-resume (tfjs ${String(result.outputs['train']!['backend'])}): SIGKILL in fold 2 after its epoch-${killedAt.epoch} checkpoint; ` +
          `attempt 2 kept the model and fold 1, trained ${m['foldEpochsThisAttempt']} fold epochs (uninterrupted: ${sm['foldEpochsThisAttempt']}); fold forecasts equal`,
      );
    },
    15 * MINUTE,
  );

  it(
    'train.gbdt-forecast: a retry after a SIGKILL once fold 1 is done keeps the model and fold 1, trains folds 2 and 3',
    async () => {
      const first = workers.spawn('gbdt-first');
      const workflowId = uniqueId('gbdt-folds');
      const handle = await start('gbdt-folds', workflowId);
      const foldsDone = checkpointMeta(project, workflowId, 'train', 'foldsDone', 'folds');
      await whileRunning(handle, () => foldsDone() >= 1, 'fold 1 finished');
      first.kill('SIGKILL');
      expect(await exited(first)).toBe('SIGKILL');
      const done = foldsDone();
      // The kill came before the last fold: at least one fold is left for the retry.
      expect(done).toBeGreaterThanOrEqual(1);
      expect(done).toBeLessThan(3);

      const second = workers.spawn('gbdt-second');
      const result = (await handle.result()) as PipelineResult;
      const m = result.outputs['train']!['metrics'] as Record<string, number>;
      expect(result.steps['train']).toMatchObject({ status: 'succeeded', attempt: 2 });
      expect(m).toMatchObject({ roundsThisAttempt: 0, resumedFromRound: 1500, foldsResumed: done, foldsTrainedThisAttempt: 3 - done });

      const straight = (await (await start('gbdt-folds', uniqueId('gbdt-folds-straight'))).result()) as PipelineResult;
      second.kill('SIGTERM');
      expect(straight.outputs['train']!['metrics']).toMatchObject({ foldsResumed: 0, foldsTrainedThisAttempt: 3 });
      expect(await foldValues(result)).toEqual(await foldValues(straight));
      console.info(
        `backtest crash-resume (gbdt): SIGKILL with ${done} fold(s) done; attempt 2 boosted 0 rounds of the model, trained ${m['foldsTrainedThisAttempt']} fold(s); fold forecasts equal`,
      );
    },
    15 * MINUTE,
  );
});
