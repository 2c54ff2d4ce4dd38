/**
 * The GCS artifact store against fake-gcs-server (memory backend, HTTP on loopback): round trips,
 * a 256 MiB object streamed both ways, racing writers, the emulator killed during an upload, bytes
 * altered in the bucket, key security, the local cache bound, the housing pipeline on gs://, and a
 * run that waits out GCS being down (and fails at once when GCS rejects the call).
 */
import { Storage } from '@google-cloud/storage';
import { ApplicationFailure, WorkflowFailedError, type Client, type WorkflowHandle } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream, mkdtempSync, readdirSync, readFileSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCheckpoints } from '../../activities/checkpoints.js';
import { readCacheRecord } from '../../activities/run-step.js';
import { GcsArtifactStore, parseGsUri } from '../../adapters/gcs-store.js';
import { hashFile } from '../../adapters/local-store.js';
import { freePort } from '../../dev/temporal-server.js';
import type { Logger } from '../../engine/ports.js';
import { PIPELINE_WORKFLOW, type PipelineResult, type PipelineStatus } from '../../engine/contracts.js';
import type { ArtifactRef } from '../../engine/types.js';
import { startEmulator, type Emulator } from '../../dev/gcs-emulator.js';
import { createClient, createTestProject, REPO, startWorker, uniqueId } from './helpers.js';
import { pendingStep, whileRunning } from './processes.js';

const run = promisify(execFile);
const BUCKET = 'mlpipe-test';
let emu: Emulator;

beforeAll(async () => {
  emu = await startEmulator([BUCKET]);
});
afterAll(async () => {
  await emu?.stop();
});

/** Quick retries so a dead endpoint fails the test in seconds, not the library's default 10 minutes. */
function storageAt(endpoint: string): Storage {
  return new Storage({
    apiEndpoint: endpoint,
    projectId: 'test',
    retryOptions: { autoRetry: true, maxRetries: 2, maxRetryDelay: 1, totalTimeout: 20 },
  });
}

function store(prefix: string, options: { cacheMaxBytes?: number; resumableFromBytes?: number; storage?: Storage } = {}): GcsArtifactStore {
  const cacheDir = mkdtempSync(join(tmpdir(), 'mlpipe-gcs-cache-'));
  return new GcsArtifactStore({
    uri: `gs://${BUCKET}/${prefix}`,
    storage: options.storage ?? storageAt(emu.endpoint),
    cacheDir,
    ...options,
  });
}

async function objectsUnder(prefix: string): Promise<{ name: string; size: number }[]> {
  const [files] = await emu.storage.bucket(BUCKET).getFiles({ prefix });
  return files.map((f) => ({ name: f.name, size: Number(f.metadata.size) }));
}

function cacheBytes(dir: string): number {
  let total = 0;
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(d, e.name));
      else total += statSync(join(d, e.name)).size;
    }
  };
  walk(dir);
  return total;
}

/** A file of `mib` MiB of pseudo-random bytes, written in 1 MiB blocks. */
async function bigFile(mib: number, seed: string): Promise<string> {
  const path = join(mkdtempSync(join(tmpdir(), 'mlpipe-gcs-big-')), 'big.bin');
  const out = createWriteStream(path);
  let block = createHash('sha512').update(seed).digest();
  for (let i = 0; i < mib; i++) {
    const buf = Buffer.alloc(2 ** 20);
    for (let o = 0; o < buf.length; o += 64) {
      block = createHash('sha512').update(block).digest();
      block.copy(buf, o);
    }
    if (!out.write(buf)) await new Promise<void>((r) => out.once('drain', () => r()));
  }
  await new Promise<void>((resolve, reject) => out.end((e?: Error | null) => (e ? reject(e) : resolve())));
  return path;
}

