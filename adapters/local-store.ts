/**
 * The local artifact store (the embedded default): a folder, content-addressed by sha256.
 *
 *   <root>/objects/sha256/ab/cdef...   artifact bytes (immutable)
 *   <root>/records/<key>.json          small JSON records (cache manifests, checkpoint pointers)
 *
 * Writes go to a temporary file in the same folder and are renamed into place, so a reader never
 * sees a partial object and a crash leaves at most a stray temp file. Reads re-hash the bytes and
 * fail with STORAGE_DIGEST_MISMATCH when they differ from the reference. The store heals: writing
 * bytes whose object already exists checks the stored object and replaces it when it is damaged.
 */
import { createHash, randomUUID } from 'node:crypto';
import { createReadStream, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { copyFile, mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { PipelineError } from '../engine/errors.js';
import type { ArtifactStore, PutOptions, StoredObject } from '../engine/ports.js';
import type { ArtifactRef } from '../engine/types.js';

const RECORD_KEY = /^[A-Za-z0-9_.:=@-]+(\/[A-Za-z0-9_.:=@-]+)*$/;

/**
 * Record keys stay inside the store: segments of letters, digits and _ . : = @ -, no '.' or '..'
 * segment, no leading '/', no backslash or percent-encoding (so no encoded '../').
 */
export function validateRecordKey(key: string): void {
  if (!RECORD_KEY.test(key) || key.split('/').some((s) => s === '..' || s === '.')) {
    throw new PipelineError(
      'STORAGE_KEY_INVALID',
      `Invalid record key '${key}': keys are '/'-separated segments of letters, digits and _ . : = @ -, without '.' or '..' segments.`,
    );
  }
}

/**
 * An artifact digest names a file in every store: it must be 64 lowercase hex characters before it
 * reaches a path or an object name (a crafted one could otherwise name a file outside the store).
 */
export function validateDigest(sha256: unknown): void {
  if (typeof sha256 !== 'string' || !/^[a-f0-9]{64}$/.test(sha256)) {
    const shown = typeof sha256 === 'string' ? JSON.stringify(sha256.slice(0, 80)) : typeof sha256;
    throw new PipelineError('STORAGE_KEY_INVALID', `Not a sha256 digest: ${shown}.`, {
      hint: 'Artifact references carry a sha256 of 64 lowercase hex characters.',
    });
  }
}

/** Records up to this size are written synchronously (putRecord). */
const SYNC_RECORD_BYTES = 64 * 1024;

export class LocalArtifactStore implements ArtifactStore {
  readonly kind = 'local';
  readonly root: string;

  constructor(root: string) {
    this.root = resolve(root);
  }

  get location(): string {
    return this.root;
  }

  private objectPath(sha256: string): string {
    validateDigest(sha256);
    return join(this.root, 'objects', 'sha256', sha256.slice(0, 2), sha256.slice(2));
  }

  private refFor(sha256: string, size: number, options: PutOptions): ArtifactRef {
    const ref: ArtifactRef = {
      kind: 'artifact',
      uri: pathToFileURL(this.objectPath(sha256)).href,
      sha256,
      size,
      mediaType: options.mediaType ?? 'application/octet-stream',
    };
    if (options.name) ref.name = options.name;
    return ref;
  }

  /**
   * Writes `target` whole or not at all (temp file, then rename). Objects are also fsynced before
   * the rename: their digest vouches for their bytes. Records (manifests, cache entries, error
   * counts) are not: they are small, every step writes one, and an fsync each cost more than the
   * rest of a no-op step on the benchmark machine. Only a power cut or kernel crash can lose the last
   * records written (a killed process cannot); one that comes back empty or cut reads as
   * STORAGE_RECORD_CORRUPT: a cache miss for a cache entry, an error that stops `mlpipe gc`.
   */
  private async writeAtomic(target: string, data: Uint8Array | string, sync: boolean): Promise<void> {
    await mkdir(dirname(target), { recursive: true });
    const tmp = `${target}.tmp-${randomUUID()}`;
    const fh = await open(tmp, 'w');
    try {
      await fh.writeFile(data);
      if (sync) await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, target);
  }

  async put(data: Uint8Array | string, options: PutOptions = {}): Promise<ArtifactRef> {
    const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    const target = this.objectPath(sha256);
    // An object already there is checked, and replaced when its bytes were damaged.
    if (!(await this.intact(target, sha256, bytes.length))) {
      await this.writeAtomic(target, bytes, true);
      this.verified.delete(target);
    }
    return this.refFor(sha256, bytes.length, options);
  }

  async putFile(path: string, options: PutOptions = {}): Promise<ArtifactRef> {
    const before = await stat(path);
    // A file to move is fsynced while it is hashed: the disk writes its pages while the hash reads
    // them from the page cache (a 300 MiB dataset: about 0.15 s saved). A rename keeps the inode, so
    // the moved object needs no second fsync; a copy (another file system, or no `move`) gets its own.
    const [sha256, synced] = await Promise.all([hashFile(path), options.move ? syncFile(path) : Promise.resolve(false)]);
    const target = this.objectPath(sha256);
    const { size } = await stat(path);
    if (!(await this.intact(target, sha256, size))) {
      this.verified.delete(target);
      await mkdir(dirname(target), { recursive: true });
      const tmp = `${target}.tmp-${randomUUID()}`;
      let copied = true;
      if (options.move) {
        try {
          await rename(path, tmp);
          copied = false;
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'EXDEV') throw e;
          await copyFile(path, tmp); // another file system: copy
        }
      } else await copyFile(path, tmp);
      if (copied || !synced) await syncFile(tmp);
      await rename(tmp, target);
      // Moved, not rewritten: the bytes hashed above, unless the file changed while they were hashed.
      const now = await stat(target);
      if (options.move && now.ino === before.ino && now.size === before.size && now.mtimeMs === before.mtimeMs)
        this.verified.set(target, `${now.ino}:${now.size}:${now.mtimeMs}:${now.ctimeMs}`);
    }
    return this.refFor(sha256, size, options);
  }

  /** Content addressing: the digest alone locates the bytes, whatever root wrote the reference. */
  private pathOf(ref: ArtifactRef): string {
    return this.objectPath(ref.sha256);
  }

  async get(ref: ArtifactRef): Promise<Buffer> {
    validateDigest(ref.sha256);
    const path = this.pathOf(ref);
    let bytes: Buffer;
    try {
      bytes = await readFile(path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw notFound(ref, this.root);
      throw e;
    }
    const actual = createHash('sha256').update(bytes).digest('hex');
    if (actual !== ref.sha256) throw mismatch(ref, actual, path);
    return bytes;
  }

  async getFile(ref: ArtifactRef): Promise<string> {
    validateDigest(ref.sha256);
    const path = this.pathOf(ref);
    if (!(await exists(path))) throw notFound(ref, this.root);
    // A file this process wrote or checked, untouched since, is not hashed again (see `verified`).
    if (await this.intact(path, ref.sha256, ref.size)) return path;
    throw mismatch(ref, await hashFile(path), path);
  }

  async exists(ref: ArtifactRef): Promise<boolean> {
    validateDigest(ref.sha256);
    return exists(this.pathOf(ref));
  }

  async delete(ref: ArtifactRef): Promise<void> {
    validateDigest(ref.sha256);
    await rm(this.pathOf(ref), { force: true });
    this.verified.delete(this.pathOf(ref));
  }

  /**
   * Files verified by this process, by path -> "inode:size:mtime:ctime": a file not touched since is
   * not re-hashed. The change time is in the stamp because a writer can restore a file's mtime
   * (utimes) but not its ctime, which every write and every utimes call moves.
   */
  private readonly verified = new Map<string, string>();

  /** Whether the object file at `path` exists with `size` bytes hashing to `sha256`. */
  private async intact(path: string, sha256: string, size: number): Promise<boolean> {
    const s = await stat(path).catch(() => undefined);
    if (!s || s.size !== size) return false;
    const stamp = `${s.ino}:${s.size}:${s.mtimeMs}:${s.ctimeMs}`;
    if (this.verified.get(path) === stamp) return true;
    if ((await hashFile(path)) !== sha256) {
      this.verified.delete(path);
      return false;
    }
    this.verified.set(path, stamp);
    return true;
  }

  async verify(ref: ArtifactRef): Promise<boolean> {
    validateDigest(ref.sha256);
    return this.intact(this.pathOf(ref), ref.sha256, ref.size);
  }

  async *listObjects(): AsyncIterable<StoredObject> {
    const base = join(this.root, 'objects', 'sha256');
    for (const d of (await readdir(base).catch(() => [] as string[])).sort()) {
      for (const f of (await readdir(join(base, d)).catch(() => [] as string[])).sort()) {
        if (f.includes('.tmp-')) continue;
        const s = await stat(join(base, d, f)).catch(() => undefined);
        if (s?.isFile()) yield { sha256: d + f, size: s.size, created: s.mtime };
      }
    }
  }

  async deleteRecord(key: string): Promise<void> {
    await rm(this.recordPath(key), { force: true });
  }

  private recordPath(key: string): string {
    validateRecordKey(key);
    return join(this.root, 'records', `${key}.json`);
  }

  async putRecord(key: string, value: unknown): Promise<void> {
    const target = this.recordPath(key);
    const text = JSON.stringify(value);
    if (text.length > SYNC_RECORD_BYTES) return this.writeAtomic(target, text, false);
    // A small record (a step manifest, a cache entry, an error count: one per step) is written with
    // synchronous calls, atomically (temp file and rename) and without fsync: a few tens of
    // microseconds, where the same calls through the thread pool queue behind every other file
    // operation of the worker (100 steps ending at once).
    const tmp = `${target}.tmp-${randomUUID()}`;
    try {
      writeFileSync(tmp, text);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      mkdirSync(dirname(target), { recursive: true });
      writeFileSync(tmp, text);
    }
    renameSync(tmp, target);
  }

  async getRecord<T = unknown>(key: string): Promise<T | undefined> {
    const path = this.recordPath(key);
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
    return parseRecord<T>(text, key, path);
  }

  async listRecords(prefix: string): Promise<string[]> {
    const base = join(this.root, 'records');
    const out: string[] = [];
    const walk = async (dir: string): Promise<void> => {
      let entries;
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch {
        return;
      }
      for (const e of entries) {
        const p = join(dir, e.name);
        if (e.isDirectory()) await walk(p);
        else if (e.name.endsWith('.json')) {
          const key = relative(base, p)
            .split('\\')
            .join('/')
            .replace(/\.json$/, '');
          if (key.startsWith(prefix)) out.push(key);
        }
      }
    };
    await walk(base);
    return out.sort();
  }

  /** Removes everything (tests). */
  async clear(): Promise<void> {
    await rm(this.root, { recursive: true, force: true });
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * Read size for hashing: 4 MiB chunks hash a 178 MiB Parquet file in 0.22 s here, the stream's
 * default 64 KiB in 0.59 s (docs/benchmarks.md, data stages).
 */
const HASH_CHUNK = 4 << 20;

/** fsync of a file's data (true once done). */
async function syncFile(path: string): Promise<boolean> {
  const fh = await open(path, 'r+');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
  return true;
}

export async function hashFile(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: HASH_CHUNK })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** sha256 (hex) and MD5 (base64, as GCS reports md5Hash) of a file, in one streaming pass. */
export async function hashFileDigests(path: string): Promise<{ sha256: string; md5: string }> {
  const sha = createHash('sha256');
  const md5 = createHash('md5');
  for await (const chunk of createReadStream(path, { highWaterMark: HASH_CHUNK })) {
    sha.update(chunk as Buffer);
    md5.update(chunk as Buffer);
  }
  return { sha256: sha.digest('hex'), md5: md5.digest('base64') };
}

/** A record's JSON; unreadable text (truncated, not JSON) is STORAGE_RECORD_CORRUPT, which callers may treat as absent. */
export function parseRecord<T>(text: string, key: string, where: string): T {
  try {
    return JSON.parse(text) as T;
  } catch (e) {
    throw new PipelineError('STORAGE_RECORD_CORRUPT', `Record '${key}' at ${where} is not valid JSON (${(e as Error).message}).`, {
      hint: 'It was damaged or cut short; delete it (a cache entry or checkpoint record is rebuilt by running the step).',
    });
  }
}

function notFound(ref: ArtifactRef, root: string): PipelineError {
  return new PipelineError(
    'STORAGE_NOT_FOUND',
    `Artifact ${ref.name ?? ''} sha256:${ref.sha256.slice(0, 12)}… is not in the store at ${root}.`,
    {
      hint: 'It may have been deleted, or the worker uses another store (check MLPIPE_ARTIFACTS).',
    },
  );
}

function mismatch(ref: ArtifactRef, actual: string, path: string): PipelineError {
  return new PipelineError('STORAGE_DIGEST_MISMATCH', `Artifact at ${path} is corrupt: expected sha256 ${ref.sha256}, found ${actual}.`, {
    hint: 'Delete the file and re-run the step that produced it (run with cache disabled for that step).',
  });
}
