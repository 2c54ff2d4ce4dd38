/**
 * A chain of DuckDB steps (ingest -> sql -> transform) in real runs, over a CSV large enough for
 * several Parquet row groups: the same file again gives byte-identical datasets, so every step
 * after ingest is served from the cache; one changed value in the file makes them all run again;
 * the lineage names each step's inputs and outputs down to the ingest.
 */
import { describe, expect, it } from 'vitest';
import { LocalArtifactStore } from '../../adapters/local-store.js';
import { PIPELINE_WORKFLOW, type PipelineInput, type PipelineResult } from '../../engine/contracts.js';
import { lineageOf, type StepManifest } from '../../engine/lineage.js';
import type { ArtifactRef } from '../../engine/types.js';
import { createTestProject, uniqueId, useWorkerAndClient } from './helpers.js';

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
project.write(
  'pipelines/chain.yaml',
  `name: chain
steps:
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
`,
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

const statuses = (r: PipelineResult): string[] => ['ingest', 'features', 'fit'].map((s) => r.steps[s]!.status);
const dataset = (r: PipelineResult, step: string, name = 'dataset'): ArtifactRef => r.outputs[step]![name] as ArtifactRef;

describe('a chain of data steps', () => {
  it('hits the cache on the same data, misses on changed data, and keeps the lineage of every step', async () => {
    const first = await run({ pipeline: 'chain' });
    expect(statuses(first)).toEqual(['succeeded', 'succeeded', 'succeeded']);
    expect(first.outputs['ingest']!['rows']).toBe(ROWS);

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
