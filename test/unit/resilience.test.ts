/**
 * The retry model's pure parts: step defaults and the heartbeat default, how a step error becomes a
 * Temporal failure (counted, backed off, final at maximumAttempts), waiting out an unreachable
 * service (a store's calls included), and the MLflow and GCS classifications of unreachable vs rejected.
 */
import { ApplicationFailure } from '@temporalio/common';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { countedFailure } from '../../activities/run-step.js';
import { formatStepLine } from '../../cli/render.js';
import { isGcsUnavailable } from '../../adapters/gcs-store.js';
import { LocalArtifactStore } from '../../adapters/local-store.js';
import { isMlflowUnavailable, MlflowError, MlflowInvalidParameter } from '../../adapters/mlflow/rest.js';
import { compilePipeline } from '../../engine/compile.js';
import { PipelineError, SpecErrors } from '../../engine/errors.js';
import type { ArtifactStore, ModelRegistry, ModelVersionInfo } from '../../engine/ports.js';
import { ServiceUnavailable, untilAvailable, waitingStore } from '../../engine/service-wait.js';
import { defaultHeartbeatMs, errorRetryDelayMs, STEP_DEFAULTS, STEP_HEARTBEAT_DEFAULT_MS } from '../../engine/step-defaults.js';
import { mlflowRegister } from '../../plugins/deploy/mlflow-register.js';
import { createDefaultRegistry } from '../../plugins/index.js';
import { definePlugin } from '../../plugins/sdk.js';
import { memoryConf } from './fakes.js';
import { runPlugin, testContext } from './step-context.js';

const busy = definePlugin({
  name: 'test.busy',
  version: '1',
  description: 'Blocks the event loop for up to 20 s at a time.',
  params: z.object({}).strict(),
  outputs: { done: 'json' },
  heartbeat: { blocksEventLoopMs: 20_000 },
  run: async () => ({ done: true }),
});
const catalog = createDefaultRegistry([busy]);

function compile(steps: string, defaults = '') {
  const text = `name: t\n${defaults}steps:\n${steps}`;
  return compilePipeline({ file: 'pipelines/t.yaml', text, conf: memoryConf({}), catalog, overrides: [] });
}

function problems(steps: string): { code: string; path?: string; message: string }[] {
  try {
    compile(steps);
  } catch (e) {
    const list = e instanceof SpecErrors ? e.problems : [e as PipelineError];
    return list.map((p) => ({ code: p.code, path: p.where?.path?.join('.'), message: p.message }));
  }
  throw new Error('expected the compile to fail');
}

describe('step defaults', () => {
  it('gives every step a heartbeat timeout: 30 s, three times what a plugin blocks the event loop, or what the step says', () => {
    const c = compile(
      [
        '  a: { uses: util.echo }',
        '  b: { uses: test.busy }',
        '  c: { uses: test.busy, heartbeat: 5s }',
        '  d: { uses: util.echo }',
        '',
      ].join('\n'),
      'stepDefaults: { heartbeat: 45s }\n',
    );
    expect(c.steps['a']!.heartbeatMs).toBe(45_000);
    const plain = compile('  a: { uses: util.echo }\n  b: { uses: test.busy }\n  c: { uses: test.busy, heartbeat: 5s }\n');
    expect(plain.steps['a']!.heartbeatMs).toBe(STEP_HEARTBEAT_DEFAULT_MS);
    expect(plain.steps['b']!.heartbeatMs).toBe(60_000);
    expect(plain.steps['c']!.heartbeatMs).toBe(5_000);
    expect(defaultHeartbeatMs(undefined)).toBe(30_000);
    expect(defaultHeartbeatMs(5_000)).toBe(30_000);
  });

  it('compiles maximumInfraAttempts and serviceWait, and rejects bad values with their key path', () => {
    const c = compile('  a: { uses: util.echo, retry: { maximumAttempts: 2, maximumInfraAttempts: 7, serviceWait: 2h } }\n');
    expect(c.steps['a']!.retry).toMatchObject({ maximumAttempts: 2, maximumInfraAttempts: 7, serviceWaitMs: 7_200_000 });
    const bad = problems('  a: { uses: util.echo, retry: { maximumInfraAttempts: -1, serviceWait: soon } }\n');
    expect(bad.map((p) => p.path).sort()).toEqual(['steps.a.retry.maximumInfraAttempts', 'steps.a.retry.serviceWait']);
    const typo = problems('  a: { uses: util.echo, retry: { maximumInfraAttempt: 3 } }\n');
    expect(typo[0]).toMatchObject({ code: 'SPEC_UNKNOWN_KEY', path: 'steps.a.retry.maximumInfraAttempt' });
    expect(typo[0]!.message).toContain('maximumInfraAttempts');
  });
});

