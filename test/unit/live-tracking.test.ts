/**
 * A step's MLflow run while it runs (activities/live-tracking.ts): created RUNNING at the start, its
 * points in batches, ended with the step; the tracking delivery that follows finds it by its tag,
 * adds the parent, and sends no point twice. An MLflow that fails only stops the live part.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { startLiveRun } from '../../activities/live-tracking.js';
import { deliver } from '../../activities/tracking.js';
import { LocalArtifactStore } from '../../adapters/local-store.js';
import type { Logger, NewRun, TrackedRun, TrackingBackend } from '../../engine/ports.js';
import type { Batch, MetricPoint } from '../../engine/tracking.js';

class MemoryBackend implements TrackingBackend {
  readonly kind = 'rest' as const;
  readonly location = 'memory';
  runs: (TrackedRun & { tags: Record<string, string>; metrics: MetricPoint[]; status: string })[] = [];
  batches = 0;
  fail = false;
  async getOrCreateExperiment(): Promise<string> {
    if (this.fail) throw new Error('connection refused');
    return '1';
  }
  async findRunByTag(experimentId: string, key: string, value: string): Promise<TrackedRun | undefined> {
    return this.runs.find((r) => r.experimentId === experimentId && r.tags[key] === value);
  }
  async createRun(o: NewRun): Promise<TrackedRun> {
    const run = {
      mlflowRunId: `r${this.runs.length}`,
      experimentId: o.experimentId,
      artifactUri: 'mem:/',
      tags: {} as Record<string, string>,
      metrics: [],
      status: 'RUNNING',
    };
    for (const t of o.tags) run.tags[t.key] = t.value;
    this.runs.push(run);
    return run;
  }
  private run(id: string) {
    return this.runs.find((r) => r.mlflowRunId === id)!;
  }
  async logBatch(id: string, b: Batch): Promise<void> {
    if (b.metrics.length) this.batches++;
    for (const t of b.tags) this.run(id).tags[t.key] = t.value;
    this.run(id).metrics.push(...b.metrics);
  }
  async metricHistory(id: string, key: string): Promise<MetricPoint[]> {
    return this.run(id).metrics.filter((m) => m.key === key);
  }
  async updateRun(id: string, status: string): Promise<void> {
    this.run(id).status = status;
  }
  async uploadArtifact(): Promise<void> {}
}

const warnings: string[] = [];
const logger: Logger = { debug: () => undefined, info: () => undefined, warn: (_f, m) => void warnings.push(m), error: () => undefined };
const options = { experiment: 'exp', key: 'wf/run', stepId: 'train', uses: 'train.x', pluginVersion: '1', attempt: 1, logger };
const points = [1, 2, 3].map((e) => ({ key: 'loss', value: 1 / e, step: e, timestamp: 1000 + e }));

describe('live tracking of a step', () => {
  it('makes the run RUNNING at the start, sends the points, ends it; the delivery after it duplicates nothing', async () => {
    const b = new MemoryBackend();
    const live = startLiveRun(b, options);
    live.log(points.slice(0, 2));
    live.log(points.slice(2));
    await new Promise((r) => setTimeout(r, 0));
    expect(b.runs).toHaveLength(1);
    expect(b.runs[0]).toMatchObject({ status: 'RUNNING', tags: { 'mlpipe.step_key': 'wf/run/train', 'mlpipe.plugin': 'train.x' } });
    await live.end('FINISHED');
    expect(b.runs[0]!.status).toBe('FINISHED');
    expect(b.runs[0]!.metrics).toEqual(points);
    expect(b.batches).toBe(1);

    // The record of the step arrives later through the tracking workflow, with the same series.
    const store = new LocalArtifactStore(mkdtempSync(join(tmpdir(), 'mlpipe-live-')));
    const started = {
      seq: 0,
      type: 'run-started' as const,
      pipeline: 'p',
      file: 'p.yaml',
      workflowId: 'wf',
      runId: 'run',
      startedAt: '2026-01-01T00:00:00.000Z',
      params: {},
      config: {},
      labels: {},
    };
    const step = {
      stepId: 'train',
      uses: 'train.x',
      pluginVersion: '1',
      status: 'succeeded' as const,
      params: {},
      attempt: 1,
      outputs: {},
      series: points,
      startedAt: '2026-01-01T00:00:01.000Z',
      endedAt: '2026-01-01T00:00:03.000Z',
    };
    await deliver(
      b,
      store,
      {
        key: 'wf/run',
        config: { enabled: true, experiment: 'exp' },
        events: [started, { seq: 1, type: 'step-ended', step }],
        known: { steps: {} },
      },
      false,
      { info: () => undefined, warn: () => undefined },
    );
    expect(b.runs).toHaveLength(2); // the parent, and the step's run found again
    const train = b.runs[0]!;
    expect(train.metrics.filter((m) => m.key === 'loss')).toEqual(points);
    expect(train.tags['mlflow.parentRunId']).toBe(b.runs[1]!.mlflowRunId);
    expect(train.tags['mlpipe.status']).toBe('succeeded');
  });

  it('finds the run again on a retry and marks it RUNNING; a failed step ends it FAILED', async () => {
    const b = new MemoryBackend();
    await startLiveRun(b, options).end('FAILED');
    expect(b.runs[0]!.status).toBe('FAILED');
    const retry = startLiveRun(b, { ...options, attempt: 2 });
    await new Promise((r) => setTimeout(r, 0));
    expect(b.runs).toHaveLength(1);
    expect(b.runs[0]!.status).toBe('RUNNING');
    await retry.end('FINISHED');
    expect(b.runs[0]!.status).toBe('FINISHED');
  });

  it('stops quietly when MLflow fails: one warning, the step goes on', async () => {
    const b = new MemoryBackend();
    b.fail = true;
    warnings.length = 0;
    const live = startLiveRun(b, options);
    live.log(points);
    await live.end('FINISHED');
    live.log(points);
    expect(b.runs).toHaveLength(0);
    expect(warnings).toEqual(['live MLflow tracking of the step stopped; its metrics go with the step record']);
  });
});
