/**
 * A step's checkpoints (StepContext.checkpoint). A checkpoint belongs to one attempt chain of one
 * step of one run: its record lives at `checkpoints/<workflowId>/<runId>/<stepId>/<cacheKey>` and
 * stores that key, and `latest()` only returns a checkpoint whose key matches. A new run that reuses
 * a workflow ID (every drift-triggered retrain does), or the same step with other params or inputs,
 * starts fresh. A heartbeat pointer from another key is ignored the same way.
 *
 * A checkpoint whose bytes fail their digest (or are gone) is skipped for the next older one kept
 * (`recent`), with a warning; an unreadable record counts as no checkpoint, with a warning.
 */
import { keySegment } from '../engine/lineage.js';
import { PipelineError } from '../engine/errors.js';
import type { ArtifactStore, Logger } from '../engine/ports.js';
import type { Checkpoint, Checkpoints } from '../plugins/sdk.js';

/** What a checkpoint is keyed by: the run and the step's cache key (plugin, version, params, inputs). */
export interface CheckpointOwner {
  workflowId: string;
  runId: string;
  stepId: string;
  cacheKey: string;
}

/**
 * The record as stored: the checkpoint, the key it was saved under, and the kept checkpoints
 * newest first with their meta (so an older one can stand in for a corrupt newer one).
 */
type StoredCheckpoint<M> = Checkpoint<M> & { key?: string; history?: { ref: Checkpoint<M>['ref']; meta: M; savedAt: string }[] };

export function checkpointKey(o: CheckpointOwner): string {
  return `checkpoints/${keySegment(o.workflowId)}/${keySegment(o.runId)}/${keySegment(o.stepId)}/${keySegment(o.cacheKey)}`;
}

export interface CheckpointDeps {
  store: ArtifactStore;
  logger: Logger;
  /** Heartbeats details (the pointer to the newest checkpoint). */
  heartbeat: (details: Record<string, unknown>) => void;
  /** The heartbeat details of the previous attempt, if any. */
  heartbeatDetails?: unknown;
}

export function createCheckpoints(owner: CheckpointOwner, deps: CheckpointDeps, stream?: string): Checkpoints {
  const { store, logger } = deps;
  // A named stream: its own record beside the step's (`<key>/stream-<name>`), never heartbeated.
  const key = stream === undefined ? checkpointKey(owner) : `${checkpointKey(owner)}/${keySegment(`stream-${stream}`)}`;
  const heartbeat = stream === undefined ? deps.heartbeat : () => undefined;
  const heartbeatDetails = stream === undefined ? deps.heartbeatDetails : undefined;

  const readRecord = async <M>(): Promise<StoredCheckpoint<M> | undefined> => {
    try {
      const r = await store.getRecord<StoredCheckpoint<M>>(key);
      if (r && (r.key !== key || !r.ref)) {
        logger.warn({ record: key, found: r.key }, 'checkpoint record belongs to another key; ignored');
        return undefined;
      }
      return r;
    } catch (e) {
      if (!(e instanceof PipelineError) || e.code !== 'STORAGE_RECORD_CORRUPT') throw e;
      logger.warn({ record: key, err: e.message }, 'checkpoint record is unreadable; starting without it');
      return undefined;
    }
  };

  return {
    async save(data, meta, options) {
      const ref = await store.put(data, { name: `${owner.stepId}.ckpt`, mediaType: 'application/octet-stream' });
      const before = await readRecord<typeof meta>();
      const previous = before?.recent ?? [];
      const keep = options?.keep ?? Infinity;
      const recent = [ref, ...previous.filter((r) => r.sha256 !== ref.sha256)];
      const savedAt = new Date().toISOString();
      const history = [{ ref, meta, savedAt }, ...(before?.history ?? []).filter((h) => h.ref.sha256 !== ref.sha256)].slice(0, keep);
      const record: StoredCheckpoint<typeof meta> = { key, ref, meta, savedAt, recent: recent.slice(0, keep), history };
      // Durable first (record written atomically), then the heartbeat pointer, then pruning.
      await store.putRecord(key, record);
      heartbeat({ checkpoint: { key, ref, meta, savedAt: record.savedAt } });
      for (const old of recent.slice(keep)) await store.delete(old);
      return { ref, meta, savedAt, recent: record.recent ?? [] };
    },

    async latest<M extends Record<string, unknown>>() {
      const pointer = (heartbeatDetails as { checkpoint?: StoredCheckpoint<M> } | undefined)?.checkpoint;
      const fromHeartbeat = pointer && pointer.key === key ? pointer : undefined;
      if (pointer && !fromHeartbeat) {
        logger.warn({ record: key, found: pointer.key ?? '(no key)' }, 'heartbeat checkpoint pointer belongs to another key; ignored');
      }
      // The store record is written before the heartbeat, so it is never older; prefer it.
      const record = (await readRecord<M>()) ?? fromHeartbeat;
      if (!record) return undefined;
      const newest = { ref: record.ref, meta: record.meta, savedAt: record.savedAt };
      const candidates = [newest, ...(record.history ?? []).filter((h) => h.ref.sha256 !== record.ref.sha256)];
      for (const [i, { ref, meta, savedAt }] of candidates.entries()) {
        // get() checks the digest: a missing or altered checkpoint is skipped for the next older one.
        let data: Buffer;
        try {
          data = await store.get(ref);
        } catch (e) {
          if (!(e instanceof PipelineError) || !['STORAGE_DIGEST_MISMATCH', 'STORAGE_NOT_FOUND'].includes(e.code)) throw e;
          logger.warn({ record: key, sha256: ref.sha256, err: e.message }, 'checkpoint is missing or corrupt; trying the next older one');
          continue;
        }
        if (i > 0) logger.warn({ record: key, sha256: ref.sha256, skipped: i }, `resuming from an older checkpoint (${i} newer skipped)`);
        return { ref, meta, savedAt, recent: candidates.slice(i).map((c) => c.ref), data };
      }
      logger.warn({ record: key, tried: candidates.length }, 'no checkpoint of this step is readable; starting fresh');
      return undefined;
    },

    stream(name) {
      if (stream !== undefined) throw new PipelineError('INTERNAL', `checkpoint stream '${stream}' has no streams of its own`);
      return createCheckpoints(owner, deps, name);
    },
  };
}