describe('GcsArtifactStore on fake-gcs-server', () => {
  it('round-trips bytes and records, lists objects, and verifies digests', async () => {
    const s = store('small');
    const ref = await s.put('hello gcs', { name: 'greeting.txt', mediaType: 'text/plain' });
    expect(ref.uri).toBe(`gs://${BUCKET}/small/objects/sha256/${ref.sha256.slice(0, 2)}/${ref.sha256.slice(2)}`);
    expect(ref).toMatchObject({ size: 9, name: 'greeting.txt', mediaType: 'text/plain' });
    // A second store (empty cache) reads it from the bucket.
    const other = store('small');
    expect((await other.get(ref)).toString()).toBe('hello gcs');
    expect(await other.verify(ref)).toBe(true);
    expect(await other.verify({ ...ref, size: 10 })).toBe(false);
    const listed = [];
    for await (const o of other.listObjects()) listed.push(o);
    expect(listed).toEqual([{ sha256: ref.sha256, size: 9, created: expect.any(Date) as Date }]);

    await s.putRecord('cache/k1', { a: 1 });
    await s.putRecord('cache/k2', { a: 2 });
    await s.putRecord('runs/wf/run/run', { r: 1 });
    expect(await other.getRecord('cache/k1')).toEqual({ a: 1 });
    expect(await other.getRecord('cache/none')).toBeUndefined();
    expect(await other.listRecords('cache/')).toEqual(['cache/k1', 'cache/k2']);
    await other.deleteRecord('cache/k1');
    expect(await s.listRecords('cache/')).toEqual(['cache/k2']);
  });

  it('streams a 256 MiB object up (resumable) and down with bounded memory', async () => {
    const path = await bigFile(256, 'large');
    const expected = await hashFile(path);
    const s = store('large');
    const base = process.memoryUsage().rss;
    let peak = base;
    const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
    try {
      const ref = await s.putFile(path, { name: 'big.bin' });
      expect(ref).toMatchObject({ sha256: expected, size: 256 * 2 ** 20 });
      const reader = store('large');
      const local = await reader.getFile(ref);
      expect(await hashFile(local)).toBe(expected);
    } finally {
      clearInterval(sampler);
    }
    console.info(`256 MiB up and down: peak RSS growth ${((peak - base) / 2 ** 20).toFixed(0)} MiB`);
    // The whole object is 256 MiB; holding it in memory even once would show here.
    expect(peak - base).toBeLessThan(160 * 2 ** 20);
    expect(await objectsUnder('large/objects/')).toEqual([
      { name: expect.stringContaining(expected.slice(2)) as string, size: 256 * 2 ** 20 },
    ]);
  });

  it('lets two writers of the same object race: both succeed, one object, verified', async () => {
    const a = store('race', { resumableFromBytes: 2 ** 20 });
    const b = store('race', { resumableFromBytes: 2 ** 20 });
    const bytes = randomBytes(64 * 1024);
    const [ra, rb] = await Promise.all([a.put(bytes), b.put(bytes)]);
    expect(ra).toEqual(rb);
    const path = await bigFile(24, 'race'); // resumable uploads racing
    const [fa, fb] = await Promise.all([a.putFile(path), b.putFile(path)]);
    expect(fa.sha256).toBe(fb.sha256);
    const objects = await objectsUnder('race/objects/');
    expect(objects.map((o) => o.size).sort((x, y) => x - y)).toEqual([64 * 1024, 24 * 2 ** 20]);
    expect(await store('race').verify(fa)).toBe(true);
    expect(await store('race').verify(ra)).toBe(true);
  });

  it('an upload cut by the emulator dying leaves no partial object; the store retries it whole', async () => {
    const path = await bigFile(48, 'cut');
    const expected = await hashFile(path);
    // A TCP proxy in front of a dedicated emulator, which names the proxy in its upload-session
    // URIs, so the upload's bytes pass through it. After 12 MiB the proxy looks at what the bucket
    // shows, then kills the emulator (cutting every connection) and starts a new one on its port.
    const proxyPort = await freePort();
    const cutEmu = await startEmulator([BUCKET], { externalUrl: `http://127.0.0.1:${proxyPort}` });
    let forwarded = 0;
    let cutAt = 0;
    let cut: Promise<void> | undefined;
    let visibleAtCut: { name: string; size: number }[] | undefined;
    const sockets = new Set<net.Socket>();
    const proxy = net.createServer((client) => {
      const upstream = net.connect(cutEmu.port, '127.0.0.1');
      sockets.add(client).add(upstream);
      client.on('data', (chunk: Buffer) => {
        forwarded += chunk.length;
        upstream.write(chunk);
        if (forwarded > 12 * 2 ** 20 && !cut) {
          cutAt = forwarded;
          cut = (async () => {
            const [files] = await cutEmu.storage.bucket(BUCKET).getFiles({ prefix: 'cut/' });
            visibleAtCut = files.map((f) => ({ name: f.name, size: Number(f.metadata.size) }));
            await cutEmu.restart();
          })();
        }
      });
      upstream.on('data', (chunk: Buffer) => client.write(chunk));
      const close = (): void => {
        client.destroy();
        upstream.destroy();
      };
      client.on('error', close).on('close', close);
      upstream.on('error', close).on('close', close);
    });
    await new Promise<void>((r) => proxy.listen(proxyPort, '127.0.0.1', r));
    try {
      const through = new GcsArtifactStore({
        uri: `gs://${BUCKET}/cut`,
        storage: storageAt(`http://127.0.0.1:${proxyPort}`),
        cacheDir: mkdtempSync(join(tmpdir(), 'mlpipe-gcs-cache-')),
        resumableFromBytes: 2 ** 20,
      });
      const ref = await through.putFile(path);
      expect(cut, 'the upload should have been cut').toBeDefined();
      await cut;
      expect(visibleAtCut).toEqual([]); // nothing visible while the upload was in flight
      console.info(
        `upload cut after ${cutAt} of ${48 * 2 ** 20} bytes; the store started a new session; ${forwarded} bytes went through the proxy in all`,
      );
      expect(ref.sha256).toBe(expected);
      const [files] = await cutEmu.storage.bucket(BUCKET).getFiles({ prefix: 'cut/objects/' });
      expect(files.map((f) => Number(f.metadata.size))).toEqual([48 * 2 ** 20]);
      const reader = new GcsArtifactStore({
        uri: `gs://${BUCKET}/cut`,
        storage: cutEmu.storage,
        cacheDir: mkdtempSync(join(tmpdir(), 'mlpipe-gcs-cache-')),
      });
      expect(await reader.verify(ref)).toBe(true);
      expect(await hashFile(await reader.getFile(ref))).toBe(expected);

      // With the emulator gone for good, the upload fails cleanly (a STORAGE_ERROR the step's retry
      // policy handles) and nothing is left behind.
      await cutEmu.stop();
      const other = await bigFile(4, 'cut-2');
      await expect(through.putFile(other)).rejects.toMatchObject({
        code: 'STORAGE_ERROR',
        message: expect.stringMatching(/GCS upload failed/) as string,
      });
    } finally {
      for (const so of sockets) so.destroy();
      await new Promise((r) => proxy.close(r));
      await cutEmu.stop();
    }
  });

  it('detects bytes altered in the bucket on read and on verify; a writer of the right bytes repairs them', async () => {
    const s = store('corrupt');
    const original = Buffer.from('the model weights, exactly as trained');
    const ref = await s.put(original, { name: 'model.bin' });
    const name = `corrupt/objects/sha256/${ref.sha256.slice(0, 2)}/${ref.sha256.slice(2)}`;
    const [meta] = await emu.storage.bucket(BUCKET).file(name).getMetadata();
    // Same length, same custom metadata (our sha256 and md5): only the bytes differ.
    const altered = Buffer.from(original);
    altered[5] = altered[5]! ^ 0xff;
    await emu.storage
      .bucket(BUCKET)
      .file(name)
      .save(altered, { resumable: false, metadata: { metadata: meta.metadata } });

    const reader = store('corrupt');
    expect(await reader.verify(ref)).toBe(false);
    await expect(reader.getFile(ref)).rejects.toMatchObject({ code: 'STORAGE_DIGEST_MISMATCH' });
    expect(cacheBytes(reader.cacheDir)).toBe(0); // nothing unverified is left in the cache
    // Re-running the producing step writes the same content-addressed object: the 412 finds
    // altered bytes, and the writer replaces them (guarded by the object's generation).
    expect((await reader.put(original)).sha256).toBe(ref.sha256);
    expect(await store('corrupt').verify(ref)).toBe(true);
    expect((await store('corrupt').get(ref)).equals(original)).toBe(true);
  });

  it('heals: a damaged local cache copy is refetched, a truncated record is a cache miss, a corrupt newest checkpoint falls back', async () => {
    const s = store('heal');
    const original = Buffer.from('cached bytes of a step output');
    const ref = await s.put(original);
    // One byte flipped in the local read-through cache, mtime put back: still never served.
    const local = join(s.cacheDir, 'objects', ref.sha256.slice(0, 2), ref.sha256.slice(2));
    const before = statSync(local);
    const bytes = readFileSync(local);
    bytes[0] = bytes[0]! ^ 0xff;
    writeFileSync(local, bytes);
    utimesSync(local, before.atime, before.mtime);
    expect(await s.verify(ref)).toBe(true); // the bucket's object is intact
    expect((await s.get(ref)).equals(original)).toBe(true);
    expect(readFileSync(local).equals(original)).toBe(true);

    // A truncated cache record: STORAGE_RECORD_CORRUPT from the store, a miss with a warning for a cache read.
    const key = 'b'.repeat(64);
    await s.putRecord(`cache/${key}`, { key, outputs: { model: ref } });
    await emu.storage.bucket(BUCKET).file(`heal/records/cache/${key}.json`).save('{"key":"bbb', { resumable: false });
    await expect(s.getRecord(`cache/${key}`)).rejects.toMatchObject({ code: 'STORAGE_RECORD_CORRUPT' });
    const warnings: string[] = [];
    const logger: Logger = {
      debug: () => undefined,
      info: () => undefined,
      error: () => undefined,
      warn: (_f, m) => void warnings.push(m),
    };
    expect(await readCacheRecord(s, key, logger)).toBeUndefined();
    expect(warnings).toEqual(['cache entry is unreadable; treating it as a miss']);

    // Checkpoints on gs://: the newest one altered in the bucket, so the next older one is loaded.
    warnings.length = 0;
    const owner = { workflowId: 'retrain-x', runId: 'r1', stepId: 'train', cacheKey: key };
    const ckpt = createCheckpoints(owner, { store: s, logger, heartbeat: () => undefined });
    await ckpt.save('epoch 5', { epoch: 5 }, { keep: 2 });
    const newest = await ckpt.save('epoch 10', { epoch: 10 }, { keep: 2 });
    const name = `heal/objects/sha256/${newest.ref.sha256.slice(0, 2)}/${newest.ref.sha256.slice(2)}`;
    const [meta] = await emu.storage.bucket(BUCKET).file(name).getMetadata();
    await emu.storage
      .bucket(BUCKET)
      .file(name)
      .save(Buffer.from('epoch 1X'), { resumable: false, metadata: { metadata: meta.metadata } });
    const resumed = await createCheckpoints(owner, { store: store('heal'), logger, heartbeat: () => undefined }).latest<{
      epoch: number;
    }>();
    expect(resumed?.meta.epoch).toBe(5);
    expect(resumed?.data.toString()).toBe('epoch 5');
    expect(warnings).toEqual([
      'checkpoint is missing or corrupt; trying the next older one',
      'resuming from an older checkpoint (1 newer skipped)',
    ]);
    // Another run under the same workflow ID does not see them.
    expect(await createCheckpoints({ ...owner, runId: 'r2' }, { store: s, logger, heartbeat: () => undefined }).latest()).toBeUndefined();
  });

  it('keeps keys inside the store and rejects path tricks with a clear error', async () => {
    const s = store('keys');
    for (const key of ['../escape', '/absolute', 'a/../../b', 'a/./b', '%2e%2e/x', 'a\\b', '', 'a//b']) {
      await expect(s.putRecord(key, {}), key).rejects.toMatchObject({ code: 'STORAGE_KEY_INVALID' });
      await expect(s.getRecord(key), key).rejects.toMatchObject({ code: 'STORAGE_KEY_INVALID' });
    }
    for (const uri of [
      'gs://b/../x',
      'gs://bucket/a/%2e%2e/b',
      'gs://bucket/a\\b',
      'gs://user:secret@bucket/x',
      's3://bucket/x',
      'gs://Bucket',
    ]) {
      expect(() => parseGsUri(uri), uri).toThrow(expect.objectContaining({ code: 'STORAGE_KEY_INVALID' }) as Error);
    }
    expect(parseGsUri('gs://my-bucket/team/ml/')).toEqual({ bucket: 'my-bucket', prefix: 'team/ml' });
    await expect(s.get({ kind: 'artifact', uri: '', sha256: '../../x', size: 1, mediaType: '' })).rejects.toThrow(/Not a sha256 digest/);
    expect(await objectsUnder('')).not.toContainEqual(expect.objectContaining({ name: expect.stringContaining('escape') as string }));
  });

  it('bounds the local read cache, evicting least recently used files, and refetches on demand', async () => {
    const s = store('evict', { cacheMaxBytes: 3 * 2 ** 20 + 1000 });
    const refs: ArtifactRef[] = [];
    for (let i = 0; i < 6; i++) refs.push(await s.put(randomBytes(2 ** 20)));
    expect(cacheBytes(s.cacheDir)).toBeLessThanOrEqual(3 * 2 ** 20 + 1000);
    for (const r of refs) expect((await s.get(r)).length).toBe(2 ** 20); // each read verified, evicted ones refetched
    expect(cacheBytes(s.cacheDir)).toBeLessThanOrEqual(3 * 2 ** 20 + 1000);
  });
});

