import { mkdtempSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { LocalArtifactStore } from '../../adapters/local-store.js';
import { stepCacheKey, withoutPaths } from '../../engine/cache-key.js';
import { compilePipeline } from '../../engine/compile.js';
import { SpecErrors } from '../../engine/errors.js';
import { collectGarbage } from '../../engine/gc.js';
import {
  keySegment,
  lineageOf,
  listRuns,
  paramsHash,
  resolveDigest,
  runsOf,
  writeRunManifest,
  writeStepManifest,
  type StepManifest,
} from '../../engine/lineage.js';
import type { ArtifactRef } from '../../engine/types.js';
import { memoryConf, registry } from './fakes.js';

const newStore = (): LocalArtifactStore => new LocalArtifactStore(mkdtempSync(join(tmpdir(), 'mlpipe-lineage-')));

function step(over: Partial<StepManifest> & Pick<StepManifest, 'stepId' | 'inputs' | 'outputs'>): Omit<StepManifest, 'kind'> {
  return {
    workflowId: 'wf-1',
    runId: 'run-a',
    uses: 'util.echo',
    pluginVersion: '1',
    status: 'succeeded',
    params: { k: 1 },
    paramsHash: paramsHash({ k: 1 }),
    cacheKey: 'c'.repeat(64),
    attempt: 1,
    startedAt: '2026-11-25T10:00:00.000Z',
    endedAt: '2026-11-25T10:00:01.000Z',
    durationMs: 1000,
    ...over,
  };
}

describe('LocalArtifactStore.verify', () => {
  it('is true for intact bytes, false for altered, truncated or missing ones', async () => {
    const store = newStore();
    const ref = await store.put('exact bytes');
    expect(await store.verify(ref)).toBe(true);
    const path = fileURLToPath(ref.uri);
    writeFileSync(path, 'exact bytez'); // same size, other bytes
    utimesSync(path, new Date(Date.now() + 5000), new Date(Date.now() + 5000));
    expect(await store.verify(ref)).toBe(false);
    writeFileSync(path, 'short');
    expect(await store.verify(ref)).toBe(false);
    await store.delete(ref);
    expect(await store.verify(ref)).toBe(false);
  });
});

describe('cache: { ignore }', () => {
  it('leaves the named params out of the cache key, and only those', () => {
    const base = { epochs: 10, log: { every: 1, verbose: true } };
    const k = stepCacheKey('p', '1', base, {}, ['log.every']);
    expect(stepCacheKey('p', '1', { ...base, log: { every: 5, verbose: true } }, {}, ['log.every'])).toBe(k);
    expect(stepCacheKey('p', '1', { ...base, log: { every: 5, verbose: false } }, {}, ['log.every'])).not.toBe(k);
    expect(stepCacheKey('p', '1', { ...base, epochs: 11 }, {}, ['log.every'])).not.toBe(k);
    expect(withoutPaths(base, ['log.every'])).toEqual({ epochs: 10, log: { verbose: true } });
    expect(base.log.every).toBe(1); // not mutated
  });

  it('compiles into the step and rejects a path the step does not set', () => {
    const text = (ignore: string) =>
      `name: c\nsteps:\n  a:\n    uses: util.echo\n    with: { values: { x: 1 }, sleepMs: 5 }\n    cache: { ignore: [${ignore}] }\n`;
    const ok = compilePipeline({ file: 'p.yaml', text: text('sleepMs'), conf: memoryConf({}), catalog: registry });
    expect(ok.steps['a']).toMatchObject({ cacheIgnore: ['sleepMs'] });
    try {
      compilePipeline({ file: 'p.yaml', text: text('nothere'), conf: memoryConf({}), catalog: registry });
      throw new Error('expected a compile error');
    } catch (e) {
      expect(e).toBeInstanceOf(SpecErrors);
      const p = (e as SpecErrors).problems[0]!;
      expect(p.message).toMatch(/cache.ignore names 'nothere'/);
      expect(p.where?.path).toEqual(['steps', 'a', 'cache', 'ignore', 0]);
      expect(p.where?.line).toBe(6);
    }
  });
});

describe('lineage', () => {
  it('keeps Temporal IDs inside their folder', () => {
    expect(keySegment('housing-1a2b')).toBe('housing-1a2b');
    for (const id of ['../../etc', 'a/b', '..', 'x%2e%2e', 'sp ace', '']) {
      const seg = keySegment(id);
      expect(seg).toMatch(/^[A-Za-z0-9_-]+=[0-9a-f]{12}$/);
    }
    expect(keySegment('a/b')).not.toBe(keySegment('a_b'));
  });

  it('records runs and steps, and walks an artifact back to its sources', async () => {
    const store = newStore();
    const raw = await store.put('raw csv', { name: 'raw.csv' });
    const clean = await store.put('clean parquet', { name: 'clean.parquet' });
    const model = await store.put('model bytes', { name: 'model.json' });
    await writeRunManifest(store, {
      pipeline: 'p',
      file: 'pipelines/p.yaml',
      workflowId: 'wf-1',
      runId: 'run-a',
      startedAt: '2026-11-25T10:00:00.000Z',
      params: {},
      config: {},
      overrides: [],
      labels: {},
      store: store.location,
    });
    await writeStepManifest(store, step({ stepId: 'ingest', inputs: {}, outputs: { dataset: raw } }));
    await writeStepManifest(
      store,
      step({ stepId: 'process', inputs: { dataset: raw }, outputs: { dataset: clean }, startedAt: '2026-11-25T10:00:02.000Z' }),
    );
    await writeStepManifest(
      store,
      step({ stepId: 'train', inputs: { train: clean }, outputs: { model, metrics: { rmse: 1 } }, startedAt: '2026-11-25T10:00:03.000Z' }),
    );

    const [view] = await runsOf(store, 'wf-1');
    expect(view!.run?.pipeline).toBe('p');
    expect(view!.steps.map((s) => s.stepId)).toEqual(['ingest', 'process', 'train']);
    expect((await listRuns(store)).map((r) => r.runId)).toEqual(['run-a']);

    expect(await resolveDigest(store, model.sha256.slice(0, 8))).toEqual([model.sha256]);
    const tree = await lineageOf(store, model.sha256);
    expect(tree.name).toBe('model.json');
    expect(tree.producedBy.map((p) => p.stepId)).toEqual(['train']);
    const fromClean = tree.producedBy[0]!.inputsLineage['train']!;
    expect(fromClean.producedBy.map((p) => p.stepId)).toEqual(['process']);
    expect(fromClean.producedBy[0]!.inputsLineage['dataset']!.producedBy.map((p) => p.stepId)).toEqual(['ingest']);
    expect((await lineageOf(store, raw.sha256)).usedBy.map((u) => u.stepId)).toEqual(['process']);
  });

  it('lists every producer of bytes two runs made, newest first, each with its own upstream', async () => {
    const store = newStore();
    const raw = await store.put('raw csv', { name: 'raw.csv' });
    const model = await store.put('model bytes', { name: 'model.json' });
    for (const [runId, at] of [
      ['run-old', '2026-11-25T10:00:00.000Z'],
      ['run-new', '2026-11-26T10:00:00.000Z'],
    ] as const) {
      await writeStepManifest(
        store,
        step({ workflowId: 'wf', runId, stepId: 'ingest', inputs: {}, outputs: { dataset: raw }, startedAt: at, endedAt: at }),
      );
      await writeStepManifest(
        store,
        step({ workflowId: 'wf', runId, stepId: 'train', inputs: { train: raw }, outputs: { model }, startedAt: at, endedAt: at }),
      );
    }
    const tree = await lineageOf(store, model.sha256);
    expect(tree.producedBy.map((p) => `${p.runId}/${p.stepId}`)).toEqual(['run-new/train', 'run-old/train']);
    for (const p of tree.producedBy) expect(p.inputsLineage['train']!.producedBy.map((q) => q.runId)).toEqual(['run-new', 'run-old']);
  });
});

describe('gc', () => {
  it('deletes only unreferenced objects older than the bound; a dry run deletes nothing', async () => {
    const store = newStore();
    const old = new Date(Date.now() - 10 * 86_400_000);
    const age = async (ref: ArtifactRef): Promise<void> => utimesSync(fileURLToPath(ref.uri), old, old);
    const inManifest = await store.put('referenced by a step manifest');
    const inCache = await store.put('referenced by a cache entry');
    const inCheckpoint = await store.put('referenced by a checkpoint record');
    const orphanOld = await store.put('orphan, old');
    const orphanYoung = await store.put('orphan, young');
    for (const r of [inManifest, inCache, inCheckpoint, orphanOld]) await age(r);
    await writeStepManifest(store, step({ stepId: 's', inputs: {}, outputs: { nested: { list: [inManifest] } } }));
    await store.putRecord('cache/k1', { outputs: { a: inCache } });
    await store.putRecord('checkpoints/wf-1/train', { ref: inCheckpoint, recent: [inCheckpoint] });

    const dry = await collectGarbage(store, { olderThanMs: 7 * 86_400_000, dryRun: true });
    expect(dry.collected.map((c) => c.sha256)).toEqual([orphanOld.sha256]);
    expect(await store.verify(orphanOld)).toBe(true);

    const real = await collectGarbage(store, { olderThanMs: 7 * 86_400_000 });
    expect(real).toMatchObject({ objects: 5, referenced: 3, young: 1, collectedBytes: orphanOld.size });
    for (const r of [inManifest, inCache, inCheckpoint, orphanYoung]) expect(await store.verify(r)).toBe(true);
    expect(await store.exists(orphanOld)).toBe(false);
  });
});
