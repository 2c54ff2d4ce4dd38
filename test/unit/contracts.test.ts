import { describe, expect, it } from 'vitest';
import { hpoTrackingOf, knownRunsOf, mlflowRunIdOf, type PipelineInput } from '../../engine/contracts.js';
import { pipelineInputSchema } from '../../engine/pipeline-input.js';
import { LIMITS } from '../../engine/limits.js';

describe('pipeline workflow input', () => {
  it('takes the documented fields and derives its type from the schema', () => {
    const input: PipelineInput = {
      pipeline: 'housing',
      overrides: ['model=wide'],
      labels: { team: 'ml' },
      cache: false,
      maxParallel: 4,
      until: 'train',
      trial: {
        hpo: 'search-1',
        index: 3,
        parentMlflowRunId: 'abc',
        stepParams: { train: { stopIfWorseThan: { curve: [1], afterEpochs: 1 } } },
      },
    };
    expect(pipelineInputSchema.parse(input)).toEqual(input);
  });

  it('refuses unknown keys, bad step ids and values over the bounds', () => {
    expect(pipelineInputSchema.safeParse({ pipeline: 'p', overides: [] }).success).toBe(false);
    expect(pipelineInputSchema.safeParse({ pipeline: 'p', until: 'not a step' }).success).toBe(false);
    expect(pipelineInputSchema.safeParse({ pipeline: 'p', trial: { hpo: 'h', index: 0, extra: 1 } }).success).toBe(false);
    expect(pipelineInputSchema.safeParse({ pipeline: 'p', trial: { hpo: 'h', index: 0, stepParams: { '1bad': {} } } }).success).toBe(false);
    expect(pipelineInputSchema.safeParse({ pipeline: 'p', maxParallel: LIMITS.maxParallel + 1 }).success).toBe(false);
    expect(pipelineInputSchema.safeParse({ pipeline: '' }).success).toBe(false);
  });

  it("still reads a trial's parent MLflow run under its older name", () => {
    expect(pipelineInputSchema.parse({ pipeline: 'p', trial: { hpo: 'h', index: 0, parentRunId: 'old' } }).trial?.parentRunId).toBe('old');
  });
});

describe('MLflow run IDs recorded under their older name', () => {
  it('mlflowRunIdOf reads mlflowRunId, else runId', () => {
    expect(mlflowRunIdOf({ mlflowRunId: 'new' })).toBe('new');
    expect(mlflowRunIdOf({ runId: 'old' })).toBe('old');
    expect(mlflowRunIdOf(undefined)).toBeUndefined();
  });

  it('knownRunsOf and hpoTrackingOf give the current shape', () => {
    const old = {
      experimentId: '1',
      parent: { runId: 'p', experimentId: '1', artifactUri: 'a' },
      steps: { train: { runId: 't', experimentId: '1', artifactUri: 'b' } },
      modelVersion: '2',
    };
    expect(knownRunsOf(old as never)).toEqual({
      experimentId: '1',
      parent: { mlflowRunId: 'p', experimentId: '1', artifactUri: 'a' },
      steps: { train: { mlflowRunId: 't', experimentId: '1', artifactUri: 'b' } },
      modelVersion: '2',
    });
    expect(knownRunsOf({ steps: {} })).toEqual({ steps: {} });
    expect(hpoTrackingOf({ runId: 's', experimentId: '1' })).toEqual({ mlflowRunId: 's', experimentId: '1' });
    expect(hpoTrackingOf({ mlflowRunId: 's', experimentId: '1' })).toEqual({ mlflowRunId: 's', experimentId: '1' });
    expect(hpoTrackingOf(undefined)).toBeUndefined();
  });
});
