/**
 * Ports: the small interfaces through which plugins and activities reach the outside world.
 * Implementations live in adapters/ (local folder, GCS, ...); unit tests may use in-memory fakes.
 */
import type { ArtifactRef } from './types.js';

export interface PutOptions {
  mediaType?: string;
  /** A human-readable file name kept in the reference. */
  name?: string;
  /** putFile only: the caller gives the file up, so the store may move it instead of copying. */
  move?: boolean;
}

export interface ArtifactStore {
  /** e.g. "local", "gcs". */
  readonly kind: string;
  /** Stores bytes, content-addressed by sha256. Idempotent: the same bytes give the same reference. */
  put(data: Uint8Array | string, options?: PutOptions): Promise<ArtifactRef>;
  /** Stores a file by streaming it (large datasets, models). */
  putFile(path: string, options?: PutOptions): Promise<ArtifactRef>;
  /** Reads the bytes and checks them against the reference's digest (STORAGE_DIGEST_MISMATCH). */
  get(ref: ArtifactRef): Promise<Buffer>;
  /** A local file path holding the verified content (downloaded and cached for remote stores). */
  getFile(ref: ArtifactRef): Promise<string>;
  exists(ref: ArtifactRef): Promise<boolean>;
  /** Removes an artifact (pruning old checkpoints). Content-addressed: only for bytes nobody else references. */
  delete?(ref: ArtifactRef): Promise<void>;
  /** Small JSON records under string keys: cache manifests, checkpoint pointers. Atomic replace. */
  putRecord(key: string, value: unknown): Promise<void>;
  getRecord<T = unknown>(key: string): Promise<T | undefined>;
  listRecords(prefix: string): Promise<string[]>;
}

export interface Logger {
  debug(fields: Record<string, unknown>, message: string): void;
  info(fields: Record<string, unknown>, message: string): void;
  warn(fields: Record<string, unknown>, message: string): void;
  error(fields: Record<string, unknown>, message: string): void;
}
