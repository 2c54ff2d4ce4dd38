import { existsSync, mkdirSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import type { Storage } from '@google-cloud/storage';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { GcsArtifactStore } from '../../adapters/gcs-store.js';
import { LocalArtifactStore } from '../../adapters/local-store.js';
import { stepCacheKey } from '../../engine/cache-key.js';
import { PipelineError } from '../../engine/errors.js';
import { builtinPlugins, createRegistry, definePlugin } from '../../plugins/index.js';

describe('LocalArtifactStore', () => {
  const root = mkdtempSync(join(tmpdir(), 'mlpipe-store-'));
  const store = new LocalArtifactStore(root);

  it('is content-addressed and idempotent', async () => {
    const a = await store.put('hello', { name: 'a.txt', mediaType: 'text/plain' });
    const b = await store.put(Buffer.from('hello'));
    expect(a.sha256).toBe('2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824');
    expect(b.uri).toBe(a.uri);
    expect(a).toMatchObject({ kind: 'artifact', size: 5, mediaType: 'text/plain', name: 'a.txt' });
    expect((await store.get(a)).toString()).toBe('hello');
    expect(await store.exists(a)).toBe(true);
  });

  it('stores files by streaming and leaves no temporary files', async () => {
    const f = join(root, 'input.bin');
    writeFileSync(f, Buffer.alloc(1 << 20, 7));
    const ref = await store.putFile(f);
    expect(ref.size).toBe(1 << 20);
    expect(await store.getFile(ref)).toBe(fileURLToPath(ref.uri));
    const dir = join(root, 'objects', 'sha256', ref.sha256.slice(0, 2));
    expect(readdirSync(dir).filter((n) => n.includes('.tmp-'))).toEqual([]);
  });

  it('detects corrupted bytes on read', async () => {
    const ref = await store.put('original');
    writeFileSync(fileURLToPath(ref.uri), 'tampered');
    await expect(store.get(ref)).rejects.toMatchObject({ code: 'STORAGE_DIGEST_MISMATCH' });
    await expect(store.getFile(ref)).rejects.toMatchObject({ code: 'STORAGE_DIGEST_MISMATCH' });
  });

  it('reports a missing artifact with STORAGE_NOT_FOUND', async () => {
    const ref = await store.put('gone');
    const other = new LocalArtifactStore(mkdtempSync(join(tmpdir(), 'mlpipe-store-empty-')));
    await expect(other.get(ref)).rejects.toMatchObject({ code: 'STORAGE_NOT_FOUND' });
  });

  it('keeps JSON records and lists them by prefix', async () => {
    await store.putRecord('cache/abc', { x: 1 });
    await store.putRecord('cache/abd', { x: 2 });
    await store.putRecord('checkpoints/w/s', { t: 1 });
    expect(await store.getRecord('cache/abc')).toEqual({ x: 1 });
    expect(await store.getRecord('cache/none')).toBeUndefined();
    expect(await store.listRecords('cache/')).toEqual(['cache/abc', 'cache/abd']);
    await expect(store.putRecord('../escape', {})).rejects.toThrow(/Invalid record key/);
  });
});

describe('crafted artifact digests', () => {
  /** Digests that would name a path outside a store: slice(0, 2) and slice(2) become path segments. */
  const crafted = ['../../victim', '../../../../etc/passwd', 'A'.repeat(64), 'a'.repeat(63), `${'a'.repeat(62)}/x`, ''];
  const ref = (sha256: string) => ({ kind: 'artifact' as const, uri: 'file:///x', sha256, size: 1, mediaType: 'text/plain' });

  it('are refused by every local store call with STORAGE_KEY_INVALID, before any file is touched', async () => {
    const base = mkdtempSync(join(tmpdir(), 'mlpipe-digest-'));
    const store = new LocalArtifactStore(join(base, 'store'));
    writeFileSync(join(base, 'victim'), 'keep me');
    for (const sha of crafted) {
      for (const call of [() => store.get(ref(sha)), () => store.getFile(ref(sha)), () => store.exists(ref(sha)), () => store.verify(ref(sha)), () => store.delete(ref(sha))]) {
        await expect(call(), sha).rejects.toMatchObject({ code: 'STORAGE_KEY_INVALID', retryable: false });
      }
    }
    expect(existsSync(join(base, 'victim'))).toBe(true);
  });

  it('are refused by every GCS store call before its local cache or the bucket is used', async () => {
    const base = mkdtempSync(join(tmpdir(), 'mlpipe-digest-gcs-'));
    mkdirSync(join(base, 'cache', 'objects'), { recursive: true });
    writeFileSync(join(base, 'victim'), 'keep me');
    // A Storage that fails the test if reached: the digest must be refused first.
    const unreachable = (): never => {
      throw new Error('the bucket was reached');
    };
    const storage = new Proxy({}, { get: unreachable }) as unknown as Storage;
    const store = new GcsArtifactStore({ uri: 'gs://bucket/prefix', storage, cacheDir: join(base, 'cache') });
    for (const sha of crafted) {
      for (const call of [() => store.get(ref(sha)), () => store.getFile(ref(sha)), () => store.exists(ref(sha)), () => store.verify(ref(sha)), () => store.delete(ref(sha))]) {
        await expect(call(), sha).rejects.toMatchObject({ code: 'STORAGE_KEY_INVALID' });
      }
    }
    // '../../victim' in the cache path is <cache>/objects/../../victim: the file the old code deleted.
    expect(existsSync(join(base, 'victim'))).toBe(true);
  });
});

describe('stepCacheKey', () => {
  const ref = { kind: 'artifact' as const, uri: 'file:///a', sha256: 'a'.repeat(64), size: 1, mediaType: 'text/plain' };
  it('ignores key order and artifact location, but not params, inputs or version', () => {
    const k = stepCacheKey('p', '1', { a: 1, b: 2 }, { x: ref });
    expect(stepCacheKey('p', '1', { b: 2, a: 1 }, { x: { ...ref, uri: 'gs://b/a' } })).toBe(k);
    expect(stepCacheKey('p', '2', { a: 1, b: 2 }, { x: ref })).not.toBe(k);
    expect(stepCacheKey('p', '1', { a: 1, b: 3 }, { x: ref })).not.toBe(k);
    expect(stepCacheKey('p', '1', { a: 1, b: 2 }, { x: { ...ref, sha256: 'b'.repeat(64) } })).not.toBe(k);
  });
});

describe('plugin registry', () => {
  it('rejects duplicate names when built', () => {
    const dup = definePlugin({ name: 'util.echo', version: '9', description: 'x', params: z.object({}), outputs: {}, run: async () => ({}) });
    expect(() => createRegistry([...builtinPlugins, dup])).toThrow(/Two plugins are named 'util.echo'/);
  });

  it('rejects unknown names with a suggestion and a stable code', () => {
    const r = createRegistry(builtinPlugins);
    try {
      r.require('util.shel');
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(PipelineError);
      expect((e as PipelineError).code).toBe('PLUGIN_UNKNOWN');
      expect((e as PipelineError).retryable).toBe(false);
      expect((e as Error).message).toContain("Did you mean 'util.shell'");
    }
  });

  it('derives output names from params for dynamic plugins', () => {
    const r = createRegistry(builtinPlugins);
    expect(r.get('util.echo')!.outputNames({ values: { a: 1, b: 2 } })).toEqual(['a', 'b']);
    expect(r.get('util.shell')!.outputNames({ command: 'x', artifacts: { report: 'r.html' } })).toEqual(['exitCode', 'stdout', 'report']);
  });
});
