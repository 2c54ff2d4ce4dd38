/**
 * The artifact store on Google Cloud Storage, with a local read-through cache.
 *
 *   gs://<bucket>/<prefix>/objects/sha256/ab/cdef...   artifact bytes, content-addressed, immutable
 *   gs://<bucket>/<prefix>/records/<key>.json          small JSON records
 *
 * Writes are idempotent: objects are created with `ifGenerationMatch: 0`, so of two writers of the
 * same bytes one creates the object and the other gets 412, then checks that what is there has the
 * right size and digest. Small objects go in one request; from `resumableFromBytes` (8 MiB) up,
 * files are streamed as resumable uploads, which become visible only when complete: an upload cut
 * short leaves no object. Every read is verified against the reference's sha256.
 *
 * Reads go through a local cache folder (local first, then the bucket), bounded by `cacheMaxBytes`
 * and evicting the least recently used files.
 */
import type { File, Storage } from '@google-cloud/storage';
import { createHash, randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, stat, utimes } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { request } from 'undici';
import { PipelineError } from '../engine/errors.js';
import type { ArtifactStore, PutOptions, RemoteService, StoredObject } from '../engine/ports.js';
import type { ArtifactRef } from '../engine/types.js';
import { hashFile, hashFileDigests, parseRecord, validateDigest, validateRecordKey } from './local-store.js';
import { requireOptional } from './optional.js';

export interface GcsStoreOptions {
  /** gs://bucket/prefix */
  uri: string;
  storage?: Storage;
  /** Local read-through cache folder. */
  cacheDir: string;
  /** Default 10 GiB. */
  cacheMaxBytes?: number;
  /** Files from this size up are uploaded resumably (default 8 MiB). */
  resumableFromBytes?: number;
}

export function parseGsUri(uri: string): { bucket: string; prefix: string } {
  const m = /^gs:\/\/([a-z0-9][a-z0-9._-]{1,221}[a-z0-9])(?:\/(.*))?$/.exec(uri);
  if (!m) throw new PipelineError('STORAGE_KEY_INVALID', `Not a GCS URI: '${uri}'.`, { hint: 'Write gs://<bucket>/<optional prefix>.' });
  const prefix = (m[2] ?? '').replace(/\/+$/, '');
  if (prefix.split('/').some((s) => s === '..' || s === '.') || /%2e|%2f|\\/i.test(prefix)) {
    throw new PipelineError('STORAGE_KEY_INVALID', `GCS prefix '${prefix}' contains a path trick ('..', '.', encoded separators).`);
  }
  return { bucket: m[1]!, prefix };
}

/** A Storage client: MLPIPE_GCS_ENDPOINT points it at an emulator; otherwise Application Default Credentials. */
export function storageFromEnv(env: NodeJS.ProcessEnv = process.env): Storage {
  // An optional package: loaded on first use of a gs:// location.
  const { Storage } = requireOptional<typeof import('@google-cloud/storage')>(
    '@google-cloud/storage',
    'A gs:// location (artifact store or MLflow artifacts)',
  );
  const endpoint = env['MLPIPE_GCS_ENDPOINT'];
  return endpoint ? new Storage({ apiEndpoint: endpoint, projectId: env['GOOGLE_CLOUD_PROJECT'] ?? 'mlpipe-local' }) : new Storage();
}

function code(e: unknown): number | undefined {
  const c = (e as { code?: unknown }).code;
  return typeof c === 'number' ? c : undefined;
}

/** Error codes of a connection that failed or was cut (Node, undici, the GCS client's own names). */
const CONNECTION_CODES = new Set([
  'econnrefused',
  'econnreset',
  'econnaborted',
  'etimedout',
  'epipe',
  'ehostunreach',
  'ehostdown',
  'enetunreach',
  'enetdown',
  'eai_again',
  'und_err_socket',
  'und_err_connect_timeout',
  'und_err_headers_timeout',
  'und_err_body_timeout',
  'err_stream_premature_close',
  'socket connection timeout',
  'unexpected connection closure',
]);
const CONNECTION_MESSAGE =
  /\b(ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|EHOSTUNREACH|ENETUNREACH|EAI_AGAIN)\b|socket hang up|other side closed|premature close|network timeout/i;

