/**
 * The local artifact store (the embedded default): a folder, content-addressed by sha256.
 *
 *   <root>/objects/sha256/ab/cdef...   artifact bytes (immutable)
 *   <root>/records/<key>.json          small JSON records (cache manifests, checkpoint pointers)
 *
 * Writes go to a temporary file in the same folder and are renamed into place, so a reader never
 * sees a partial object and a crash leaves at most a stray temp file. Reads re-hash the bytes and
 * fail with STORAGE_DIGEST_MISMATCH when they differ from the reference.
 */
import { createHash, randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { copyFile, mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { StorageError } from '../engine/errors.js';
import type { ArtifactStore, PutOptions } from '../engine/ports.js';
import type { ArtifactRef } from '../engine/types.js';

const RECORD_KEY = /^[A-Za-z0-9_.:=@-]+(\/[A-Za-z0-9_.:=@-]+)*$/;

export class LocalArtifactStore implements ArtifactStore {
  readonly kind = 'local';
  readonly root: string;

  constructor(root: string) {
    this.root = resolve(root);
  }

  private objectPath(sha256: string): string {
    if (!/^[a-f0-9]{64}$/.test(sha256)) throw new StorageError('STORAGE_ERROR', `Not a sha256 digest: '${sha256}'.`);
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

  private async writeAtomic(target: string, data: Uint8Array | string): Promise<void> {
    await mkdir(dirname(target), { recursive: true });
    const tmp = `${target}.tmp-${randomUUID()}`;
    const fh = await open(tmp, 'w');
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, target);
  }

  async put(data: Uint8Array | string, options: PutOptions = {}): Promise<ArtifactRef> {
    const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    const target = this.objectPath(sha256);
    if (!(await exists(target))) await this.writeAtomic(target, bytes);
    return this.refFor(sha256, bytes.length, options);
  }

  async putFile(path: string, options: PutOptions = {}): Promise<ArtifactRef> {
    const sha256 = await hashFile(path);
    const target = this.objectPath(sha256);
    const { size } = await stat(path);
    if (!(await exists(target))) {
      await mkdir(dirname(target), { recursive: true });
      const tmp = `${target}.tmp-${randomUUID()}`;
      if (options.move) {
        try {
          await rename(path, tmp);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'EXDEV') throw e;
          await copyFile(path, tmp); // another file system: copy
        }
      } else await copyFile(path, tmp);
      const fh = await open(tmp, 'r+');
      await fh.sync();
      await fh.close();
      await rename(tmp, target);
    }
    return this.refFor(sha256, size, options);
  }

  /** Content addressing: the digest alone locates the bytes, whatever root wrote the reference. */
  private pathOf(ref: ArtifactRef): string {
    return this.objectPath(ref.sha256);
  }

  async get(ref: ArtifactRef): Promise<Buffer> {
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
    const path = this.pathOf(ref);
    if (!(await exists(path))) throw notFound(ref, this.root);
    const actual = await hashFile(path);
    if (actual !== ref.sha256) throw mismatch(ref, actual, path);
    return path;
  }

  async exists(ref: ArtifactRef): Promise<boolean> {
    return exists(this.pathOf(ref));
  }

  async delete(ref: ArtifactRef): Promise<void> {
    await rm(this.pathOf(ref), { force: true });
  }

  private recordPath(key: string): string {
    if (!RECORD_KEY.test(key) || key.split('/').includes('..')) {
      throw new StorageError('STORAGE_ERROR', `Invalid record key '${key}'.`);
    }
    return join(this.root, 'records', `${key}.json`);
  }

  async putRecord(key: string, value: unknown): Promise<void> {
    await this.writeAtomic(this.recordPath(key), JSON.stringify(value));
  }

  async getRecord<T = unknown>(key: string): Promise<T | undefined> {
    try {
      return JSON.parse(await readFile(this.recordPath(key), 'utf8')) as T;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
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
          const key = relative(base, p).split('\\').join('/').replace(/\.json$/, '');
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

export async function hashFile(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

function notFound(ref: ArtifactRef, root: string): StorageError {
  return new StorageError('STORAGE_NOT_FOUND', `Artifact ${ref.name ?? ''} sha256:${ref.sha256.slice(0, 12)}… is not in the store at ${root}.`, {
    hint: 'It may have been deleted, or the worker uses another store (check MLPIPE_ARTIFACTS).',
  });
}

function mismatch(ref: ArtifactRef, actual: string, path: string): StorageError {
  return new StorageError('STORAGE_DIGEST_MISMATCH', `Artifact at ${path} is corrupt: expected sha256 ${ref.sha256}, found ${actual}.`, {
    hint: 'Delete the file and re-run the step that produced it (run with cache disabled for that step).',
  });
}
