/**
 * Champion / challenger promotion and rollback against an in-memory ModelRegistry, and the
 * deploy.mlflow-register step on top of it.
 */
import { describe, expect, it } from 'vitest';
import type { ModelRegistry, ModelVersionInfo } from '../../engine/ports.js';
import { aliasHistory, beats, decidePromotion, moveAlias, rollbackAlias } from '../../engine/promotion.js';
import { mlflowRegister } from '../../plugins/deploy/mlflow-register.js';
import { runPlugin, testContext } from './step-context.js';

class MemoryRegistry implements ModelRegistry {
  readonly location = 'memory';
  versions = new Map<string, ModelVersionInfo & { files: Record<string, Uint8Array>; key: string }>();
  aliases = new Map<string, string>();
  tags = new Map<string, string>();
  publishes = 0;

  async publish(input: Parameters<ModelRegistry['publish']>[0]): Promise<ModelVersionInfo> {
    this.publishes++;
    const existing = [...this.versions.values()].find((v) => v.key === input.runKey.value);
    if (existing) return existing;
    const version = String(this.versions.size + 1);
    const info = {
      name: input.name,
      version,
      source: `mem://${version}`,
      tags: { ...input.versionTags },
      aliases: [],
      files: input.files,
      key: input.runKey.value,
    };
    this.versions.set(version, info);
    return info;
  }
  async version(_name: string, version: string) {
    return this.versions.get(version);
  }
  async byAlias(_name: string, alias: string) {
    const v = this.aliases.get(alias);
    return v ? this.versions.get(v) : undefined;
  }
  async setAlias(_name: string, alias: string, version: string) {
    this.aliases.set(alias, version);
  }
  async modelTags() {
    return Object.fromEntries(this.tags);
  }
  async setModelTag(_name: string, key: string, value: string) {
    this.tags.set(key, value);
  }
  async readFile(mv: ModelVersionInfo, path: string) {
    return Buffer.from(this.versions.get(mv.version)!.files[path]!);
  }
}

describe('promotion rule', () => {
  it('compares with the goal and a relative margin', () => {
    expect(beats(90, 100, 'minimize')).toBe(true);
    expect(beats(100, 100, 'minimize')).toBe(false);
    expect(beats(0.91, 0.9, 'maximize')).toBe(true);
    expect(beats(99.5, 100, 'minimize', 0.01)).toBe(false);
    expect(beats(98.9, 100, 'minimize', 0.01)).toBe(true);
    expect(beats(NaN, 100, 'minimize')).toBe(false);
  });

  it('promotes the first version, keeps a better champion, refuses to compare without a recorded metric', async () => {
    const r = new MemoryRegistry();
    expect((await decidePromotion(r, 'm', 'champion', '1', { key: 'rmse', goal: 'minimize', value: 5 })).promote).toBe(true);
    r.versions.set('1', { name: 'm', version: '1', source: '', tags: { 'mlpipe.metric.rmse': '5' }, aliases: [], files: {}, key: 'a' });
    r.aliases.set('champion', '1');
    const worse = await decidePromotion(r, 'm', 'champion', '2', { key: 'rmse', goal: 'minimize', value: 6 });
    expect(worse).toMatchObject({ promote: false, incumbent: { version: '1', value: 5 } });
    expect(worse.reason).toBe("does not beat 'champion': rmse 6 vs 5 of version 1");
    expect((await decidePromotion(r, 'm', 'champion', '2', { key: 'rmse', goal: 'minimize', value: 4 })).promote).toBe(true);
    const noMetric = await decidePromotion(r, 'm', 'champion', '2', { key: 'mae', goal: 'minimize', value: 1 });
    expect(noMetric.promote).toBe(false);
    expect(noMetric.reason).toContain('has no mae on record');
  });

  it('rollback walks back through the alias history and stops where nobody held it', async () => {
    const r = new MemoryRegistry();
    for (const v of ['1', '2', '3']) r.versions.set(v, { name: 'm', version: v, source: '', tags: {}, aliases: [], files: {}, key: v });
    await moveAlias(r, 'm', 'champion', '1', 'promote', 'first');
    await moveAlias(r, 'm', 'champion', '2', 'promote', 'better');
    expect(await moveAlias(r, 'm', 'champion', '2', 'promote', 'again')).toEqual({ previous: '2', moved: false });
    await moveAlias(r, 'm', 'champion', '3', 'promote', 'better still');
    expect(await rollbackAlias(r, 'm', 'champion')).toEqual({ from: '3', to: '2' });
    expect(await rollbackAlias(r, 'm', 'champion')).toEqual({ from: '2', to: '1' });
    await expect(rollbackAlias(r, 'm', 'champion')).rejects.toThrow(/no earlier holder/);
    expect(await rollbackAlias(r, 'm', 'champion', '3')).toEqual({ from: '1', to: '3' });
    await expect(rollbackAlias(r, 'm', 'champion', '9')).rejects.toThrow(/no version 9/);
    expect((await aliasHistory(r, 'm', 'champion')).map((h) => `${h.action}:${h.version}<-${h.previous}`)).toEqual([
      'promote:1<-null',
      'promote:2<-1',
      'promote:3<-2',
      'rollback:2<-3',
      'rollback:1<-2',
      'rollback:3<-1',
    ]);
  });

  it("a rollback records the alias's previous holder, and a history written before backTo still walks back", async () => {
    const r = new MemoryRegistry();
    for (const v of ['1', '2']) r.versions.set(v, { name: 'm', version: v, source: '', tags: {}, aliases: [], files: {}, key: v });
    await moveAlias(r, 'm', 'champion', '1', 'promote', 'first');
    await moveAlias(r, 'm', 'champion', '2', 'promote', 'better');
    await rollbackAlias(r, 'm', 'champion');
    expect((await aliasHistory(r, 'm', 'champion')).at(-1)).toMatchObject({
      action: 'rollback',
      version: '1',
      previous: '2',
      backTo: null,
    });
    // Old format: a rollback move whose `previous` was the step back, without backTo.
    r.versions.set('3', { name: 'm', version: '3', source: '', tags: {}, aliases: [], files: {}, key: '3' });
    const at = new Date(0).toISOString();
    const legacy = [
      { version: '1', previous: null, action: 'promote', reason: '', at },
      { version: '2', previous: '1', action: 'promote', reason: '', at },
      { version: '3', previous: '2', action: 'promote', reason: '', at },
      { version: '2', previous: '1', action: 'rollback', reason: '', at },
    ];
    await r.setModelTag('m', 'mlpipe.alias_history.champion', JSON.stringify(legacy));
    r.aliases.set('champion', '2');
    expect(await rollbackAlias(r, 'm', 'champion')).toEqual({ from: '2', to: '1' });
  });
});

