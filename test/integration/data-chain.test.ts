/**
 * A chain of DuckDB steps (ingest -> sql -> transform) in real runs, over a CSV large enough for
 * several Parquet row groups: the same file again gives byte-identical datasets, so every step
 * after ingest is served from the cache; one changed value in the file makes them all run again;
 * the lineage names each step's inputs and outputs down to the ingest. Only DuckDB steps read the
 * sql step's dataset, so it is passed on deferred (a recipe, lib/dataset.ts) and the transform
 * computes it: the transform's outputs are the bytes they are when the sql step writes Parquet. A
 * worker process killed between the two leaves the recipe in the store; a new worker finishes the run.
 */
import type { Client } from '@temporalio/client';
import { afterAll, describe, expect, it } from 'vitest';
import { LocalArtifactStore } from '../../adapters/local-store.js';
import { PIPELINE_WORKFLOW, type PipelineInput, type PipelineResult } from '../../engine/contracts.js';
import { lineageOf, type StepManifest } from '../../engine/lineage.js';
import type { ArtifactRef } from '../../engine/types.js';
import { DEFERRED, PARQUET } from '../../lib/dataset.js';
import { createClient, createTestProject, uniqueId, useWorkerAndClient } from './helpers.js';
import { exited, whileRunning, workerProcesses } from './processes.js';

const project = createTestProject('data-chain');
const env = useWorkerAndClient(project);
const ROWS = 300_000; // three row groups of DuckDB's default 122,880 rows

function csv(change: number): string {
  const lines = ['id,rooms,households,bedrooms,kind'];
  for (let i = 0; i < ROWS; i++) {
    const rooms = 1 + ((i * 7919) % 5000) + (i === ROWS - 7 ? change : 0);
    lines.push(`${i},${rooms},${1 + (i % 97)},${i % 31 === 0 ? '' : (i * 13) % 900},${['a', 'b', 'c'][i % 3]}`);
  }
  return `${lines.join('\n')}\n`;
}

project.write('data/houses.csv', csv(0));
const CHAIN = `steps:
  ingest:
    uses: ingest.file
    with: { path: data/houses.csv }
  features:
    uses: process.sql
    needs: [ingest]
    inputs: { input: "\${steps.ingest.outputs.dataset}" }
    with:
      sql: "SELECT *, rooms / households AS rooms_per_household FROM input"
  fit:
    uses: process.transform
    needs: [features]
    inputs: { train: "\${steps.features.outputs.dataset}" }
    with:
      exclude: [id]
      steps:
        - { op: impute, columns: [bedrooms], strategy: median }
        - { op: onehot, columns: [kind] }
        - { op: standardize, columns: numeric }
`;
project.write('pipelines/chain.yaml', `name: chain\n${CHAIN}`);
// The same steps with the sql step's dataset also read by a step that needs the file: written as Parquet.
project.write(
  'pipelines/chain-file.yaml',
  `name: chain-file\n${CHAIN}  split:\n    uses: process.split\n    needs: [features]\n    inputs: { dataset: "\${steps.features.outputs.dataset}" }\n    with: { test: 0.2 }\n`,
);

async function run(input: PipelineInput): Promise<PipelineResult> {
  const handle = await env.client.workflow.start(PIPELINE_WORKFLOW, {
    taskQueue: project.taskQueue,
    workflowId: uniqueId(input.pipeline),
    args: [input],
    workflowRunTimeout: '3 minutes',
  });
  return (await handle.result()) as PipelineResult;
}

let firstTrain: ArtifactRef | undefined;

const statuses = (r: PipelineResult): string[] => ['ingest', 'features', 'fit'].map((s) => r.steps[s]!.status);
const dataset = (r: PipelineResult, step: string, name = 'dataset'): ArtifactRef => r.outputs[step]![name] as ArtifactRef;