describe('step errors', () => {
  const retry = { maximumAttempts: 3, initialIntervalMs: 2000, backoffCoefficient: 3, maximumIntervalMs: 10_000 };

  it('backs off with the step policy and turns final at maximumAttempts', () => {
    expect([1, 2, 3, 4].map((n) => errorRetryDelayMs(n, retry))).toEqual([2000, 6000, 10_000, 10_000]);
    expect(errorRetryDelayMs(1, {})).toBe(STEP_DEFAULTS.initialIntervalMs);
    const first = countedFailure(new Error('boom'), 1, retry) as ApplicationFailure;
    expect(first).toBeInstanceOf(ApplicationFailure);
    expect(first).toMatchObject({ type: 'Error', message: 'boom', nonRetryable: false });
    expect(first.nextRetryDelay).toBe(2000);
    const second = countedFailure(ApplicationFailure.create({ type: 'X', message: 'again', details: [1] }), 2, retry) as ApplicationFailure;
    expect(second).toMatchObject({ type: 'X', nonRetryable: false, nextRetryDelay: 6000, details: [1] });
    const last = countedFailure(ApplicationFailure.create({ type: 'X', message: 'third' }), 3, retry) as ApplicationFailure;
    expect(last).toMatchObject({ type: 'X', message: 'third', nonRetryable: true });
    expect(last.nextRetryDelay).toBeUndefined();
  });

  it('shows errors and lost attempts apart in the step line', () => {
    expect(formatStepLine('train', { status: 'running', attempt: 4, errors: 1 })).toContain('attempt 4 (1 error, 2 lost before)');
    expect(formatStepLine('train', { status: 'running', attempt: 3, errors: 2 })).toContain('attempt 3 (2 errors before)');
    expect(formatStepLine('train', { status: 'succeeded', attempt: 6, errors: 0 })).toContain('attempt 6 (5 lost before)');
    // What the attempt waits for, from its heartbeat details, without the error after it.
    const waiting =
      'waiting for MLflow at http://127.0.0.1:5000 (unreachable for 2m10s): MLflow at http://127.0.0.1:5000 unreachable (ECONNREFUSED)';
    expect(formatStepLine('register', { status: 'running', attempt: 2, errors: 0 }, waiting)).toMatch(
      /register\s+running\s+attempt 2 \(1 lost before\)  · waiting for MLflow at http:\/\/127\.0\.0\.1:5000 \(unreachable for 2m10s\)$/,
    );
    expect(formatStepLine('register', { status: 'running', attempt: 1 }, waiting)).toMatch(
      /running\s+waiting for MLflow at http:\/\/127\.0\.0\.1:5000 \(unreachable for 2m10s\)$/,
    );
    expect(formatStepLine('register', { status: 'succeeded', attempt: 1 }, waiting)).not.toContain('waiting');
  });

  it('leaves non-retryable failures and the step’s non-retryable types as they are', () => {
    const gate = ApplicationFailure.create({ type: 'QUALITY_GATE', message: 'missed', nonRetryable: true });
    expect(countedFailure(gate, 1, retry)).toBe(gate);
    const typed = ApplicationFailure.create({ type: 'MY_FATAL', message: 'no' });
    expect(countedFailure(typed, 1, { ...retry, nonRetryableErrorTypes: ['MY_FATAL'] })).toBe(typed);
  });
});

