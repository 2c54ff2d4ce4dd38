/**
 * The error model: the code catalogue (every code the sources use is in it, and in docs/errors.md),
 * rootFailure over real Temporal failure chains, and the PipelineError -> ApplicationFailure ->
 * PipelineError round trip through Temporal's own failure converter.
 */
import { WorkflowFailedError } from '@temporalio/client';
import {
  ActivityFailure,
  ApplicationFailure,
  CancelledFailure,
  ChildWorkflowFailure,
  DefaultFailureConverter,
  defaultPayloadConverter,
  RetryState,
} from '@temporalio/common';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { countedFailure, toApplicationFailure } from '../../activities/run-step.js';
import {
  describeFailure,
  ERROR_CODES,
  errorFromFailure,
  failureOptions,
  formatZodIssues,
  isErrorCode,
  NON_RETRYABLE_CODES,
  PipelineError,
  rootFailure,
  SpecErrors,
  type ErrorCode,
} from '../../engine/errors.js';
import { REPO_ROOT } from './paths.js';

const SOURCE_DIRS = ['engine', 'adapters', 'lib', 'plugins', 'activities', 'workflows', 'serve', 'dev', 'ui', 'app', 'cli'];

function sources(): { file: string; text: string }[] {
  const out: { file: string; text: string }[] = [];
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else if (name.endsWith('.ts')) out.push({ file: relative(REPO_ROOT, path), text: readFileSync(path, 'utf8') });
    }
  };
  for (const d of SOURCE_DIRS) walk(join(REPO_ROOT, d));
  return out;
}

/** Every error code the sources name where an error is made, matched, or told to Temporal. */
function codesUsed(): Map<string, string> {
  const used = new Map<string, string>();
  const code = String.raw`'([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*)'`;
  const patterns = [
    // new PipelineError('CODE', ...), super('CODE', ...), httpError('CODE', ...)
    new RegExp(String.raw`(?:new PipelineError|super|httpError)\(\s*${code}`, 'g'),
    // ApplicationFailure.retryable(message, 'CODE') / .nonRetryable(message, 'CODE')
    new RegExp(String.raw`ApplicationFailure\.(?:retryable|nonRetryable)\([^;]*?,\s*${code}\s*\)`, 'g'),
    // ApplicationFailure.create({ type: 'CODE' ... })
    new RegExp(String.raw`ApplicationFailure\.create\(\{[^}]*?type:\s*${code}`, 'g'),
    // e.code === 'CODE', e.code !== 'CODE'
    new RegExp(String.raw`\.code\s*[!=]==\s*${code}`, 'g'),
    // the prediction server's answers: { error: 'CODE' }
    new RegExp(String.raw`\berror:\s*${code}`, 'g'),
  ];
  for (const { file, text } of sources()) {
    if (file === join('engine', 'errors.ts')) continue;
    for (const re of patterns) for (const m of text.matchAll(re)) used.set(m[1]!, file);
    // nonRetryableErrorTypes: [...] and ['A', 'B'].includes(e.code): every literal in the list.
    for (const m of text.matchAll(/(?:nonRetryableErrorTypes:\s*\[([^\]]*)\]|\[([^\]]*)\]\.includes\(e\.code\))/g)) {
      for (const lit of (m[1] ?? m[2] ?? '').matchAll(/'([^']+)'/g)) used.set(lit[1]!, file);
    }
  }
  return used;
}

