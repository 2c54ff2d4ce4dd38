/**
 * Step SQL in real runs: a hostile override reaches process.sql as a bound value; SQL that reads a
 * file fails the step once, non-retryable; a `${...}` in SQL text stops the run before any step.
 */
import { WorkflowFailedError } from '@temporalio/client';
import type { ApplicationFailure } from '@temporalio/common';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { sqlString, withDuckDB } from '../../adapters/duckdb.js';
import { LocalArtifactStore } from '../../adapters/local-store.js';
import type { ArtifactRef } from '../../engine/types.js';
import { PIPELINE_WORKFLOW, type PipelineInput, type PipelineResult, type PipelineStatus } from '../../engine/contracts.js';
import { createTestProject, uniqueId, useWorkerAndClient } from './helpers.js';
import { errorFromFailure } from '../../engine/errors.js';

const project = createTestProject('step-sql');
const env = useWorkerAndClient(project);
const PAYLOAD = "'; DROP TABLE input; --";

project.write('data/people.csv', 'id,name\n1,ann\n2,bob\n3,cy\n');
project.write('secret.txt', 'not for step SQL\n');
const pipeline = (name: string, sql: string, extra = ''): string =>
  `name: ${name}\nparams:\n  who: ann\nsteps:\n  ingest:\n    uses: ingest.file\n    with: { path: data/people.csv }\n` +
  `  q:\n    uses: process.sql\n    needs: [ingest]\n    inputs: { input: "\${steps.ingest.outputs.dataset}" }\n    with:\n      sql: "${sql}"\n${extra}`;
const LOOKUP = 'SELECT count(*) FILTER (WHERE name = $who)::INT AS matches, $who AS asked, count(*)::INT AS total FROM input';
project.write('pipelines/lookup.yaml', pipeline('lookup', LOOKUP, '      params: { who: "${params.who}" }\n'));
project.write('pipelines/snoop.yaml', pipeline('snoop', `SELECT * FROM read_text(${sqlString(join(project.dir, 'secret.txt'))})`));
project.write('pipelines/spliced.yaml', pipeline('spliced', "SELECT * FROM input WHERE name = '${params.who}'"));

function start(input: PipelineInput) {
  const workflowId = uniqueId(input.pipeline);
  return env.client.workflow.start(PIPELINE_WORKFLOW, {
    taskQueue: project.taskQueue,
    workflowId,
    args: [input],
    workflowRunTimeout: '2 minutes',
  });
}

async function failure(input: PipelineInput): Promise<ApplicationFailure> {
  const err = await (await start(input)).result().then(
    () => {
      throw new Error('expected the run to fail');
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(WorkflowFailedError);
  return (err as WorkflowFailedError).cause as ApplicationFailure;
}

async function rows(ref: ArtifactRef): Promise<Record<string, unknown>[]> {
  const file = await new LocalArtifactStore(project.settings.artifactsDir).getFile(ref);
  return withDuckDB((db) => db.rows(`SELECT * FROM read_parquet(${sqlString(file)})`));
}

describe('step SQL in a run', () => {
  it('binds a hostile override as a literal value', async () => {
    const plain = (await (await start({ pipeline: 'lookup', cache: false })).result()) as PipelineResult;
    expect(await rows(plain.outputs['q']!['dataset'] as ArtifactRef)).toEqual([{ matches: 1, asked: 'ann', total: 3 }]);
    const hostile = (await (
      await start({ pipeline: 'lookup', cache: false, overrides: [`params.who="${PAYLOAD}"`] })
    ).result()) as PipelineResult;
    expect(hostile.steps['q']!.status).toBe('succeeded');
    expect(await rows(hostile.outputs['q']!['dataset'] as ArtifactRef)).toEqual([{ matches: 0, asked: PAYLOAD, total: 3 }]);
  });

  it('fails a step whose SQL reads a file, once, as DATA_INVALID', async () => {
    const cause = await failure({ pipeline: 'snoop', cache: false });
    expect(cause.type).toBe('STEP_FAILED');
    expect(cause.nonRetryable).toBe(true);
    expect(cause.message).toContain('DATA_INVALID');
    expect(cause.message).toContain('Cannot access file');
    const status = (errorFromFailure(cause)?.details ?? {}) as PipelineStatus;
    expect(status.steps['q']).toMatchObject({ status: 'failed', attempt: 1 });
  });

  it('refuses ${...} inside SQL text before any step runs', async () => {
    const cause = await failure({ pipeline: 'spliced', cache: false });
    expect(cause.type).toBe('EXPR_IN_CODE');
    expect(cause.message).toContain("'sql' is code");
    expect(cause.message).toContain('pipelines/spliced.yaml');
  });
});