describe('waiting for a service', () => {
  function clock(start = 1_000_000) {
    let t = start;
    return { now: () => t, sleep: async (ms: number) => void (t += ms), advance: (ms: number) => void (t += ms) };
  }
  const down = new MlflowError('MLflow at http://x unreachable (ECONNREFUSED)', 'NETWORK');

  it('tries again with capped backoff while the service is unreachable, reporting what it waits for', async () => {
    const c = clock();
    let calls = 0;
    const waits: string[] = [];
    const result = await untilAvailable(
      async () => {
        if (++calls < 8) throw down;
        return 'ok';
      },
      {
        service: 'MLflow',
        location: 'http://x',
        isUnavailable: isMlflowUnavailable,
        boundMs: 3_600_000,
        now: c.now,
        sleep: c.sleep,
        random: () => 1,
        onWaiting: (w) => waits.push(w.message),
        maxDelayMs: 20_000,
      },
    );
    expect(result).toBe('ok');
    expect(calls).toBe(8);
    expect(waits).toHaveLength(7);
    expect(waits[0]).toMatch(/^waiting for MLflow at http:\/\/x \(unreachable for 0ms\): MLflow at http:\/\/x unreachable/);
    // 1, 2, 4, 8, 16, then capped at 20 s.
    expect(c.now() - 1_000_000).toBe(1000 + 2000 + 4000 + 8000 + 16_000 + 20_000 + 20_000);
  });

  it('throws a rejection at once, fails for good past the bound, and ends the attempt before its deadline', async () => {
    const rejected = new MlflowInvalidParameter('bad name', 'INVALID_PARAMETER_VALUE', 400);
    let calls = 0;
    await expect(
      untilAvailable(async () => Promise.reject(rejected).finally(() => calls++), {
        service: 'MLflow',
        isUnavailable: isMlflowUnavailable,
        boundMs: 1e9,
      }),
    ).rejects.toBe(rejected);
    expect(calls).toBe(1);

    const c = clock();
    const past = untilAvailable(() => Promise.reject(down), {
      service: 'MLflow',
      isUnavailable: isMlflowUnavailable,
      boundMs: 60_000,
      since: c.now() - 61_000,
      now: c.now,
      sleep: c.sleep,
    });
    await expect(past).rejects.toMatchObject({ code: 'SERVICE_UNAVAILABLE', retryable: false });
    await expect(past).rejects.toThrow(/unreachable for 1m1s, longer than the step waits \(retry\.serviceWait 1m\)/);

    const since = c.now() - 5000;
    const ending = untilAvailable(() => Promise.reject(down), {
      service: 'MLflow',
      isUnavailable: isMlflowUnavailable,
      boundMs: 3_600_000,
      since,
      attemptDeadline: c.now() + 10_000,
      now: c.now,
      sleep: c.sleep,
    });
    const err = await ending.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ServiceUnavailable);
    expect(err).toMatchObject({ code: 'SERVICE_UNAVAILABLE', retryable: true, since });
  });

  it('classifies MLflow errors: no connection, timeouts, 408, 429 and 5xx are unreachable; 4xx and other errors are not', () => {
    expect(isMlflowUnavailable(down)).toBe(true);
    expect(isMlflowUnavailable(new MlflowError('t', 'TIMEOUT', undefined, true))).toBe(true);
    for (const status of [408, 429, 500, 502, 503, 504])
      expect(isMlflowUnavailable(new MlflowError('x', `HTTP_${status}`, status))).toBe(true);
    for (const status of [400, 401, 403, 404, 409]) expect(isMlflowUnavailable(new MlflowError('x', `HTTP_${status}`, status))).toBe(false);
    expect(isMlflowUnavailable(new Error('ECONNREFUSED'))).toBe(false);
  });

  it('classifies GCS errors: no connection, cut connections, timeouts, 408, 429 and 5xx are unreachable; 4xx and the store’s own verdicts are not', () => {
    const api = (code: number, message = `HTTP ${code}`) => Object.assign(new Error(message), { code, errors: [{ reason: 'x', message }] });
    const net = (code: string) =>
      Object.assign(new Error(`request to http://127.0.0.1:4443/storage/v1/b/b/o failed, reason: ${code}`), { code });
    const wrapped = (cause: unknown) => new PipelineError('STORAGE_ERROR', 'GCS upload failed for gs://b/p: ...', { cause });
    for (const c of ['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EAI_AGAIN', 'UND_ERR_SOCKET', 'ERR_STREAM_PREMATURE_CLOSE']) {
      expect(isGcsUnavailable(net(c)), c).toBe(true);
      expect(isGcsUnavailable(wrapped(net(c))), `wrapped ${c}`).toBe(true);
    }
    for (const status of [408, 429, 500, 502, 503, 504]) expect(isGcsUnavailable(wrapped(api(status))), String(status)).toBe(true);
    for (const status of [400, 401, 403, 404, 409, 412]) expect(isGcsUnavailable(wrapped(api(status))), String(status)).toBe(false);
    // A 403 says no even when its message mentions a reset; a gaxios response status counts like a code.
    expect(isGcsUnavailable(api(403, 'socket hang up, then ECONNRESET'))).toBe(false);
    expect(isGcsUnavailable(Object.assign(new Error('x'), { response: { status: 503 } }))).toBe(true);
    // The library's connection reasons, and node-fetch's timeout.
    expect(isGcsUnavailable(Object.assign(new Error('retry'), { errors: [{ reason: 'unexpected connection closure' }] }))).toBe(true);
    expect(isGcsUnavailable(Object.assign(new Error('network timeout at: http://x'), { type: 'request-timeout' }))).toBe(true);
    expect(isGcsUnavailable(new Error('socket hang up'))).toBe(true);
    // The store's own verdicts, and errors that say nothing about the connection.
    expect(isGcsUnavailable(new PipelineError('STORAGE_DIGEST_MISMATCH', 'corrupt ECONNRESET'))).toBe(false);
    expect(isGcsUnavailable(new PipelineError('STORAGE_NOT_FOUND', 'gone', { cause: net('ECONNREFUSED') }))).toBe(false);
    expect(isGcsUnavailable(wrapped(new Error('Invalid bucket name')))).toBe(false);
    expect(isGcsUnavailable(new SyntaxError('Unexpected token'))).toBe(false);
    expect(isGcsUnavailable('ECONNREFUSED')).toBe(false);
    expect(isGcsUnavailable(undefined)).toBe(false);
    // A cause chain that loops ends.
    const a = new Error('a') as Error & { cause?: unknown };
    a.cause = a;
    expect(isGcsUnavailable(a)).toBe(false);
  });

  it('makes every store call of a step wait while the store’s service is unreachable; a store without one is used as it is', async () => {
    const local = new LocalArtifactStore(mkdtempSync(join(tmpdir(), 'mlpipe-wait-store-')));
    const wait = <T>(fn: () => Promise<T>): Promise<T> => fn();
    expect(waitingStore(local, wait)).toBe(local);

    // A store whose calls fail as GCS does while it is down, until `up` is set.
    let up = false;
    const down = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:4443'), { code: 'ECONNREFUSED' });
    const service = { name: 'GCS', location: 'http://127.0.0.1:4443', isUnavailable: isGcsUnavailable };
    const flaky = new Proxy(local, {
      get(target, prop, receiver) {
        if (prop === 'service') return service;
        const v = Reflect.get(target, prop, receiver) as unknown;
        if (typeof v !== 'function') return v;
        return (...args: unknown[]) =>
          up
            ? (v as (...a: unknown[]) => unknown).apply(target, args)
            : Promise.reject(new PipelineError('STORAGE_ERROR', 'GCS upload failed', { cause: down }));
      },
    }) as ArtifactStore;
    const c = clock();
    const waits: string[] = [];
    let calls = 0;
    const store = waitingStore(flaky, (fn) =>
      untilAvailable(
        () => {
          if (++calls === 3) up = true;
          return fn();
        },
        { ...service, service: service.name, boundMs: 3_600_000, now: c.now, sleep: c.sleep, onWaiting: (w) => waits.push(w.message) },
      ),
    );
    expect(store.service).toBe(service);
    const ref = await store.put('bytes');
    expect(calls).toBe(3);
    expect(waits[0]).toMatch(/^waiting for GCS at http:\/\/127\.0\.0\.1:4443 \(unreachable for 0ms\): GCS upload failed/);
    await store.putRecord('a/b', { x: 1 });
    expect(await store.getRecord('a/b')).toEqual({ x: 1 });
    expect((await store.get(ref)).toString()).toBe('bytes');
    expect(await store.verify(ref)).toBe(true);

    // A rejection is not waited for.
    up = false;
    const forbidden = waitingStore(flaky, (fn) => untilAvailable(fn, { service: 'GCS', isUnavailable: () => false, boundMs: 3_600_000 }));
    await expect(forbidden.getRecord('a/b')).rejects.toMatchObject({ code: 'STORAGE_ERROR' });
  });
});

