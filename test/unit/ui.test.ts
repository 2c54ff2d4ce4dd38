/** The web UI's pure parts: what previews make of JSON, run comparison, history decoding, request checks. */
import { defaultPayloadConverter } from '@temporalio/common';
import { describe, expect, it } from 'vitest';
import { checkDigest, downloadName, jsonPreview } from '../../ui/artifacts.js';
import { compareRuns } from '../../ui/compare.js';
import { parseHistory, UiRequestError, type UiRun } from '../../ui/runs.js';

describe('artifact previews', () => {
  it('reads a training history as loss curves', () => {
    const p = jsonPreview([
      { epoch: 1, loss: 2, valLoss: 2.5, lr: 0.01 },
      { epoch: 2, loss: 1, val_loss: 1.5, lr: 0.01 },
    ]);
    expect(p).toEqual({
      kind: 'history',
      points: [
        { epoch: 1, loss: 2, valLoss: 2.5 },
        { epoch: 2, loss: 1, valLoss: 1.5 },
      ],
    });
  });
  it('reads flat metrics and model-against-baseline metrics as tables, other JSON as JSON', () => {
    expect(jsonPreview({ rmse: 3, r2: 0.8 })).toMatchObject({
      kind: 'metrics',
      table: [{ metric: 'rmse', values: { value: 3 } }, { metric: 'r2' }],
    });
    const ev = jsonPreview({ metrics: { model: { rmse: 1, mae: 2 }, baseline: { rmse: 4, mae: 5 } } });
    expect(ev).toMatchObject({ kind: 'metrics', table: [{ metric: 'rmse', values: { model: 1, baseline: 4 } }, { metric: 'mae' }] });
    expect(jsonPreview({ message: 'hi' }).kind).toBe('json');
  });
  it('refuses anything but a 64-hex digest and makes safe download names', () => {
    for (const bad of ['..', '../../etc/passwd', 'A'.repeat(64), `${'a'.repeat(63)}/`, ''])
      expect(() => checkDigest(bad)).toThrow(UiRequestError);
    expect(checkDigest('a'.repeat(64))).toBe('a'.repeat(64));
    const ref = { kind: 'artifact' as const, uri: '', sha256: 'b'.repeat(64), size: 1, mediaType: 'x' };
    expect(downloadName({ ...ref, name: '../../evil"\r\n.sh' })).toBe('_.._evil_.sh');
    expect(downloadName(ref)).toBe('bbbbbbbbbbbb.bin');
  });
});

describe('run comparison', () => {
  const run = (id: string, lr: number, rmse: number): UiRun => ({
    workflowId: id,
    runId: `${id}-r`,
    pipeline: 'p',
    temporalStatus: 'COMPLETED',
    state: 'succeeded',
    labels: {},
    overrides: [`training.lr=${lr}`],
    params: { target: 'y' },
    startedAt: '2026-01-01T00:00:00Z',
    order: ['train'],
    steps: {
      train: {
        id: 'train',
        needs: [],
        status: 'succeeded',
        attempt: 1,
        failures: [],
        params: { lr, epochs: 5 },
        outputs: { metrics: { rmse } },
      },
    },
  });
  it('shows only the params that differ, and every metric', () => {
    const c = compareRuns([run('a', 0.1, 3), run('b', 0.2, 2)]);
    expect(c.params.map((p) => p.path)).toEqual(['overrides', 'steps.train.lr']);
    expect(c.params[1]!.values).toEqual(['0.1', '0.2']);
    expect(c.metrics).toEqual([{ path: 'train.metrics.rmse', values: [3, 2] }]);
  });
});

describe('history decoding', () => {
  const payload = (v: unknown): unknown => defaultPayloadConverter.toPayload(v);
  it('takes the compiled pipeline, step calls, attempts and failure messages from the events', () => {
    const compiled = { name: 'p', order: ['a'], steps: { a: { id: 'a', uses: 'util.echo', pluginVersion: '1', needs: [], with: {} } } };
    const h = parseHistory([
      {
        eventId: '1',
        workflowExecutionStartedEventAttributes: { input: { payloads: [payload({ pipeline: 'p', labels: { owner: 'ana' } })] } },
      },
      { eventId: '5', activityTaskScheduledEventAttributes: { activityId: '1', activityType: { name: 'compilePipeline' } } },
      { eventId: '7', activityTaskCompletedEventAttributes: { scheduledEventId: '5', result: { payloads: [payload(compiled)] } } },
      {
        eventId: '9',
        activityTaskScheduledEventAttributes: {
          activityId: 'a',
          activityType: { name: 'runStep' },
          input: { payloads: [payload({ stepId: 'a', params: { x: 1 } })] },
        },
      },
      {
        eventId: '10',
        activityTaskStartedEventAttributes: {
          scheduledEventId: '9',
          attempt: 3,
          lastFailure: { message: 'outer', cause: { message: 'boom', applicationFailureInfo: { type: 'X' } } },
        },
      },
      { eventId: '11', activityTaskFailedEventAttributes: { scheduledEventId: '9', failure: { message: 'final' } } },
    ]);
    expect(h.input?.labels).toEqual({ owner: 'ana' });
    expect(h.compiled?.order).toEqual(['a']);
    expect(h.calls['a']?.params).toEqual({ x: 1 });
    expect(h.attempts['a']).toBe(3);
    expect(h.failures['a']).toEqual([
      { attempt: 2, type: 'X', message: 'boom' },
      { attempt: 3, message: 'final' },
    ]);
  });

  it('takes the compiled pipeline from the local activity marker of runs that compile locally', () => {
    const compiled = { name: 'p', order: ['a'], steps: {} };
    const marker = (activityType: string, result: unknown) => ({
      markerRecordedEventAttributes: {
        markerName: 'core_local_activity',
        details: {
          data: { payloads: [payload({ seq: 1, attempt: 1, activityId: '1', activityType })] },
          result: { payloads: [payload(result)] },
        },
      },
    });
    expect(parseHistory([{ eventId: '5', ...marker('compilePipeline', compiled) }]).compiled?.order).toEqual(['a']);
    expect(parseHistory([{ eventId: '5', ...marker('other', compiled) }]).compiled).toBeUndefined();
  });
});

describe('history decoding in batches', () => {
  const payload = (v: unknown): unknown => defaultPayloadConverter.toPayload(v);
  it('adds later events to what it decoded (as the history long poll delivers them), the same as decoding all at once', () => {
    const events = [
      {
        eventId: '5',
        activityTaskScheduledEventAttributes: {
          activityId: 'a',
          activityType: { name: 'runStep' },
          input: { payloads: [payload({ stepId: 'a' })] },
        },
      },
      { eventId: '6', activityTaskScheduledEventAttributes: { activityId: 'b', activityType: { name: 'runStep' } } },
      {
        eventId: '8',
        activityTaskCompletedEventAttributes: {
          scheduledEventId: '5',
          result: { payloads: [payload({ outputs: { x: 1 }, cached: false })] },
        },
      },
      {
        eventId: '9',
        activityTaskCompletedEventAttributes: { scheduledEventId: '6', result: { payloads: [payload({ outputs: {}, cached: true })] } },
      },
    ];
    const whole = parseHistory(events);
    const part = parseHistory(events.slice(0, 1));
    expect(part.results).toEqual({});
    parseHistory(events.slice(1, 3), part);
    expect(Object.keys(part.results)).toEqual(['a']);
    parseHistory(events.slice(3), part);
    expect(part).toEqual(whole);
    expect(part.length).toBe(4);
    expect(part.results['b']?.cached).toBe(true);
  });
});