function httpStatus(e: object): number | undefined {
  const o = e as { code?: unknown; status?: unknown; response?: { status?: unknown } };
  for (const v of [o.code, o.status, o.response?.status]) {
    const n = typeof v === 'number' ? v : typeof v === 'string' && /^\d{3}$/.test(v) ? Number(v) : undefined;
    if (n !== undefined && n >= 100 && n < 600) return n;
  }
  return undefined;
}

/**
 * Whether an error of a GCS call means GCS could not be reached or could not serve for now: no
 * connection (refused, reset, cut), a timeout, 408, 429 or a 5xx, after the client library's own
 * retries. Worth waiting for. A 4xx (403 permission denied, 404 no such bucket, ...) is a
 * rejection, and so is every error of the store's own checks (digest mismatch, bad key).
 */
export function isGcsUnavailable(error: unknown): boolean {
  const seen = new Set<unknown>();
  const visit = (e: unknown): boolean | undefined => {
    if (e === null || typeof e !== 'object' || seen.has(e)) return undefined;
    seen.add(e);
    // The store's own verdicts (STORAGE_NOT_FOUND, STORAGE_DIGEST_MISMATCH, ...) are final; a
    // STORAGE_ERROR says what its cause says.
    const own = (e as { code?: unknown }).code;
    if (e instanceof PipelineError && own !== 'STORAGE_ERROR') return false;
    const status = httpStatus(e);
    if (status !== undefined) return status === 408 || status === 429 || status >= 500;
    if (typeof own === 'string' && CONNECTION_CODES.has(own.toLowerCase())) return true;
    if ((e as { type?: unknown }).type === 'request-timeout') return true;
    for (const sub of (e as { errors?: unknown }).errors instanceof Array ? (e as { errors: unknown[] }).errors : []) {
      const reason = (sub as { reason?: unknown } | null)?.reason;
      if (typeof reason === 'string' && CONNECTION_CODES.has(reason.toLowerCase())) return true;
      const v = visit(sub);
      if (v !== undefined) return v;
    }
    const cause = visit((e as { cause?: unknown }).cause);
    if (cause !== undefined) return cause;
    return e instanceof Error && CONNECTION_MESSAGE.test(e.message) ? true : undefined;
  };
  return visit(error) ?? false;
}

export class GcsArtifactStore implements ArtifactStore {
  readonly kind = 'gcs';
  readonly bucket: string;
  readonly prefix: string;
  private readonly storage: Storage;
  /** The local read-through cache folder. */
  readonly cacheDir: string;
  private readonly cacheMax: number;
  private readonly resumableFrom: number;

  constructor(o: GcsStoreOptions) {
    ({ bucket: this.bucket, prefix: this.prefix } = parseGsUri(o.uri));
    this.storage = o.storage ?? storageFromEnv();
    this.cacheDir = o.cacheDir;
    this.cacheMax = o.cacheMaxBytes ?? 10 * 2 ** 30;
    this.resumableFrom = o.resumableFromBytes ?? 8 * 2 ** 20;
  }

  get location(): string {
    return `gs://${this.bucket}${this.prefix ? `/${this.prefix}` : ''}`;
  }

  /** GCS, at the endpoint this store talks to: what a step waits for while it is unreachable. */
  get service(): RemoteService {
    return { name: 'GCS', location: this.storage.apiEndpoint, isUnavailable: isGcsUnavailable };
  }

  private name(rel: string): string {
    return this.prefix ? `${this.prefix}/${rel}` : rel;
  }

  private objectName(sha256: string): string {
    validateDigest(sha256);
    return this.name(`objects/sha256/${sha256.slice(0, 2)}/${sha256.slice(2)}`);
  }

  private file(name: string): File {
    return this.storage.bucket(this.bucket).file(name);
  }

  private cachePath(sha256: string): string {
    validateDigest(sha256);
    return join(this.cacheDir, 'objects', sha256.slice(0, 2), sha256.slice(2));
  }

  private ref(sha256: string, size: number, o: PutOptions): ArtifactRef {
    const ref: ArtifactRef = {
      kind: 'artifact',
      uri: `gs://${this.bucket}/${this.objectName(sha256)}`,
      sha256,
      size,
      mediaType: o.mediaType ?? 'application/octet-stream',
    };
    if (o.name) ref.name = o.name;
    return ref;
  }