describe('deploy.mlflow-register', () => {
  it('registers as challenger, promotes only a better model, and a retry makes no second version', async () => {
    const ctx = testContext();
    const registry = new MemoryRegistry();
    ctx.models = { registry, experiment: 'exp' };
    const model = await ctx.store.put('onnx bytes', { name: 'model.onnx' });
    const state = await ctx.store.put('{}', { name: 'state.json' });
    const params = { name: 'm', metric: { key: 'rmse', goal: 'minimize' }, files: { 'transform-state.json': state } };
    const first = await runPlugin(mlflowRegister, { ...ctx, runId: 'r1' }, params, { model, metrics: { rmse: 100, r2: 0.8 } });
    expect(first).toMatchObject({ registered: true, version: '1', promoted: true, champion: '1' });
    expect(registry.versions.get('1')!.tags).toMatchObject({
      'mlpipe.metric.rmse': '100',
      'mlpipe.metric.r2': '0.8',
      'mlpipe.sha256': model.sha256,
      'mlpipe.file': 'model.onnx',
    });
    expect(Buffer.from(registry.versions.get('1')!.files['transform-state.json']!).toString()).toBe('{}');
    const worse = await runPlugin(mlflowRegister, { ...ctx, runId: 'r2' }, params, { model, metrics: { rmse: 120 } });
    expect(worse).toMatchObject({ version: '2', promoted: false, champion: '1' });
    expect(registry.aliases.get('challenger')).toBe('2');
    const retried = await runPlugin(mlflowRegister, { ...ctx, runId: 'r2', attempt: 2 }, params, { model, metrics: { rmse: 120 } });
    expect(retried).toMatchObject({ version: '2', promoted: false });
    expect(registry.versions.size).toBe(2);
    const better = await runPlugin(mlflowRegister, { ...ctx, runId: 'r3' }, params, { model, metrics: { rmse: 90 } });
    expect(better).toMatchObject({ version: '3', promoted: true, champion: '3' });
    await expect(runPlugin(mlflowRegister, { ...ctx, runId: 'r4' }, params, { model, metrics: { mae: 1 } })).rejects.toThrow(
      /no number 'rmse'/,
    );
  });

  it('without a registry: skips with the reason, or fails when required', async () => {
    const ctx = testContext();
    const model = await ctx.store.put('x', { name: 'model.onnx' });
    const params = { name: 'm', metric: { key: 'rmse', goal: 'minimize' } };
    expect(await runPlugin(mlflowRegister, ctx, params, { model, metrics: { rmse: 1 } })).toMatchObject({
      registered: false,
      promoted: false,
    });
    await expect(runPlugin(mlflowRegister, ctx, { ...params, requireRegistry: true }, { model, metrics: { rmse: 1 } })).rejects.toThrow(
      /no model registry/,
    );
  });
});
