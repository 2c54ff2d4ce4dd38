/**
 * Durable boosting with real processes: the housing data through split and transform into
 * train.xgboost / train.lightgbm on a worker process (`mlpipe worker`) that is SIGKILLed once the
 * step has checkpointed; a new worker process retries the step, which loads the newest checkpoint and
 * boosts on from its round. With deterministic settings (one thread, fixed seed, no sampling) the
 * resumed model predicts exactly what an uninterrupted run's model predicts.
 *
 * Waits are on events (checkpoint records, the run's state), never on a fixed time.
 */
import type { Client } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalArtifactStore } from '../../adapters/local-store.js';
import { PIPELINE_WORKFLOW, type PipelineResult } from '../../engine/contracts.js';
import type { ArtifactRef } from '../../engine/types.js';
import { parseBoostedModel } from '../../lib/boosted-model.js';
import { predictBoosted } from '../../lib/boosted-predict.js';
import { loadMatrix } from '../../lib/model.js';
import { createClient, createTestProject, uniqueId } from './helpers.js';
import { checkpointMeta, exited, whileRunning, workerProcesses } from './processes.js';

const project = createTestProject('boosting');
let client: Client;
const workers = workerProcesses(project);
const MINUTE = 60_000;
const ROUNDS = 1500;

function pipeline(name: string, plugin: string): string {
  return [
    `name: ${name}`,
    'steps:',
    '  ingest:',
    '    uses: ingest.file',
    '    with: { path: pipelines/data/california-housing.csv }',
    '  split:',
    '    uses: process.split',
    '    needs: ingest',
    '    inputs: { dataset: "${steps.ingest.outputs.dataset}" }',
    '    with: { test: 0.2, validation: 0.1, seed: 42 }',
    '  transform:',
    '    uses: process.transform',
    '    needs: split',
    '    with:',
    '      exclude: [median_house_value]',
    '      steps:',
    '        - { op: derive, name: rooms_per_household, expr: total_rooms / households }',
    '        - { op: impute, columns: [total_bedrooms], strategy: median }',
    '        - { op: onehot, columns: [ocean_proximity] }',
    '  train:',
    `    uses: ${plugin}`,
    '    needs: transform',
    '    heartbeat: 10s',
    '    retry: { initialInterval: 200ms }',
    '    inputs:',
    '      train: "${steps.transform.outputs.train}"',
    '      validation: "${steps.transform.outputs.validation}"',
    '    with:',
    '      target: median_house_value',
    `      rounds: ${ROUNDS}`,
    '      learningRate: 0.02',
    '      maxDepth: 6',
    '      numLeaves: 31',
    '      seed: 7',
    '      threads: 1',
    '      checkpoint: { everyRounds: 50, keep: 2 }',
    '',
  ].join('\n');
}

beforeAll(async () => {
  client = await createClient();
  project.write('pipelines/boost-xgboost.yaml', pipeline('boost-xgboost', 'train.xgboost'));
  project.write('pipelines/boost-lightgbm.yaml', pipeline('boost-lightgbm', 'train.lightgbm'));
});

afterAll(async () => {
  workers.killAll();
  await client?.connection.close();
});

describe('boosting crash-resume', () => {
  for (const lib of ['xgboost', 'lightgbm'] as const) {
    it(
      `train.${lib}: SIGKILLed mid-training, the retried step resumes from its checkpoint and predicts as an uninterrupted run`,
      async () => {
        const name = `boost-${lib}`;
        const first = workers.spawn(`${lib}-first`);
        const workflowId = uniqueId(name);
        const handle = await client.workflow.start(PIPELINE_WORKFLOW, {
          taskQueue: project.taskQueue,
          workflowId,
          args: [{ pipeline: name, cache: false }],
        });
        const round = checkpointMeta(project, workflowId, 'train', 'round');
        await whileRunning(handle, () => round() >= 100, 'the round-100 checkpoint');
        first.kill('SIGKILL');
        expect(await exited(first)).toBe('SIGKILL');
        const killedAfter = round();

        const second = workers.spawn(`${lib}-second`);
        const resumed = (await handle.result()) as PipelineResult;
        const whole = (await client.workflow.execute(PIPELINE_WORKFLOW, {
          taskQueue: project.taskQueue,
          workflowId: uniqueId(`${name}-whole`),
          args: [{ pipeline: name, cache: false }],
        })) as PipelineResult;
        second.kill('SIGTERM');

        const rm = resumed.outputs['train']!['metrics'] as Record<string, number>;
        const wm = whole.outputs['train']!['metrics'] as Record<string, number>;
        expect(resumed.steps['train']).toMatchObject({ status: 'succeeded', attempt: 2 });
        expect(rm['resumedFromRound']).toBe(killedAfter);
        expect(rm['roundsThisAttempt']).toBe(ROUNDS - killedAfter);
        expect(rm['rounds']).toBe(ROUNDS);
        expect(wm).toMatchObject({ rounds: ROUNDS, roundsThisAttempt: ROUNDS, resumedFromRound: 0 });

        const store = new LocalArtifactStore(project.settings.artifactsDir);
        const doc = async (r: PipelineResult) =>
          parseBoostedModel(JSON.parse((await store.get(r.outputs['train']!['model'] as ArtifactRef)).toString('utf8')), lib);
        const a = await doc(resumed);
        const b = await doc(whole);
        expect(a.features).toEqual(b.features);
        const test = await loadMatrix(await store.getFile(whole.outputs['transform']!['test'] as ArtifactRef), {
          features: b.features,
          label: 'test',
        });
        const m = { x: test.x, rows: test.rows, cols: b.features.length };
        const pa = predictBoosted(a, m, 1);
        const pb = predictBoosted(b, m, 1);
        expect(pa.length).toBe(test.rows);
        let maxDiff = 0;
        for (let i = 0; i < pa.length; i++) maxDiff = Math.max(maxDiff, Math.abs(pa[i]! - pb[i]!));
        expect(maxDiff).toBe(0);
        expect(rm['valRmse']).toBe(wm['valRmse']);
        console.info(
          `train.${lib} crash-resume: SIGKILL after the round-${killedAfter} checkpoint; attempt 2 boosted rounds ${killedAfter + 1}-${ROUNDS}; ` +
            `validation RMSE resumed ${rm['valRmse']!.toFixed(2)} vs uninterrupted ${wm['valRmse']!.toFixed(2)}; max |prediction difference| on ${test.rows} test rows: ${maxDiff}`,
        );
      },
      10 * MINUTE,
    );
  }
});
