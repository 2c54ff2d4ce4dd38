/**
 * Checkpoints belong to one run: a second run under the same workflow ID (as every drift-triggered
 * retrain is, `retrain-<pipeline>`) with other params trains from epoch 0 with its own params, and
 * does not resume from the first run's checkpoint.
 */
import type { Client } from '@temporalio/client';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalArtifactStore } from '../../adapters/local-store.js';
import type { ArtifactRef } from '../../engine/types.js';
import { PIPELINE_WORKFLOW, type PipelineResult } from '../../engine/contracts.js';
import { createClient, createTestProject, startWorker, uniqueId } from './helpers.js';

const project = createTestProject('ckpt-key');
let client: Client;
let stop: () => Promise<void>;

beforeAll(async () => {
  client = await createClient();
  stop = (await startWorker(project, { tracking: null })).stop;
});
afterAll(async () => {
  await stop?.();
  await client?.connection.close();
});

const pipeline = (hidden: number[]): string => `name: retrain-ckpt
steps:
  data:
    uses: ingest.file
    with: { path: data.csv }
  train:
    uses: train.tfjs-mlp
    needs: data
    cache: false
    inputs: { train: '\${steps.data.outputs.dataset}' }
    with: { target: y, hidden: [${hidden.join(', ')}], epochs: 6, batchSize: 64, seed: 1, backend: cpu, checkpoint: { everyEpochs: 2, keep: 2 } }
`;

/** The dense kernels' shapes of a trained model: [inputs, units] per layer. */
async function kernelShapes(model: ArtifactRef): Promise<number[][]> {
  const bytes = await new LocalArtifactStore(project.settings.artifactsDir).get(model);
  const doc = JSON.parse(bytes.toString('utf8')) as { weightSpecs: { name: string; shape: number[] }[] };
  return doc.weightSpecs.filter((w) => w.name.endsWith('kernel')).map((w) => w.shape);
}

describe('checkpoints keyed to the run and the step cache key', () => {
  it('a second run under the same workflow ID with other params starts at epoch 0 with its own params', async () => {
    const rows = ['a,b,y'];
    for (let i = 0; i < 200; i++)
      rows.push(`${Math.sin(i * 1.3)},${Math.cos(i * 0.7)},${3 * Math.sin(i * 1.3) - 2 * Math.cos(i * 0.7) + 1}`);
    project.write('data.csv', `${rows.join('\n')}\n`);
    const workflowId = uniqueId('retrain-ckpt');
    const runOnce = async (hidden: number[]): Promise<PipelineResult & { runId: string }> => {
      project.write('pipelines/retrain-ckpt.yaml', pipeline(hidden));
      const options = { taskQueue: project.taskQueue, workflowId, args: [{ pipeline: 'retrain-ckpt' }], workflowRunTimeout: '5 minutes' };
      const h = await client.workflow.start(PIPELINE_WORKFLOW, options);
      return { ...((await h.result()) as PipelineResult), runId: h.firstExecutionRunId };
    };
    const first = await runOnce([8]);
    const second = await runOnce([16, 8]);
    expect(second.runId).not.toBe(first.runId);
    for (const r of [first, second])
      expect(r.outputs['train']!['metrics']).toMatchObject({ epochs: 6, epochsThisAttempt: 6, resumedFromEpoch: 0 });
    expect(await kernelShapes(first.outputs['train']!['model'] as ArtifactRef)).toEqual([
      [2, 8],
      [8, 1],
    ]);
    expect(await kernelShapes(second.outputs['train']!['model'] as ArtifactRef)).toEqual([
      [2, 16],
      [16, 8],
      [8, 1],
    ]);
    // Each run's checkpoints are under its own run ID.
    const dir = join(project.settings.artifactsDir, 'records', 'checkpoints', workflowId);
    expect(existsSync(dir)).toBe(true);
    expect(readdirSync(dir).sort()).toEqual([first.runId, second.runId].sort());
  }, 240_000);
});
