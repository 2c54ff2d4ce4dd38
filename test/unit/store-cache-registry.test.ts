import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import type { Storage } from '@google-cloud/storage';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createCheckpoints } from '../../activities/checkpoints.js';
import { readCacheRecord } from '../../activities/run-step.js';
import { GcsArtifactStore } from '../../adapters/gcs-store.js';
import { createArtifactStore } from '../../adapters/stores.js';
import { LocalArtifactStore } from '../../adapters/local-store.js';
import { stepCacheKey } from '../../engine/cache-key.js';
import { PipelineError } from '../../engine/errors.js';
import type { Logger } from '../../engine/ports.js';
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
      for (const call of [
        () => store.get(ref(sha)),
        () => store.getFile(ref(sha)),
        () => store.exists(ref(sha)),
        () => store.verify(ref(sha)),
        () => store.delete(ref(sha)),
      ]) {
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
      for (const call of [
        () => store.get(ref(sha)),
        () => store.getFile(ref(sha)),
        () => store.exists(ref(sha)),
        () => store.verify(ref(sha)),
        () => store.delete(ref(sha)),
      ]) {
        await expect(call(), sha).rejects.toMatchObject({ code: 'STORAGE_KEY_INVALID' });
      }
    }
    // '../../victim' in the cache path is <cache>/objects/../../victim: the file the old code deleted.
    expect(existsSync(join(base, 'victim'))).toBe(true);
  });
});

/** A logger that keeps what it was told. */
function memoryLogger(): { logger: Logger; warnings: { message: string; fields: Record<string, unknown> }[] } {
  const warnings: { message: string; fields: Record<string, unknown> }[] = [];
  const none = (): void => undefined;
  return { warnings, logger: { debug: none, info: none, error: none, warn: (fields, message) => void warnings.push({ message, fields }) } };
}

/** Flips one byte of a file in place and puts its mtime back, as a careless repair tool might. */
function flipByte(path: string, at = 0): void {
  const before = statSync(path);
  const bytes = readFileSync(path);
  bytes[at] = bytes[at]! ^ 0xff;
  writeFileSync(path, bytes);
  utimesSync(path, before.atime, before.mtime);
}

describe('createArtifactStore', () => {
  it("takes a gs:// store's endpoint and cache size from the environment it is given, not the process's", () => {
    const cacheDir = mkdtempSync(join(tmpdir(), 'mlpipe-stores-'));
    const env = { MLPIPE_GCS_ENDPOINT: 'http://127.0.0.1:4443', MLPIPE_GCS_CACHE_MAX_BYTES: '1234' };
    expect(process.env['MLPIPE_GCS_ENDPOINT']).not.toBe(env.MLPIPE_GCS_ENDPOINT);
    const store = createArtifactStore('gs://bucket/prefix', { cacheDir, env }) as unknown as { storage: Storage; cacheMax: number };
    expect(store.storage.apiEndpoint).toBe('http://127.0.0.1:4443');
    expect(store.cacheMax).toBe(1234);
  });
});

describe('LocalArtifactStore heals itself', () => {
  const store = new LocalArtifactStore(mkdtempSync(join(tmpdir(), 'mlpipe-heal-')));

  it('replaces a damaged object when the same content is written again', async () => {
    const ref = await store.put('the right bytes');
    flipByte(fileURLToPath(ref.uri), 3);
    await expect(store.get(ref)).rejects.toMatchObject({ code: 'STORAGE_DIGEST_MISMATCH' });
    expect(await store.put('the right bytes')).toEqual(ref);
    expect((await store.get(ref)).toString()).toBe('the right bytes');

    const file = join(mkdtempSync(join(tmpdir(), 'mlpipe-heal-file-')), 'data.bin');
    writeFileSync(file, Buffer.alloc(4096, 9));
    const big = await store.putFile(file);
    flipByte(fileURLToPath(big.uri), 100);
    await store.putFile(file);
    expect(await store.verify(big)).toBe(true);
    expect(await store.get(big)).toEqual(Buffer.alloc(4096, 9));
  });

  it('verify() is false after a byte flip even when the mtime is restored, so the memo cannot be fooled', async () => {
    const ref = await store.put('verified once');
    const path = fileURLToPath(ref.uri);
    utimesSync(path, 1_700_000_000, 1_700_000_000); // whole seconds, so restoring it is exact
    expect(await store.verify(ref)).toBe(true);
    const mtime = statSync(path).mtimeMs;
    flipByte(path);
    expect(statSync(path).mtimeMs).toBe(mtime);
    expect(await store.verify(ref)).toBe(false);
    // A fresh store instance (another worker) agrees, and a heal makes it true again.
    expect(await new LocalArtifactStore(store.root).verify(ref)).toBe(false);
    await store.put('verified once');
    expect(await store.verify(ref)).toBe(true);
  });

  it('reports a truncated record as STORAGE_RECORD_CORRUPT, and a cache read turns it into a miss with a warning', async () => {
    const key = 'a'.repeat(64);
    await store.putRecord(`cache/${key}`, { key, outputs: { n: 1 } });
    const path = join(store.root, 'records', 'cache', `${key}.json`);
    writeFileSync(path, readFileSync(path, 'utf8').slice(0, 10));
    await expect(store.getRecord(`cache/${key}`)).rejects.toMatchObject({
      code: 'STORAGE_RECORD_CORRUPT',
      message: expect.stringContaining(path) as string,
    });
    const { logger, warnings } = memoryLogger();
    expect(await readCacheRecord(store, key, logger)).toBeUndefined();
    expect(warnings).toEqual([
      { message: 'cache entry is unreadable; treating it as a miss', fields: expect.objectContaining({ cacheKey: key }) as object },
    ]);
    // A record that parses but is not a cache entry is a miss too.
    await store.putRecord(`cache/${key}`, 'just a string');
    expect(await readCacheRecord(store, key, logger)).toBeUndefined();
    await store.putRecord(`cache/${key}`, { key, outputs: { n: 2 } });
    expect(await readCacheRecord(store, key, logger)).toMatchObject({ outputs: { n: 2 } });
  });
});