  private fail(what: string, e: unknown): PipelineError {
    return new PipelineError('STORAGE_ERROR', `GCS ${what} failed for gs://${this.bucket}/${this.prefix}: ${(e as Error).message}`, {
      hint: 'Check the bucket, the credentials (Application Default Credentials) or MLPIPE_GCS_ENDPOINT.',
      cause: e,
    });
  }

  /**
   * Whether the object at `name` is the one we would write: same size, our sha256 in its metadata,
   * and the MD5 GCS computed over the stored bytes equal to the MD5 we computed before the upload
   * (so bytes altered after the upload are caught without downloading them).
   */
  private matches(
    meta: { size?: string | number; md5Hash?: string; metadata?: Record<string, unknown> },
    sha256: string,
    size: number,
  ): boolean {
    const custom = meta.metadata ?? {};
    return Number(meta.size) === size && custom['sha256'] === sha256 && typeof custom['md5'] === 'string' && custom['md5'] === meta.md5Hash;
  }

  /**
   * After a 412 the object exists. If it is ours (same size and digests) the write is done. If not,
   * its bytes were altered after upload: since the name is the digest, the right content is not in
   * doubt, so it is replaced, guarded by its generation (a concurrent repair makes this one a no-op).
   */
  private async settleExisting(name: string, sha256: string, size: number, rewrite: (generation: number) => Promise<void>): Promise<void> {
    const [meta] = await this.file(name).getMetadata();
    if (this.matches(meta, sha256, size)) return;
    try {
      await rewrite(Number(meta.generation));
    } catch (e) {
      if (code(e) === 412) return this.settleExisting(name, sha256, size, () => Promise.reject(this.corrupt(name, meta)));
      throw e instanceof PipelineError ? e : this.fail('repair upload', e);
    }
  }

  private corrupt(name: string, meta: { size?: string | number; md5Hash?: string; metadata?: Record<string, unknown> }): PipelineError {
    return new PipelineError(
      'STORAGE_DIGEST_MISMATCH',
      `gs://${this.bucket}/${name} holds other bytes than its name says (size ${String(meta.size)}, md5 ${String(meta.md5Hash)}).`,
      {
        hint: 'Delete the object and re-run the step that produced it.',
      },
    );
  }

  async put(data: Uint8Array | string, options: PutOptions = {}): Promise<ArtifactRef> {
    const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : Buffer.from(data);
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    const md5 = createHash('md5').update(bytes).digest('base64');
    const name = this.objectName(sha256);
    const upload = (generation: number) =>
      this.file(name).save(bytes, {
        resumable: false,
        validation: 'md5',
        contentType: options.mediaType ?? 'application/octet-stream',
        metadata: { metadata: { sha256, md5 } },
        preconditionOpts: { ifGenerationMatch: generation },
      });
    try {
      await upload(0);
    } catch (e) {
      if (code(e) === 412) await this.settleExisting(name, sha256, bytes.length, upload);
      else throw this.fail('upload', e);
    }
    await this.cacheBytes(sha256, bytes);
    return this.ref(sha256, bytes.length, options);
  }

  async putFile(path: string, options: PutOptions = {}): Promise<ArtifactRef> {
    const { sha256, md5 } = await hashFileDigests(path);
    const { size } = await stat(path);
    const name = this.objectName(sha256);
    const contentType = options.mediaType ?? 'application/octet-stream';
    const upload = (generation: number): Promise<void> =>
      size >= this.resumableFrom
        ? this.resumableUpload(path, name, { size, md5, sha256, contentType, generation })
        : pipeline(
            createReadStream(path),
            this.file(name).createWriteStream({
              resumable: false,
              validation: 'md5',
              contentType,
              metadata: { metadata: { sha256, md5 } },
              preconditionOpts: { ifGenerationMatch: generation },
            }),
          );
    try {
      await upload(0);
    } catch (e) {
      if (code(e) === 412) await this.settleExisting(name, sha256, size, upload);
      else throw e instanceof PipelineError ? e : this.fail('upload', e);
    }
    if (options.move) await rm(path, { force: true });
    return this.ref(sha256, size, options);
  }