describe('the code catalogue', () => {
  const used = codesUsed();

  it('holds every code the sources use', () => {
    // Found across the layers: the scan is not vacuous.
    for (const c of [
      'SPEC_INVALID',
      'INPUT_INVALID',
      'STORAGE_RECORD_CORRUPT',
      'HPO_FAILED',
      'ALERT_FAILED',
      'INTERNAL',
      'INVALID_INPUT',
      'METHOD_NOT_ALLOWED',
      'TRACKING_ERROR',
      'SERVICE_UNAVAILABLE',
    ])
      expect(used.has(c), c).toBe(true);
    // Not ours: Temporal's type for an activity the worker does not have, Node's system error codes (ENOENT).
    const foreign = (c: string): boolean => c === 'NotFoundError' || /^E[A-Z]+$/.test(c);
    const outside = [...used].filter(([c]) => !isErrorCode(c) && !foreign(c)).map(([c, file]) => `${c} (${file})`);
    expect(outside).toEqual([]);
  });

  it('has no code the sources never name', () => {
    const named = new Set<string>();
    for (const { file, text } of sources())
      if (file !== join('engine', 'errors.ts')) for (const m of text.matchAll(/'([A-Z][A-Z0-9_]+)'/g)) named.add(m[1]!);
    expect(Object.keys(ERROR_CODES).filter((c) => !named.has(c))).toEqual([]);
  });

  it('derives NON_RETRYABLE_CODES and the default retryability from it', () => {
    expect([...NON_RETRYABLE_CODES].sort()).toEqual(
      Object.entries(ERROR_CODES)
        .filter(([, i]) => !i.retryable)
        .map(([c]) => c)
        .sort(),
    );
    for (const c of [
      'SPEC_INVALID',
      'PLUGIN_PARAMS',
      'QUALITY_GATE',
      'STORAGE_DIGEST_MISMATCH',
      'HPO_FAILED',
      'INPUT_INVALID',
    ] as ErrorCode[])
      expect(NON_RETRYABLE_CODES).toContain(c);
    for (const c of ['STEP_FAILED', 'STORAGE_ERROR', 'SERVICE_UNAVAILABLE', 'TRACKING_ERROR', 'ALERT_FAILED'] as ErrorCode[])
      expect(NON_RETRYABLE_CODES).not.toContain(c);
    expect(new PipelineError('DATA_INVALID', 'x').retryable).toBe(false);
    expect(new PipelineError('STORAGE_ERROR', 'x').retryable).toBe(true);
    expect(new PipelineError('STEP_FAILED', 'x', { retryable: false }).retryable).toBe(false);
    // A plugin's own code: retried unless it says otherwise.
    expect(new PipelineError('acme/FORECAST_HORIZON', 'x')).toMatchObject({ code: 'acme/FORECAST_HORIZON', retryable: true });
    expect(isErrorCode('acme/FORECAST_HORIZON')).toBe(false);
  });

  it('is documented in docs/errors.md, code by code, with its retryability and HTTP status', () => {
    const doc = readFileSync(join(REPO_ROOT, 'docs', 'errors.md'), 'utf8');
    const rows = new Map(
      [...doc.matchAll(/^\| `([A-Z_]+)` \| (yes|no) \| (\d*) ?\|/gm)].map((m) => [
        m[1]!,
        { retryable: m[2] === 'yes', httpStatus: m[3] ? Number(m[3]) : undefined },
      ]),
    );
    expect(
      Object.fromEntries(
        Object.entries(ERROR_CODES).map(([c, i]) => [
          c,
          { retryable: i.retryable, httpStatus: 'httpStatus' in i ? i.httpStatus : undefined },
        ]),
      ),
    ).toEqual(Object.fromEntries(rows));
  });
});

describe('rootFailure', () => {
  const app = ApplicationFailure.create({ type: 'DATA_INVALID', message: 'bad rows', nonRetryable: true, cause: new Error('inner') });
  const activity = (cause?: Error) =>
    new ActivityFailure('Activity task failed', 'runStep', 'train', RetryState.NON_RETRYABLE_FAILURE, 'worker-1', cause);
  const child = (cause?: Error) =>
    new ChildWorkflowFailure(
      'default',
      { workflowId: 'hpo/trial-1', runId: 'r1' },
      'pipelineWorkflow',
      RetryState.NON_RETRYABLE_FAILURE,
      cause,
    );

  it('unwraps ActivityFailure, ChildWorkflowFailure and WorkflowFailedError, however nested', () => {
    expect(rootFailure(activity(app))).toBe(app);
    expect(rootFailure(child(app))).toBe(app);
    expect(rootFailure(child(activity(app)))).toBe(app);
    const wf = new WorkflowFailedError('Workflow execution failed', child(activity(app)), RetryState.NON_RETRYABLE_FAILURE);
    expect(rootFailure(wf)).toBe(app);
    expect(describeFailure(wf)).toEqual({ type: 'DATA_INVALID', message: 'bad rows' });
  });

  it('stops at the failure that says what went wrong: it does not walk into its cause', () => {
    expect(rootFailure(app)).toBe(app);
    const cancelled = new CancelledFailure('step cancelled');
    expect(rootFailure(activity(cancelled))).toBe(cancelled);
    expect(describeFailure(child(cancelled))).toEqual({ type: 'CancelledFailure', message: 'step cancelled' });
  });

  it('returns a wrapper without a cause, other errors and non-errors as they are', () => {
    const bare = activity();
    expect(rootFailure(bare)).toBe(bare);
    const plain = new Error('boom');
    expect(rootFailure(plain)).toBe(plain);
    expect(rootFailure('text')).toBe('text');
    expect(rootFailure(undefined)).toBeUndefined();
    expect(describeFailure(plain)).toEqual({ type: 'Error', message: 'boom' });
    expect(describeFailure('text')).toEqual({ message: 'text' });
    expect(describeFailure(ApplicationFailure.create({ message: 'untyped' }))).toEqual({ message: 'untyped' });
  });

  it('unwraps a chain as the client receives it, decoded by Temporal’s failure converter', () => {
    const converter = new DefaultFailureConverter();
    const decoded = converter.failureToError(
      converter.errorToFailure(child(activity(app)), defaultPayloadConverter),
      defaultPayloadConverter,
    );
    expect(decoded).toBeInstanceOf(ChildWorkflowFailure);
    const root = rootFailure(decoded);
    expect(root).toBeInstanceOf(ApplicationFailure);
    expect(root).toMatchObject({ type: 'DATA_INVALID', message: 'bad rows', nonRetryable: true });
  });
});