describe('the housing pipeline on gs:// artifacts', () => {
  const project = createTestProject('gcs');
  const prefix = `runs-${process.pid}`;
  let stop: (() => Promise<void>) | undefined;
  let savedEnv: string | undefined;

  beforeAll(async () => {
    savedEnv = process.env['MLPIPE_GCS_ENDPOINT'];
    process.env['MLPIPE_GCS_ENDPOINT'] = emu.endpoint;
    project.settings.artifactsDir = `gs://${BUCKET}/${prefix}`;
    stop = (await startWorker(project, { tracking: null })).stop;
  });
  afterAll(async () => {
    await stop?.();
    if (savedEnv === undefined) delete process.env['MLPIPE_GCS_ENDPOINT'];
    else process.env['MLPIPE_GCS_ENDPOINT'] = savedEnv;
  });

  const cli = (args: string[]) =>
    run(process.execPath, [join(REPO, 'bin', 'mlpipe.mjs'), ...args], {
      env: {
        ...process.env,
        MLPIPE_PROJECT_DIR: project.dir,
        MLPIPE_ARTIFACTS: `gs://${BUCKET}/${prefix}`,
        MLPIPE_GCS_ENDPOINT: emu.endpoint,
      },
    });

  it('runs end to end, keeps lineage, serves verified cache hits, and reruns a step whose cached output was altered', async () => {
    const client = await createClient();
    const overrides = ['training.epochs=6', 'training.batch_size=256'];
    const go = async (id: string): Promise<PipelineResult> => {
      const h = await client.workflow.start(PIPELINE_WORKFLOW, {
        taskQueue: project.taskQueue,
        workflowId: id,
        args: [{ pipeline: 'california-housing', overrides }],
        workflowRunTimeout: '5 minutes',
      });
      return (await h.result()) as PipelineResult;
    };
    try {
      const firstId = uniqueId('housing-gcs');
      const first = await go(firstId);
      expect(Object.values(first.steps).map((s) => s.status)).toEqual(Array(9).fill('succeeded'));
      const model = first.outputs['train']!['model'] as ArtifactRef;
      expect(model.uri.startsWith(`gs://${BUCKET}/${prefix}/objects/sha256/`)).toBe(true);
      const stored = await objectsUnder(`${prefix}/objects/`);
      expect(stored.length).toBeGreaterThanOrEqual(8);
      expect(stored.some((o) => o.name.endsWith(model.sha256.slice(2)) && o.size === model.size)).toBe(true);

      // Lineage through the CLI, read from the bucket.
      const shown = await cli(['runs', 'show', firstId]);
      expect(shown.stdout).toContain(`workflow ${firstId}`);
      expect(shown.stdout).toMatch(/train\s+train\.tfjs-mlp@\d+\s+succeeded/);
      expect(shown.stdout).toContain(`${model.name ?? 'artifact'}@${model.sha256.slice(0, 12)}`);
      const lineage = await cli(['lineage', model.sha256.slice(0, 10)]);
      for (const stepId of ['train', 'transform', 'split', 'ingest']) expect(lineage.stdout).toContain(`<- ${stepId} (`);
      expect(lineage.stdout).toContain('used by:');

      // Second run: ingest re-reads its file (never cached) and writes the same bytes; every later
      // step is a cache hit, each checked against the bucket, but register (a side effect, never cached).
      const second = await go(uniqueId('housing-gcs'));
      expect(Object.fromEntries(Object.entries(second.steps).map(([id, s]) => [id, s.status]))).toEqual({
        ingest: 'succeeded',
        validate: 'cached',
        split: 'cached',
        transform: 'cached',
        train: 'cached',
        tune: 'cached',
        evaluate: 'cached',
        export: 'cached',
        register: 'succeeded',
      });
      expect(second.outputs['register']).toMatchObject({ registered: false });
      expect(second.outputs['ingest']!['dataset']).toMatchObject({ sha256: (first.outputs['ingest']!['dataset'] as ArtifactRef).sha256 });

      // Alter the transform step's cached test split in the bucket: the next run must not reuse it.
      const test = first.outputs['transform']!['test'] as ArtifactRef;
      await emu.storage
        .bucket(BUCKET)
        .file(`${prefix}/objects/sha256/${test.sha256.slice(0, 2)}/${test.sha256.slice(2)}`)
        .save(Buffer.from('not parquet'), { resumable: false });
      const third = await go(uniqueId('housing-gcs'));
      expect(third.steps['transform']!.status).toBe('succeeded');
      expect(third.steps['split']!.status).toBe('cached');
      expect((third.outputs['transform']!['test'] as ArtifactRef).sha256).toBe(test.sha256); // same bytes, rewritten
      expect(await store(prefix).verify(test)).toBe(true);

      // gc: everything stored is referenced by a manifest; nothing is collected.
      const gc = await cli(['gc', '--older-than', '0s', '--json']);
      const report = JSON.parse(gc.stdout) as { objects: number; referenced: number; collected: unknown[] };
      expect(report.collected).toEqual([]);
      expect(report.objects).toBe((await objectsUnder(`${prefix}/objects/`)).length);
    } finally {
      await client.connection.close();
    }
  });
});