describe('a chain of data steps', () => {
  it('hits the cache on the same data, misses on changed data, and keeps the lineage of every step', async () => {
    const first = await run({ pipeline: 'chain' });
    firstTrain = dataset(first, 'fit', 'train');
    expect(statuses(first)).toEqual(['succeeded', 'succeeded', 'succeeded']);
    expect(first.outputs['ingest']!['rows']).toBe(ROWS);
    // Passed on deferred: a recipe over the ingest's dataset; the transform's outputs are Parquet.
    expect(dataset(first, 'features').mediaType).toBe(DEFERRED);
    expect(dataset(first, 'features').derivedFrom?.map((r) => r.sha256)).toEqual([dataset(first, 'ingest').sha256]);
    expect(first.outputs['features']!['rows']).toBe(ROWS);
    expect(dataset(first, 'fit', 'train').mediaType).toBe(PARQUET);

    // With a reader that needs the file, the sql step writes Parquet; the transform's output is the same bytes.
    const withFile = await run({ pipeline: 'chain-file' });
    expect(withFile.steps['split']!.status).toBe('succeeded');
    expect(dataset(withFile, 'features').mediaType).toBe(PARQUET);
    expect(withFile.steps['features']!.status).toBe('succeeded');
    // The same bytes: process.transform's fitted means and deviations are sums in the order of the rows.
    expect(withFile.outputs['fit']!['features']).toEqual(first.outputs['fit']!['features']);
    expect(dataset(withFile, 'fit', 'train').sha256).toBe(dataset(first, 'fit', 'train').sha256);
    expect(dataset(withFile, 'fit', 'state').sha256).toBe(dataset(first, 'fit', 'state').sha256);

    // ingest.file always reads its file; byte-identical output lets the rest hit.
    const second = await run({ pipeline: 'chain' });
    expect(statuses(second)).toEqual(['succeeded', 'cached', 'cached']);
    expect(dataset(second, 'ingest').sha256).toBe(dataset(first, 'ingest').sha256);
    expect(dataset(second, 'fit', 'train')).toEqual(dataset(first, 'fit', 'train'));

    project.write('data/houses.csv', csv(1));
    const third = await run({ pipeline: 'chain' });
    expect(statuses(third)).toEqual(['succeeded', 'succeeded', 'succeeded']);
    expect(dataset(third, 'ingest').sha256).not.toBe(dataset(first, 'ingest').sha256);
    expect(dataset(third, 'features').sha256).not.toBe(dataset(first, 'features').sha256);
    expect(dataset(third, 'fit', 'train').sha256).not.toBe(dataset(first, 'fit', 'train').sha256);

    // The lineage of the last output: fit <- features <- ingest, each naming its inputs and outputs.
    const store = new LocalArtifactStore(project.settings.artifactsDir);
    const node = await lineageOf(store, dataset(third, 'fit', 'train').sha256);
    const fit = node.producedBy.find((p) => p.stepId === 'fit')!;
    expect(fit).toMatchObject({ status: 'succeeded', uses: 'process.transform' });
    expect((fit.inputs['train'] as ArtifactRef).sha256).toBe(dataset(third, 'features').sha256);
    expect((fit.outputs['train'] as ArtifactRef).sha256).toBe(dataset(third, 'fit', 'train').sha256);
    const features = fit.inputsLineage['train']!.producedBy.find((p) => p.stepId === 'features')!;
    expect((features.inputs['input'] as ArtifactRef).sha256).toBe(dataset(third, 'ingest').sha256);
    expect((features.outputs['dataset'] as ArtifactRef).sha256).toBe(dataset(third, 'features').sha256);
    const ingest = features.inputsLineage['input']!.producedBy.find((p) => p.stepId === 'ingest')!;
    expect((ingest.outputs['dataset'] as ArtifactRef).sha256).toBe(dataset(third, 'ingest').sha256);
    // The cached run's step records name the inputs, the outputs and the run they came from.
    const records = (await store.listRecords('runs/')).filter((k) => k.endsWith('/steps/fit'));
    const manifests = await Promise.all(records.map((k) => store.getRecord<StepManifest>(k)));
    const cached = manifests.filter((m) => m?.status === 'cached');
    expect(cached).toHaveLength(1);
    expect(cached[0]!.cachedFrom?.stepId).toBe('fit');
    expect((cached[0]!.inputs['train'] as ArtifactRef).sha256).toBe(dataset(second, 'features').sha256);
    expect(cached[0]!.outputs['train']).toEqual(dataset(first, 'fit', 'train'));
  });
});

describe('a deferred dataset across a worker crash', () => {
  const crash = createTestProject('data-chain-crash');
  const workers = workerProcesses(crash);
  let client: Client | undefined;
  afterAll(async () => {
    workers.killAll();
    await client?.connection.close();
  });

  it('survives the worker that made it: a new worker process computes it and gets the same result', async () => {
    crash.write('data/houses.csv', csv(0));
    // A pause between the sql step and the transform (needing the first, reading nothing of it) to kill the worker in.
    const pause = `  pause:\n    uses: util.sleep\n    needs: [features]\n    heartbeat: 2s\n    retry: { initialInterval: 200ms }\n    with: { ticks: 40, tickMs: 250, journal: journal.jsonl }\n`;
    crash.write(
      'pipelines/chain.yaml',
      `name: chain\n${CHAIN.replace('needs: [features]\n    inputs: { train', 'needs: [features, pause]\n    inputs: { train')}${pause}`,
    );
    client = await createClient();
    const first = workers.spawn('first');
    const handle = await client.workflow.start(PIPELINE_WORKFLOW, {
      taskQueue: crash.taskQueue,
      workflowId: uniqueId('chain-crash'),
      args: [{ pipeline: 'chain' }],
      workflowRunTimeout: '4 minutes',
    });
    const { runId } = await handle.describe();
    await whileRunning(
      handle,
      () => crash.journal().some((l) => l.runId === runId && l.step === 'pause' && l.event === 'tick'),
      'the pause',
    );
    first.kill('SIGKILL');
    expect(await exited(first)).toBe('SIGKILL');
    const second = workers.spawn('second');
    const result = (await handle.result()) as PipelineResult;
    second.kill('SIGTERM');
    expect(result.steps['features']!.attempt).toBe(1);
    expect(result.steps['pause']!.attempt).toBe(2);
    expect(result.steps['fit']!.status).toBe('succeeded');
    expect(dataset(result, 'features').mediaType).toBe(DEFERRED);
    // The bytes of the uninterrupted run above (same CSV, same steps), in another store.
    const store = new LocalArtifactStore(crash.settings.artifactsDir);
    expect(await store.verify(dataset(result, 'fit', 'train'))).toBe(true);
    expect(dataset(result, 'fit', 'train').sha256).toBe(firstTrain!.sha256);
  });
});
