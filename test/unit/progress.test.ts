/**
 * Step progress: the clock behind ctx.progress (rate and ETA over the attempt, the once-a-second
 * throttle), the heartbeat-details reader, and the line `mlpipe run` / `mlpipe status` print.
 */
import { describe, expect, it } from 'vitest';
import { formatEta, formatProgress, formatStepLine, progressOfDetails } from '../../cli/render.js';
import { progressClock, stepProgressOf } from '../../engine/progress.js';
import { testContext } from '../../api/testing.js';

describe('progress clock', () => {
  it('times the rate and the ETA on what this attempt did, from its first report', () => {
    const c = progressClock();
    // A resumed step: epoch 20 of 40 first, at t=10 s.
    const first = c.next({ done: 20, total: 40, unit: 'epoch' }, 10_000);
    expect(first).toEqual({ done: 20, total: 40, unit: 'epoch', at: 10_000 });
    const later = c.next({ done: 24, total: 40, unit: 'epoch', metrics: { loss: 0.5 } }, 18_000);
    expect(later.rate).toBeCloseTo(0.5);
    expect(later.etaMs).toBe(32_000);
  });

  it('keeps the last done for a report with only a message, and drops what JSON cannot carry', () => {
    const c = progressClock();
    c.next({ done: 3 }, 0);
    expect(c.next({ message: 'saving\nsecond line', metrics: { loss: NaN, acc: 0.9 } }, 1000)).toEqual({
      done: 3,
      message: 'saving',
      metrics: { acc: 0.9 },
      at: 1000,
    });
    expect(c.next({ done: Infinity, total: -Infinity }, 2000)).toEqual({ done: 3, at: 2000 });
  });

  it('lets a report heartbeat at most once a second', () => {
    const c = progressClock();
    expect([c.due(0), c.due(500), c.due(999), c.due(1000), c.due(1500), c.due(2100)]).toEqual([true, false, false, true, false, true]);
  });

  it('records what a plugin reports in a test context, as the heartbeat details a worker sends', () => {
    const ctx = testContext();
    ctx.progress({ done: 1, total: 4, unit: 'epoch', metrics: { loss: 1.5 } });
    expect(stepProgressOf(ctx.heartbeats[0])).toMatchObject({ done: 1, total: 4, unit: 'epoch', metrics: { loss: 1.5 } });
  });
});

describe('progress line', () => {
  const p = { done: 12, total: 40, unit: 'epoch', metrics: { loss: 0.18312, val_loss: 0.19204 }, at: 1_000_000, rate: 2, etaMs: 14_000 };

  it('reads epoch n/N, the metrics in three digits, val for val_loss, and the ETA counted from the report', () => {
    expect(formatProgress(p, 1_000_000)).toBe('epoch 12/40 loss 0.183 val 0.192 eta 14s');
    expect(formatProgress(p, 1_004_000)).toBe('epoch 12/40 loss 0.183 val 0.192 eta 10s');
    expect(formatProgress({ ...p, done: 40 }, 1_000_000)).toBe('epoch 40/40 loss 0.183 val 0.192');
    expect(formatProgress({ done: 1500, at: 0, metrics: { rmse: 45825.4 } })).toBe('step 1,500 rmse 45,825');
    expect(formatProgress({ message: 'uploading model', at: 0 })).toBe('uploading model');
    expect([formatEta(125_000), formatEta(3_720_000), formatEta(-5)]).toEqual(['2m05s', '1h02m', '0s']);
  });

  it('reads heartbeat details of any shape: no progress, malformed progress, other fields', () => {
    expect(progressOfDetails({ progress: p, stepErrors: 0, checkpoint: {} }, 1_000_000)).toBe('epoch 12/40 loss 0.183 val 0.192 eta 14s');
    expect(progressOfDetails({ stepErrors: 1 })).toBeUndefined();
    expect(progressOfDetails({ progress: { done: 'x', at: 1 } })).toBeUndefined();
    expect(progressOfDetails({ progress: { at: 1, metrics: { loss: 'high' } } })).toBeUndefined();
    expect(progressOfDetails('text')).toBeUndefined();
    expect(progressOfDetails(null)).toBeUndefined();
  });

  it('shows the progress beside a running step only', () => {
    const running = { status: 'running' as const, attempt: 1 };
    expect(formatStepLine('train', running, undefined, 'epoch 12/40 loss 0.183')).toBe(
      `▶ ${'train'.padEnd(16)} running    epoch 12/40 loss 0.183`,
    );
    expect(formatStepLine('train', { status: 'succeeded', attempt: 1 }, undefined, 'epoch 12/40')).not.toContain('epoch');
    expect(formatStepLine('train', { ...running, attempt: 2, errors: 1 }, undefined, 'epoch 3/40')).toContain(
      'attempt 2 (1 error before)  · epoch 3/40',
    );
  });
});