/** A model registry that is down for the first `downFor` calls, then answers; or rejects. */
class FlakyRegistry implements ModelRegistry {
  readonly location = 'http://mlflow.test';
  versions: ModelVersionInfo[] = [];
  aliases = new Map<string, string>();
  calls = 0;
  constructor(
    private downFor: number,
    private readonly reject = false,
  ) {}
  private gate(): void {
    this.calls++;
    if (this.reject)
      throw new MlflowInvalidParameter(
        'MLflow POST registered-models/create: INVALID_PARAMETER_VALUE: bad name',
        'INVALID_PARAMETER_VALUE',
        400,
      );
    if (this.downFor-- > 0) throw new MlflowError(`MLflow at ${this.location} unreachable (ECONNREFUSED): connect ECONNREFUSED`, 'NETWORK');
  }
  isUnavailable(e: unknown): boolean {
    return isMlflowUnavailable(e);
  }
  async publish(input: Parameters<ModelRegistry['publish']>[0]): Promise<ModelVersionInfo> {
    this.gate();
    const found = this.versions.find((v) => v.tags['key'] === input.runKey.value);
    if (found) return found;
    const v = {
      name: input.name,
      version: String(this.versions.length + 1),
      source: 'mem',
      tags: { ...input.versionTags, key: input.runKey.value },
      aliases: [],
    };
    this.versions.push(v);
    return v;
  }
  async version(_n: string, version: string) {
    return this.versions.find((v) => v.version === version);
  }
  async byAlias(_n: string, alias: string) {
    this.gate();
    const v = this.aliases.get(alias);
    return v ? this.version('', v) : undefined;
  }
  async setAlias(_n: string, alias: string, version: string) {
    this.gate();
    this.aliases.set(alias, version);
  }
  async modelTags() {
    return {};
  }
  async setModelTag() {}
  async readFile() {
    return Buffer.from('');
  }
}

