/**
 * A step's MLflow run while it runs (activities/live-tracking.ts): created RUNNING at the start, its
 * points in batches, ended with the step; the tracking delivery that follows finds it by its tag,
 * adds the parent, and sends no point twice. An MLflow that fails only stops the live part. The
 * step never waits for MLflow: a run still being made when the step ends is waited for by the
 * delivery (in this process, or by looking again), which then makes no second run.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { liveRunSettled, startLiveRun } from '../../activities/live-tracking.js';
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

/** Resolves its waiters once opened. */
class Gate {
  private opened = false;
  private waiters: (() => void)[] = [];
  open(): void {
    this.opened = true;
    for (const w of this.waiters.splice(0)) w();
  }
  wait(): Promise<void> {
    return this.opened ? Promise.resolve() : new Promise((r) => this.waiters.push(r));
  }
}

/** A backend whose run creation waits for a gate: an MLflow that is slow to answer. */
class SlowBackend extends MemoryBackend {
  constructor(private readonly gate: Gate) {
    super();
  }
  override async createRun(o: NewRun): Promise<TrackedRun> {
    await this.gate.wait();
    return super.createRun(o);
  }
}

const warnings: string[] = [];
const logger: Logger = { debug: () => undefined, info: () => undefined, warn: (_f, m) => void warnings.push(m), error: () => undefined };
// startAfterMs 0: the run is asked for at once (steps wait LIVE_START_MS; see the test of that below).
const options = {
  experiment: 'exp',
  key: 'wf/run',
  stepId: 'train',
  uses: 'train.x',
  pluginVersion: '1',
  attempt: 1,
  logger,
  startAfterMs: 0,
};
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
    const first = startLiveRun(b, options);
    await new Promise((r) => setTimeout(r, 0));
    await first.end('FAILED');
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

  it('does not hold up a step: finish() returns at once, and a step that ended before its run was asked for leaves it to the delivery', async () => {
    const b = new MemoryBackend();
    const quick = startLiveRun(b, options);
    expect(quick.finish('FINISHED')).toEqual({ pending: false });
    await liveRunSettled(b.location, 'wf/run/train');
    expect(b.runs).toHaveLength(0);

    const gate = new Gate();
    const slow = new SlowBackend(gate);
    const live = startLiveRun(slow, options);
    await new Promise((r) => setTimeout(r, 0)); // the step runs long enough for its run to be asked for
    live.log(points);
    // MLflow has not answered: the step still ends at once, and says its run is in the making.
    expect(live.finish('FINISHED')).toEqual({ pending: true });
    expect(slow.runs).toHaveLength(0);
    gate.open();
    await liveRunSettled(slow.location, 'wf/run/train');
    expect(slow.runs).toHaveLength(1);
    expect(slow.runs[0]!.status).toBe('FINISHED');
    expect(slow.runs[0]!.metrics).toEqual(points);
  });

  it('asks for the run only after startAfterMs, or at once when the model registry needs it', async () => {
    const { startAfterMs: _, ...later } = options; // the default, LIVE_START_MS
    const b = new MemoryBackend();
    let asked = 0;
    const lookUp = b.getOrCreateExperiment.bind(b);
    b.getOrCreateExperiment = () => (asked++, lookUp());
    const quick = startLiveRun(b, later);
    quick.log(points);
    await new Promise((r) => setTimeout(r, 0));
    expect(quick.finish('FINISHED')).toEqual({ pending: false });
    await liveRunSettled(b.location, 'wf/run/train');
    expect({ asked, runs: b.runs.length }).toEqual({ asked: 0, runs: 0 });

    const publishing = startLiveRun(b, { ...later, stepId: 'deploy', startAfterMs: 3_600_000 });
    await publishing.ready();
    expect(b.runs).toHaveLength(1);
    expect(b.runs[0]).toMatchObject({ status: 'RUNNING', tags: { 'mlpipe.step_key': 'wf/run/deploy' } });
    await publishing.end('FINISHED');
    expect(b.runs[0]!.status).toBe('FINISHED');
  });

  it("a delivery waits for a step's run still in the making instead of making a second one", async () => {
    const store = new LocalArtifactStore(mkdtempSync(join(tmpdir(), 'mlpipe-live-')));
    const gate = new Gate();
    const b = new SlowBackend(gate);
    // The parent exists (delivered before); the step's live run is being made as the step ends.
    b.runs.push({
      mlflowRunId: 'parent',
      experimentId: '1',
      artifactUri: 'mem:/',
      tags: { 'mlpipe.run_key': 'wf/run' },
      metrics: [],
      status: 'RUNNING',
    });
    const live = startLiveRun(b, options);
    await new Promise((r) => setTimeout(r, 0));
    expect(live.finish('FINISHED').pending).toBe(true);
    const endedAt = new Date().toISOString();
    const step = {
      stepId: 'train',
      uses: 'train.x',
      pluginVersion: '1',
      status: 'succeeded' as const,
      params: {},
      attempt: 1,
      outputs: {},
      series: points,
      startedAt: endedAt,
      endedAt,
      liveRun: true,
    };
    const delivery = deliver(
      b,
      store,
      { key: 'wf/run', config: { enabled: true, experiment: 'exp' }, events: [{ seq: 1, type: 'step-ended', step }], known: { steps: {} } },
      false,
      { info: () => undefined, warn: () => undefined },
    );
    await new Promise((r) => setTimeout(r, 50));
    gate.open();
    const known = await delivery;
    const steps = b.runs.filter((r) => r.tags['mlpipe.step_key'] === 'wf/run/train');
    expect(steps).toHaveLength(1);
    expect(known.steps['train']!.mlflowRunId).toBe(steps[0]!.mlflowRunId);
    expect(steps[0]!.metrics.filter((m) => m.key === 'loss')).toEqual(points);
    expect(steps[0]!.tags['mlflow.parentRunId']).toBe('parent');
  });

  it('a delivery on another worker looks again for a run in the making, and makes it once the wait is over', async () => {
    const store = new LocalArtifactStore(mkdtempSync(join(tmpdir(), 'mlpipe-live-')));
    const b = new MemoryBackend();
    b.runs.push({
      mlflowRunId: 'parent',
      experimentId: '1',
      artifactUri: 'mem:/',
      tags: { 'mlpipe.run_key': 'wf/run' },
      metrics: [],
      status: 'RUNNING',
    });
    const endedAt = new Date().toISOString();
    const step = {
      stepId: 'other',
      uses: 'train.x',
      pluginVersion: '1',
      status: 'succeeded' as const,
      params: {},
      attempt: 1,
      outputs: {},
      startedAt: endedAt,
      endedAt,
      liveRun: true,
    };
    const input = (s: typeof step) => ({
      key: 'wf/run',
      config: { enabled: true, experiment: 'exp' },
      events: [{ seq: 1, type: 'step-ended' as const, step: s }],
      known: { steps: {} },
    });
    const log = { info: () => undefined, warn: () => undefined };
    // The live run appears (made by the step's worker) while the delivery looks for it.
    const delivery = deliver(b, store, input(step), false, log);
    await new Promise((r) => setTimeout(r, 300));
    const made = await b.createRun({
      experimentId: '1',
      runName: 'other',
      startTime: 0,
      tags: [{ key: 'mlpipe.step_key', value: 'wf/run/other' }],
    });
    expect((await delivery).steps['other']!.mlflowRunId).toBe(made.mlflowRunId);
    expect(b.runs.filter((r) => r.tags['mlpipe.step_key'] === 'wf/run/other')).toHaveLength(1);
    // A step that ended long ago: no wait, the delivery makes the run.
    const old = { ...step, stepId: 'old', startedAt: '2026-01-01T00:00:00.000Z', endedAt: '2026-01-01T00:00:01.000Z' };
    await deliver(b, store, input(old), false, log);
    expect(b.runs.filter((r) => r.tags['mlpipe.step_key'] === 'wf/run/old')).toHaveLength(1);
  });
});