describe('PipelineError <-> ApplicationFailure', () => {
  const converter = new DefaultFailureConverter();
  /** What a workflow sees of an activity's failure: encoded, sent, decoded inside an ActivityFailure. */
  const overTheWire = (failure: Error): Error => {
    const wrapped = new ActivityFailure(
      'Activity task failed',
      'compilePipeline',
      '1',
      RetryState.NON_RETRYABLE_FAILURE,
      'worker-1',
      failure,
    );
    return converter.failureToError(converter.errorToFailure(wrapped, defaultPayloadConverter), defaultPayloadConverter);
  };

  it('carries code, message, where, hint, retryable and details in the failure, and reads them back', () => {
    const e = new PipelineError('PLUGIN_PARAMS', "'epochs' must be a number.", {
      where: { file: 'pipelines/train.yaml', line: 7, column: 9, path: ['steps', 'train', 'with', 'epochs'] },
      hint: 'Write a whole number.',
      details: { step: 'train' },
    });
    const f = toApplicationFailure(e) as ApplicationFailure;
    expect(f).toBeInstanceOf(ApplicationFailure);
    expect(f).toMatchObject({ type: 'PLUGIN_PARAMS', nonRetryable: true });
    // The message users see: where, the problem, the hint.
    expect(f.message).toBe(
      "pipelines/train.yaml:7:9 at steps.train.with.epochs: 'epochs' must be a number.\n  hint: Write a whole number.",
    );
    const back = errorFromFailure(overTheWire(f));
    expect(back).toBeInstanceOf(PipelineError);
    expect({
      code: back!.code,
      message: back!.message,
      where: back!.where,
      hint: back!.hint,
      retryable: back!.retryable,
      details: back!.details,
    }).toEqual({
      code: e.code,
      message: e.message,
      where: e.where,
      hint: e.hint,
      retryable: false,
      details: { step: 'train' },
    });
    expect(back!.format()).toBe(e.format());
  });

  it('keeps an override of the retryability, and a retryable code retryable', () => {
    const final = toApplicationFailure(new PipelineError('STEP_FAILED', 'job ended FAILED', { retryable: false })) as ApplicationFailure;
    expect(final.nonRetryable).toBe(true);
    expect(errorFromFailure(overTheWire(final))).toMatchObject({ code: 'STEP_FAILED', retryable: false });
    const again = toApplicationFailure(new PipelineError('STORAGE_ERROR', 'GCS upload failed')) as ApplicationFailure;
    expect(again).toMatchObject({ type: 'STORAGE_ERROR', nonRetryable: false, message: 'GCS upload failed' });
    expect(errorFromFailure(overTheWire(again))).toMatchObject({ code: 'STORAGE_ERROR', retryable: true });
  });

  it("carries a plugin's own code (<namespace>/<CODE>) through the failure converter: retried unless the error says otherwise", () => {
    const e = new PipelineError('acme/FORECAST_HORIZON', 'A 400-day horizon is beyond the 90 days of data.', {
      hint: 'Set horizon to 90 or less.',
      details: { horizon: 400, days: 90 },
    });
    const f = toApplicationFailure(e) as ApplicationFailure;
    expect(f).toMatchObject({ type: 'acme/FORECAST_HORIZON', nonRetryable: false });
    const back = errorFromFailure(overTheWire(f))!;
    expect(back).toBeInstanceOf(PipelineError);
    expect({ code: back.code, message: back.message, hint: back.hint, retryable: back.retryable, details: back.details }).toEqual({
      code: 'acme/FORECAST_HORIZON',
      message: e.message,
      hint: e.hint,
      retryable: true,
      details: { horizon: 400, days: 90 },
    });
    // As runStep counts it: retried with the step's backoff, final at maximumAttempts, its type kept.
    const retried = countedFailure(f, 1, { maximumAttempts: 3 }) as ApplicationFailure;
    expect(retried).toMatchObject({ type: 'acme/FORECAST_HORIZON', nonRetryable: false });
    expect(countedFailure(f, 3, { maximumAttempts: 3 })).toMatchObject({ type: 'acme/FORECAST_HORIZON', nonRetryable: true });
    expect(errorFromFailure(overTheWire(countedFailure(f, 3, { maximumAttempts: 3 })))).toMatchObject({ code: 'acme/FORECAST_HORIZON' });
    // retryable: false makes it final at once.
    const final = toApplicationFailure(new PipelineError('acme/REGION_CLOSED', 'Region eu-x is closed.', { retryable: false }));
    expect(final).toMatchObject({ type: 'acme/REGION_CLOSED', nonRetryable: true });
    expect(countedFailure(final, 1, { maximumAttempts: 3 })).toBe(final);
    expect(errorFromFailure(overTheWire(final))).toMatchObject({ code: 'acme/REGION_CLOSED', retryable: false });
  });

  it('says where an override problem is, and lists several problems once', () => {
    const override = toApplicationFailure(
      new PipelineError('OVERRIDE_UNKNOWN_KEY', "No key 'model.hiden'.", { where: { file: '<overrides>', path: [1] } }),
    );
    expect(override.message).toBe("override #2: No key 'model.hiden'.");
    const many = new SpecErrors([
      new PipelineError('SPEC_UNKNOWN_KEY', "Unknown key 'stpes'.", { where: { file: 'p.yaml', line: 2, column: 1 } }),
      new PipelineError('DAG_CYCLE', 'a -> b -> a', { where: { file: 'p.yaml', line: 5 } }),
    ]);
    const f = toApplicationFailure(many) as ApplicationFailure;
    expect(f.type).toBe('SPEC_UNKNOWN_KEY');
    expect(f.message).toBe(
      "2 problems found:\n\np.yaml:2:1\n  error SPEC_UNKNOWN_KEY: Unknown key 'stpes'.\n\np.yaml:5\n  error DAG_CYCLE: a -> b -> a",
    );
    expect(errorFromFailure(overTheWire(f))).toMatchObject({ code: 'SPEC_UNKNOWN_KEY', where: { file: 'p.yaml', line: 2, column: 1 } });
  });

  it('builds the same failure in workflow code from failureOptions', () => {
    const e = new PipelineError('HPO_FAILED', 'No trial produced the metric.');
    const f = ApplicationFailure.create(failureOptions(e));
    expect(f).toMatchObject({ type: 'HPO_FAILED', nonRetryable: true, message: 'No trial produced the metric.' });
    expect(errorFromFailure(f)).toMatchObject({ code: 'HPO_FAILED', message: 'No trial produced the metric.', retryable: false });
  });

  it('reads no PipelineError from other failures', () => {
    expect(errorFromFailure(ApplicationFailure.create({ type: 'X', message: 'm', details: [1] }))).toBeUndefined();
    // Details that are not the fields of this failure's code.
    expect(
      errorFromFailure(
        ApplicationFailure.create({
          type: 'DATA_INVALID',
          message: 'm',
          details: [{ code: 'SPEC_INVALID', message: 'm', retryable: false }],
        }),
      ),
    ).toBeUndefined();
    expect(errorFromFailure(new Error('plain'))).toBeUndefined();
    expect(errorFromFailure(undefined)).toBeUndefined();
    // Other errors go to Temporal as they are.
    const plain = new Error('boom');
    expect(toApplicationFailure(plain)).toBe(plain);
  });
});

describe('formatZodIssues', () => {
  it('puts every issue on one line, with its path, or the name of the root', () => {
    const schema = z.strictObject({
      pipeline: z.string(),
      overrides: z.array(z.string()).optional(),
      limits: z.object({ n: z.number().min(1) }),
    });
    const r = schema.safeParse({ pipeline: 3, overrides: ['a', 7], limits: { n: 0 }, extra: true });
    expect(r.success).toBe(false);
    expect(formatZodIssues(r.error!.issues, '(input)')).toBe(
      'pipeline: Invalid input: expected string, received number; overrides.1: Invalid input: expected string, received number; limits.n: Too small: expected number to be >=1; (input): Unrecognized key: "extra"',
    );
    const whole = z.number().int().safeParse('x');
    expect(formatZodIssues(whole.error!.issues, 'options')).toBe('options: Invalid input: expected number, received string');
    expect(formatZodIssues(whole.error!.issues)).toBe('Invalid input: expected number, received string');
  });
});