describe('checkpoints', () => {
  const owner = { workflowId: 'retrain-housing', runId: 'run-a', stepId: 'train', cacheKey: 'k1' };
  const open = (store: LocalArtifactStore, o = owner, heartbeatDetails?: unknown) => {
    const log = memoryLogger();
    const beats: Record<string, unknown>[] = [];
    return {
      ...log,
      beats,
      ckpt: createCheckpoints(o, { store, logger: log.logger, heartbeat: (d) => void beats.push(d), heartbeatDetails }),
    };
  };

  it('resume only from a checkpoint of the same run and cache key', async () => {
    const store = new LocalArtifactStore(mkdtempSync(join(tmpdir(), 'mlpipe-ckpt-')));
    const first = open(store);
    await first.ckpt.save('epoch 5', { epoch: 5 });
    expect((await open(store).ckpt.latest<{ epoch: number }>())?.meta.epoch).toBe(5);
    // A new run under the same workflow ID (a retrain), or other params (another cache key): fresh.
    expect(await open(store, { ...owner, runId: 'run-b' }).ckpt.latest()).toBeUndefined();
    expect(await open(store, { ...owner, cacheKey: 'k2' }).ckpt.latest()).toBeUndefined();
    // The previous attempt's heartbeat pointer counts only when its key matches.
    const pointer = first.beats.at(-1);
    expect(pointer).toMatchObject({ checkpoint: { meta: { epoch: 5 } } });
    const other = open(store, { ...owner, runId: 'run-b' }, pointer);
    expect(await other.ckpt.latest()).toBeUndefined();
    expect(other.warnings.map((w) => w.message)).toContain('heartbeat checkpoint pointer belongs to another key; ignored');
    const same = new LocalArtifactStore(mkdtempSync(join(tmpdir(), 'mlpipe-ckpt-empty-')));
    await same.put('epoch 5');
    expect((await open(same, owner, pointer).ckpt.latest())?.data.toString()).toBe('epoch 5');
  });

  it('skips a corrupt newest checkpoint for the next older one, and warns', async () => {
    const store = new LocalArtifactStore(mkdtempSync(join(tmpdir(), 'mlpipe-ckpt-')));
    const { ckpt } = open(store);
    await ckpt.save('epoch 5', { epoch: 5 }, { keep: 3 });
    await ckpt.save('epoch 10', { epoch: 10 }, { keep: 3 });
    const newest = await ckpt.save('epoch 15', { epoch: 15 }, { keep: 3 });
    flipByte(fileURLToPath(newest.ref.uri));
    const reader = open(store);
    const got = await reader.ckpt.latest<{ epoch: number }>();
    expect(got?.meta.epoch).toBe(10);
    expect(got?.data.toString()).toBe('epoch 10');
    expect(reader.warnings.map((w) => w.message)).toEqual([
      'checkpoint is missing or corrupt; trying the next older one',
      'resuming from an older checkpoint (1 newer skipped)',
    ]);
    // All kept checkpoints damaged: start fresh, said so.
    for (const r of (newest.recent ?? []).slice(1)) flipByte(fileURLToPath(r.uri));
    const last = open(store);
    expect(await last.ckpt.latest()).toBeUndefined();
    expect(last.warnings.at(-1)?.message).toBe('no checkpoint of this step is readable; starting fresh');
  });

  it('treats an unreadable checkpoint record as no checkpoint, with a warning', async () => {
    const store = new LocalArtifactStore(mkdtempSync(join(tmpdir(), 'mlpipe-ckpt-')));
    await open(store).ckpt.save('epoch 5', { epoch: 5 });
    const dir = join(store.root, 'records', 'checkpoints', 'retrain-housing', 'run-a', 'train');
    writeFileSync(join(dir, 'k1.json'), '{"key":');
    const reader = open(store);
    expect(await reader.ckpt.latest()).toBeUndefined();
    expect(reader.warnings.map((w) => w.message)).toEqual(['checkpoint record is unreadable; starting without it']);
    // Saving again after that works and is found.
    await reader.ckpt.save('epoch 6', { epoch: 6 });
    expect((await open(store).ckpt.latest<{ epoch: number }>())?.meta.epoch).toBe(6);
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
    const dup = definePlugin({
      name: 'util.echo',
      version: '9',
      description: 'x',
      params: z.object({}),
      outputs: {},
      run: async () => ({}),
    });
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