describe('GCS down during a run', () => {
  // An emulator of its own, keeping its objects on disk, so that it comes back with them.
  const OUTAGE_BUCKET = 'mlpipe-outage';
  const dataDir = mkdtempSync(join(tmpdir(), 'mlpipe-gcs-outage-'));
  const project = createTestProject('gcs-outage');
  const missing = createTestProject('gcs-missing-bucket');
  const DOOMED_BUCKET = 'mlpipe-doomed';
  let outage: Emulator;
  let client: Client;
  const stops: (() => Promise<void>)[] = [];
  let savedEnv: string | undefined;

  beforeAll(async () => {
    outage = await startEmulator([OUTAGE_BUCKET], { dataDir });
    savedEnv = process.env['MLPIPE_GCS_ENDPOINT'];
    process.env['MLPIPE_GCS_ENDPOINT'] = outage.endpoint;
    project.settings.artifactsDir = `gs://${OUTAGE_BUCKET}/runs`;
    await outage.storage.createBucket(DOOMED_BUCKET);
    missing.settings.artifactsDir = `gs://${DOOMED_BUCKET}/runs`;
    stops.push((await startWorker(project, { tracking: null })).stop, (await startWorker(missing, { tracking: null })).stop);
    client = await createClient();
    const ticks = ['  ticks:', '    uses: util.sleep', '    with: { ticks: 30, tickMs: 300, journal: journal.jsonl }'];
    const write = ['  write:', '    uses: util.write', '    needs: ticks', '    with: { content: "after the outage", name: after.txt }'];
    project.write('pipelines/outage.yaml', ['name: outage', 'steps:', ...ticks, ...write, ''].join('\n'));
    missing.write(
      'pipelines/nobucket.yaml',
      [
        'name: nobucket',
        'steps:',
        '  ticks:',
        '    uses: util.sleep',
        '    retry: { maximumAttempts: 1 }',
        '    with: { ticks: 60, tickMs: 1000, journal: journal.jsonl }',
        '',
      ].join('\n'),
    );
  });
  afterAll(async () => {
    for (const stop of stops) await stop();
    await client?.connection.close();
    await outage?.stop();
    if (savedEnv === undefined) delete process.env['MLPIPE_GCS_ENDPOINT'];
    else process.env['MLPIPE_GCS_ENDPOINT'] = savedEnv;
  });

  it(
    'waits while GCS is down during a step that writes checkpoints, says so in mlpipe status, and completes once it is back',
    async () => {
      const handle = await client.workflow.start(PIPELINE_WORKFLOW, {
        taskQueue: project.taskQueue,
        workflowId: uniqueId('gcs-outage'),
        args: [{ pipeline: 'outage' }],
      });
      const { runId } = await handle.describe();
      const lines = () => project.journal().filter((l) => l.runId === runId);
      await whileRunning(handle, () => lines().filter((l) => l.event === 'tick').length >= 3, 'three checkpointed ticks');
      await outage.stop();
      const waiting = await whileRunning(
        handle,
        async () => (await stepWaiting(handle, 'ticks'))?.waiting,
        'the step to report that it waits for GCS',
      );
      expect(waiting).toMatch(new RegExp(`^waiting for GCS at http://127\\.0\\.0\\.1:${outage.port} \\(unreachable for [^)]*\\): GCS `));
      const status = await run(process.execPath, [join(REPO, 'bin', 'mlpipe.mjs'), 'status', handle.workflowId], {
        env: {
          ...process.env,
          MLPIPE_PROJECT_DIR: project.dir,
          TEMPORAL_ADDRESS: project.settings.temporalAddress,
          MLPIPE_TASK_QUEUE: project.taskQueue,
        },
      });
      expect(status.stdout).toMatch(
        new RegExp(`ticks\\s+running\\s+waiting for GCS at http://127\\.0\\.0\\.1:${outage.port} \\(unreachable for [^)]*\\)\\n`),
      );
      // Down for a while longer: the step goes on waiting in the same attempt, counting no error.
      const ticksWhenDown = lines().filter((l) => l.event === 'tick').length;
      await new Promise((r) => setTimeout(r, 20_000));
      expect((await handle.describe()).status.name).toBe('RUNNING');
      expect(await pendingStep(handle, 'ticks')).toMatchObject({ attempt: 1 });
      expect(lines().filter((l) => l.event === 'tick').length).toBeLessThanOrEqual(ticksWhenDown + 1);

      await outage.restart(); // same port, same data folder
      const result = (await handle.result()) as PipelineResult;
      expect(result.state).toBe('succeeded');
      expect(result.steps['ticks']).toMatchObject({ status: 'succeeded', attempt: 1 });
      expect(result.steps['ticks']!.errors ?? 0).toBe(0);
      expect(result.steps['write']).toMatchObject({ status: 'succeeded', attempt: 1 });
      // Every tick ran once, in the one attempt; the artifacts written before and after the outage are there.
      const ticks = lines()
        .filter((l) => l.event === 'tick')
        .map((l) => l['tick']);
      expect(ticks).toEqual(Array.from({ length: 30 }, (_, i) => i + 1));
      const after = new GcsArtifactStore({
        uri: `gs://${OUTAGE_BUCKET}/runs`,
        storage: storageAt(outage.endpoint),
        cacheDir: mkdtempSync(join(tmpdir(), 'mlpipe-gcs-cache-')),
      });
      const artifact = result.outputs['write']!['artifact'] as ArtifactRef;
      expect((await after.get(artifact)).toString()).toBe('after the outage');
      expect(await after.listRecords('checkpoints/')).not.toEqual([]);
    },
    5 * 60_000,
  );

  it(
    'fails at once, without waiting, when GCS rejects the step’s calls (its bucket was deleted)',
    async () => {
      const handle = await client.workflow.start(PIPELINE_WORKFLOW, {
        taskQueue: missing.taskQueue,
        workflowId: uniqueId('gcs-missing'),
        args: [{ pipeline: 'nobucket' }],
      });
      const { runId } = await handle.describe();
      await whileRunning(
        handle,
        () => missing.journal().filter((l) => l.runId === runId && l.event === 'tick').length >= 2,
        'two checkpointed ticks',
      );
      // The bucket goes away under the step: its next checkpoint gets 404 from GCS.
      const bucket = outage.storage.bucket(DOOMED_BUCKET);
      for (;;) {
        const [files] = await bucket.getFiles();
        for (const f of files) await f.delete({ ignoreNotFound: true });
        if (
          await bucket.delete().then(
            () => true,
            () => false,
          )
        )
          break;
      }
      const err = await handle.result().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(WorkflowFailedError);
      const message = ((err as WorkflowFailedError).cause as ApplicationFailure).message;
      expect(message).toContain("Step 'ticks' failed (STORAGE_ERROR)");
      expect(message).toMatch(/gs:\/\/mlpipe-doomed\/runs: Not Found/);
      expect(message).not.toContain('unreachable');
      const status = (await handle.query<PipelineStatus>('status')).steps['ticks']!;
      expect(status).toMatchObject({ status: 'failed', attempt: 1 });
      expect(missing.journal().filter((l) => l.runId === runId && l.event === 'tick').length).toBeLessThan(60);
    },
    2 * 60_000,
  );
});

/** The heartbeat details of a pending step activity. */
async function stepWaiting(handle: WorkflowHandle, stepId: string): Promise<{ waiting?: string } | undefined> {
  const a = (await handle.describe()).raw.pendingActivities?.find((p) => p.activityId === stepId);
  const payload = a?.heartbeatDetails?.payloads?.[0];
  return payload ? (defaultPayloadConverter.fromPayload(payload) as { waiting?: string }) : undefined;
}