describe('deploy.mlflow-register and an unreachable MLflow', () => {
  const params = { name: 'm', metric: { key: 'rmse', goal: 'minimize' }, promote: 'never' };

  it('waits for MLflow, heartbeating what it waits for, and registers one version once it answers', async () => {
    const beats: Record<string, unknown>[] = [];
    const ctx = testContext(undefined, undefined, { serviceWaitMs: 3_600_000, onHeartbeat: (d) => d && beats.push(d) });
    const registry = new FlakyRegistry(5);
    ctx.models = { registry, experiment: 'exp' };
    const model = await ctx.store.put('onnx', { name: 'model.onnx' });
    const out = await runPlugin(mlflowRegister, ctx, params, { model, metrics: { rmse: 1 } });
    expect(out).toMatchObject({ registered: true, version: '1' });
    expect(registry.versions).toHaveLength(1);
    expect(registry.aliases.get('challenger')).toBe('1');
    const waiting = beats.map((b) => b['waiting']).filter(Boolean);
    expect(waiting).toHaveLength(5);
    expect(waiting[0]).toMatch(/^waiting for MLflow at http:\/\/mlflow\.test/);
  });

  it('fails at once, not retryable, when MLflow rejects the registration', async () => {
    const ctx = testContext(undefined, undefined, { serviceWaitMs: 3_600_000 });
    const registry = new FlakyRegistry(0, true);
    ctx.models = { registry, experiment: 'exp' };
    const model = await ctx.store.put('onnx', { name: 'model.onnx' });
    const err = await runPlugin(mlflowRegister, ctx, params, { model, metrics: { rmse: 1 } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PipelineError);
    expect(err).toMatchObject({ code: 'TRACKING_ERROR', retryable: false });
    expect((err as Error).message).toMatch(/MLflow at http:\/\/mlflow\.test rejected the registration of 'm': .*INVALID_PARAMETER_VALUE/);
    expect(registry.calls).toBe(1);
  });
});
