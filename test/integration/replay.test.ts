/**
 * Replay: the current workflow code must replay recorded histories without a determinism error.
 * - histories committed under test/fixtures/histories/ (recorded from real runs; they guard every
 *   future change of the interpreter: a change that breaks them needs `patched()`); tracked-*.json
 *   are a tracked run and its tracking workflow from before tracking was batched (one signal per step);
 * - fresh histories of runs made here (success, retries, skips, cache hits, failure).
 * Set MLPIPE_RECORD_HISTORIES=1 to rewrite the committed fixtures from the fresh runs.
 */
import { execFileSync } from 'node:child_process';
import { bundleWorkflowCode, Worker } from '@temporalio/worker';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, inject, it } from 'vitest';
import { workflowBundle } from '../../app/worker.js';
import { PIPELINE_WORKFLOW, type PipelineInput } from '../../engine/contracts.js';
import { createTestProject, REPO, uniqueId, useWorkerAndClient } from './helpers.js';

const FIXTURES = join(REPO, 'test', 'fixtures', 'histories');
const project = createTestProject('replay');
const env = useWorkerAndClient(project);

const RUNS: Record<string, PipelineInput> = {
  diamond: { pipeline: 'diamond' },
  'diamond-cached': { pipeline: 'diamond' },
  'conditional-wide': { pipeline: 'conditional', overrides: ['model=wide'] },
  'conditional-small': { pipeline: 'conditional' },
  retry: { pipeline: 'retry' },
  'compile-error': { pipeline: 'conditional', overrides: ['model=huge'] },
};

async function recordFresh(): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const [name, input] of Object.entries(RUNS)) {
    const handle = await env.client.workflow.start(PIPELINE_WORKFLOW, {
      taskQueue: project.taskQueue,
      workflowId: uniqueId(`replay-${name}`),
      args: [input],
    });
    await handle.result().catch(() => undefined);
    // The JSON that `temporal workflow show --output json` prints: what users attach to bug reports.
    out[name] = execFileSync(
      inject('temporalBin'),
      ['workflow', 'show', '--address', project.settings.temporalAddress, '-w', handle.workflowId, '--output', 'json'],
      { encoding: 'utf8' },
    );
  }
  return out;
}

describe('replay', () => {
  it('replays committed and fresh histories with the current workflow code', async () => {
    const fresh = await recordFresh();
    if (process.env['MLPIPE_RECORD_HISTORIES'] === '1') {
      for (const [name, json] of Object.entries(fresh)) writeFileSync(join(FIXTURES, `${name}.json`), json);
    }
    const committed = readdirSync(FIXTURES).filter((f) => f.endsWith('.json'));
    expect(committed.length).toBeGreaterThanOrEqual(5);
    const bundle = await workflowBundle();
    for (const f of committed) {
      await expect(
        // The workflow ID is the file's name: a run that starts a child (tracked-*.json) names it after its own ID.
        Worker.runReplayHistory({ workflowBundle: bundle }, JSON.parse(readFileSync(join(FIXTURES, f), 'utf8')), f.replace(/\.json$/, '')),
      ).resolves.toBeUndefined();
    }
    for (const [name, json] of Object.entries(fresh)) {
      await expect(Worker.runReplayHistory({ workflowBundle: bundle }, JSON.parse(json), name)).resolves.toBeUndefined();
    }
  });

  it('detects a workflow change that is not replay-safe', async () => {
    const other = await bundleWorkflowCode({
      workflowsPath: join(REPO, 'test', 'fixtures', 'nondeterministic-workflow.ts'),
      logger: {
        log: () => undefined,
        trace: () => undefined,
        debug: () => undefined,
        info: () => undefined,
        warn: () => undefined,
        error: () => undefined,
      },
    });
    // The worker parses `temporal workflow show` JSON itself.
    const history: unknown = JSON.parse(readFileSync(join(FIXTURES, 'diamond.json'), 'utf8'));
    await expect(Worker.runReplayHistory({ workflowBundle: other }, history, 'diamond')).rejects.toMatchObject({
      name: 'DeterminismViolationError',
      message: expect.stringContaining("'compilePipeline' does not match activity type of activity command 'runStep'"),
    });
  });
});