  /**
   * A resumable upload, driven here rather than by the client library's stream: the library opens
   * the session (authenticated, with our metadata and the generation precondition), then the file
   * goes up in one PUT to the session URI, streamed from disk. The object appears only when the
   * last byte has arrived, so a cut upload leaves nothing visible. After a connection error or a
   * 408/429/5xx the upload starts again from byte 0 in a new session (at most 4 tries): it does not
   * ask the session for its offset, because fake-gcs-server commits the partial bytes when asked.
   * The session URI is itself a credential, so it never appears in messages or logs.
   */
  private async resumableUpload(
    path: string,
    name: string,
    o: { size: number; md5: string; sha256: string; contentType: string; generation: number },
  ): Promise<void> {
    let lastError = '';
    let lastCause: unknown;
    for (let attempt = 1; attempt <= 4; attempt++) {
      if (attempt > 1) await new Promise((r) => setTimeout(r, 250 * 2 ** attempt * (0.5 + Math.random() / 2)));
      const [session] = await this.file(name).createResumableUpload({
        metadata: { contentType: o.contentType, metadata: { sha256: o.sha256, md5: o.md5 } },
        preconditionOpts: { ifGenerationMatch: o.generation },
      });
      let status: number;
      let body: string;
      try {
        const res = await request(session, {
          method: 'PUT',
          headers: { 'content-length': String(o.size), 'content-type': o.contentType },
          body: createReadStream(path),
        });
        status = res.statusCode;
        body = await res.body.text();
      } catch (e) {
        lastError = `connection failed (${(e as Error).message})`;
        lastCause = e;
        continue;
      }
      if (status === 200 || status === 201) {
        const meta = JSON.parse(body) as { size?: string; md5Hash?: string };
        if (Number(meta.size) !== o.size || (meta.md5Hash !== undefined && meta.md5Hash !== o.md5)) {
          throw new PipelineError(
            'STORAGE_DIGEST_MISMATCH',
            `GCS stored gs://${this.bucket}/${name} with other bytes than were sent (size ${String(meta.size)} of ${o.size}, md5 ${String(meta.md5Hash)}).`,
          );
        }
        return;
      }
      if (status === 412) throw Object.assign(new Error('precondition failed'), { code: 412 });
      lastError = `HTTP ${status}: ${body.slice(0, 200)}`;
      lastCause = Object.assign(new Error(lastError), { code: status });
      if (!(status === 404 || status === 408 || status === 410 || status === 429 || status >= 500)) break;
    }
    throw new PipelineError('STORAGE_ERROR', `GCS upload failed for gs://${this.bucket}/${name}: ${lastError}.`, {
      hint: 'Check the bucket, the credentials (Application Default Credentials) or MLPIPE_GCS_ENDPOINT; the step can be retried safely.',
      cause: lastCause,
    });
  }

  /** The verified content in the local cache, downloading it first when missing. */
  async getFile(ref: ArtifactRef): Promise<string> {
    validateDigest(ref.sha256);
    const local = this.cachePath(ref.sha256);
    try {
      if ((await hashFile(local)) === ref.sha256) {
        const now = new Date();
        await utimes(local, now, now); // recency, for eviction
        return local;
      }
      await rm(local, { force: true }); // a corrupt cache entry: fetch again
    } catch {
      /* not cached */
    }
    const name = this.objectName(ref.sha256);
    await mkdir(dirname(local), { recursive: true });
    const tmp = `${local}.tmp-${randomUUID()}`;
    const hash = createHash('sha256');
    try {
      const source = this.file(name).createReadStream({ validation: false });
      source.on('data', (c: Buffer) => hash.update(c));
      await pipeline(source, createWriteStream(tmp));
    } catch (e) {
      await rm(tmp, { force: true });
      if (code(e) === 404) {
        throw new PipelineError(
          'STORAGE_NOT_FOUND',
          `Artifact ${ref.name ?? ''} sha256:${ref.sha256.slice(0, 12)}… is not in gs://${this.bucket}/${this.prefix}.`,
          {
            hint: 'It may have been deleted (gc), or the worker uses another store (check MLPIPE_ARTIFACTS).',
          },
        );
      }
      throw this.fail('download', e);
    }
    const actual = hash.digest('hex');
    if (actual !== ref.sha256) {
      await rm(tmp, { force: true });
      throw new PipelineError(
        'STORAGE_DIGEST_MISMATCH',
        `Artifact gs://${this.bucket}/${name} is corrupt: expected sha256 ${ref.sha256}, found ${actual}.`,
        {
          hint: 'Delete the object and re-run the step that produced it (run with cache disabled for that step).',
        },
      );
    }
    await rename(tmp, local);
    await this.evict();
    return local;
  }

  async get(ref: ArtifactRef): Promise<Buffer> {
    validateDigest(ref.sha256);
    return readFile(await this.getFile(ref));
  }

  async exists(ref: ArtifactRef): Promise<boolean> {
    validateDigest(ref.sha256);
    try {
      await this.file(this.objectName(ref.sha256)).getMetadata();
      return true;
    } catch (e) {
      if (code(e) === 404) return false;
      throw this.fail('stat', e);
    }
  }

  async verify(ref: ArtifactRef): Promise<boolean> {
    validateDigest(ref.sha256);
    try {
      const [meta] = await this.file(this.objectName(ref.sha256)).getMetadata();
      return this.matches(meta, ref.sha256, ref.size);
    } catch (e) {
      if (code(e) === 404) return false;
      throw this.fail('stat', e);
    }
  }

  async *listObjects(): AsyncIterable<StoredObject> {
    const base = this.name('objects/sha256/');
    let pageToken: string | undefined;
    do {
      const [files, next] = await this.storage
        .bucket(this.bucket)
        .getFiles({ prefix: base, autoPaginate: false, maxResults: 1000, ...(pageToken ? { pageToken } : {}) });
      for (const f of files) {
        const digest = f.name.slice(base.length).replace('/', '');
        if (!/^[a-f0-9]{64}$/.test(digest)) continue;
        yield { sha256: digest, size: Number(f.metadata.size), created: new Date(String(f.metadata.timeCreated)) };
      }
      pageToken = (next as { pageToken?: string } | null)?.pageToken;
    } while (pageToken);
  }

  async delete(ref: ArtifactRef): Promise<void> {
    validateDigest(ref.sha256);
    await this.file(this.objectName(ref.sha256)).delete({ ignoreNotFound: true });
    await rm(this.cachePath(ref.sha256), { force: true });
  }

  private recordName(key: string): string {
    validateRecordKey(key);
    return this.name(`records/${key}.json`);
  }

  async putRecord(key: string, value: unknown): Promise<void> {
    const name = this.recordName(key);
    try {
      await this.file(name).save(JSON.stringify(value), { resumable: false, contentType: 'application/json' });
    } catch (e) {
      throw this.fail(`record write '${key}'`, e);
    }
  }

  async getRecord<T = unknown>(key: string): Promise<T | undefined> {
    const name = this.recordName(key);
    let bytes: Buffer;
    try {
      [bytes] = await this.file(name).download();
    } catch (e) {
      if (code(e) === 404) return undefined;
      throw this.fail(`record read '${key}'`, e);
    }
    return parseRecord<T>(bytes.toString('utf8'), key, `gs://${this.bucket}/${name}`);
  }

  async deleteRecord(key: string): Promise<void> {
    await this.file(this.recordName(key)).delete({ ignoreNotFound: true });
  }

  async listRecords(prefix: string): Promise<string[]> {
    const base = this.name('records/');
    const [files] = await this.storage.bucket(this.bucket).getFiles({ prefix: `${base}${prefix}` });
    return files
      .map((f) => f.name.slice(base.length))
      .filter((n) => n.endsWith('.json'))
      .map((n) => n.slice(0, -'.json'.length))
      .sort();
  }

  private async cacheBytes(sha256: string, bytes: Buffer): Promise<void> {
    const local = this.cachePath(sha256);
    await mkdir(dirname(local), { recursive: true });
    const tmp = `${local}.tmp-${randomUUID()}`;
    await pipeline(async function* () {
      yield bytes;
    }, createWriteStream(tmp));
    await rename(tmp, local);
    await this.evict();
  }

  /** Keeps the cache under its bound, dropping the least recently used files first. */
  private async evict(): Promise<void> {
    const root = join(this.cacheDir, 'objects');
    const files: { path: string; size: number; mtime: number }[] = [];
    for (const d of await readdir(root).catch(() => [] as string[])) {
      for (const f of await readdir(join(root, d)).catch(() => [] as string[])) {
        if (f.includes('.tmp-')) continue;
        const p = join(root, d, f);
        const s = await stat(p).catch(() => undefined);
        if (s) files.push({ path: p, size: s.size, mtime: s.mtimeMs });
      }
    }
    let total = files.reduce((n, f) => n + f.size, 0);
    for (const f of files.sort((a, b) => a.mtime - b.mtime)) {
      if (total <= this.cacheMax) break;
      await rm(f.path, { force: true });
      total -= f.size;
    }
  }
}
